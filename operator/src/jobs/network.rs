//! The network data job: folds collector data into the rollups (1-minute, 10-minute, 1-hour,
//! per exporter and per site), and keeps the daily partitions of every network table
//! (created ahead, dropped by retention).
use std::{sync::Arc, time::Duration};

use clap::Args;
use tokio::sync::watch;

use super::partitions::{keep_days, report, whole_days};
use crate::{
    metrics::Metrics,
    store::{
        Store, StoreError,
        network::{
            HOUR_MS, NetTable,
            rollup::{Fold, FoldStep},
        },
        partitions::{DAY_MS, day_of},
    },
};

/// Buckets one fold transaction folds at most (catching up after downtime goes in steps).
pub const MAX_BUCKETS_PER_FOLD: i64 = 10;
/// Late buckets one fold transaction folds again at most.
pub const MAX_REFOLD_PER_FOLD: i64 = 30;
/// How often the open hour is folded provisionally, so that queries over hours see it;
/// shorter buckets in proportion (the open 10 minutes every 50 s: hour-long ranges read
/// them, and should lag the minutes little).
pub const PROVISIONAL_EVERY_MS: i64 = 5 * 60_000;
/// Steps one run takes per fold at most before it yields to the next tick.
const MAX_STEPS_PER_RUN: usize = 30;
const MAINTAIN_EVERY: Duration = Duration::from_secs(3600);

/// Flags of the network data store (flattened into `standalone`).
#[derive(Debug, Clone, Args)]
pub struct NetworkArgs {
    /// How long per-minute flow aggregates are kept (whole days, rounded up).
    #[arg(long, env = "CDOT_NETWORK_FLOW_RETENTION", value_parser = crate::cli::parse_duration, default_value = "7d")]
    pub network_flow_retention: Duration,
    /// How long 10-minute flow rollups (top keys per exporter and per site) are kept (never
    /// less than the minutes).
    #[arg(long, env = "CDOT_NETWORK_FLOW_10M_RETENTION", value_parser = crate::cli::parse_duration, default_value = "30d")]
    pub network_flow_10m_retention: Duration,
    /// How long hourly flow rollups (top keys per exporter and per site) are kept (never
    /// less than the 10-minute ones).
    #[arg(long, env = "CDOT_NETWORK_FLOW_ROLLUP_RETENTION", value_parser = crate::cli::parse_duration, default_value = "90d")]
    pub network_flow_rollup_retention: Duration,
    /// How long raw interface samples and probe results are kept.
    #[arg(long, env = "CDOT_NETWORK_SAMPLE_RETENTION", value_parser = crate::cli::parse_duration, default_value = "7d")]
    pub network_sample_retention: Duration,
    /// How long 1-minute interface and probe rollups are kept (never less than the samples).
    #[arg(long, env = "CDOT_NETWORK_ROLLUP_1M_RETENTION", value_parser = crate::cli::parse_duration, default_value = "30d")]
    pub network_rollup_1m_retention: Duration,
    /// How long 1-hour interface and probe rollups are kept (never less than the 1-minute ones).
    #[arg(long, env = "CDOT_NETWORK_ROLLUP_1H_RETENTION", value_parser = crate::cli::parse_duration, default_value = "400d")]
    pub network_rollup_1h_retention: Duration,
    /// How often closed minutes and hours of network data are folded into the rollups.
    #[arg(long, env = "CDOT_NETWORK_ROLLUP_INTERVAL", value_parser = crate::cli::parse_duration, default_value = "15s")]
    pub network_rollup_interval: Duration,
}

impl Default for NetworkArgs {
    fn default() -> Self {
        Self {
            network_flow_retention: Duration::from_secs(7 * 86_400),
            network_flow_10m_retention: Duration::from_secs(30 * 86_400),
            network_flow_rollup_retention: Duration::from_secs(90 * 86_400),
            network_sample_retention: Duration::from_secs(7 * 86_400),
            network_rollup_1m_retention: Duration::from_secs(30 * 86_400),
            network_rollup_1h_retention: Duration::from_secs(400 * 86_400),
            network_rollup_interval: Duration::from_secs(15),
        }
    }
}

