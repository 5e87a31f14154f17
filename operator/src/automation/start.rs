//! Starting runs: which Workflows an event triggers, on which devices (selector, condition,
//! concurrency, cooldown), how many of them start at once (the blast-radius limits hold
//! the rest for an approval), and the run's rows with its first audit entry, in one
//! transaction. Manual runs come through the same door.
use std::{collections::BTreeMap, collections::HashSet, sync::Arc};

use cdot_crds::{
    common::{parse_duration, selector_matches},
    kind::Kind,
    validation::Validate,
    wire::automation::{LaneState, RunState},
    workflow::{ConcurrencyPolicy, TriggerType, WorkflowSpec},
};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    audit::{self, NewEntry},
    engine::{Fired, duration},
    sandbox::{DeviceView, Inputs, Sandbox},
    store::{self as runs, NewRun},
};
use crate::{
    index::{DeviceEntry, Snapshot},
    store::{Store, StoreError},
};

/// Why a request to start a run started nothing.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A workflow as the engine reads it from the index.
struct Armed<'a> {
    name: &'a str,
    generation: i64,
    spec: WorkflowSpec,
    raw: &'a Value,
}

fn armed<'a>(snapshot: &'a Snapshot, namespace: &str) -> Vec<Armed<'a>> {
    snapshot
        .in_namespace(Kind::Workflow, namespace)
        .filter_map(|o| {
            let spec: WorkflowSpec = serde_json::from_value(o.spec.clone()).ok()?;
            spec.validate().is_empty().then_some(Armed {
                name: &o.name,
                generation: o.generation,
                spec,
                raw: &o.spec,
            })
        })
        .collect()
}

/// Whether a trigger of `spec` matches the event (type and its filters).
fn matches_trigger(spec: &WorkflowSpec, fired: &Fired) -> bool {
    let t = &spec.trigger;
    if t.type_ != fired.trigger {
        return false;
    }
    let e = &fired.event;
    match t.type_ {
        TriggerType::AlertFiring | TriggerType::AlertResolved => t
            .alert_rule
            .as_ref()
            .is_none_or(|r| e.alert_rule.as_ref() == Some(r)),
        // The failure count is checked by `start`, per workflow window.
        TriggerType::ServiceFailed => t
            .service
            .as_ref()
            .is_none_or(|s| e.service.as_ref() == Some(s)),
        TriggerType::DeviceOffline | TriggerType::DeviceOnline => {
            let wanted = t
                .offline_for
                .as_deref()
                .map_or(0.0, |d| duration(d).as_secs_f64());
            // An outage of unknown length (it ended while the operator was down) only
            // matches a workflow that asks for none.
            e.value.map_or(wanted == 0.0, |v| v >= wanted)
        }
        _ => true,
    }
}

/// The device as rhai and the plan see it.
pub fn device_view(d: &DeviceEntry) -> DeviceView {
    DeviceView {
        name: d.object.name.clone(),
        namespace: d.object.namespace.clone(),
        labels: d.object.labels.clone(),
        class: d
            .spec
            .as_ref()
            .and_then(|s| serde_json::to_value(s.class).ok())
            .and_then(|v| v.as_str().map(str::to_owned)),
        site: d.site().map(str::to_owned),
    }
}

/// Whether `spec`'s condition holds for `device` and `event` (true without one).
pub fn condition_holds(
    sandbox: &Sandbox,
    spec: &WorkflowSpec,
    event: &cdot_crds::wire::automation::Event,
    device: &DeviceView,
    now: Timestamp,
) -> Result<bool, super::sandbox::SandboxError> {
    let Some(condition) = &spec.condition else {
        return Ok(true);
    };
    let empty = BTreeMap::new();
    let inputs = Inputs {
        event,
        device,
        steps: &empty,
        vars: &empty,
        now: now.as_second(),
    };
    sandbox
        .compiled(condition)
        .and_then(|script| sandbox.eval_bool(&script, &inputs))
}

/// Manual start: which workflow, which devices, who.
pub struct Manual<'a> {
    pub workflow: &'a str,
    pub devices: &'a [String],
    pub by: &'a str,
}

