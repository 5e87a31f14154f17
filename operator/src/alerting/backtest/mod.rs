//! Backtest: an AlertRule, committed or not, replayed over the stored 1-minute rollups of
//! the devices it selects today, to see when it would have fired and resolved and how many
//! notifications it would have sent, before it is merged (ADR 20).
//!
//! Reading every minute of a month of 1,000 devices is 43 million rows; instead the hour
//! tier says which hours could breach at all (their minute averages and extremes bound
//! every window inside them), and only the minutes around those hours are read. An alert
//! still open where a range ends makes the range longer, round by round, until it resolves
//! or the range is over.
pub mod cli;
pub mod replay;
pub mod store;

use std::collections::HashMap;

use cdot_crds::{
    common::selector_matches,
    kind::Kind,
    manifest::{self, Document},
    metrics_catalog::Metric,
    notification_channel::NotificationChannelSpec,
    validation::FieldError,
    wire::alert::{
        BacktestEpisode, BacktestReport, BacktestRequest, BacktestTotals, MAX_BACKTEST_DAYS,
        MAX_BACKTEST_EPISODES,
    },
};
use serde_json::Value;
use uuid::Uuid;

use self::{
    replay::{EXTEND_MS, Episode, Minute, Replay, extend, plan, push_merged},
    store::SeriesRef,
};
use super::rules::Rule;
use crate::{
    index::{IndexedObject, Snapshot},
    store::{
        Store, StoreError,
        timeseries::{HOUR_MS, MINUTE_MS},
    },
};

