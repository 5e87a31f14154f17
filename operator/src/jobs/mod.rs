//! Background jobs of the time-series store and agent reports, started next to the API:
//! the ingest writers, the status flusher, the liveness pass, the rollup folder and the
//! partition/retention maintenance. Each ends on the shared shutdown signal.
use std::{sync::Arc, time::Duration};

use clap::Args;
use tokio::{sync::watch, task::JoinHandle, time::MissedTickBehavior};

use crate::{
    api::AppState,
    ingest::{self, IngestConfig},
    metrics::Metrics,
    store::{Store, StoreError},
};

pub mod liveness;
pub mod network;
pub mod partitions;
pub mod rollup;

/// Flags of the metrics store and the ingest path (flattened into `standalone`).
#[derive(Debug, Clone, Args)]
pub struct TimeseriesArgs {
    /// How long raw metric samples are kept (whole days, rounded up).
    #[arg(long, env = "CDOT_METRICS_RETENTION", value_parser = crate::cli::parse_duration, default_value = "14d")]
    pub metrics_retention: Duration,
    /// How long 1-minute rollups are kept (never less than --metrics-retention).
    #[arg(long, env = "CDOT_METRICS_ROLLUP_RETENTION", value_parser = crate::cli::parse_duration, default_value = "90d")]
    pub metrics_rollup_retention: Duration,
    /// Writer tasks committing metrics batches; each uses one database connection while writing.
    #[arg(long, env = "CDOT_INGEST_WRITERS", value_parser = clap::value_parser!(u16).range(1..=64), default_value_t = 3)]
    pub ingest_writers: u16,
    /// Metrics batches that may wait for a writer; beyond it requests get 503 with Retry-After.
    #[arg(long, env = "CDOT_INGEST_QUEUE", value_parser = clap::value_parser!(u32).range(1..), default_value_t = 2048)]
    pub ingest_queue: u32,
    /// Most samples one group commit writes.
    #[arg(long, env = "CDOT_INGEST_MAX_GROUP_SAMPLES", value_parser = clap::value_parser!(u32).range(1..), default_value_t = 50_000)]
    pub ingest_max_group_samples: u32,
    /// How often the latest agent reports are written into Device status.
    #[arg(long, env = "CDOT_STATUS_FLUSH_INTERVAL", value_parser = crate::cli::parse_duration, default_value = "2s")]
    pub status_flush_interval: Duration,
    /// How often devices are checked for missed reports (Ready turns False after 3 metrics intervals).
    #[arg(long, env = "CDOT_LIVENESS_INTERVAL", value_parser = crate::cli::parse_duration, default_value = "5s")]
    pub liveness_interval: Duration,
    /// How often closed minutes are folded into the 1-minute rollup.
    #[arg(long, env = "CDOT_ROLLUP_INTERVAL", value_parser = crate::cli::parse_duration, default_value = "10s")]
    pub rollup_interval: Duration,
    #[command(flatten)]
    pub network: network::NetworkArgs,
}

impl Default for TimeseriesArgs {
    fn default() -> Self {
        Self {
            metrics_retention: Duration::from_secs(14 * 86_400),
            metrics_rollup_retention: Duration::from_secs(90 * 86_400),
            ingest_writers: 3,
            ingest_queue: 2048,
            ingest_max_group_samples: 50_000,
            status_flush_interval: Duration::from_secs(2),
            liveness_interval: Duration::from_secs(5),
            rollup_interval: Duration::from_secs(10),
            network: network::NetworkArgs::default(),
        }
    }
}

impl TimeseriesArgs {
    pub fn ingest_config(&self) -> IngestConfig {
        IngestConfig {
            queue_capacity: self.ingest_queue as usize,
            writers: usize::from(self.ingest_writers),
            max_group_samples: self.ingest_max_group_samples as usize,
            raw_retention: self.metrics_retention,
            ..IngestConfig::default()
        }
    }
}

/// Creates the partitions the writers need; run once before the API accepts reports.
pub async fn prepare(
    store: &Store,
    metrics: &Metrics,
    args: &TimeseriesArgs,
) -> Result<(), StoreError> {
    partitions::maintain(
        store,
        metrics,
        jiff::Timestamp::now().as_millisecond(),
        args,
    )
    .await?;
    network::maintain(
        store,
        metrics,
        jiff::Timestamp::now().as_millisecond(),
        &args.network,
    )
    .await?;
    Ok(())
}

/// Starts every job. `state.ingest` must already be built from `args.ingest_config()`.
/// Stop the HTTP server first, then send `true` on `shutdown` and join the handles: the
/// writers commit what is queued and the flusher writes the last reports.
pub fn spawn(
    state: &AppState,
    args: &TimeseriesArgs,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for _ in 0..state.ingest.config().writers.max(1) {
        tasks.push(tokio::spawn(ingest::writer::run(
            state.ingest.clone(),
            state.store.clone(),
            state.metrics.clone(),
            shutdown.clone(),
        )));
    }
    tasks.push(tokio::spawn(crate::store::health::watch(
        state.store.clone(),
        state.metrics.database.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(crate::api::agent_auth::follow_revocations(
        state.store.clone(),
        state.agents.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(flush_reports(
        state.clone(),
        args.status_flush_interval,
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(liveness::run(
        state.store.clone(),
        state.changes.clone(),
        state.metrics.clone(),
        args.liveness_interval,
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(rollup::run(
        state.store.clone(),
        state.metrics.clone(),
        args.rollup_interval,
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(network::run(
        state.store.clone(),
        state.metrics.clone(),
        args.network.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(partitions::run(
        state.store.clone(),
        state.metrics.clone(),
        args.clone(),
        shutdown,
    )));
    tasks
}

/// Writes the latest agent reports every `every`, and once more on shutdown.
async fn flush_reports(state: AppState, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut interval = interval(every);
    loop {
        let running = tick(&mut interval, &mut shutdown).await;
        match state.ingest.reports().flush(&state.store).await {
            Ok(n) => {
                state.metrics.ingest.status_flushed.inc_by(n as u64);
            }
            Err(e) => failed(&state.metrics, "flush agent reports", &e),
        }
        if !running {
            return;
        }
    }
}

pub(crate) fn interval(every: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval(every.max(Duration::from_millis(10)));
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// Waits for the next tick; false once shutdown was requested (or its sender is gone).
pub(crate) async fn tick(
    interval: &mut tokio::time::Interval,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    if *shutdown.borrow() {
        return false;
    }
    tokio::select! {
        _ = interval.tick() => true,
        changed = shutdown.changed() => changed.is_ok() && !*shutdown.borrow(),
    }
}

pub(crate) fn failed(metrics: &Arc<Metrics>, what: &str, error: &StoreError) {
    metrics
        .store_errors
        .get_or_create(&crate::metrics::OperationLabels {
            operation: error.metric_label().into(),
        })
        .inc();
    tracing::error!(%error, "{what} failed; retrying at the next tick");
}
