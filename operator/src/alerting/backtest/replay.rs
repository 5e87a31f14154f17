//! The pure half of a backtest: which minutes of a series to replay, given the hours that
//! could breach, and the replay itself: the evaluator's state machine ([`advance`]) fed
//! with whole minutes instead of samples.
use std::collections::VecDeque;

use cdot_crds::{alert_rule::ReduceFunction, wire::alert::AlertState};

use crate::alerting::{
    engine::{Open, advance},
    rules::Rule,
};
use crate::store::timeseries::{HOUR_MS, MINUTE_MS};

/// How far a range that ends with an alert still open is lengthened in the first round
/// (each later round twice as far).
pub const EXTEND_MS: i64 = 6 * HOUR_MS;

/// One series' minute from `metric_points_1m`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Minute {
    /// Start of the minute (Unix ms).
    pub bucket_ms: i64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: i64,
}

/// One alert the replay raised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Episode {
    pub started_ms: i64,
    pub fired_ms: Option<i64>,
    pub resolved_ms: Option<i64>,
    pub peak: f64,
}

impl Episode {
    /// Notifications it would send: per channel (`true` when it sends resolved ones), the
    /// firing one, one per `repeat_ms` while firing before the end (`to_ms` when still
    /// open), and the resolved one.
    pub fn notifications(&self, repeat_ms: i64, to_ms: i64, channels: &[bool]) -> u32 {
        let Some(fired) = self.fired_ms else {
            return 0;
        };
        let end = self.resolved_ms.unwrap_or(to_ms);
        let repeats = if repeat_ms > 0 {
            u32::try_from((end - fired - 1).max(0) / repeat_ms).unwrap_or(u32::MAX)
        } else {
            0
        };
        channels
            .iter()
            .map(|send_resolved| {
                1 + repeats + u32::from(*send_resolved && self.resolved_ms.is_some())
            })
            .sum()
    }
}

/// A series replayed minute by minute. A minute counts at its end (when it is whole), and
/// the window holds the minutes that ended within the rule's window: `avg` is weighted by
/// samples (sum of sums over sum of counts), `max`/`min` are over the minutes' extremes,
/// `last` is the last minute's average (the rollup keeps no last sample).
pub struct Replay<'r> {
    rule: &'r Rule,
    window: VecDeque<Minute>,
    slot: Option<Open>,
    pub episodes: Vec<Episode>,
}

impl<'r> Replay<'r> {
    pub fn new(rule: &'r Rule) -> Self {
        Self {
            rule,
            window: VecDeque::new(),
            slot: None,
            episodes: Vec::new(),
        }
    }

    /// Feeds the next minute (minutes in ascending order).
    pub fn feed(&mut self, minute: Minute) {
        if minute.count <= 0 || !minute.sum.is_finite() {
            return;
        }
        let now = minute.bucket_ms + MINUTE_MS;
        self.window.push_back(minute);
        while self
            .window
            .front()
            .is_some_and(|m| m.bucket_ms + MINUTE_MS <= now - self.rule.window_ms)
        {
            self.window.pop_front();
        }
        let Some(v) = reduce(self.rule.spec.reduce.function, &self.window) else {
            return;
        };
        let change = advance(self.rule, &mut self.slot, now, v);
        match change {
            Some((None, to, open)) => self.episodes.push(Episode {
                started_ms: open.started_ms,
                fired_ms: (to == AlertState::Firing).then_some(now),
                resolved_ms: None,
                peak: open.peak,
            }),
            Some((Some(_), to, open)) => {
                if let Some(e) = self.episodes.last_mut() {
                    e.peak = open.peak;
                    match to {
                        AlertState::Firing => e.fired_ms = Some(now),
                        AlertState::Resolved => e.resolved_ms = Some(now),
                        AlertState::Pending => {}
                    }
                }
            }
            None => {
                if let (Some(open), Some(e)) = (self.slot.as_ref(), self.episodes.last_mut()) {
                    e.peak = open.peak;
                }
            }
        }
    }

