//! Agent reports in PostgreSQL: the series dictionary, raw samples (one row per device and
//! instant, partitioned by day), 1-minute rollups (one row per device and minute), the
//! idempotency record of batches, installed software and the inventory in Device status.
//!
//! Times cross the boundary as Unix milliseconds (`i64`); SQL converts them with
//! [`ms`]-style expressions so that no date-time crate feature of sqlx is needed.
mod hours;
mod points;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use cdot_crds::wire::Package;
use futures::TryStreamExt;
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

pub use self::hours::{HOUR_MS, HourFoldSummary};
use self::points::{MinuteFolds, PointRows};
use super::{
    Store, StoreError,
    heartbeats::{self, Heartbeat},
};

use super::partitions::DailyTable;

pub const MINUTE_MS: i64 = 60_000;
/// A minute is folded into the rollup once it ended this long ago (in-flight batches land).
pub const ROLLUP_FOLD_LAG_MS: i64 = 60_000;
/// Samples of minutes that ended this long before their commit may already be folded: their
/// minute is marked for folding again. Half the fold lag, so a write transaction would have
/// to take longer than 30 s to slip past the rollup job.
pub const LATE_SAMPLE_MS: i64 = ROLLUP_FOLD_LAG_MS / 2;

/// One series: a metric of a device with its series labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub device_uid: Uuid,
    pub metric: &'static str,
    pub labels: BTreeMap<String, String>,
}

/// The rows of one metrics batch, series already resolved.
#[derive(Debug, Clone, Copy)]
pub struct BatchRows<'a> {
    pub device_uid: Uuid,
    pub batch_id: Uuid,
    pub series_ids: &'a [i64],
    pub times_ms: &'a [i64],
    pub values: &'a [f64],
}

/// An inventory report of one device: `status.inventory` is replaced, the heartbeat recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct InventoryUpdate {
    pub namespace: String,
    pub name: String,
    pub inventory: Value,
    pub heartbeat: Heartbeat,
}

/// A time-series table partitioned by day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioned {
    Samples,
    Rollup,
    Hourly,
}

impl Partitioned {
    pub const ALL: [Partitioned; 3] = [
        Partitioned::Samples,
        Partitioned::Rollup,
        Partitioned::Hourly,
    ];
}

impl DailyTable for Partitioned {
    fn table(self) -> &'static str {
        match self {
            Partitioned::Samples => "metric_points",
            Partitioned::Rollup => "metric_points_1m",
            Partitioned::Hourly => "metric_points_1h",
        }
    }
}

/// Where points of a query come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointSource {
    /// Raw samples (steps under a minute).
    Raw,
    /// 1-minute rollups, with the minutes after the watermark computed from raw samples.
    Rollup,
}

/// One point of a query: series id, bucket start (ms), avg, min, max.
pub type Point = (i64, i64, f64, f64, f64);

/// What one run of the rollup job did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FoldSummary {
    /// Watermark before and after (ms).
    pub from_ms: i64,
    pub to_ms: i64,
    /// Minutes before the old watermark folded again because of late samples.
    pub refolded: usize,
    /// Series-minutes written (one per series in each device-minute row).
    pub rows: u64,
    /// More work is waiting (the run was capped).
    pub more: bool,
}

/// SQL for "Unix milliseconds to timestamptz" of parameter `$n`.
macro_rules! ms {
    ($n:literal) => {
        concat!(
            "('epoch'::timestamptz + $",
            $n,
            "::int8 * interval '1 millisecond')"
        )
    };
}

