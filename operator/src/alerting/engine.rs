//! The evaluator: a window of recent samples per (rule, device, series) and the alert
//! state machine over it. Pure in-memory work on the ingest path, so a breach is decided
//! on the batch that carries it; what changes state comes out as [`Transition`]s for the
//! alert writer to persist.
//!
//! ```text
//!   (none) --breach--> pending --breach for `for`--> firing --recovered for resolve.for--> resolved
//!                         \--no breach--> resolved (never fired)
//! ```
use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, Mutex, PoisonError, atomic::Ordering},
};

use arc_swap::ArcSwap;
use cdot_crds::{alert_rule::ReduceFunction, wire::alert::AlertState};
use uuid::Uuid;

use super::rules::{Rule, RuleSet};

/// Independent locks, so the ingest writers evaluate different devices at once.
const SHARDS: usize = 32;
/// Most samples a window holds, whatever its length (a 1-day window of 1 s samples
/// would otherwise hold 86,400).
const MAX_WINDOW_SAMPLES: usize = 4096;

/// One sample as evaluation sees it.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    pub metric: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub t_ms: i64,
    pub value: f64,
}

/// Why an alert resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The value recovered.
    Recovered,
    /// The rule was removed, paused or no longer selects the device.
    Unselected,
}

/// A change of an alert's state.
#[derive(Debug, Clone)]
pub struct Transition {
    pub alert_id: Uuid,
    pub rule: Arc<Rule>,
    pub device_uid: Uuid,
    pub series: BTreeMap<String, String>,
    pub from: Option<AlertState>,
    pub to: AlertState,
    pub at_ms: i64,
    pub value: f64,
    pub peak: f64,
    pub started_ms: i64,
    pub fired_ms: Option<i64>,
    pub ended: Option<Ended>,
}

/// An open (pending or firing) alert as stored, to continue after a restart.
#[derive(Debug, Clone)]
pub struct OpenAlert {
    pub id: Uuid,
    pub rule_uid: Uuid,
    pub device_uid: Uuid,
    pub series: BTreeMap<String, String>,
    pub state: AlertState,
    pub started_ms: i64,
    pub fired_ms: Option<i64>,
    pub resolving_since_ms: Option<i64>,
    pub value: f64,
    pub peak: f64,
}

/// An alert while pending or firing.
#[derive(Debug, Clone, Copy)]
pub(super) struct Open {
    id: Uuid,
    state: AlertState,
    pub(super) started_ms: i64,
    fired_ms: Option<i64>,
    resolving_since_ms: Option<i64>,
    value: f64,
    pub(super) peak: f64,
    /// Value or peak moved since last taken by [`Engine::take_changed_values`].
    dirty: bool,
}

#[derive(Debug)]
struct Series {
    labels: BTreeMap<String, String>,
    window: VecDeque<(i64, f64)>,
    last_ms: i64,
    open: Option<Open>,
}

impl Series {
    fn new(labels: BTreeMap<String, String>) -> Self {
        Self {
            labels,
            window: VecDeque::new(),
            last_ms: i64::MIN,
            open: None,
        }
    }
}

type Shard = HashMap<(Uuid, Uuid), Vec<Series>>;

/// The windows and alert states of every (rule, device, series).
pub struct Engine {
    rules: ArcSwap<RuleSet>,
    shards: Vec<Mutex<Shard>>,
}

