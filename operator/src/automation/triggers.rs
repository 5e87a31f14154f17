//! Where runs come from. Events the operator sees as they happen are told to the engine
//! ([`super::engine::Fired`]): an alert firing or resolving (after its transition is
//! stored), a monitored service failing (a committed `serviceFailed` sample turning 1), a
//! patch install failing (an agent's report). What happens with time is found by
//! [`Periodic`]: devices offline long enough (from the heartbeat state the liveness pass
//! reads) and cron schedules.
//!
//! Each event carries a dedup key naming its occurrence (an alert id and state, a device's
//! last sign of life, a cron time), and a run is unique per (workflow, key): an event seen
//! twice (a replay, another replica) starts one run.
use std::collections::{HashMap, HashSet};

use cdot_crds::{
    kind::Kind,
    wire::{
        alert::AlertState,
        automation::Event,
        patch::{PatchProgress, PatchState},
    },
    workflow::{TriggerType, WorkflowSpec},
};
use jiff::{SignedDuration, Timestamp};
use uuid::Uuid;

use super::engine::{Automation, Fired};
use crate::{
    alerting::{TransitionHook, engine::Transition},
    discovery::schedule::Schedule,
    index::Snapshot,
    store::{Store, StoreError, heartbeats::Liveness},
};

/// Tells automation of stored firing and resolved transitions.
pub fn alert_hook(automation: Automation, index: crate::index::Index) -> TransitionHook {
    Box::new(move |t: &Transition| {
        let trigger = match t.to {
            AlertState::Firing => TriggerType::AlertFiring,
            AlertState::Resolved => TriggerType::AlertResolved,
            _ => return,
        };
        let snapshot = index.snapshot();
        let device = snapshot
            .device_by_uid(&t.device_uid)
            .map(|d| d.object.name.clone());
        automation.fire(Fired {
            namespace: t.rule.namespace.clone(),
            trigger,
            device: Some(t.device_uid),
            event: Event {
                type_: Some(trigger),
                device,
                alert_rule: Some(t.rule.name.clone()),
                alert: Some(t.alert_id),
                metric: Some(t.rule.metric.to_owned()),
                value: Some(t.value),
                labels: t.series.clone(),
                at: jiff::Timestamp::from_millisecond(t.at_ms)
                    .ok()
                    .map(|t| t.to_string()),
                ..Event::default()
            },
            dedup: Some(format!("alert:{}:{}", t.alert_id, t.to.as_str())),
        });
    })
}

/// A committed `serviceFailed` sample of a device.
pub fn service_sample(
    automation: &Automation,
    snapshot: &Snapshot,
    device: Uuid,
    service: &str,
    t_ms: i64,
    value: f64,
) {
    if !automation.observe_service(device, service, value >= 1.0) {
        return;
    }
    let Some(d) = snapshot.device_by_uid(&device) else {
        return;
    };
    automation.fire(Fired {
        namespace: d.object.namespace.clone(),
        trigger: TriggerType::ServiceFailed,
        device: Some(device),
        event: Event {
            type_: Some(TriggerType::ServiceFailed),
            device: Some(d.object.name.clone()),
            service: Some(service.to_owned()),
            at: Timestamp::from_millisecond(t_ms)
                .ok()
                .map(|t| t.to_string()),
            ..Event::default()
        },
        dedup: Some(format!("service:{device}:{service}:{t_ms}")),
    });
}

/// Failed packages of an applied work report.
pub fn patch_failures(
    automation: &Automation,
    namespace: &str,
    device: Uuid,
    device_name: &str,
    report: Uuid,
    progress: &[PatchProgress],
) {
    for p in progress.iter().filter(|p| p.state == PatchState::Failed) {
        automation.fire(Fired {
            namespace: namespace.to_owned(),
            trigger: TriggerType::PatchFailed,
            device: Some(device),
            event: Event {
                type_: Some(TriggerType::PatchFailed),
                device: Some(device_name.to_owned()),
                package: Some(format!("{} {}", p.name, p.version)),
                value: p.exit_code.map(f64::from),
                at: Timestamp::from_millisecond(p.at_ms)
                    .ok()
                    .map(|t| t.to_string()),
                ..Event::default()
            },
            dedup: Some(format!("patch:{device}:{}:{}:{report}", p.name, p.version)),
        });
    }
}

