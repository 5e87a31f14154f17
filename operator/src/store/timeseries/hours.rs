//! The hour tier: `metric_points_1h` folded from `metric_points_1m`, one hour at a time in
//! slices of the device space, so that a run never holds a core for long (the ingest tail
//! follows whatever competes with the writers). A late minute folded again marks its hour
//! to be folded again.
//!
//! Besides min, max, sum and count, each series keeps the lowest and highest minute
//! average of the hour: any average over whole minutes inside the hour lies between them,
//! which is what lets a backtest skip hours that cannot breach (ADR 20).
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::super::{Store, StoreError};

pub const HOUR_MS: i64 = 3_600_000;
/// Slices of the device space one hour is folded in (by the leading bits of the uid).
pub const HOUR_SLICES: u32 = 64;

/// What one run of the hour fold did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HourFoldSummary {
    /// Every hour before this (ms) is folded.
    pub watermark_ms: i64,
    /// Slices folded in this run.
    pub slices: u32,
    /// Hours folded again (late minutes).
    pub refolded: u32,
    /// Device-hour rows written.
    pub rows: u64,
    /// Hours wait that the minute tier already covers.
    pub more: bool,
}

/// The device uid range of slice `i`: `[first, last]`.
fn slice_bounds(i: u32) -> (Uuid, Uuid) {
    let width = u128::MAX / u128::from(HOUR_SLICES) + 1;
    let first = width * u128::from(i);
    (Uuid::from_u128(first), Uuid::from_u128(first + (width - 1)))
}

fn slice_of(device: Uuid) -> u32 {
    let width = u128::MAX / u128::from(HOUR_SLICES) + 1;
    u32::try_from(device.as_u128() / width).unwrap_or(HOUR_SLICES)
}

/// Marks the hours of minutes folded again, so the hour fold redoes them.
pub(super) async fn mark_refolded(
    conn: &mut sqlx::PgConnection,
    minutes_ms: &[i64],
) -> Result<(), StoreError> {
    let hours: Vec<i64> = minutes_ms
        .iter()
        .map(|m| m.div_euclid(HOUR_MS) * HOUR_MS)
        .collect();
    sqlx::query(
        "INSERT INTO metric_rollup_1h_dirty (bucket)
         SELECT DISTINCT 'epoch'::timestamptz + h * interval '1 millisecond' FROM unnest($1::int8[]) AS u(h)
         ON CONFLICT (bucket) DO NOTHING",
    )
    .bind(&hours)
    .execute(conn)
    .await
    .map_err(StoreError::query("mark hours to fold again"))?;
    Ok(())
}

/// Folds the devices in `[first, last]` of the hour at `hour_ms` from the minute tier;
/// returns the rows written. Folding again replaces the rows.
async fn fold_slice(
    conn: &mut sqlx::PgConnection,
    hour_ms: i64,
    first: Uuid,
    last: Uuid,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "INSERT INTO metric_points_1h (device_uid, bucket, series_ids, mins, maxs, sums, counts, avg_mins, avg_maxs)
         SELECT device_uid, 'epoch'::timestamptz + $1::int8 * interval '1 millisecond',
                array_agg(s ORDER BY s), array_agg(mn ORDER BY s), array_agg(mx ORDER BY s),
                array_agg(sm ORDER BY s), array_agg(c ORDER BY s), array_agg(amn ORDER BY s),
                array_agg(amx ORDER BY s)
         FROM (SELECT r.device_uid, u.s, min(u.mn) AS mn, max(u.mx) AS mx, sum(u.sm) AS sm,
                      sum(u.c)::int8 AS c, min(u.sm / u.c) AS amn, max(u.sm / u.c) AS amx
               FROM metric_points_1m r
                    CROSS JOIN LATERAL unnest(r.series_ids, r.mins, r.maxs, r.sums, r.counts) AS u(s, mn, mx, sm, c)
               WHERE r.device_uid BETWEEN $2 AND $3
                 AND r.bucket >= 'epoch'::timestamptz + $1::int8 * interval '1 millisecond'
                 AND r.bucket < 'epoch'::timestamptz + ($1::int8 + 3600000) * interval '1 millisecond'
                 AND u.c > 0
               GROUP BY 1, 2) AS g
         GROUP BY device_uid
         ON CONFLICT (device_uid, bucket) DO UPDATE SET
             series_ids = EXCLUDED.series_ids, mins = EXCLUDED.mins, maxs = EXCLUDED.maxs,
             sums = EXCLUDED.sums, counts = EXCLUDED.counts, avg_mins = EXCLUDED.avg_mins,
             avg_maxs = EXCLUDED.avg_maxs",
    )
    .bind(hour_ms)
    .bind(first)
    .bind(last)
    .execute(conn)
    .await
    .map_err(StoreError::query("fold metric hour"))?;
    Ok(done.rows_affected())
}

