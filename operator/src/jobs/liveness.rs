//! The liveness pass: finds the Devices whose `Ready` changes as of now (a third metrics
//! interval missed, or a report after an outage) and reconciles only those, so that a quiet
//! pass over 10,000 devices is one narrow query and no writes.
use std::{sync::Arc, time::Duration};

use cdot_crds::{kind::Kind, wire::AgentConfig};
use tokio::sync::watch;

use crate::{
    changes::Changes,
    metrics::Metrics,
    reconcile::{self, World, device},
    store::{StatusPatch, Store, StoreError, heartbeats::Liveness},
};

pub async fn run(
    store: Store,
    changes: Changes,
    metrics: Arc<Metrics>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut interval = super::interval(every);
    while super::tick(&mut interval, &mut shutdown).await {
        let _timer = metrics.ingest.job_timer("liveness");
        let result = device_pass(&store, &reconcile::now_rfc3339()).await;
        metrics.ingest.job_run("liveness", result.is_ok());
        match result {
            Ok(changed) => {
                for (namespace, name) in changed {
                    changes.changed(Kind::Device, &namespace, &name);
                }
            }
            Err(e) => super::failed(&metrics, "device liveness pass", &e),
        }
    }
}

/// Reconciles, as of `now` (RFC 3339), every Device whose `Ready` would change, and writes
/// their statuses; returns their namespaces and names.
pub async fn device_pass(store: &Store, now: &str) -> Result<Vec<(String, String)>, StoreError> {
    let candidates: Vec<(String, String)> = store
        .device_liveness()
        .await?
        .into_iter()
        .filter(|d| ready_changes(d, now))
        .map(|d| (d.namespace, d.name))
        .collect();
    if candidates.is_empty() {
        return Ok(candidates);
    }
    // A Device's status depends only on itself: the pass reads devices, not the world.
    let objects = store.devices_named(&candidates).await?;
    let world = World::new(&[]);
    let patches: Vec<StatusPatch> = objects
        .iter()
        .map(|o| StatusPatch {
            kind: Kind::Device,
            namespace: o.namespace.clone(),
            name: o.name.clone(),
            status: serde_json::Value::Object(reconcile::reconcile(o, &world, now).to_patch()),
        })
        .collect();
    let changed = store.patch_statuses(&patches).await?;
    if changed > 0 {
        tracing::debug!(changed, "device statuses updated by the liveness pass");
    }
    Ok(candidates)
}

/// Whether the device reconciler would call the device Ready as of `now` (RFC 3339): not
/// paused, and reported within three of its intervals.
pub fn is_ready(d: &Liveness, now: &str) -> bool {
    let default = AgentConfig::default().metrics_interval_secs;
    let configured = d
        .metrics_interval
        .as_deref()
        .map_or(default, |s| device::duration_secs(s, default));
    let interval = device::liveness_interval(configured, d.report_interval_secs);
    device::is_ready(d.paused, d.last_seen.as_deref(), now, interval)
}

/// Whether the stored `Ready` differs from what the device reconciler would decide now.
fn ready_changes(d: &Liveness, now: &str) -> bool {
    let ready = is_ready(d, now);
    d.ready.as_deref() != Some(if ready { "True" } else { "False" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(last_seen: Option<&str>, ready: Option<&str>) -> Liveness {
        Liveness {
            namespace: "acme".into(),
            name: "web-01".into(),
            metrics_interval: Some("10s".into()),
            report_interval_secs: None,
            paused: false,
            last_seen: last_seen.map(Into::into),
            ready: ready.map(Into::into),
        }
    }

    #[test]
    fn only_devices_whose_readiness_flips_are_candidates() {
        let now = "2026-11-25T10:01:00Z";
        // Reported 20 s ago at a 10 s interval: still Ready.
        assert!(!ready_changes(
            &device(Some("2026-11-25T10:00:40Z"), Some("True")),
            now
        ));
        // 40 s ago: three intervals missed, turns False.
        assert!(ready_changes(
            &device(Some("2026-11-25T10:00:20Z"), Some("True")),
            now
        ));
        // Offline and still silent: nothing to do.
        assert!(!ready_changes(
            &device(Some("2026-11-25T10:00:20Z"), Some("False")),
            now
        ));
        // Reported again after an outage: turns True.
        assert!(ready_changes(
            &device(Some("2026-11-25T10:00:59Z"), Some("False")),
            now
        ));
        // Never reconciled: always a candidate.
        assert!(ready_changes(&device(None, None), now));
        let paused = Liveness {
            paused: true,
            ..device(Some("2026-11-25T10:00:59Z"), Some("False"))
        };
        assert!(!ready_changes(&paused, now));
    }
}
