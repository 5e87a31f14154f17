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
        let mut out = Vec::new();
        let mut offline_for: HashMap<String, SignedDuration> = HashMap::new();
        let mut alive = std::collections::HashSet::new();
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
                    let e = offline_for.entry(o.namespace.clone()).or_insert(d);
                    *e = (*e).min(d);
                }
                TriggerType::Schedule => {
                    let key = (o.namespace.clone(), o.name.clone(), o.generation);
                    alive.insert(key.clone());
                    let Some(expr) = &spec.trigger.schedule else {
                        continue;
                    };
                    let Ok(schedule) = Schedule::parse(expr, spec.trigger.time_zone.as_deref())
                    else {
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
                _ => {}
            }
        }
        self.next.retain(|k, _| alive.contains(k));
        if offline_for.is_empty() {
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