    /// The next minutes fed do not follow the last ones: the window starts over. Only ever
    /// called where no window of the gap could breach, so an open alert stays open.
    pub fn gap(&mut self) {
        self.window.clear();
    }

    pub fn is_open(&self) -> bool {
        self.slot.is_some()
    }
}

fn reduce(function: ReduceFunction, window: &VecDeque<Minute>) -> Option<f64> {
    let last = window.back()?;
    Some(match function {
        ReduceFunction::Avg => {
            let (sum, count) = window
                .iter()
                .fold((0.0, 0i64), |(s, c), m| (s + m.sum, c + m.count));
            sum / count as f64
        }
        ReduceFunction::Max => window.iter().map(|m| m.max).fold(f64::MIN, f64::max),
        ReduceFunction::Min => window.iter().map(|m| m.min).fold(f64::MAX, f64::min),
        ReduceFunction::Last => last.sum / last.count as f64,
    })
}

/// Appends `range` to `ranges` (sorted by start, `range` starting at or after the last),
/// merging it into the last one where they touch.
pub fn push_merged(ranges: &mut Vec<(i64, i64)>, (start, end): (i64, i64)) {
    match ranges.last_mut() {
        Some(last) if start <= last.1 => last.1 = last.1.max(end),
        _ => ranges.push((start, end)),
    }
}

/// The minute ranges `[start, end)` to replay for a series whose hours in `hot` (starts,
/// ascending) could breach: every window that touches such an hour, that is from one
/// window before the hour to one window after it, merged and clipped to the range (with
/// one window of lead before `from_ms`).
pub fn plan(hot: &[i64], window_ms: i64, from_ms: i64, to_ms: i64) -> Vec<(i64, i64)> {
    let lead = window_ms.div_euclid(MINUTE_MS) * MINUTE_MS + MINUTE_MS;
    let (lo, hi) = (from_ms - lead, to_ms);
    let mut out: Vec<(i64, i64)> = Vec::new();
    for hour in hot {
        let start = (hour - lead).max(lo);
        let end = (hour + HOUR_MS + lead).min(hi);
        if start < end {
            push_merged(&mut out, (start, end));
        }
    }
    out
}

