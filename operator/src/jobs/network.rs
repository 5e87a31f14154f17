//! The network data job: folds collector data into the 1-minute and 1-hour rollups, and
//! keeps the daily partitions of every network table (created ahead, dropped by retention).
use std::{sync::Arc, time::Duration};

use clap::Args;
use tokio::sync::watch;

use crate::{
    metrics::{Metrics, ResultLabels},
    store::{
        Store, StoreError,
        network::{
            DAY_MS, NetTable, day_of,
            rollup::{Fold, FoldStep},
        },
    },
};

/// Days of partitions created ahead of today.
pub const DAYS_AHEAD: i64 = 2;
/// Buckets one fold transaction folds at most (catching up after downtime goes in steps).
pub const MAX_BUCKETS_PER_FOLD: i64 = 10;
/// Late buckets one fold transaction folds again at most.
pub const MAX_REFOLD_PER_FOLD: i64 = 30;
/// How often the open hour is folded provisionally, so that queries over hours see it.
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
    /// How long hourly flow rollups (top keys per exporter) are kept.
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
        match table {
            NetTable::Flows1m => flows,
            NetTable::Flows1h => whole_days(self.network_flow_rollup_retention).max(flows),
            NetTable::InterfaceSamples | NetTable::ProbeSamples => samples,
            NetTable::Interfaces1m | NetTable::Probes1m => minutes,
            NetTable::Interfaces1h | NetTable::Probes1h => {
                whole_days(self.network_rollup_1h_retention).max(minutes)
            }
        }
    }
}

fn whole_days(d: Duration) -> i64 {
    i64::try_from(d.as_millis().div_ceil(DAY_MS as u128))
        .unwrap_or(i64::MAX / 2)
        .max(1)
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
        for day in (today - kept.min(accepted_days))..=(today + DAYS_AHEAD) {
            if store.create_net_partition(table, day).await? {
                done.created.push(table.partition(day));
            }
        }
        done.dropped.extend(
            store
                .drop_net_partitions_before(table, today - kept)
                .await?,
        );
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
    for (result, n) in [
        ("created", done.created.len()),
        ("dropped", done.dropped.len()),
    ] {
        metrics
            .ingest
            .partitions
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc_by(n as u64);
    }
    if !done.created.is_empty() || !done.dropped.is_empty() {
        tracing::info!(created = ?done.created, dropped = ?done.dropped, "network partitions maintained");
    }
    Ok(done)
}

/// Folds every rollup until caught up with `now_ms` (or the per-run cap); returns the
/// last step of each.
pub async fn fold(
    store: &Store,
    now_ms: i64,
    provisional_every_ms: i64,
) -> Result<Vec<(Fold, FoldStep)>, StoreError> {
    let mut last = Vec::with_capacity(Fold::ALL.len());
    for f in Fold::ALL {
        let mut step = FoldStep::default();
        for _ in 0..MAX_STEPS_PER_RUN {
            step = store
                .fold_network(
                    f,
                    now_ms,
                    MAX_BUCKETS_PER_FOLD,
                    MAX_REFOLD_PER_FOLD,
                    provisional_every_ms,
                )
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