impl Default for Engine {
    fn default() -> Self {
        Self {
            rules: ArcSwap::from_pointee(RuleSet::default()),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

fn shard_of(device: &Uuid) -> usize {
    // Uuids are random: their low bits spread devices evenly.
    (device.as_u128() as usize) % SHARDS
}

impl Engine {
    fn shard(&self, device: &Uuid) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[shard_of(device)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.load_full()
    }

    /// Installs a new rule set. Windows of rules whose generation changed start over (the
    /// window or reduction may differ); open alerts of rules that no longer exist or no
    /// longer select their device resolve, at `now_ms`.
    pub fn set_rules(&self, mut rules: RuleSet, now_ms: i64) -> Vec<Transition> {
        let current = self.rules.load_full();
        rules.carry_over(&current);
        let old = self.rules.swap(Arc::new(rules));
        let new = self.rules.load();
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            shard.retain(|(rule_uid, device_uid), series| {
                let Some(rule) = new
                    .rule(rule_uid)
                    .filter(|_| new.selects(rule_uid, device_uid))
                else {
                    let gone = old.rule(rule_uid).cloned();
                    for s in series.drain(..) {
                        if let (Some(open), Some(rule)) = (s.open, gone.clone()) {
                            out.push(end(
                                &rule,
                                *device_uid,
                                s.labels,
                                open,
                                now_ms,
                                Ended::Unselected,
                            ));
                        }
                    }
                    return false;
                };
                if old
                    .rule(rule_uid)
                    .is_none_or(|o| o.generation != rule.generation)
                {
                    for s in series.iter_mut() {
                        s.window.clear();
                    }
                }
                true
            });
        }
        out
    }

    /// Continues stored open alerts (after a restart), with empty windows.
    pub fn restore(&self, alerts: Vec<OpenAlert>) {
        for a in alerts {
            let mut shard = self.shard(&a.device_uid);
            let series = shard.entry((a.rule_uid, a.device_uid)).or_default();
            let mut s = Series::new(a.series);
            s.open = Some(Open {
                id: a.id,
                state: a.state,
                started_ms: a.started_ms,
                fired_ms: a.fired_ms,
                resolving_since_ms: a.resolving_since_ms,
                value: a.value,
                peak: a.peak,
                dirty: false,
            });
            series.push(s);
        }
    }

    /// Evaluates the samples of one device (in time order per series) against every rule
    /// that selects it; returns the alert state changes they cause.
    /// `known`: the Device's namespace and labels, for a Device newer than the rule set.
    pub fn observe<'a>(
        &self,
        device: Uuid,
        known: Option<(&str, &BTreeMap<String, String>)>,
        samples: impl IntoIterator<Item = Sample<'a>>,
    ) -> Vec<Transition> {
        let rules = self.rules.load();
        let selected = rules.selected(&device, known);
        if selected.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut shard = None;
        for sample in samples {
            if !sample.value.is_finite() {
                continue;
            }
            for rule in selected
                .iter()
                .map(|i| rules.get(*i))
                .filter(|r| r.metric == sample.metric)
            {
                if !rule.selects_series(sample.labels) {
                    continue;
                }
                rule.last_evaluated_ms
                    .fetch_max(sample.t_ms, Ordering::Relaxed);
                let shard = shard.get_or_insert_with(|| self.shard(&device));
                let all = shard.entry((rule.uid, device)).or_default();
                let at = match all.iter().position(|s| s.labels == *sample.labels) {
                    Some(i) => i,
                    None => {
                        all.push(Series::new(sample.labels.clone()));
                        all.len() - 1
                    }
                };
                out.extend(step(rule, device, &mut all[at], sample.t_ms, sample.value));
            }
        }
        out
    }

    /// Values and peaks of open alerts that moved since the last call, to store.
    pub fn take_changed_values(&self) -> Vec<(Uuid, f64, f64)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            for series in shard.values_mut().flatten() {
                if let Some(open) = series.open.as_mut().filter(|o| o.dirty) {
                    open.dirty = false;
                    out.push((open.id, open.value, open.peak));
                }
            }
        }
        out
    }

    /// Open alerts by state, for the metrics.
    pub fn count_open(&self) -> (u64, u64) {
        let (mut pending, mut firing) = (0, 0);
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            for open in shard.values().flatten().filter_map(|s| s.open.as_ref()) {
                match open.state {
                    AlertState::Pending => pending += 1,
                    AlertState::Firing => firing += 1,
                    AlertState::Resolved => {}
                }
            }
        }
        (pending, firing)
    }

    /// Forgets windows no sample reached for `idle_ms` (a removed disk, a renamed
    /// interface) unless an alert is open on them.
    pub fn forget_idle(&self, now_ms: i64, idle_ms: i64) {
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            shard.retain(|_, series| {
                series.retain(|s| s.open.is_some() || now_ms - s.last_ms < idle_ms);
                !series.is_empty()
            });
        }
    }
}