/// Lengthens range `i` of `ranges` by `by` (up to `to_ms`), merging what it reaches; false
/// when it already ends at `to_ms`.
pub fn extend(ranges: &mut Vec<(i64, i64)>, i: usize, to_ms: i64, by: i64) -> bool {
    if ranges[i].1 >= to_ms {
        return false;
    }
    ranges[i].1 = (ranges[i].1 + by).min(to_ms);
    while i + 1 < ranges.len() && ranges[i + 1].0 <= ranges[i].1 {
        ranges[i].1 = ranges[i].1.max(ranges[i + 1].1);
        ranges.remove(i + 1);
    }
    true
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{index::IndexedObject, reconcile::tests::stored};

    const MIN: i64 = MINUTE_MS;

    fn rule(spec: serde_json::Value) -> Rule {
        let object = stored("AlertRule", "acme", "cpu-high", spec, json!({}));
        Rule::compile(&IndexedObject::from(&object)).expect("a valid rule")
    }

    fn minute(i: i64, avg: f64) -> Minute {
        Minute {
            bucket_ms: i * MIN,
            min: avg - 5.0,
            max: avg + 5.0,
            sum: avg * 6.0,
            count: 6,
        }
    }

    fn cpu_rule() -> Rule {
        rule(json!({
            "metric": "cpu",
            "reduce": {"function": "avg", "window": "5m"},
            "condition": {"op": ">", "threshold": 90},
            "for": "5m",
            "resolve": {"threshold": 70, "for": "2m"},
            "repeatInterval": "1h",
        }))
    }

    #[test]
    fn a_breach_pends_fires_and_resolves_with_hysteresis() {
        let rule = cpu_rule();
        let mut replay = Replay::new(&rule);
        // 10 quiet minutes, 20 at 99, then 80 (between the thresholds) for 10, then 50.
        let values = (0..10)
            .map(|_| 40.0)
            .chain((0..20).map(|_| 99.0))
            .chain((0..10).map(|_| 80.0))
            .chain((0..10).map(|_| 50.0));
        for (i, v) in values.enumerate() {
            replay.feed(minute(i as i64, v));
        }
        assert!(!replay.is_open());
        let [e] = replay.episodes[..] else {
            panic!("one episode: {:?}", replay.episodes)
        };
        // The 5-minute average crosses 90 when 5 of its minutes are at 99: minute 14 ends
        // at 15m; `for: 5m` fires it at 20m; it stays above 70 until the window holds two
        // minutes of 50 (at 42m: avg 68), and resolves 2 minutes later.
        assert_eq!(e.started_ms, 15 * MIN);
        assert_eq!(e.fired_ms, Some(20 * MIN));
        assert_eq!(e.resolved_ms, Some(44 * MIN));
        assert_eq!(e.peak, 99.0);
        // One channel that sends resolved: firing + resolved (26 minutes < 1h, no repeat).
        assert_eq!(e.notifications(rule.repeat_ms, 100 * MIN, &[true]), 2);
        assert_eq!(
            e.notifications(rule.repeat_ms, 100 * MIN, &[false, true]),
            3
        );
    }

    #[test]
    fn a_short_breach_stays_pending_and_long_firing_repeats() {
        let rule = cpu_rule();
        let mut replay = Replay::new(&rule);
        for i in 0..10 {
            replay.feed(minute(i, if (2..7).contains(&i) { 100.0 } else { 10.0 }));
        }
        assert_eq!(replay.episodes.len(), 1);
        assert_eq!(replay.episodes[0].fired_ms, None);
        assert_eq!(
            replay.episodes[0].notifications(rule.repeat_ms, 0, &[true]),
            0
        );

        let mut replay = Replay::new(&rule);
        for i in 0..200 {
            replay.feed(minute(i, 95.0));
        }
        assert!(replay.is_open());
        let e = replay.episodes[0];
        assert_eq!(
            (e.started_ms, e.fired_ms, e.resolved_ms),
            (MIN, Some(6 * MIN), None)
        );
        // Still open at 200m: firing at 6m, repeats at 66m, 126m and 186m.
        assert_eq!(e.notifications(rule.repeat_ms, 200 * MIN, &[true]), 4);
    }

    #[test]
    fn max_min_and_last_reduce_whole_minutes() {
        let window = VecDeque::from([minute(0, 10.0), minute(1, 30.0)]);
        assert_eq!(reduce(ReduceFunction::Avg, &window), Some(20.0));
        assert_eq!(reduce(ReduceFunction::Max, &window), Some(35.0));
        assert_eq!(reduce(ReduceFunction::Min, &window), Some(5.0));
        assert_eq!(reduce(ReduceFunction::Last, &window), Some(30.0));
        assert_eq!(reduce(ReduceFunction::Avg, &VecDeque::new()), None);
    }

    #[test]
    fn plans_cover_every_window_that_touches_a_hot_hour() {
        let h = HOUR_MS;
        // A 5-minute window: lead of 6 minutes either side, neighbours merged, clipped.
        let ranges = plan(&[2 * h, 3 * h, 10 * h], 5 * MIN, h, 11 * h);
        assert_eq!(
            ranges,
            [
                (2 * h - 6 * MIN, 4 * h + 6 * MIN),
                (10 * h - 6 * MIN, 11 * h)
            ]
        );
        assert_eq!(plan(&[0], 5 * MIN, h, 2 * h), [(h - 6 * MIN, h + 6 * MIN)]);
        assert!(plan(&[20 * h], 5 * MIN, h, 2 * h).is_empty());

        let mut ranges = vec![(0, h), (5 * h, 6 * h), (20 * h, 21 * h)];
        assert!(extend(&mut ranges, 0, 30 * h, EXTEND_MS));
        assert_eq!(ranges, [(0, 7 * h), (20 * h, 21 * h)]);
        assert!(extend(&mut ranges, 1, 22 * h, EXTEND_MS));
        assert!(!extend(&mut ranges, 1, 22 * h, EXTEND_MS));
        assert_eq!(ranges[1], (20 * h, 22 * h));
    }
}