/// Devices going offline and coming back, and schedules, looked at every few seconds.
#[derive(Default)]
pub struct Periodic {
    /// Next cron time per (namespace, workflow, generation).
    next: HashMap<(String, String, i64), Timestamp>,
    /// Offline occurrences already told (a device stays offline for many looks).
    told: HashSet<String>,
    /// Devices seen offline, with their last sign of life before it.
    down: HashMap<Uuid, Timestamp>,
    /// Whether a look at liveness happened since the start.
    looked: bool,
    /// The cron time of each Schedule workflow's newest run, read once at the start and
    /// taken by the workflow's first look: where a restarted engine catches up from.
    last_scheduled: Option<HashMap<(String, String), Timestamp>>,
}

/// How old a cron time missed while the operator was down may be and still run at its
/// start: a restart across the night's maintenance runs it; a week of downtime does not
/// run last Monday's.
const CATCH_UP: SignedDuration = SignedDuration::from_hours(24);

impl Periodic {
    pub async fn events(
        &mut self,
        store: &Store,
        snapshot: &Snapshot,
        now: Timestamp,
    ) -> Result<Vec<Fired>, StoreError> {
        if self.last_scheduled.is_none() {
            self.last_scheduled = Some(store.last_schedule_times().await?);
        }
        let mut out = self.schedules(snapshot, now);
        out.extend(self.liveness(store, snapshot, now).await?);
        Ok(out)
    }

    /// The cron times of Schedule workflows that have come: one event per time reached,
    /// and one (not one per missed time) after a gap. A workflow's next time is computed
    /// when it is first seen or its spec changes, so a new schedule never fires for a time
    /// before it was applied; at the first sight after a start it follows the workflow's
    /// newest run instead, so a time missed while the operator was down (at most
    /// [`CATCH_UP`] ago) runs once.
    fn schedules(&mut self, snapshot: &Snapshot, now: Timestamp) -> Vec<Fired> {
        let mut out = Vec::new();
        let mut alive = HashSet::new();
        for o in snapshot.of_kind(Kind::Workflow) {
            let Ok(spec) = serde_json::from_value::<WorkflowSpec>(o.spec.clone()) else {
                continue;
            };
            if spec.paused || spec.trigger.type_ != TriggerType::Schedule {
                continue;
            }
            let key = (o.namespace.clone(), o.name.clone(), o.generation);
            alive.insert(key.clone());
            let Some(expr) = &spec.trigger.schedule else {
                continue;
            };
            let Ok(schedule) = Schedule::parse(expr, spec.trigger.time_zone.as_deref()) else {
                continue;
            };
            let last = self
                .last_scheduled
                .as_mut()
                .and_then(|m| m.remove(&(o.namespace.clone(), o.name.clone())));
            let next = *self.next.entry(key.clone()).or_insert_with(|| {
                let missed = last
                    .and_then(|l| schedule.next_after(l))
                    .filter(|t| *t <= now && now.duration_since(*t) <= CATCH_UP);
                missed
                    .or_else(|| schedule.next_after(now))
                    .unwrap_or(Timestamp::MAX)
            });
            if next <= now {
                out.push(Fired {
                    namespace: o.namespace.clone(),
                    trigger: TriggerType::Schedule,
                    device: None,
                    event: Event {
                        type_: Some(TriggerType::Schedule),
                        at: Some(next.to_string()),
                        ..Event::default()
                    },
                    dedup: Some(format!("schedule:{}:{next}", o.name)),
                });
                self.next
                    .insert(key, schedule.next_after(now).unwrap_or(Timestamp::MAX));
            }
        }
        self.next.retain(|k, _| alive.contains(k));
        out
    }

    /// Devices going offline and coming back, from the heartbeat state the liveness pass
    /// reads; only read when a namespace has a DeviceOffline or DeviceOnline workflow.
    async fn liveness(
        &mut self,
        store: &Store,
        snapshot: &Snapshot,
        now: Timestamp,
    ) -> Result<Vec<Fired>, StoreError> {
        let watched = watched(snapshot);
        if watched.is_empty() {
            self.told.clear();
            self.down.clear();
            return Ok(Vec::new());
        }
        let rows = store.device_liveness().await?;
        Ok(self.liveness_events(&watched, &rows, snapshot, now))
    }

