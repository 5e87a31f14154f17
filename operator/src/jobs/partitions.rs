//! Partition maintenance: daily partitions created ahead (today + 2 days), partitions past
//! the retention settings dropped, and old batch ids forgotten.
use std::{sync::Arc, time::Duration};

use tokio::sync::watch;

use super::TimeseriesArgs;
use crate::{
    metrics::{Metrics, ResultLabels},
    store::{
        Store, StoreError,
        timeseries::{DAY_MS, Partitioned, day_of},
    },
};

/// Days of partitions created ahead of today.
pub const DAYS_AHEAD: i64 = 2;
/// Batch ids are remembered this long: longer than a batch can be retried, since samples
/// older than `wire::MAX_SAMPLE_AGE_MS` are refused anyway.
pub const DEDUP_WINDOW_MS: i64 = cdot_crds::wire::MAX_SAMPLE_AGE_MS + DAY_MS;
const PRUNE_CHUNK: i64 = 50_000;
const EVERY: Duration = Duration::from_secs(3600);

/// What one maintenance run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maintenance {
    pub created: Vec<String>,
    pub dropped: Vec<String>,
    pub batches_forgotten: u64,
    /// Heartbeats of devices that were deleted.
    pub heartbeats_forgotten: u64,
}

pub async fn run(
    store: Store,
    metrics: Arc<Metrics>,
    args: TimeseriesArgs,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut interval = super::interval(EVERY);
    while super::tick(&mut interval, &mut shutdown).await {
        let _timer = metrics.ingest.job_timer("partitions");
        let result = maintain(
            &store,
            &metrics,
            jiff::Timestamp::now().as_millisecond(),
            &args,
        )
        .await;
        metrics.ingest.job_run("partitions", result.is_ok());
        if let Err(e) = result {
            super::failed(&metrics, "partition maintenance", &e);
        }
    }
}

fn whole_days(d: Duration) -> i64 {
    i64::try_from(d.as_millis().div_ceil(DAY_MS as u128))
        .unwrap_or(i64::MAX / 2)
        .max(1)
}

/// Makes the partitions match `now_ms` and the retention settings.
pub async fn maintain(
    store: &Store,
    metrics: &Metrics,
    now_ms: i64,
    args: &TimeseriesArgs,
) -> Result<Maintenance, StoreError> {
    let today = day_of(now_ms);
    let raw_days = whole_days(args.metrics_retention);
    let rollup_days = whole_days(args.metrics_rollup_retention).max(raw_days);
    let mut done = Maintenance::default();
    // Raw samples are accepted back to the retention horizon; their minutes may be folded,
    // so both tables need partitions from there on.
    for table in Partitioned::ALL {
        for day in (today - raw_days)..=(today + DAYS_AHEAD) {
            if store.create_partition(table, day).await? {
                done.created
                    .push(crate::store::timeseries::partition_name(table, day));
            }
        }
    }
    done.dropped.extend(
        store
            .drop_partitions_before(Partitioned::Samples, today - raw_days)
            .await?,
    );
    done.dropped.extend(
        store
            .drop_partitions_before(Partitioned::Rollup, today - rollup_days)
            .await?,
    );
    loop {
        let n = store
            .prune_ingested_batches(now_ms - DEDUP_WINDOW_MS, PRUNE_CHUNK)
            .await?;
        done.batches_forgotten += n;
        if n < PRUNE_CHUNK as u64 {
            break;
        }
    }
    done.heartbeats_forgotten = store.prune_heartbeats().await?;
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
        tracing::info!(created = ?done.created, dropped = ?done.dropped, "metric partitions maintained");
    }
    Ok(done)
}