impl NetworkArgs {
    /// Days each table keeps; a rollup keeps at least as long as what it is folded from.
    pub fn retention_days(&self, table: NetTable) -> i64 {
        let samples = whole_days(self.network_sample_retention);
        let minutes = whole_days(self.network_rollup_1m_retention).max(samples);
        let flows = whole_days(self.network_flow_retention);
        let flows_10m = whole_days(self.network_flow_10m_retention).max(flows);
        match table {
            NetTable::Flows1m => flows,
            NetTable::Flows10m | NetTable::FlowSites10m => flows_10m,
            NetTable::Flows1h | NetTable::FlowSites1h => {
                whole_days(self.network_flow_rollup_retention).max(flows_10m)
            }
            NetTable::InterfaceSamples | NetTable::ProbeSamples => samples,
            NetTable::Interfaces1m | NetTable::Probes1m => minutes,
            NetTable::Interfaces1h | NetTable::Probes1h => {
                whole_days(self.network_rollup_1h_retention).max(minutes)
            }
        }
    }
}

/// What one partition maintenance run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maintenance {
    pub created: Vec<String>,
    pub dropped: Vec<String>,
}

/// Makes the network partitions match `now_ms` and the retention settings.
pub async fn maintain(
    store: &Store,
    metrics: &Metrics,
    now_ms: i64,
    args: &NetworkArgs,
) -> Result<Maintenance, StoreError> {
    let today = day_of(now_ms);
    // Collector data is accepted back to `wire::MAX_SAMPLE_AGE_MS` and folded into every
    // rollup, so each table needs partitions that far back (or as far as it keeps).
    let accepted_days = (cdot_crds::wire::MAX_SAMPLE_AGE_MS + DAY_MS - 1) / DAY_MS;
    let mut done = Maintenance::default();
    for table in NetTable::ALL {
        let kept = args.retention_days(table);
        keep_days(
            store,
            table,
            today,
            (kept.min(accepted_days), kept),
            &mut done.created,
            &mut done.dropped,
        )
        .await?;
    }
    let oldest_source = [
        NetTable::Flows1m,
        NetTable::InterfaceSamples,
        NetTable::ProbeSamples,
    ]
    .into_iter()
    .map(|t| args.retention_days(t))
    .min()
    .unwrap_or(1);
    store
        .prune_network_dirty((today - oldest_source) * DAY_MS)
        .await?;
    report(metrics, "network_partitions", &done.created, &done.dropped);
    Ok(done)
}

/// Folds every rollup until caught up with `now_ms` (or the per-run cap); returns the
/// last step of each. The open bucket of an hour fold is folded again after
/// `provisional_every_ms`, of a shorter fold after the same share of its length.
pub async fn fold(
    store: &Store,
    now_ms: i64,
    provisional_every_ms: i64,
) -> Result<Vec<(Fold, FoldStep)>, StoreError> {
    let mut last = Vec::with_capacity(Fold::ALL.len());
    for f in Fold::ALL {
        let every = provisional_every_ms.saturating_mul(f.bucket_ms()) / HOUR_MS;
        let mut step = FoldStep::default();
        for _ in 0..MAX_STEPS_PER_RUN {
            step = store
                .fold_network(f, now_ms, MAX_BUCKETS_PER_FOLD, MAX_REFOLD_PER_FOLD, every)
                .await?;
            if step.rows > 0 || step.refolded > 0 {
                tracing::debug!(fold = f.name(), ?step, "network buckets folded");
            }
            if !step.more {
                break;
            }
        }
        last.push((f, step));
    }
    Ok(last)
}

pub async fn run(
    store: Store,
    metrics: Arc<Metrics>,
    args: NetworkArgs,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut interval = super::interval(args.network_rollup_interval);
    let mut maintained = tokio::time::Instant::now();
    while super::tick(&mut interval, &mut shutdown).await {
        let now = jiff::Timestamp::now().as_millisecond();
        if maintained.elapsed() >= MAINTAIN_EVERY {
            let _timer = metrics.ingest.job_timer("network_partitions");
            let result = maintain(&store, &metrics, now, &args).await;
            metrics.ingest.job_run("network_partitions", result.is_ok());
            match result {
                Ok(_) => maintained = tokio::time::Instant::now(),
                Err(e) => super::failed(&metrics, "network partition maintenance", &e),
            }
        }
        let _timer = metrics.ingest.job_timer("network_rollup");
        let result = fold(&store, now, PROVISIONAL_EVERY_MS).await;
        metrics.ingest.job_run("network_rollup", result.is_ok());
        match result {
            Ok(steps) => {
                for (f, step) in steps {
                    metrics
                        .network
                        .rollup_lag
                        .get_or_create(&crate::metrics::JobLabels {
                            job: f.name().to_owned(),
                        })
                        .set((now - step.to_ms) / 1000);
                }
            }
            Err(e) => super::failed(&metrics, "network rollup", &e),
        }
    }
}