fn reduce(function: ReduceFunction, window: &VecDeque<(i64, f64)>) -> Option<f64> {
    let values = window.iter().map(|(_, v)| *v);
    match function {
        ReduceFunction::Last => window.back().map(|(_, v)| *v),
        ReduceFunction::Max => values.reduce(f64::max),
        ReduceFunction::Min => values.reduce(f64::min),
        ReduceFunction::Avg => {
            let n = window.len();
            (n > 0).then(|| values.sum::<f64>() / n as f64)
        }
    }
}

fn end(
    rule: &Arc<Rule>,
    device: Uuid,
    series: BTreeMap<String, String>,
    open: Open,
    at_ms: i64,
    why: Ended,
) -> Transition {
    Transition {
        alert_id: open.id,
        rule: rule.clone(),
        device_uid: device,
        series,
        from: Some(open.state),
        to: AlertState::Resolved,
        at_ms,
        value: open.value,
        peak: open.peak,
        started_ms: open.started_ms,
        fired_ms: open.fired_ms,
        ended: Some(why),
    }
}

/// One sample into one series: window, reduce, state machine.
fn step(
    rule: &Arc<Rule>,
    device: Uuid,
    s: &mut Series,
    t_ms: i64,
    value: f64,
) -> Option<Transition> {
    // A late sample (a spool replayed after newer data) fills the window but does not move
    // the state back in time.
    let late = t_ms < s.last_ms;
    let at = s.window.partition_point(|(t, _)| *t <= t_ms);
    s.window.insert(at, (t_ms, value));
    s.last_ms = s.last_ms.max(t_ms);
    let oldest = s.last_ms - rule.window_ms;
    while s.window.front().is_some_and(|(t, _)| *t <= oldest) || s.window.len() > MAX_WINDOW_SAMPLES
    {
        s.window.pop_front();
    }
    if late {
        return None;
    }
    let now = s.last_ms;
    let v = reduce(rule.spec.reduce.function, &s.window)?;
    let (from, to, open) = advance(rule, &mut s.open, now, v)?;
    Some(Transition {
        alert_id: open.id,
        rule: rule.clone(),
        device_uid: device,
        series: s.labels.clone(),
        from,
        to,
        at_ms: now,
        value: open.value,
        peak: open.peak,
        started_ms: open.started_ms,
        fired_ms: open.fired_ms,
        ended: (to == AlertState::Resolved).then_some(Ended::Recovered),
    })
}