impl Store {
    /// Ids of the series (created when new), in the order of `keys`.
    pub async fn resolve_series(&self, keys: &[SeriesKey]) -> Result<Vec<i64>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // Sorted, so that concurrent writers take the unique-index locks in the same order.
        let mut sorted: Vec<&SeriesKey> = keys.iter().collect();
        sorted.sort();
        let devices: Vec<Uuid> = sorted.iter().map(|k| k.device_uid).collect();
        let metrics: Vec<&str> = sorted.iter().map(|k| k.metric).collect();
        let labels: Vec<Value> = sorted
            .iter()
            .map(|k| serde_json::to_value(&k.labels).unwrap_or_default())
            .collect();
        sqlx::query(
            "INSERT INTO metric_series (device_uid, metric, labels)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::jsonb[])
             ON CONFLICT (device_uid, metric, labels) DO NOTHING",
        )
        .bind(&devices)
        .bind(&metrics)
        .bind(&labels)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("create metric series"))?;
        let rows = sqlx::query(
            "SELECT k.i, s.id FROM unnest($1::uuid[], $2::text[], $3::jsonb[]) WITH ORDINALITY AS k(d, m, l, i)
             JOIN metric_series s ON s.device_uid = k.d AND s.metric = k.m AND s.labels = k.l",
        )
        .bind(&devices)
        .bind(&metrics)
        .bind(&labels)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("read metric series"))?;
        let mut by_key = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            let ordinal: i64 = row.get(0);
            let id: i64 = row.get(1);
            if let Some(key) = usize::try_from(ordinal - 1)
                .ok()
                .and_then(|i| sorted.get(i))
            {
                by_key.insert(*key, id);
            }
        }
        keys.iter()
            .map(|k| {
                by_key.get(k).copied().ok_or_else(|| StoreError::Query {
                    operation: "read metric series",
                    source: sqlx::Error::RowNotFound,
                })
            })
            .collect()
    }

    /// Stores metrics batches in one transaction and tells, per batch, whether it was new.
    ///
    /// A batch already recorded for its device (an earlier request, or an earlier entry of
    /// `batches`) is not stored again. Minutes of samples older than `late_before_ms` are
    /// marked for the rollup job to fold again.
    pub async fn write_batches(
        &self,
        batches: &[BatchRows<'_>],
        late_before_ms: i64,
    ) -> Result<Vec<bool>, StoreError> {
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        let mut first = vec![false; batches.len()];
        let mut seen = HashSet::with_capacity(batches.len());
        for (i, b) in batches.iter().enumerate() {
            first[i] = seen.insert((b.device_uid, b.batch_id));
        }
        let mut keys: Vec<(Uuid, Uuid, i32)> = batches
            .iter()
            .zip(&first)
            .filter(|(_, first)| **first)
            .map(|(b, _)| {
                (
                    b.device_uid,
                    b.batch_id,
                    i32::try_from(b.values.len()).unwrap_or(i32::MAX),
                )
            })
            .collect();
        keys.sort();
        let devices: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let ids: Vec<Uuid> = keys.iter().map(|k| k.1).collect();
        let counts: Vec<i32> = keys.iter().map(|k| k.2).collect();

        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query("begin metrics transaction"))?;
        let rows = sqlx::query(
            "INSERT INTO ingested_batches (device_uid, batch_id, samples)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int4[])
             ON CONFLICT (device_uid, batch_id) DO NOTHING
             RETURNING device_uid, batch_id",
        )
        .bind(&devices)
        .bind(&ids)
        .bind(&counts)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::query("record metrics batches"))?;
        let fresh: HashSet<(Uuid, Uuid)> = rows
            .iter()
            .map(|r| (r.get::<Uuid, _>(0), r.get::<Uuid, _>(1)))
            .collect();
        let new: Vec<bool> = batches
            .iter()
            .zip(&first)
            .map(|(b, first)| *first && fresh.contains(&(b.device_uid, b.batch_id)))
            .collect();

        let total: usize = batches
            .iter()
            .zip(&new)
            .filter(|(_, n)| **n)
            .map(|(b, _)| b.values.len())
            .sum();
        if total > 0 {
            let mut rows = PointRows::default();
            let mut late = BTreeSet::new();
            for (b, _) in batches.iter().zip(&new).filter(|(_, n)| **n) {
                rows.push_batch(b.device_uid, b.series_ids, b.times_ms, b.values);
                for t in b.times_ms {
                    let minute = t.div_euclid(MINUTE_MS) * MINUTE_MS;
                    if minute + MINUTE_MS <= late_before_ms {
                        late.insert(minute);
                    }
                }
            }
            sqlx::query(
                "INSERT INTO metric_points (device_uid, at, series_ids, vals)
                 SELECT d, 'epoch'::timestamptz + t * interval '1 millisecond',
                        ($5::int8[])[f::int4:l::int4], ($6::float8[])[f::int4:l::int4]
                 FROM unnest($1::uuid[], $2::int8[], $3::int8[], $4::int8[]) AS u(d, t, f, l)",
            )
            .bind(&rows.devices)
            .bind(&rows.times_ms)
            .bind(&rows.first)
            .bind(&rows.last)
            .bind(&rows.series_ids)
            .bind(&rows.values)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("insert metric points"))?;
            if !late.is_empty() {
                let minutes: Vec<i64> = late.into_iter().collect();
                sqlx::query(
                    "INSERT INTO metric_rollup_dirty (bucket)
                     SELECT 'epoch'::timestamptz + m * interval '1 millisecond' FROM unnest($1::int8[]) AS u(m)
                     ON CONFLICT (bucket) DO NOTHING",
                )
                .bind(&minutes)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("mark late rollup minutes"))?;
            }
        }
        tx.commit()
            .await
            .map_err(StoreError::query("commit metrics transaction"))?;
        Ok(new)
    }

    /// Applies an inventory report: `status.inventory`, the heartbeat and the software
    /// list, replaced whole. False when the device does not exist (nothing is written then).
    pub async fn replace_inventory(
        &self,
        update: &InventoryUpdate,
        software: &[Package],
    ) -> Result<bool, StoreError> {
        let uid = update.heartbeat.device_uid;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query("begin inventory transaction"))?;
        let found = sqlx::query(
            "UPDATE objects SET status = status || jsonb_build_object('inventory', $4::jsonb),
                                resource_version = nextval('object_resource_version')
             WHERE kind = 'Device' AND namespace = $1 AND name = $2 AND uid = $3",
        )
        .bind(&update.namespace)
        .bind(&update.name)
        .bind(uid)
        .bind(&update.inventory)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("write device inventory"))?;
        if found.rows_affected() == 0 {
            return Ok(false);
        }
        heartbeats::record(&mut *tx, std::slice::from_ref(&update.heartbeat)).await?;
        sqlx::query("DELETE FROM device_software WHERE device_uid = $1")
            .bind(uid)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("replace device software"))?;
        let names: Vec<&str> = software.iter().map(|p| p.name.as_str()).collect();
        let versions: Vec<&str> = software.iter().map(|p| p.version.as_str()).collect();
        sqlx::query(
            "INSERT INTO device_software (device_uid, name, version)
             SELECT $1, n, v FROM unnest($2::text[], $3::text[]) AS u(n, v)
             ON CONFLICT DO NOTHING",
        )
        .bind(uid)
        .bind(&names)
        .bind(&versions)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("replace device software"))?;
        tx.commit()
            .await
            .map_err(StoreError::query("commit inventory transaction"))?;
        Ok(true)
    }

    /// Installed software of a device, by name.
    pub async fn device_software(&self, device_uid: Uuid) -> Result<Vec<Package>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, version FROM device_software WHERE device_uid = $1 ORDER BY name, version",
        )
        .bind(device_uid)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("list device software"))?;
        Ok(rows
            .iter()
            .map(|r| Package {
                name: r.get(0),
                version: r.get(1),
            })
            .collect())
    }

    /// Series of a device's metric whose labels include `labels`, by id.
    pub async fn find_series(
        &self,
        device_uid: Uuid,
        metric: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<(i64, BTreeMap<String, String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, labels FROM metric_series
             WHERE device_uid = $1 AND metric = $2 AND labels @> $3::jsonb ORDER BY labels::text",
        )
        .bind(device_uid)
        .bind(metric)
        .bind(serde_json::to_value(labels).unwrap_or_default())
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("find metric series"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let labels: Value = r.get(1);
                (r.get(0), serde_json::from_value(labels).unwrap_or_default())
            })
            .collect())
    }

    /// Points of `series` in `[from_ms, to_ms)`, bucketed by `step_ms` (buckets start at
    /// multiples of the step), ordered by series and time.
    pub async fn series_points(
        &self,
        series: &[i64],
        from_ms: i64,
        to_ms: i64,
        step_ms: i64,
        source: PointSource,
    ) -> Result<Vec<Point>, StoreError> {
        // Rows are found by device (the index), then unnested and filtered by series.
        let rows = match source {
            PointSource::Raw => sqlx::query(concat!(
                "SELECT u.s, ((extract(epoch FROM p.at) * 1000)::int8 / $4) * $4 AS ts,
                        avg(u.v), min(u.v), max(u.v)
                 FROM metric_points p CROSS JOIN LATERAL unnest(p.series_ids, p.vals) AS u(s, v)
                 WHERE p.device_uid = ANY(ARRAY(SELECT DISTINCT device_uid FROM metric_series WHERE id = ANY($1)))
                   AND p.at >= ",
                ms!(2),
                " AND p.at < ",
                ms!(3),
                " AND u.s = ANY($1)
                 GROUP BY 1, 2 ORDER BY 1, 2"
            ))
            .bind(series)
            .bind(from_ms)
            .bind(to_ms)
            .bind(step_ms)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("read raw metric points"))?,
            PointSource::Rollup => {
                let watermark = self.rollup_watermark().await?;
                sqlx::query(concat!(
                    "WITH minutes AS (
                         SELECT u.s AS series_id, r.bucket, u.mn AS min, u.mx AS max, u.sm AS sum, u.c AS count
                         FROM metric_points_1m r
                              CROSS JOIN LATERAL unnest(r.series_ids, r.mins, r.maxs, r.sums, r.counts) AS u(s, mn, mx, sm, c)
                         WHERE r.device_uid = ANY(ARRAY(SELECT DISTINCT device_uid FROM metric_series WHERE id = ANY($1)))
                           AND u.s = ANY($1) AND r.bucket >= ",
                    ms!(2),
                    " AND r.bucket < LEAST(",
                    ms!(3),
                    ", ",
                    ms!(5),
                    ")
                       UNION ALL
                         SELECT u.s, date_trunc('minute', p.at, 'UTC'), min(u.v), max(u.v), sum(u.v), count(*)
                         FROM metric_points p CROSS JOIN LATERAL unnest(p.series_ids, p.vals) AS u(s, v)
                         WHERE p.device_uid = ANY(ARRAY(SELECT DISTINCT device_uid FROM metric_series WHERE id = ANY($1)))
                           AND u.s = ANY($1) AND p.at >= GREATEST(",
                    ms!(2),
                    ", ",
                    ms!(5),
                    ") AND p.at < ",
                    ms!(3),
                    " GROUP BY 1, 2
                     )
                     SELECT series_id, ((extract(epoch FROM bucket) * 1000)::int8 / $4) * $4 AS ts,
                            sum(sum) / sum(count), min(min), max(max)
                     FROM minutes GROUP BY 1, 2 ORDER BY 1, 2"
                ))
                .bind(series)
                .bind(from_ms)
                .bind(to_ms)
                .bind(step_ms)
                .bind(watermark)
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::query("read rollup metric points"))?
            }
        };
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect())
    }

    /// Every minute before this time (ms) has been folded into the 1-minute rollup.
    pub async fn rollup_watermark(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar(
            "SELECT (extract(epoch FROM watermark) * 1000)::int8 FROM metric_rollup_state WHERE id = 1",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::query("read rollup watermark"))
    }

    /// Folds closed minutes into the 1-minute rollup: from the watermark up to the last
    /// minute that ended [`ROLLUP_FOLD_LAG_MS`] before `now_ms` (at most `max_minutes`), plus
    /// up to `max_refold` minutes before the watermark that received late samples. Each
    /// folded minute is computed whole from the raw samples, so folding again is harmless.
    ///
    /// A minute is read as its device rows (~60,000 of ~1 KB at 10,000 agents) and
    /// aggregated here, one minute at a time so that catching up holds one minute in memory.
    pub async fn fold_rollups(
        &self,
        now_ms: i64,
        max_minutes: i64,
        max_refold: i64,
    ) -> Result<FoldSummary, StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query("begin rollup transaction"))?;
        // One core: a parallel scan would take the CPU the ingest writers need.
        sqlx::query("SET LOCAL max_parallel_workers_per_gather = 0")
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("limit the rollup to one core"))?;
        // The row lock makes operator replicas take turns.
        let watermark: i64 = sqlx::query_scalar(
            "SELECT (extract(epoch FROM watermark) * 1000)::int8 FROM metric_rollup_state WHERE id = 1 FOR UPDATE",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::query("read rollup watermark"))?;
        let target = (now_ms - ROLLUP_FOLD_LAG_MS).div_euclid(MINUTE_MS) * MINUTE_MS;
        let new_watermark = target
            .min(watermark + max_minutes.max(1) * MINUTE_MS)
            .max(watermark);

        // Minutes at or after the old watermark are covered by the range fold below.
        let dirty: Vec<i64> = sqlx::query_scalar(concat!(
            "DELETE FROM metric_rollup_dirty WHERE bucket IN (
                 SELECT bucket FROM metric_rollup_dirty WHERE bucket < ",
            ms!(1),
            " ORDER BY bucket LIMIT $2)
             RETURNING (extract(epoch FROM bucket) * 1000)::int8"
        ))
        .bind(new_watermark)
        .bind(max_refold)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::query("take late rollup minutes"))?;
        let mut refold: Vec<i64> = dirty.iter().copied().filter(|m| *m < watermark).collect();
        refold.sort_unstable();
        let minutes = refold
            .iter()
            .copied()
            .chain((watermark..new_watermark).step_by(MINUTE_MS as usize));
        let mut rows = 0;
        for minute in minutes {
            rows += fold_minute(&mut tx, minute).await?;
        }
        if !refold.is_empty() {
            hours::mark_refolded(&mut tx, &refold).await?;
        }
        sqlx::query(concat!(
            "UPDATE metric_rollup_state SET watermark = ",
            ms!(1),
            " WHERE id = 1"
        ))
        .bind(new_watermark)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("move rollup watermark"))?;
        tx.commit()
            .await
            .map_err(StoreError::query("commit rollup transaction"))?;
        Ok(FoldSummary {
            from_ms: watermark,
            to_ms: new_watermark,
            refolded: refold.len(),
            rows,
            more: new_watermark < target || dirty.len() as i64 >= max_refold,
        })
    }

    /// Forgets late minutes before `before_ms` (their samples' partitions were dropped).
    pub async fn prune_rollup_dirty(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(concat!(
            "DELETE FROM metric_rollup_dirty WHERE bucket < ",
            ms!(1)
        ))
        .bind(before_ms)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("prune late rollup minutes"))?;
        Ok(done.rows_affected())
    }

    /// Forgets batch ids received before `before_ms`, at most `limit` rows; returns how many.
    pub async fn prune_ingested_batches(
        &self,
        before_ms: i64,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(concat!(
            "DELETE FROM ingested_batches WHERE ctid = ANY(ARRAY(
                 SELECT ctid FROM ingested_batches WHERE received_at < ",
            ms!(1),
            " LIMIT $2))"
        ))
        .bind(before_ms)
        .bind(limit)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("prune ingested batches"))?;
        Ok(done.rows_affected())
    }
}