    /// DeviceOffline: a device silent for at least the shortest `offlineFor` of its
    /// namespace, each outage (its last sign of life) told once. DeviceOnline: a device
    /// seen offline that reported since, with how long it was silent. An outage that ended
    /// while the operator was down is told by the first look after its start, as long as
    /// the stored status still says offline (its length is then unknown).
    fn liveness_events(
        &mut self,
        watched: &HashMap<String, Watched>,
        rows: &[Liveness],
        snapshot: &Snapshot,
        now: Timestamp,
    ) -> Vec<Fired> {
        let now_text = now.to_string();
        let first_look = !std::mem::replace(&mut self.looked, true);
        let mut out = Vec::new();
        let mut still = HashSet::new();
        let mut present = HashSet::new();
        for d in rows {
            let Some(watch) = watched.get(&d.namespace) else {
                continue;
            };
            // Paused devices are neither offline nor back (maintenance).
            if d.paused {
                continue;
            }
            let (Some(entry), Some(last)) = (
                snapshot.device(&d.namespace, &d.name),
                d.last_seen
                    .as_deref()
                    .and_then(|t| t.parse::<Timestamp>().ok()),
            ) else {
                continue;
            };
            let uid = entry.object.uid;
            present.insert(uid);
            // Back: a sign of life newer than the outage's last one (even if the device
            // has gone quiet again since: that is a new outage), or, on the first look
            // after a start, a stored status still offline for a device that reports.
            let ready = crate::jobs::liveness::is_ready(d, &now_text);
            let since = self.down.get(&uid).copied().filter(|s| last > *s);
            let stored_offline = first_look && ready && d.ready.as_deref() == Some("False");
            if since.is_some() {
                self.down.remove(&uid);
            }
            if watch.online && (since.is_some() || stored_offline) {
                let outage = since.map_or_else(|| format!("unknown-{last}"), |s| s.to_string());
                out.push(Fired {
                    namespace: d.namespace.clone(),
                    trigger: TriggerType::DeviceOnline,
                    device: Some(uid),
                    event: Event {
                        type_: Some(TriggerType::DeviceOnline),
                        device: Some(d.name.clone()),
                        value: since.map(|s| last.duration_since(s).as_secs_f64()),
                        at: Some(last.to_string()),
                        ..Event::default()
                    },
                    dedup: Some(format!("online:{uid}:{outage}")),
                });
            }
            if ready {
                continue;
            }
            self.down.entry(uid).or_insert(last);
            let Some(min) = watch.offline_for else {
                continue;
            };
            let silent = now.duration_since(last);
            if silent < min {
                continue;
            }
            let key = format!("offline:{uid}:{last}");
            still.insert(key.clone());
            if !self.told.insert(key.clone()) {
                continue;
            }
            out.push(Fired {
                namespace: d.namespace.clone(),
                trigger: TriggerType::DeviceOffline,
                device: Some(uid),
                event: Event {
                    type_: Some(TriggerType::DeviceOffline),
                    device: Some(d.name.clone()),
                    value: Some(silent.as_secs_f64()),
                    at: Some(last.to_string()),
                    ..Event::default()
                },
                dedup: Some(key),
            });
        }
        self.told.retain(|k| still.contains(k));
        self.down.retain(|uid, _| present.contains(uid));
        out
    }
}

/// What a namespace's workflows want told about liveness.
#[derive(Debug, Default)]
struct Watched {
    /// The shortest `offlineFor` of its DeviceOffline workflows, when it has one.
    offline_for: Option<SignedDuration>,
    /// Whether it has a DeviceOnline workflow.
    online: bool,
}