/// The state machine: the reduced value `v` at `now` for the alert in `slot` (none, pending
/// or firing). Returns the change it makes, if any, with the alert as it is after it (as it
/// was when it ended, for a resolve; `slot` is empty then).
pub(super) fn advance(
    rule: &Rule,
    slot: &mut Option<Open>,
    now: i64,
    v: f64,
) -> Option<(Option<AlertState>, AlertState, Open)> {
    match slot.take() {
        None => {
            if !rule.breached(v) {
                return None;
            }
            let mut open = Open {
                id: Uuid::new_v4(),
                state: AlertState::Pending,
                started_ms: now,
                fired_ms: None,
                resolving_since_ms: None,
                value: v,
                peak: v,
                dirty: false,
            };
            if rule.for_ms == 0 {
                open.state = AlertState::Firing;
                open.fired_ms = Some(now);
            }
            *slot = Some(open);
            Some((None, open.state, open))
        }
        Some(mut open) => {
            open.value = v;
            open.peak = rule.worse(open.peak, v);
            open.dirty = true;
            match open.state {
                AlertState::Pending if rule.breached(v) => {
                    let fires = now - open.started_ms >= rule.for_ms;
                    if fires {
                        open.state = AlertState::Firing;
                        open.fired_ms = Some(now);
                    }
                    *slot = Some(open);
                    fires.then_some((Some(AlertState::Pending), AlertState::Firing, open))
                }
                AlertState::Pending => {
                    Some((Some(AlertState::Pending), AlertState::Resolved, open))
                }
                AlertState::Firing if rule.recovered(v) => {
                    let since = *open.resolving_since_ms.get_or_insert(now);
                    if now - since >= rule.resolve_for_ms {
                        return Some((Some(AlertState::Firing), AlertState::Resolved, open));
                    }
                    *slot = Some(open);
                    None
                }
                AlertState::Firing | AlertState::Resolved => {
                    open.resolving_since_ms = None;
                    *slot = Some(open);
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{index::Index, reconcile::tests::stored};

    const MIN: i64 = 60_000;

    fn engine(rule: serde_json::Value) -> (Engine, Uuid) {
        let mut device = stored(
            "Device",
            "acme",
            "web-01",
            json!({"class": "Server"}),
            json!({}),
        );
        device.uid = Uuid::new_v4();
        device.labels.insert("role".into(), "server".into());
        let mut rule = stored("AlertRule", "acme", "disk-full", rule, json!({}));
        rule.uid = Uuid::new_v4();
        let index = Index::default();
        index.replace(&[device.clone(), rule]);
        let engine = Engine::default();
        assert!(
            engine
                .set_rules(RuleSet::compile(&index.snapshot()), 0)
                .is_empty()
        );
        assert_eq!(engine.rules().len(), 1);
        (engine, device.uid)
    }

    fn disk_rule() -> serde_json::Value {
        json!({
            "selector": {"matchLabels": {"role": "server"}},
            "metric": "disk",
            "series": {"mount": "/*"},
            "reduce": {"function": "avg", "window": "2m"},
            "condition": {"op": ">", "threshold": 90},
            "for": "2m",
            "resolve": {"threshold": 80, "for": "1m"},
        })
    }

    fn feed(
        engine: &Engine,
        device: Uuid,
        mount: &str,
        points: &[(i64, f64)],
    ) -> Vec<(i64, Option<AlertState>, AlertState)> {
        let labels: BTreeMap<String, String> = [("mount".to_owned(), mount.to_owned())].into();
        let mut out = Vec::new();
        for (t, v) in points {
            let sample = Sample {
                metric: "disk",
                labels: &labels,
                t_ms: *t,
                value: *v,
            };
            for tr in engine.observe(device, None, [sample]) {
                out.push((tr.at_ms, tr.from, tr.to));
            }
        }
        out
    }

    #[test]
    fn pending_then_firing_after_for_then_resolved_with_hysteresis() {
        let (engine, device) = engine(disk_rule());
        let got = feed(
            &engine,
            device,
            "/",
            &[
                (0, 50.0),
                (MIN, 95.0),     // avg 72.5: no breach
                (2 * MIN, 99.0), // window (1m, 2m]: avg 97 → pending
                (3 * MIN, 99.0),
                (4 * MIN, 99.0), // 2m after pending → firing
                (5 * MIN, 85.0), // avg 92: still breached
                (6 * MIN, 70.0), // avg 77.5 < 80: recovering since 6m
                (7 * MIN, 70.0), // 1m recovered → resolved
            ],
        );
        use AlertState::*;
        assert_eq!(
            got,
            vec![
                (2 * MIN, None, Pending),
                (4 * MIN, Some(Pending), Firing),
                (7 * MIN, Some(Firing), Resolved),
            ]
        );
        assert_eq!(engine.count_open(), (0, 0));
    }

    #[test]
    fn a_value_between_the_thresholds_keeps_firing() {
        let (engine, device) = engine(json!({
            "metric": "disk", "reduce": {"function": "last", "window": "1m"},
            "condition": {"op": ">", "threshold": 90}, "resolve": {"threshold": 80},
        }));
        let got = feed(
            &engine,
            device,
            "/",
            &[(0, 91.0), (MIN, 85.0), (2 * MIN, 85.0), (3 * MIN, 79.0)],
        );
        assert_eq!(
            got.iter().map(|g| g.2).collect::<Vec<_>>(),
            [AlertState::Firing, AlertState::Resolved]
        );
        assert_eq!(got[1].0, 3 * MIN);
    }

    #[test]
    fn pending_that_recovers_ends_without_firing() {
        let (engine, device) = engine(disk_rule());
        let got = feed(&engine, device, "/", &[(0, 99.0), (MIN, 10.0)]);
        assert_eq!(
            got,
            vec![
                (0, None, AlertState::Pending),
                (MIN, Some(AlertState::Pending), AlertState::Resolved)
            ]
        );
    }

    #[test]
    fn series_labels_pick_series_and_each_series_is_its_own_alert() {
        let (engine, device) = engine(json!({
            "metric": "disk", "series": {"mount": "/data*"}, "reduce": {"function": "last", "window": "1m"},
            "condition": {"op": ">", "threshold": 90},
        }));
        assert!(feed(&engine, device, "/", &[(0, 99.0)]).is_empty());
        assert_eq!(feed(&engine, device, "/data1", &[(0, 99.0)]).len(), 1);
        assert_eq!(feed(&engine, device, "/data2", &[(0, 99.0)]).len(), 1);
        assert_eq!(engine.count_open(), (0, 2));
        // Another metric, or a device the rule does not select, is not evaluated.
        let labels = BTreeMap::new();
        assert!(
            engine
                .observe(
                    device,
                    None,
                    [Sample {
                        metric: "cpu",
                        labels: &labels,
                        t_ms: 0,
                        value: 100.0
                    }]
                )
                .is_empty()
        );
        assert!(
            engine
                .observe(
                    Uuid::new_v4(),
                    None,
                    [Sample {
                        metric: "disk",
                        labels: &labels,
                        t_ms: 0,
                        value: 100.0
                    }]
                )
                .is_empty()
        );
    }

    #[test]
    fn a_late_sample_does_not_move_the_state_back() {
        let (engine, device) = engine(json!({
            "metric": "disk", "reduce": {"function": "last", "window": "5m"},
            "condition": {"op": ">", "threshold": 90},
        }));
        assert_eq!(feed(&engine, device, "/", &[(2 * MIN, 95.0)]).len(), 1);
        assert!(feed(&engine, device, "/", &[(MIN, 10.0)]).is_empty());
        assert_eq!(engine.count_open(), (0, 1));
    }

    #[test]
    fn restored_alerts_continue_and_removed_rules_resolve_them() {
        let (engine, device) = engine(disk_rule());
        let rule = engine.rules().rules[0].clone();
        let id = Uuid::new_v4();
        engine.restore(vec![OpenAlert {
            id,
            rule_uid: rule.uid,
            device_uid: device,
            series: [("mount".to_owned(), "/".to_owned())].into(),
            state: AlertState::Pending,
            started_ms: 0,
            fired_ms: None,
            resolving_since_ms: None,
            value: 95.0,
            peak: 96.0,
        }]);
        // Still breached 2 minutes after the stored start: fires, with the same id.
        let labels: BTreeMap<String, String> = [("mount".to_owned(), "/".to_owned())].into();
        let t = engine.observe(
            device,
            None,
            [Sample {
                metric: "disk",
                labels: &labels,
                t_ms: 2 * MIN,
                value: 97.0,
            }],
        );
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].alert_id, t[0].to, t[0].peak),
            (id, AlertState::Firing, 97.0)
        );
        assert_eq!(engine.take_changed_values(), vec![(id, 97.0, 97.0)]);
        assert!(engine.take_changed_values().is_empty());

        let gone = engine.set_rules(RuleSet::default(), 3 * MIN);
        assert_eq!(gone.len(), 1);
        assert_eq!(
            (gone[0].alert_id, gone[0].to, gone[0].ended),
            (id, AlertState::Resolved, Some(Ended::Unselected))
        );
        assert_eq!(engine.count_open(), (0, 0));
    }
}
