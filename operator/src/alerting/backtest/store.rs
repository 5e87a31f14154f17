//! What a backtest reads: the rule's series, the hours of the hour tier that could breach,
//! and the minutes of the ranges to replay.
use std::collections::BTreeMap;

use cdot_crds::alert_rule::{Op, ReduceFunction};
use sqlx::Row;
use uuid::Uuid;

use super::replay::Minute;
use crate::store::{Store, StoreError};

/// A series a backtest replays.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRef {
    pub id: i64,
    pub device_uid: Uuid,
    pub labels: BTreeMap<String, String>,
}

/// The breach test for a reduced value known only to lie in `[lo, hi]`, as SQL on `lo`,
/// `hi` and the threshold `$t`: true when some value of the interval would breach.
fn could_breach(op: Op) -> &'static str {
    match op {
        Op::Gt => "hi > $t",
        Op::Ge => "hi >= $t",
        Op::Lt => "lo < $t",
        Op::Le => "lo <= $t",
        Op::Eq => "lo <= $t AND hi >= $t",
        Op::Ne => "NOT (lo = $t AND hi = $t)",
    }
}

/// Which columns of the hour tier bound a window's reduced value: an average of whole
/// minutes lies between the lowest and highest minute average; a maximum between the
/// lowest average and the highest maximum; a minimum between the lowest minimum and the
/// highest average (`last` is the last minute's average).
fn bound_columns(function: ReduceFunction) -> (&'static str, &'static str) {
    match function {
        ReduceFunction::Avg | ReduceFunction::Last => ("avg_mins", "avg_maxs"),
        ReduceFunction::Max => ("avg_mins", "maxs"),
        ReduceFunction::Min => ("mins", "avg_maxs"),
    }
}

/// A read-only transaction without JIT (it only adds compile time to these reads), and
/// with `probes`, planned for index probes: the planner cannot know how many ranges an
/// `unnest` holds and, guessing few rows per range over a month of partitions, chose
/// parallel sequential scans of every partition (14 GB at 1,000 devices: 8 s warm, 80 s
/// cold) over index probes (1 s). The hour read is better off with its hash join.
async fn read_tx(
    store: &Store,
    probes: bool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
    let mut tx = store
        .pool()
        .begin()
        .await
        .map_err(StoreError::query("begin backtest read"))?;
    let settings = if probes {
        "SET TRANSACTION READ ONLY; SET LOCAL jit = off; SET LOCAL enable_seqscan = off;
         SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"
    } else {
        "SET TRANSACTION READ ONLY; SET LOCAL jit = off"
    };
    sqlx::raw_sql(settings)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("plan backtest reads"))?;
    Ok(tx)
}

impl Store {
    /// Series of `metric` of the given devices.
    pub async fn backtest_series(
        &self,
        metric: &str,
        devices: &[Uuid],
    ) -> Result<Vec<SeriesRef>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, device_uid, labels FROM metric_series
             WHERE metric = $1 AND device_uid = ANY($2) ORDER BY id",
        )
        .bind(metric)
        .bind(devices)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read series to backtest"))?;
        Ok(rows
            .iter()
            .map(|r| SeriesRef {
                id: r.get(0),
                device_uid: r.get(1),
                labels: serde_json::from_value(r.get(2)).unwrap_or_default(),
            })
            .collect())
    }

    /// Hours of the hour tier in `[from_ms, to_ms)` in which some window of the series
    /// could breach: (index into `series`, hour start ms), by series and hour.
    pub async fn backtest_hot_hours(
        &self,
        series: &[SeriesRef],
        (function, op, threshold): (ReduceFunction, Op, f64),
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(usize, i64)>, StoreError> {
        let (lo, hi) = bound_columns(function);
        let sql = format!(
            "SELECT k, hour FROM (
                 SELECT c.k, (extract(epoch FROM h.bucket) * 1000)::int8 AS hour,
                        h.{lo}[p] AS lo, h.{hi}[p] AS hi
                 FROM unnest($1::uuid[], $2::int8[], $3::int4[]) AS c(dev, sid, k)
                      JOIN metric_points_1h h ON h.device_uid = c.dev
                      CROSS JOIN LATERAL array_position(h.series_ids, c.sid) AS p
                 WHERE h.bucket >= 'epoch'::timestamptz + $4::int8 * interval '1 millisecond'
                   AND h.bucket < 'epoch'::timestamptz + $5::int8 * interval '1 millisecond'
                   AND p IS NOT NULL) AS b
             WHERE {}
             ORDER BY k, hour",
            could_breach(op).replace("$t", "$6")
        );
        let devices: Vec<Uuid> = series.iter().map(|s| s.device_uid).collect();
        let ids: Vec<i64> = series.iter().map(|s| s.id).collect();
        let keys: Vec<i32> = (0..series.len() as i32).collect();
        // Only constants of this file are spliced in.
        let mut tx = read_tx(self, false).await?;
        let rows: Vec<(i32, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&devices)
            .bind(&ids)
            .bind(&keys)
            .bind(from_ms)
            .bind(to_ms)
            .bind(threshold)
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::query("read the hours a backtest replays"))?;
        Ok(rows
            .into_iter()
            .map(|(k, hour)| (k as usize, hour))
            .collect())
    }

    /// The minutes of each `(index into series, [start, end))` range, by range and time.
    pub async fn backtest_minutes(
        &self,
        series: &[SeriesRef],
        ranges: &[(usize, i64, i64)],
    ) -> Result<Vec<(usize, Minute)>, StoreError> {
        let devices: Vec<Uuid> = ranges.iter().map(|r| series[r.0].device_uid).collect();
        let ids: Vec<i64> = ranges.iter().map(|r| series[r.0].id).collect();
        let starts: Vec<i64> = ranges.iter().map(|r| r.1).collect();
        let ends: Vec<i64> = ranges.iter().map(|r| r.2).collect();
        let keys: Vec<i32> = (0..ranges.len() as i32).collect();
        let mut tx = read_tx(self, true).await?;
        let rows: Vec<(i32, i64, f64, f64, f64, i64)> = sqlx::query_as(
            "SELECT c.k, (extract(epoch FROM r.bucket) * 1000)::int8,
                    r.mins[p], r.maxs[p], r.sums[p], r.counts[p]
             FROM unnest($1::uuid[], $2::int8[], $3::int8[], $4::int8[], $5::int4[]) AS c(dev, sid, f, t, k)
                  JOIN metric_points_1m r ON r.device_uid = c.dev
                   AND r.bucket >= 'epoch'::timestamptz + c.f * interval '1 millisecond'
                   AND r.bucket < 'epoch'::timestamptz + c.t * interval '1 millisecond'
                  CROSS JOIN LATERAL array_position(r.series_ids, c.sid) AS p
             WHERE p IS NOT NULL
               AND r.bucket >= 'epoch'::timestamptz + $6::int8 * interval '1 millisecond'
               AND r.bucket < 'epoch'::timestamptz + $7::int8 * interval '1 millisecond'
             ORDER BY c.k, r.bucket",
        )
        .bind(&devices)
        .bind(&ids)
        .bind(&starts)
        .bind(&ends)
        .bind(&keys)
        .bind(starts.iter().min().copied().unwrap_or(0))
        .bind(ends.iter().max().copied().unwrap_or(0))
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::query("read the minutes a backtest replays"))?;
        Ok(rows
            .into_iter()
            .map(|(k, bucket_ms, min, max, sum, count)| {
                (
                    k as usize,
                    Minute {
                        bucket_ms,
                        min,
                        max,
                        sum,
                        count,
                    },
                )
            })
            .collect())
    }
}