fn watched(snapshot: &Snapshot) -> HashMap<String, Watched> {
    let mut out: HashMap<String, Watched> = HashMap::new();
    for o in snapshot.of_kind(Kind::Workflow) {
        let Ok(spec) = serde_json::from_value::<WorkflowSpec>(o.spec.clone()) else {
            continue;
        };
        if spec.paused {
            continue;
        }
        match spec.trigger.type_ {
            TriggerType::DeviceOffline => {
                let d = spec
                    .trigger
                    .offline_for
                    .as_deref()
                    .and_then(|s| cdot_crds::common::parse_duration(s).ok())
                    .and_then(|d| SignedDuration::try_from(d).ok())
                    .unwrap_or_default();
                let w = out.entry(o.namespace.clone()).or_default();
                w.offline_for = Some(w.offline_for.map_or(d, |e| e.min(d)));
            }
            TriggerType::DeviceOnline => out.entry(o.namespace.clone()).or_default().online = true,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{index::Index, reconcile::tests::stored};

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn index_with(spec: serde_json::Value, generation: i64) -> Index {
        let mut workflow = stored("Workflow", "acme", "sweep", spec, json!({}));
        workflow.generation = generation;
        let index = Index::default();
        index.replace(&[workflow]);
        index
    }

    fn times(fired: &[Fired]) -> Vec<String> {
        fired
            .iter()
            .map(|f| {
                assert_eq!((f.trigger, f.device), (TriggerType::Schedule, None));
                f.event.at.clone().unwrap_or_default()
            })
            .collect()
    }

    /// A schedule fires once at each cron time it reaches, once (not once per missed time)
    /// after a gap, never for a time before it was applied, not while paused, and anew
    /// from the time a changed spec is seen.
    #[test]
    fn a_schedule_fires_once_per_time_reached() {
        let spec = json!({
            "trigger": {"type": "Schedule", "schedule": "*/5 * * * *", "timeZone": "Europe/London"},
            "steps": [{"name": "tag", "type": "Rhai", "rhai": "true"}],
        });
        let index = index_with(spec.clone(), 1);
        let mut periodic = Periodic::default();
        let look = |p: &mut Periodic, t: &str| times(&p.schedules(&index.snapshot(), at(t)));

        assert!(look(&mut periodic, "2026-12-07T10:04:59Z").is_empty());
        assert_eq!(
            look(&mut periodic, "2026-12-07T10:05:00Z"),
            ["2026-12-07T10:05:00Z"]
        );
        assert!(look(&mut periodic, "2026-12-07T10:05:03Z").is_empty());
        // Down from 10:06 to 10:31: one run for the gap, then on time again.
        assert_eq!(
            look(&mut periodic, "2026-12-07T10:31:00Z"),
            ["2026-12-07T10:10:00Z"]
        );
        assert!(look(&mut periodic, "2026-12-07T10:34:59Z").is_empty());
        assert_eq!(
            look(&mut periodic, "2026-12-07T10:35:01Z"),
            ["2026-12-07T10:35:00Z"]
        );
        let fired = periodic.schedules(&index.snapshot(), at("2026-12-07T10:40:00Z"));
        assert_eq!(
            fired[0].dedup.as_deref(),
            Some("schedule:sweep:2026-12-07T10:40:00Z")
        );

        // Paused: nothing, and its next time is forgotten.
        let mut paused = spec.clone();
        paused["paused"] = json!(true);
        let index = index_with(paused, 2);
        let look = |p: &mut Periodic, t: &str| times(&p.schedules(&index.snapshot(), at(t)));
        assert!(look(&mut periodic, "2026-12-07T10:45:00Z").is_empty());
        assert!(periodic.next.is_empty());

        // Resumed as a new generation at 10:47: the first run is 10:50, not 10:45.
        let index = index_with(spec, 3);
        let look = |p: &mut Periodic, t: &str| times(&p.schedules(&index.snapshot(), at(t)));
        assert!(look(&mut periodic, "2026-12-07T10:47:00Z").is_empty());
        assert_eq!(
            look(&mut periodic, "2026-12-07T10:50:00Z"),
            ["2026-12-07T10:50:00Z"]
        );
    }

    /// A restarted engine runs a cron time it missed while down (once, and only if it is
    /// less than a day old), then goes on from the clock.
    #[test]
    fn a_restart_runs_the_time_it_missed_once() {
        let spec = json!({
            "trigger": {"type": "Schedule", "schedule": "0 3 * * *"},
            "steps": [{"name": "tag", "type": "Rhai", "rhai": "true"}],
        });
        let index = index_with(spec, 1);
        let restarted = |last: &str| Periodic {
            last_scheduled: Some(HashMap::from([(
                ("acme".to_owned(), "sweep".to_owned()),
                at(last),
            )])),
            ..Periodic::default()
        };
        // Down from 02:55 to 03:10: the 03:00 run happens at the start, once.
        let mut p = restarted("2026-12-06T03:00:00Z");
        let fired = times(&p.schedules(&index.snapshot(), at("2026-12-07T03:10:00Z")));
        assert_eq!(fired, ["2026-12-07T03:00:00Z"]);
        assert!(
            p.schedules(&index.snapshot(), at("2026-12-07T03:10:05Z"))
                .is_empty()
        );
        assert!(p.last_scheduled.as_ref().is_some_and(HashMap::is_empty));
        // Down for three days: nothing old is run; the next night is.
        let mut p = restarted("2026-12-03T03:00:00Z");
        assert!(
            p.schedules(&index.snapshot(), at("2026-12-07T03:10:00Z"))
                .is_empty()
        );
        assert!(
            p.schedules(&index.snapshot(), at("2026-12-08T03:00:00Z"))
                .len()
                == 1
        );
        // Up across the night: its newest run was tonight's, nothing to catch up.
        let mut p = restarted("2026-12-07T03:00:00Z");
        assert!(
            p.schedules(&index.snapshot(), at("2026-12-07T09:00:00Z"))
                .is_empty()
        );
    }

    fn liveness(last_seen: &str, ready: &str) -> Liveness {
        Liveness {
            namespace: "acme".into(),
            name: "edge-01".into(),
            metrics_interval: Some("10s".into()),
            report_interval_secs: None,
            paused: false,
            last_seen: Some(last_seen.into()),
            ready: Some(ready.into()),
        }
    }

    /// Offline once per outage, online once when it ends with the outage's length, and an
    /// outage that ended while the operator was down told by the first look only.
    #[test]
    fn devices_going_offline_and_coming_back_are_told_once_each() {
        let mut device = stored(
            "Device",
            "acme",
            "edge-01",
            json!({"class": "Server"}),
            json!({}),
        );
        device.uid = Uuid::new_v4();
        let index = Index::default();
        index.replace(&[device.clone()]);
        let snapshot = index.snapshot();
        let watched = HashMap::from([(
            "acme".to_owned(),
            Watched {
                offline_for: Some(SignedDuration::from_secs(60)),
                online: true,
            },
        )]);
        let mut p = Periodic::default();
        let mut look = |row: Liveness, now: &str| {
            p.liveness_events(&watched, &[row], &snapshot, at(now))
                .into_iter()
                .map(|f| (f.trigger, f.event.value, f.dedup.unwrap_or_default()))
                .collect::<Vec<_>>()
        };

        // The stored status says offline, but it reports: back, length unknown (first look).
        let fired = look(
            liveness("2026-12-07T10:00:00Z", "False"),
            "2026-12-07T10:00:05Z",
        );
        assert_eq!(fired.len(), 1);
        assert_eq!((fired[0].0, fired[0].1), (TriggerType::DeviceOnline, None));
        // Later looks do not read the stored status: nothing more.
        assert!(
            look(
                liveness("2026-12-07T10:00:10Z", "False"),
                "2026-12-07T10:00:12Z"
            )
            .is_empty()
        );
        // Silent 40 s: offline, but not yet for the 60 s asked; at 70 s it is told, once.
        assert!(
            look(
                liveness("2026-12-07T10:00:10Z", "True"),
                "2026-12-07T10:00:50Z"
            )
            .is_empty()
        );
        let offline = look(
            liveness("2026-12-07T10:00:10Z", "False"),
            "2026-12-07T10:01:20Z",
        );
        assert_eq!(
            offline,
            [(
                TriggerType::DeviceOffline,
                Some(70.0),
                format!("offline:{}:2026-12-07T10:00:10Z", device.uid)
            )]
        );
        assert!(
            look(
                liveness("2026-12-07T10:00:10Z", "False"),
                "2026-12-07T10:01:25Z"
            )
            .is_empty()
        );
        // It reports again at 10:05:00: back after 290 s, once.
        let back = look(
            liveness("2026-12-07T10:05:00Z", "False"),
            "2026-12-07T10:05:02Z",
        );
        assert_eq!(
            back,
            [(
                TriggerType::DeviceOnline,
                Some(290.0),
                format!("online:{}:2026-12-07T10:00:10Z", device.uid)
            )]
        );
        assert!(
            look(
                liveness("2026-12-07T10:05:10Z", "True"),
                "2026-12-07T10:05:12Z"
            )
            .is_empty()
        );
        // Quiet again, then one report between two looks: back (70 s), and down again.
        assert!(
            look(
                liveness("2026-12-07T10:05:10Z", "True"),
                "2026-12-07T10:06:00Z"
            )
            .is_empty()
        );
        let blip = look(
            liveness("2026-12-07T10:06:20Z", "False"),
            "2026-12-07T10:07:00Z",
        );
        assert_eq!(
            (blip.len(), blip[0].0, blip[0].1),
            (1, TriggerType::DeviceOnline, Some(70.0))
        );
        assert_eq!(p.down.get(&device.uid), Some(&at("2026-12-07T10:06:20Z")));
    }
}
