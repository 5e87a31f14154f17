//! The rollup job: folds closed minutes (and minutes that received late samples) into
//! `metric_points_1m`, each minute once unless late samples arrive for it, then closed
//! hours of those into `metric_points_1h`, a slice of the devices at a time.
use std::{sync::Arc, time::Duration};

use tokio::sync::watch;

use crate::{
    metrics::Metrics,
    store::{Store, StoreError, timeseries::FoldSummary},
};

/// Minutes one transaction folds at most (catching up after downtime goes in steps).
pub const MAX_MINUTES_PER_FOLD: i64 = 10;
/// Late minutes one transaction folds again at most.
pub const MAX_REFOLD_PER_FOLD: i64 = 30;
/// Transactions one run makes at most before it yields to the next tick.
const MAX_FOLDS_PER_RUN: usize = 30;
/// Time one run spends on the hour tier at most (beyond its first slice): at 10,000
/// devices an hour takes a few seconds of one core, spread over a few minutes of runs.
const HOUR_FOLD_BUDGET: Duration = Duration::from_millis(200);

pub async fn run(
    store: Store,
    metrics: Arc<Metrics>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut interval = super::interval(every);
    while super::tick(&mut interval, &mut shutdown).await {
        fold_minutes(&store, &metrics).await;
        fold_hours(&store, &metrics).await;
    }
}

async fn fold_minutes(store: &Store, metrics: &Arc<Metrics>) {
    let _timer = metrics.ingest.job_timer("rollup");
    let now = jiff::Timestamp::now().as_millisecond();
    let result = fold(store, now).await;
    metrics.ingest.job_run("rollup", result.is_ok());
    match result {
        Ok(summary) => {
            metrics.ingest.rollup_lag.set((now - summary.to_ms) / 1000);
        }
        Err(e) => super::failed(metrics, "metric rollup", &e),
    }
}

async fn fold_hours(store: &Store, metrics: &Arc<Metrics>) {
    let _timer = metrics.ingest.job_timer("rollup_1h");
    let result = store.fold_hours(HOUR_FOLD_BUDGET).await;
    metrics.ingest.job_run("rollup_1h", result.is_ok());
    match result {
        Ok(summary) if summary.slices > 0 || summary.refolded > 0 => {
            tracing::debug!(?summary, "metric hours folded");
        }
        Ok(_) => {}
        Err(e) => super::failed(metrics, "metric hour rollup", &e),
    }
}

/// Folds until caught up with `now_ms` (or the per-run cap); returns the last step.
pub async fn fold(store: &Store, now_ms: i64) -> Result<FoldSummary, StoreError> {
    let mut last = FoldSummary::default();
    for _ in 0..MAX_FOLDS_PER_RUN {
        last = store
            .fold_rollups(now_ms, MAX_MINUTES_PER_FOLD, MAX_REFOLD_PER_FOLD)
            .await?;
        if last.rows > 0 || last.refolded > 0 {
            tracing::debug!(?last, "metric minutes folded");
        }
        if !last.more {
            break;
        }
    }
    Ok(last)
}