/// Point rows folded per trip to the background thread (a few MB).
const FOLD_CHUNK_ROWS: usize = 4096;

fn fold_task_failed(e: crate::background::Stopped) -> StoreError {
    StoreError::Query {
        operation: "fold metric points",
        source: sqlx::Error::Protocol(format!("the fold task failed: {e}")),
    }
}

/// Adds a chunk of point rows to `folds` on the background thread.
async fn fold_off_the_workers(
    mut folds: MinuteFolds,
    rows: Vec<(Uuid, Vec<i64>, Vec<f64>)>,
) -> Result<MinuteFolds, StoreError> {
    crate::background::run(move || {
        for (device, series_ids, values) in &rows {
            folds.add(*device, series_ids, values);
        }
        folds
    })
    .await
    .map_err(fold_task_failed)
}

/// Folds one minute of `metric_points` into `metric_points_1m`; returns the series-minutes
/// written.
async fn fold_minute(conn: &mut sqlx::PgConnection, minute_ms: i64) -> Result<u64, StoreError> {
    let mut points = sqlx::query_as::<_, (Uuid, Vec<i64>, Vec<f64>)>(concat!(
        "SELECT device_uid, series_ids, vals FROM metric_points WHERE at >= ",
        ms!(1),
        " AND at < ",
        ms!(2)
    ))
    .bind(minute_ms)
    .bind(minute_ms + MINUTE_MS)
    .fetch(&mut *conn);
    // A minute of 10,000 agents is millions of values: folding them keeps a core busy for
    // about a second, which on an async worker stalls the requests queued behind it (the
    // ingest tail followed this fold). Chunks are folded on the background thread (lowest
    // priority) instead, so the workers stay free for requests and memory stays at one
    // chunk.
    let mut folds = MinuteFolds::default();
    let mut chunk = Vec::with_capacity(FOLD_CHUNK_ROWS);
    loop {
        let next = points
            .try_next()
            .await
            .map_err(StoreError::query("read metric points to fold"))?;
        let done = next.is_none();
        chunk.extend(next);
        if chunk.len() >= FOLD_CHUNK_ROWS || (done && !chunk.is_empty()) {
            let rows = std::mem::take(&mut chunk);
            folds = fold_off_the_workers(folds, rows).await?;
            chunk.reserve(FOLD_CHUNK_ROWS);
        }
        if done {
            break;
        }
    }
    drop(points);
    let rows = crate::background::run(move || folds.into_rows())
        .await
        .map_err(fold_task_failed)?;
    if rows.devices.is_empty() {
        return Ok(0);
    }
    sqlx::query(concat!(
        "INSERT INTO metric_points_1m (device_uid, bucket, series_ids, mins, maxs, sums, counts)
         SELECT d, ",
        ms!(1),
        ", ($5::int8[])[f::int4:l::int4], ($6::float8[])[f::int4:l::int4], ($7::float8[])[f::int4:l::int4],
                ($8::float8[])[f::int4:l::int4], ($9::int8[])[f::int4:l::int4]
         FROM unnest($2::uuid[], $3::int8[], $4::int8[]) AS u(d, f, l)
         ON CONFLICT (device_uid, bucket) DO UPDATE SET
             series_ids = EXCLUDED.series_ids, mins = EXCLUDED.mins, maxs = EXCLUDED.maxs,
             sums = EXCLUDED.sums, counts = EXCLUDED.counts"
    ))
    .bind(minute_ms)
    .bind(&rows.devices)
    .bind(&rows.first)
    .bind(&rows.last)
    .bind(&rows.series_ids)
    .bind(&rows.mins)
    .bind(&rows.maxs)
    .bind(&rows.sums)
    .bind(&rows.counts)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("write metric rollups"))?;
    Ok(rows.series_ids.len() as u64)
}
