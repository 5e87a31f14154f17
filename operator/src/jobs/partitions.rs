//! Partition maintenance: daily partitions created ahead (today + 2 days), partitions past
//! the retention settings dropped, and old batch ids forgotten.
use std::{sync::Arc, time::Duration};

use tokio::sync::watch;

use super::TimeseriesArgs;
use crate::{
    metrics::{Metrics, ResultLabels},
    store::{
        Store, StoreError,
        partitions::{DAY_MS, DailyTable, day_of, partition_name},
        timeseries::Partitioned,
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

/// A retention setting in whole days, rounded up, at least one.
pub(crate) fn whole_days(d: Duration) -> i64 {
    i64::try_from(d.as_millis().div_ceil(DAY_MS as u128))
        .unwrap_or(i64::MAX / 2)
        .max(1)
}

/// Creates the partitions of `table` from `back` days before `today` to [`DAYS_AHEAD`]
/// after it, and drops those older than `kept` days; adds their names to `created` and
/// `dropped`.
pub(crate) async fn keep_days(
    store: &Store,
    table: impl DailyTable,
    today: i64,
    (back, kept): (i64, i64),
    created: &mut Vec<String>,
    dropped: &mut Vec<String>,
) -> Result<(), StoreError> {
    for day in (today - back)..=(today + DAYS_AHEAD) {
        if store.create_partition(table, day).await? {
            created.push(partition_name(table, day));
        }
    }
    dropped.extend(store.drop_partitions_before(table, today - kept).await?);
    Ok(())
}

/// Counts the partitions a run of `job` created and dropped, and logs them.
pub(crate) fn report(metrics: &Metrics, job: &str, created: &[String], dropped: &[String]) {
    for (result, n) in [("created", created.len()), ("dropped", dropped.len())] {
        metrics
            .ingest
            .partitions
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc_by(n as u64);
    }
    if !created.is_empty() || !dropped.is_empty() {
        tracing::info!(job, ?created, ?dropped, "partitions maintained");
    }
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
    for (table, kept) in [
        (Partitioned::Samples, raw_days),
        (Partitioned::Rollup, rollup_days),
        (Partitioned::Hourly, rollup_days),
    ] {
        keep_days(
            store,
            table,
            today,
            (raw_days, kept),
            &mut done.created,
            &mut done.dropped,
        )
        .await?;
    }
    store
        .prune_rollup_dirty((today - raw_days) * DAY_MS)
        .await?;
    store
        .prune_hour_dirty((today - rollup_days) * DAY_MS)
        .await?;
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
    report(metrics, "partitions", &done.created, &done.dropped);
    Ok(done)
}
