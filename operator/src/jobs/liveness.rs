//! The liveness pass: reconciles every Device often enough that `Ready` turns False within
//! seconds of its third missed metrics interval (and True again on the next report).
use std::{sync::Arc, time::Duration};

use cdot_crds::kind::Kind;
use tokio::sync::watch;

use crate::{
    metrics::Metrics,
    reconcile::{self, World},
    store::{StatusPatch, Store, StoreError},
};

pub async fn run(
    store: Store,
    metrics: Arc<Metrics>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut interval = super::interval(every);
    while super::tick(&mut interval, &mut shutdown).await {
        let _timer = metrics.ingest.job_timer("liveness");
        let result = device_pass(&store, &reconcile::now_rfc3339()).await;
        metrics.ingest.job_run("liveness", result.is_ok());
        if let Err(e) = result {
            super::failed(&metrics, "device liveness pass", &e);
        }
    }
}

/// Reconciles every Device as of `now` (RFC 3339) and writes the statuses that changed;
/// returns how many changed.
pub async fn device_pass(store: &Store, now: &str) -> Result<u64, StoreError> {
    // A Device's status depends only on itself: the pass reads devices, not the world.
    let objects = store.objects_of_kind(Kind::Device).await?;
    let world = World::new(&[]);
    let patches: Vec<StatusPatch> = objects
        .iter()
        .map(|o| StatusPatch {
            kind: Kind::Device,
            namespace: o.namespace.clone(),
            name: o.name.clone(),
            status: reconcile::reconcile(o, &world, now),
        })
        .collect();
    let changed = store.patch_statuses(&patches).await?;
    if changed > 0 {
        tracing::debug!(changed, "device statuses updated by the liveness pass");
    }
    Ok(changed)
}