impl Store {
    /// Every hour before this time (ms) is in `metric_points_1h`.
    pub async fn hour_watermark(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar(
            "SELECT (extract(epoch FROM watermark) * 1000)::int8 FROM metric_rollup_1h_state WHERE id = 1",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::query("read hour rollup watermark"))
    }

    /// Folds hours the minute tier has closed, slice by slice, until `budget` is spent
    /// (at least one slice when there is work): first one hour marked by late minutes, then
    /// the hour at the watermark from where the last run stopped.
    pub async fn fold_hours(&self, budget: Duration) -> Result<HourFoldSummary, StoreError> {
        let started = Instant::now();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query("begin hour rollup transaction"))?;
        sqlx::query("SET LOCAL max_parallel_workers_per_gather = 0")
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("limit the hour rollup to one core"))?;
        // The row lock makes operator replicas take turns.
        let (mut watermark, next): (i64, Uuid) = sqlx::query_as(
            "SELECT (extract(epoch FROM watermark) * 1000)::int8, next_device
             FROM metric_rollup_1h_state WHERE id = 1 FOR UPDATE",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::query("read hour rollup watermark"))?;
        let minutes: i64 = sqlx::query_scalar(
            "SELECT (extract(epoch FROM watermark) * 1000)::int8 FROM metric_rollup_state WHERE id = 1",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::query("read rollup watermark"))?;
        let mut summary = HourFoldSummary::default();

        // Hours at or after the watermark are folded in order anyway.
        let dirty: Option<i64> = sqlx::query_scalar(
            "DELETE FROM metric_rollup_1h_dirty WHERE bucket = (
                 SELECT min(bucket) FROM metric_rollup_1h_dirty)
             RETURNING (extract(epoch FROM bucket) * 1000)::int8",
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::query("take hour to fold again"))?;
        if let Some(hour) = dirty.filter(|h| *h < watermark) {
            let (first, _) = slice_bounds(0);
            let (_, last) = slice_bounds(HOUR_SLICES - 1);
            summary.rows += fold_slice(&mut tx, hour, first, last).await?;
            summary.refolded = 1;
        }

        let mut slice = slice_of(next);
        while watermark + HOUR_MS <= minutes && (summary.slices == 0 || started.elapsed() < budget)
        {
            let (first, last) = slice_bounds(slice);
            summary.rows += fold_slice(&mut tx, watermark, first, last).await?;
            summary.slices += 1;
            slice += 1;
            if slice == HOUR_SLICES {
                slice = 0;
                watermark += HOUR_MS;
            }
        }
        sqlx::query(
            "UPDATE metric_rollup_1h_state
             SET watermark = 'epoch'::timestamptz + $1::int8 * interval '1 millisecond', next_device = $2
             WHERE id = 1",
        )
        .bind(watermark)
        .bind(slice_bounds(slice % HOUR_SLICES).0)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("move hour rollup watermark"))?;
        tx.commit()
            .await
            .map_err(StoreError::query("commit hour rollup transaction"))?;
        summary.watermark_ms = watermark;
        summary.more = watermark + HOUR_MS <= minutes;
        Ok(summary)
    }

    /// Forgets hours to fold again before `before_ms` (their minutes are gone).
    pub async fn prune_hour_dirty(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM metric_rollup_1h_dirty
             WHERE bucket < 'epoch'::timestamptz + $1::int8 * interval '1 millisecond'",
        )
        .bind(before_ms)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("prune hours to fold again"))?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_the_device_space_without_gaps() {
        assert_eq!(slice_bounds(0).0, Uuid::nil());
        assert_eq!(slice_bounds(HOUR_SLICES - 1).1, Uuid::max());
        for i in 1..HOUR_SLICES {
            assert_eq!(
                slice_bounds(i - 1).1.as_u128() + 1,
                slice_bounds(i).0.as_u128()
            );
            assert_eq!(slice_of(slice_bounds(i).0), i);
            assert_eq!(slice_of(slice_bounds(i).1), i);
        }
    }
}