/// Rounds of lengthening ranges with open alerts (each doubles the length added).
const MAX_ROUNDS: u32 = 12;
/// Minute reads a backtest runs at once (connections of the pool it holds meanwhile).
const PARALLEL_READS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// The rule document is refused: every problem with its path.
    #[error("the AlertRule is invalid: {}", describe(.0))]
    Invalid(Vec<FieldError>),
    /// A valid rule whose data a backtest does not replay.
    #[error("{0}")]
    NotReplayable(String),
    /// The time range is wrong.
    #[error("{message}")]
    Range {
        message: String,
        field: &'static str,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.path, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

fn invalid(path: &str, message: impl Into<String>) -> BacktestError {
    BacktestError::Invalid(vec![FieldError::new(path, message)])
}

/// Metrics a backtest cannot replay: they are not agent series of the minute tier.
fn replayable(metric: Metric) -> Result<(), String> {
    match metric {
        Metric::DeviceOffline => {
            Err("deviceOffline comes from heartbeats, which a backtest does not replay".into())
        }
        Metric::InterfaceUtilisation
        | Metric::InterfaceErrors
        | Metric::InterfaceDiscards
        | Metric::InterfaceDown
        | Metric::ProbeLatency
        | Metric::ProbeJitter
        | Metric::ProbeLoss => Err(format!(
            "{} comes from collectors' interface and probe rollups, which a backtest does not replay yet; agent metrics (cpu, memory, disk, ...) are replayed",
            metric.name()
        )),
        _ => Ok(()),
    }
}

fn parse_time(value: &str, field: &'static str) -> Result<i64, BacktestError> {
    value
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| BacktestError::Range {
            message: format!("{value:?} is not an RFC 3339 time: {e}"),
            field,
        })
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// The rule of a request, validated like a manifest document of `namespace`; a paused
/// rule is replayed as if it were not (the answer says so).
pub fn compile(namespace: &str, document: &Value) -> Result<(Rule, bool), BacktestError> {
    let mut document = document.clone();
    match document
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
    {
        Some(ns) if ns != namespace => {
            return Err(invalid(
                "rule.metadata.namespace",
                format!("{ns:?} is not the namespace of the request ({namespace:?})"),
            ));
        }
        Some(_) => {}
        None => {
            if let Some(metadata) = document.get_mut("metadata").and_then(Value::as_object_mut) {
                metadata.insert("namespace".into(), namespace.into());
            }
        }
    }
    let object = match manifest::validate_document(&document) {
        Ok(Document::Resource(object)) if object.kind == Kind::AlertRule => object,
        Ok(_) => return Err(invalid("rule.kind", "a backtest replays an AlertRule")),
        Err(errors) => {
            return Err(BacktestError::Invalid(
                errors
                    .into_iter()
                    .map(|e| FieldError::new(format!("rule.{}", e.path), e.message))
                    .collect(),
            ));
        }
    };
    let mut spec = object.spec.clone();
    let paused = spec.get("paused").and_then(Value::as_bool) == Some(true);
    if let Some(spec) = spec.as_object_mut() {
        spec.insert("paused".into(), false.into());
    }
    let indexed = IndexedObject {
        kind: Kind::AlertRule,
        namespace: object.namespace.clone(),
        name: object.name.clone(),
        uid: Uuid::new_v4(),
        generation: 1,
        labels: object.labels.clone(),
        spec,
    };
    let rule =
        Rule::compile(&indexed).ok_or_else(|| invalid("rule.spec", "the spec does not compile"))?;
    replayable(rule.spec.metric).map_err(BacktestError::NotReplayable)?;
    Ok((rule, paused))
}

/// The range of a request: `[from, to)` in ms, `to` defaulting to `now_ms`.
pub fn range(request: &BacktestRequest, now_ms: i64) -> Result<(i64, i64), BacktestError> {
    let from = parse_time(&request.from, "from")?;
    let to = match &request.to {
        Some(to) => parse_time(to, "to")?,
        None => now_ms,
    };
    if from >= to {
        return Err(BacktestError::Range {
            message: format!(
                "from ({}) is not before to ({})",
                rfc3339(from),
                rfc3339(to)
            ),
            field: "from",
        });
    }
    if to - from > MAX_BACKTEST_DAYS * 24 * HOUR_MS {
        return Err(BacktestError::Range {
            message: format!(
                "the range is longer than {MAX_BACKTEST_DAYS} days (the minute tier's default retention)"
            ),
            field: "to",
        });
    }
    Ok((from, to))
}

/// The parts of `want` not in `have` (both sorted, disjoint).
fn missing(want: (i64, i64), have: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut at = want.0;
    for (s, e) in have
        .iter()
        .copied()
        .filter(|(s, e)| *e > want.0 && *s < want.1)
    {
        if s > at {
            out.push((at, s));
        }
        at = at.max(e);
    }
    if at < want.1 {
        out.push((at, want.1));
    }
    out
}

/// One series being replayed: its ranges, the minutes read so far and what they gave.
struct Track {
    ranges: Vec<(i64, i64)>,
    fetched: Vec<(i64, i64)>,
    minutes: Vec<Minute>,
    episodes: Vec<Episode>,
}

impl Track {
    fn add_fetched(&mut self, range: (i64, i64), minutes: impl IntoIterator<Item = Minute>) {
        self.minutes.extend(minutes);
        self.fetched.push(range);
        self.fetched.sort_unstable();
        let mut merged = Vec::with_capacity(self.fetched.len());
        for r in self.fetched.drain(..) {
            push_merged(&mut merged, r);
        }
        self.fetched = merged;
    }

    /// Replays every range; returns the indexes of ranges that end with an alert open.
    fn replay(&mut self, rule: &Rule) -> Vec<usize> {
        self.minutes.sort_unstable_by_key(|m| m.bucket_ms);
        self.minutes.dedup_by_key(|m| m.bucket_ms);
        let mut replay = Replay::new(rule);
        let mut open = Vec::new();
        for (i, (start, end)) in self.ranges.iter().copied().enumerate() {
            replay.gap();
            let first = self.minutes.partition_point(|m| m.bucket_ms < start);
            for m in self.minutes[first..]
                .iter()
                .take_while(|m| m.bucket_ms < end)
            {
                replay.feed(*m);
            }
            if replay.is_open() {
                open.push(i);
            }
        }
        self.episodes = replay.episodes;
        open
    }
}

/// Replays `rule` over `[from_ms, to_ms)` for the devices of `snapshot` it selects.
pub async fn run(
    store: &Store,
    snapshot: &Snapshot,
    (rule, paused): (Rule, bool),
    from_ms: i64,
    to_ms: i64,
) -> Result<BacktestReport, BacktestError> {
    let devices: HashMap<Uuid, String> = snapshot
        .devices()
        .map(|d| &d.object)
        .filter(|o| {
            o.namespace == rule.namespace && selector_matches(&rule.spec.selector, &o.labels)
        })
        .map(|o| (o.uid, o.name.clone()))
        .collect();
    let uids: Vec<Uuid> = devices.keys().copied().collect();
    let series: Vec<SeriesRef> = store
        .backtest_series(rule.metric, &uids)
        .await?
        .into_iter()
        .filter(|s| rule.selects_series(&s.labels))
        .collect();

    // Hours that could breach; hours the hour tier has not folded yet count as such.
    let lead = rule.window_ms + MINUTE_MS;
    let first_hour = (from_ms - lead).div_euclid(HOUR_MS) * HOUR_MS;
    let folded = store.hour_watermark().await?;
    let mut hot: Vec<Vec<i64>> = vec![Vec::new(); series.len()];
    for (k, hour) in store
        .backtest_hot_hours(
            &series,
            (
                rule.spec.reduce.function,
                rule.spec.condition.op,
                rule.spec.condition.threshold,
            ),
            first_hour,
            to_ms.min(folded),
        )
        .await?
    {
        hot[k].push(hour);
    }
    let unfolded: Vec<i64> = (first_hour.max(folded)..to_ms)
        .step_by(HOUR_MS as usize)
        .collect();
    let mut tracks: Vec<Track> = hot
        .into_iter()
        .map(|mut hours| {
            hours.extend_from_slice(&unfolded);
            Track {
                ranges: plan(&hours, rule.window_ms, from_ms, to_ms),
                fetched: Vec::new(),
                minutes: Vec::new(),
                episodes: Vec::new(),
            }
        })
        .collect();

    for round in 0..MAX_ROUNDS {
        let wanted: Vec<(usize, i64, i64)> = tracks
            .iter()
            .enumerate()
            .flat_map(|(k, t)| {
                t.ranges
                    .iter()
                    .flat_map(|r| missing(*r, &t.fetched))
                    .map(move |(s, e)| (k, s, e))
            })
            .collect();
        if !wanted.is_empty() {
            // A few reads at once: from a cold cache the minutes of a device are scattered
            // page reads, and one index probe at a time leaves the disk idle between them.
            let chunk = wanted.len().div_ceil(PARALLEL_READS);
            let reads = wanted
                .chunks(chunk)
                .map(|part| store.backtest_minutes(&series, part));
            let mut read: Vec<Vec<Minute>> = vec![Vec::new(); wanted.len()];
            for (c, minutes) in futures::future::try_join_all(reads)
                .await?
                .into_iter()
                .enumerate()
            {
                for (i, minute) in minutes {
                    read[c * chunk + i].push(minute);
                }
            }
            for ((k, s, e), minutes) in wanted.iter().zip(read) {
                tracks[*k].add_fetched((*s, *e), minutes);
            }
        }
        let mut longer = false;
        for track in &mut tracks {
            // From the last range back, so that merging keeps earlier indexes valid.
            for i in track.replay(&rule).into_iter().rev() {
                longer |= extend(&mut track.ranges, i, to_ms, EXTEND_MS << round.min(8));
            }
        }
        if !longer {
            break;
        }
    }
    Ok(report(
        &rule, paused, snapshot, &devices, &series, &tracks, from_ms, to_ms,
    ))
}

#[allow(clippy::too_many_arguments)]
fn report(
    rule: &Rule,
    paused: bool,
    snapshot: &Snapshot,
    devices: &HashMap<Uuid, String>,
    series: &[SeriesRef],
    tracks: &[Track],
    from_ms: i64,
    to_ms: i64,
) -> BacktestReport {
    // Per channel that takes the rule's severity: whether it sends resolved notifications.
    let channels: Vec<bool> = rule
        .spec
        .channels
        .iter()
        .filter_map(|name| snapshot.get(Kind::NotificationChannel, &rule.namespace, name))
        .filter_map(|o| serde_json::from_value::<NotificationChannelSpec>(o.spec.clone()).ok())
        .filter(|c| c.min_severity.is_none_or(|min| rule.spec.severity >= min))
        .map(|c| c.send_resolved)
        .collect();
    let mut totals = BacktestTotals::default();
    let mut episodes = Vec::new();
    let mut fired_devices = std::collections::HashSet::new();
    for (s, track) in series.iter().zip(tracks) {
        for e in track
            .episodes
            .iter()
            .filter(|e| e.resolved_ms.is_none_or(|r| r > from_ms) && e.started_ms < to_ms)
        {
            let notifications = e.notifications(rule.repeat_ms, to_ms, &channels);
            totals.notifications += notifications;
            match e.fired_ms {
                Some(fired) => {
                    totals.fired += 1;
                    fired_devices.insert(s.device_uid);
                    let end = e.resolved_ms.unwrap_or(to_ms);
                    totals.firing_minutes += u64::try_from((end - fired) / MINUTE_MS).unwrap_or(0);
                }
                None => totals.pending_only += 1,
            }
            if e.resolved_ms.is_none() {
                totals.open_at_end += 1;
            }
            episodes.push(BacktestEpisode {
                device: devices.get(&s.device_uid).cloned().unwrap_or_default(),
                series: s.labels.clone(),
                started_at: rfc3339(e.started_ms),
                fired_at: e.fired_ms.map(rfc3339),
                resolved_at: e.resolved_ms.map(rfc3339),
                peak: e.peak,
                notifications,
            });
        }
    }
    totals.devices_fired = fired_devices.len() as u32;
    episodes.sort_by(|a, b| (&a.started_at, &a.device).cmp(&(&b.started_at, &b.device)));
    let truncated = episodes.len() > MAX_BACKTEST_EPISODES;
    episodes.truncate(MAX_BACKTEST_EPISODES);
    let mut caveats = vec![
        "silences, acknowledgements, maintenance windows, paused Devices and the deviceOffline inhibition are not replayed".to_owned(),
        "devices are those the selector picks today".to_owned(),
        "windows hold whole minutes of the 1-minute rollup, each counted when it ends: times are up to a minute later than live evaluation, and `last` is the last minute's average".to_owned(),
        "notifications count each alert on its own (groupBy can bundle alerts that fire together)".to_owned(),
    ];
    if paused {
        caveats.push("the rule is paused: replayed as if it were not".to_owned());
    }
    BacktestReport {
        namespace: rule.namespace.clone(),
        rule: rule.name.clone(),
        from: rfc3339(from_ms),
        to: rfc3339(to_ms),
        devices: devices.len() as u32,
        series: series.len() as u32,
        minutes_replayed: tracks.iter().map(|t| t.minutes.len() as u64).sum(),
        totals,
        episodes,
        truncated,
        caveats,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_parts_are_what_was_not_read() {
        assert_eq!(missing((0, 10), &[]), [(0, 10)]);
        assert_eq!(
            missing((0, 10), &[(2, 4), (6, 8)]),
            [(0, 2), (4, 6), (8, 10)]
        );
        assert!(missing((3, 5), &[(0, 10)]).is_empty());
        assert_eq!(missing((5, 15), &[(0, 10)]), [(10, 15)]);
    }

    #[test]
    fn requests_with_a_bad_range_or_rule_are_refused_with_their_field() {
        let rule = serde_json::json!({
            "apiVersion": "rmm.cdot.io/v1alpha1", "kind": "AlertRule",
            "metadata": {"name": "cpu-high"},
            "spec": {"metric": "cpu", "condition": {"op": ">", "threshold": 90}, "summary": "{{ nope }}"},
        });
        let Err(BacktestError::Invalid(errors)) = compile("acme", &rule) else {
            panic!("a template with an unknown variable is refused")
        };
        assert_eq!(errors[0].path, "rule.spec.summary", "{errors:?}");
        let mut offline = rule.clone();
        offline["spec"] = serde_json::json!({"metric": "deviceOffline", "condition": {"op": ">", "threshold": 0}});
        assert!(matches!(
            compile("acme", &offline),
            Err(BacktestError::NotReplayable(_))
        ));
        let mut other = rule.clone();
        other["metadata"]["namespace"] = "globex".into();
        assert!(
            matches!(compile("acme", &other), Err(BacktestError::Invalid(e)) if e[0].path == "rule.metadata.namespace")
        );

        let request = |from: &str, to: Option<&str>| BacktestRequest {
            rule: rule.clone(),
            from: from.into(),
            to: to.map(str::to_owned),
        };
        let now = 1_800_000_000_000;
        assert!(matches!(
            range(&request("yesterday", None), now),
            Err(BacktestError::Range { field: "from", .. })
        ));
        assert!(matches!(
            range(
                &request("2026-12-02T00:00:00Z", Some("2026-12-01T00:00:00Z")),
                now
            ),
            Err(BacktestError::Range { field: "from", .. })
        ));
        assert!(matches!(
            range(
                &request("2026-01-01T00:00:00Z", Some("2026-12-01T00:00:00Z")),
                now
            ),
            Err(BacktestError::Range { field: "to", .. })
        ));
        assert!(
            range(
                &request("2026-11-01T00:00:00Z", Some("2026-12-01T00:00:00Z")),
                now
            )
            .is_ok()
        );
    }
}