/// Starts the runs `fired` triggers (or, with `manual`, one run of one workflow); returns
/// their ids. Concurrency, cooldown (not for manual runs), the condition and the blast
/// radius are decided here.
pub async fn start(
    store: &Store,
    snapshot: &Snapshot,
    sandbox: &Sandbox,
    fired: &Fired,
    manual: Option<&Manual<'_>>,
    now: Timestamp,
) -> Result<Vec<Uuid>, StartError> {
    let mut started = Vec::new();
    for wf in armed(snapshot, &fired.namespace) {
        match manual {
            Some(m) if m.workflow != wf.name => continue,
            Some(_) => {}
            None if wf.spec.paused || !matches_trigger(&wf.spec, fired) => continue,
            None => {}
        }
        let mut fired_here = fired.clone();
        if manual.is_none()
            && fired.trigger == TriggerType::ServiceFailed
            && let (Some(device), Some(service)) = (fired.device, &fired.event.service)
        {
            let within = wf
                .spec
                .trigger
                .within
                .as_deref()
                .map_or(SignedDuration::from_hours(24), duration);
            let since = now.checked_sub(within).unwrap_or(Timestamp::UNIX_EPOCH);
            let n = store.service_failures_since(device, service, since).await?;
            if n < wf.spec.trigger.count.unwrap_or(1) {
                continue;
            }
            fired_here.event.value = Some(f64::from(n));
        }
        let fired = &fired_here;
        let named = manual.map_or(&[][..], |m| m.devices);
        let candidates = candidates(snapshot, &wf.spec, fired, named);
        let mut devices = Vec::new();
        for d in candidates {
            let view = device_view(d);
            match condition_holds(sandbox, &wf.spec, &fired.event, &view, now) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(workflow = wf.name, device = %view.name, error = %e,
                        "workflow condition failed; no run for this device");
                    continue;
                }
            }
            devices.push((d.object.uid, d.object.name.clone()));
        }
        if devices.is_empty() {
            continue;
        }
        let admitted = admit(
            store,
            &fired.namespace,
            wf.name,
            &wf.spec,
            devices,
            manual.is_none(),
            now,
        )
        .await?;
        let (devices, replace) = (admitted.devices, admitted.replace);
        if devices.is_empty() {
            continue;
        }
        let (allowed, reason) =
            blast_radius(store, &fired.namespace, wf.name, &wf.spec.limits, now).await?;
        let held = devices.len().saturating_sub(allowed);
        let lanes: Vec<(Uuid, String, bool)> = devices
            .iter()
            .enumerate()
            .map(|(i, d)| (d.0, d.1.clone(), i >= allowed))
            .collect();
        let waiting_for = (held > 0).then(|| {
            format!(
                "approval: {held} of {} devices are past the blast-radius limit ({})",
                devices.len(),
                reason.unwrap_or_default()
            )
        });
        let id = Uuid::new_v4();
        let run = NewRun {
            id,
            namespace: fired.namespace.clone(),
            workflow: wf.name.to_owned(),
            generation: wf.generation,
            spec: wf.raw.clone(),
            event: fired.event.clone(),
            trigger: fired.trigger,
            started_by: manual.map_or_else(|| "trigger".to_owned(), |m| m.by.to_owned()),
            state: if held == devices.len() {
                RunState::AwaitingApproval
            } else {
                RunState::Running
            },
            waiting_for: waiting_for.clone(),
            dedup_key: fired.dedup.clone(),
            lanes,
        };
        let mut tx = store
            .pool()
            .begin()
            .await
            .map_err(StoreError::query("begin starting a workflow run"))?;
        for old in &replace {
            cancel_in(
                &mut tx,
                *old,
                &fired.namespace,
                "engine",
                "replaced by a newer run (concurrency Replace)",
                now,
            )
            .await?;
        }
        if !runs::insert_run(&mut tx, &run, now).await? {
            continue;
        }
        audit::append(
            &mut tx,
            &[NewEntry {
                at: now,
                namespace: fired.namespace.clone(),
                actor: run.started_by.clone(),
                action: "run.started".into(),
                run: Some(id),
                detail: json!({
                    "workflow": wf.name,
                    "generation": wf.generation,
                    "event": fired.event,
                    "devices": devices.iter().map(|d| &d.1).collect::<Vec<_>>(),
                    "held": held,
                    "waitingFor": waiting_for,
                }),
            }],
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::query("commit starting a workflow run"))?;
        tracing::info!(run = %id, namespace = %fired.namespace, workflow = wf.name,
            devices = devices.len(), held, trigger = ?fired.trigger, "workflow run started");
        started.push(id);
    }
    Ok(started)
}

/// How many devices a run of `workflow` may start on now, and the limit that says so:
/// `maxDevicesPerRun`, or `maxDevicesPerHour` less the devices its runs started in the last
/// hour when that is smaller. The rest wait for an approval.
pub async fn blast_radius(
    store: &Store,
    namespace: &str,
    workflow: &str,
    limits: &cdot_crds::workflow::Limits,
    now: Timestamp,
) -> Result<(usize, Option<String>), StoreError> {
    let mut allowed = limits
        .max_devices_per_run
        .map_or(usize::MAX, |n| n as usize);
    let mut reason = limits
        .max_devices_per_run
        .map(|n| format!("maxDevicesPerRun {n}"));
    if let Some(per_hour) = limits.max_devices_per_hour {
        let hour_ago = now
            .checked_sub(SignedDuration::from_hours(1))
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let used = store
            .workflow_devices_since(namespace, workflow, hour_ago)
            .await?;
        let left = per_hour.saturating_sub(used) as usize;
        if left < allowed {
            allowed = left;
            reason = Some(format!(
                "maxDevicesPerHour {per_hour} ({used} started in the last hour)"
            ));
        }
    }
    Ok((allowed, reason))
}

