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
use std::collections::HashMap;

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
    store::{Store, StoreError},
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

/// Offline devices and schedules, looked at every few seconds.
#[derive(Default)]
pub struct Periodic {
    /// Next cron time per (namespace, workflow, generation).
    next: HashMap<(String, String, i64), Timestamp>,
    /// Offline occurrences already told (a device stays offline for many looks).
    told: std::collections::HashSet<String>,
}

impl Periodic {
    pub async fn events(
        &mut self,
        store: &Store,
        snapshot: &Snapshot,
        now: Timestamp,
    ) -> Result<Vec<Fired>, StoreError> {
        let mut out = self.schedules(snapshot, now);
        out.extend(self.offline(store, snapshot, now).await?);
        Ok(out)
    }

    /// The cron times of Schedule workflows that have come: one event per time reached,
    /// and one (not one per missed time) after an operator that was down. A workflow's
    /// next time is computed when it is first seen or its spec changes, so a new schedule
    /// never fires for a time before it was applied.
    fn schedules(&mut self, snapshot: &Snapshot, now: Timestamp) -> Vec<Fired> {
        let mut out = Vec::new();
        let mut alive = std::collections::HashSet::new();
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
            let next = *self
                .next
                .entry(key.clone())
                .or_insert_with(|| schedule.next_after(now).unwrap_or(Timestamp::MAX));
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

    /// Devices silent for at least the shortest `offlineFor` of their namespace's
    /// DeviceOffline workflows, each occurrence (a device's last sign of life) told once.
    async fn offline(
        &mut self,
        store: &Store,
        snapshot: &Snapshot,
        now: Timestamp,
    ) -> Result<Vec<Fired>, StoreError> {
        let mut offline_for: HashMap<String, SignedDuration> = HashMap::new();
        for o in snapshot.of_kind(Kind::Workflow) {
            let Ok(spec) = serde_json::from_value::<WorkflowSpec>(o.spec.clone()) else {
                continue;
            };
            if spec.paused || spec.trigger.type_ != TriggerType::DeviceOffline {
                continue;
            }
            let d = spec
                .trigger
                .offline_for
                .as_deref()
                .and_then(|s| cdot_crds::common::parse_duration(s).ok())
                .and_then(|d| SignedDuration::try_from(d).ok())
                .unwrap_or_default();
            let e = offline_for.entry(o.namespace.clone()).or_insert(d);
            *e = (*e).min(d);
        }
        let mut out = Vec::new();
        if offline_for.is_empty() {
            self.told.clear();
            return Ok(out);
        }
        let now_text = now.to_string();
        let mut still = std::collections::HashSet::new();
        for d in store.device_liveness().await? {
            let Some(min) = offline_for.get(&d.namespace) else {
                continue;
            };
            if d.paused || crate::jobs::liveness::is_ready(&d, &now_text) {
                continue;
            }
            let Some(last) = d
                .last_seen
                .as_deref()
                .and_then(|t| t.parse::<Timestamp>().ok())
            else {
                continue;
            };
            let Some(entry) = snapshot.device(&d.namespace, &d.name) else {
                continue;
            };
            let silent = now.duration_since(last);
            if silent < *min {
                continue;
            }
            let key = format!("offline:{}:{last}", entry.object.uid);
            still.insert(key.clone());
            if self.told.contains(&key) {
                continue;
            }
            self.told.insert(key.clone());
            out.push(Fired {
                namespace: d.namespace.clone(),
                trigger: TriggerType::DeviceOffline,
                device: Some(entry.object.uid),
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
        Ok(out)
    }
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
}