/// Who a new run would start on, after the concurrency policy and the cooldown.
pub struct Admitted {
    pub devices: Vec<(Uuid, String)>,
    /// Active runs that concurrency Replace cancels.
    pub replace: Vec<Uuid>,
    /// Devices left out, each as `NAME: why`.
    pub skipped: Vec<String>,
}

/// Applies the concurrency policy (Forbid leaves out devices with an active run of the
/// workflow, Replace names those runs) and, for `triggered` runs (not manual ones), the
/// cooldown to `devices`.
pub async fn admit(
    store: &Store,
    namespace: &str,
    workflow: &str,
    spec: &WorkflowSpec,
    mut devices: Vec<(Uuid, String)>,
    triggered: bool,
    now: Timestamp,
) -> Result<Admitted, StoreError> {
    let uids: Vec<Uuid> = devices.iter().map(|d| d.0).collect();
    let mut skipped = Vec::new();
    let active = store
        .active_workflow_lanes(namespace, workflow, &uids)
        .await?;
    let mut replace = Vec::new();
    if !active.is_empty() {
        match spec.concurrency {
            ConcurrencyPolicy::Allow => {}
            ConcurrencyPolicy::Forbid => {
                let busy: HashSet<Uuid> = active.iter().map(|a| a.0).collect();
                devices.retain(|d| {
                    let free = !busy.contains(&d.0);
                    if !free {
                        skipped.push(format!("{}: a run is active (concurrency Forbid)", d.1));
                    }
                    free
                });
            }
            ConcurrencyPolicy::Replace => replace = active.iter().map(|a| a.1).collect(),
        }
    }
    let cooldown = parse_duration(&spec.cooldown).unwrap_or_default();
    if triggered && !cooldown.is_zero() {
        let last = store
            .last_workflow_starts(namespace, workflow, &uids)
            .await?;
        let since = now
            .checked_sub(SignedDuration::try_from(cooldown).unwrap_or_default())
            .unwrap_or(Timestamp::UNIX_EPOCH);
        devices.retain(|d| {
            let cool = last.get(&d.0).is_none_or(|t| *t < since);
            if !cool {
                skipped.push(format!("{}: in cooldown ({})", d.1, spec.cooldown));
            }
            cool
        });
    }
    replace.sort();
    replace.dedup();
    Ok(Admitted {
        devices,
        replace,
        skipped,
    })
}

/// The devices of `fired`'s namespace a run of `spec` is for: `named` ones when given,
/// else the event's device, else every device the selector matches (by name).
pub fn candidates<'a>(
    snapshot: &'a Snapshot,
    spec: &WorkflowSpec,
    fired: &Fired,
    named: &[String],
) -> Vec<&'a Arc<DeviceEntry>> {
    let selected = |d: &&Arc<DeviceEntry>| {
        d.object.namespace == fired.namespace && selector_matches(&spec.selector, &d.object.labels)
    };
    if !named.is_empty() {
        return named
            .iter()
            .filter_map(|n| snapshot.device(&fired.namespace, n))
            .filter(selected)
            .collect();
    }
    if let Some(uid) = fired.device {
        return snapshot
            .device_by_uid(&uid)
            .into_iter()
            .filter(selected)
            .collect();
    }
    let mut all: Vec<_> = snapshot
        .devices()
        .filter(|d| d.object.namespace == fired.namespace)
        .filter(selected)
        .collect();
    all.sort_by(|a, b| a.object.name.cmp(&b.object.name));
    all
}

/// Cancels a run inside a transaction: its open attempts end, its lanes stop.
pub async fn cancel_in(
    conn: &mut sqlx::PgConnection,
    run: Uuid,
    namespace: &str,
    by: &str,
    why: &str,
    now: Timestamp,
) -> Result<Vec<Uuid>, StoreError> {
    let devices = runs::cancel_attempts(conn, run, now).await?;
    runs::move_lanes(
        conn,
        run,
        &[
            LaneState::Held,
            LaneState::Running,
            LaneState::AwaitingApproval,
        ],
        LaneState::Cancelled,
        false,
        now,
    )
    .await?;
    runs::set_run_state(conn, run, RunState::Cancelled, None, now).await?;
    audit::append(
        conn,
        &[NewEntry {
            at: now,
            namespace: namespace.to_owned(),
            actor: by.to_owned(),
            action: "run.cancelled".into(),
            run: Some(run),
            detail: json!({ "reason": why }),
        }],
    )
    .await?;
    Ok(devices)
}
