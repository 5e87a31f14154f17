//! Rollups of network data ("folds"): interface and probe samples into 1-minute buckets,
//! those into 1-hour buckets; flow minutes into 10-minute and hour buckets per exporter, and
//! those into ranked per-site lists, keeping every host pair and the top keys' ports.
//!
//! Each fold has a watermark: every bucket before it has been folded. A bucket is folded by
//! deleting its rollup rows and computing them whole from the source, so folding again (late
//! rows, the provisional fold of the open bucket) is harmless.
use sqlx::{Postgres, Transaction};

use super::{HOUR_MS, MINUTE_MS, TEN_MINUTES_MS, floor_to};
use crate::store::{Store, StoreError};

/// A bucket is folded once it ended this long ago (in-flight batches land first).
pub const FOLD_LAG_MS: i64 = 60_000;
/// Keys (host pair, protocol, port) that keep their port per exporter and bucket in
/// `net_flows_10m` and `net_flows_1h`; every other key keeps its hosts, its port folds.
pub const FLOW_EXPORTER_TOP_N: i64 = 1000;

/// One rollup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fold {
    Interfaces1m,
    Probes1m,
    Flows10m,
    Flows1h,
    FlowSites10m,
    FlowSites1h,
    Interfaces1h,
    Probes1h,
}

impl Fold {
    /// Sources before the rollups that read them.
    pub const ALL: [Fold; 8] = [
        Fold::Interfaces1m,
        Fold::Probes1m,
        Fold::Flows10m,
        Fold::Flows1h,
        Fold::FlowSites10m,
        Fold::FlowSites1h,
        Fold::Interfaces1h,
        Fold::Probes1h,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fold::Interfaces1m => "interfaces_1m",
            Fold::Probes1m => "probes_1m",
            Fold::Flows10m => "flows_10m",
            Fold::Flows1h => "flows_1h",
            Fold::FlowSites10m => "flow_sites_10m",
            Fold::FlowSites1h => "flow_sites_1h",
            Fold::Interfaces1h => "interfaces_1h",
            Fold::Probes1h => "probes_1h",
        }
    }

    pub fn bucket_ms(self) -> i64 {
        match self {
            Fold::Interfaces1m | Fold::Probes1m => MINUTE_MS,
            Fold::Flows10m | Fold::FlowSites10m => TEN_MINUTES_MS,
            Fold::Flows1h | Fold::FlowSites1h | Fold::Interfaces1h | Fold::Probes1h => HOUR_MS,
        }
    }

    /// The fold whose output this one reads (it may not pass that one's watermark).
    fn parent(self) -> Option<Fold> {
        match self {
            Fold::Interfaces1h => Some(Fold::Interfaces1m),
            Fold::Probes1h => Some(Fold::Probes1m),
            Fold::FlowSites10m => Some(Fold::Flows10m),
            Fold::FlowSites1h => Some(Fold::Flows1h),
            _ => None,
        }
    }

    /// The fold that reads this one's output (told about buckets folded again).
    fn child(self) -> Option<Fold> {
        match self {
            Fold::Interfaces1m => Some(Fold::Interfaces1h),
            Fold::Probes1m => Some(Fold::Probes1h),
            Fold::Flows10m => Some(Fold::FlowSites10m),
            Fold::Flows1h => Some(Fold::FlowSites1h),
            _ => None,
        }
    }

    /// The rollup table and its time column.
    fn target(self) -> (&'static str, &'static str) {
        match self {
            Fold::Interfaces1m => ("net_if_1m", "bucket"),
            Fold::Interfaces1h => ("net_if_1h", "bucket"),
            Fold::Probes1m => ("net_probe_1m", "bucket"),
            Fold::Probes1h => ("net_probe_1h", "bucket"),
            Fold::Flows10m => ("net_flows_10m", "bucket"),
            Fold::Flows1h => ("net_flows_1h", "hour"),
            Fold::FlowSites10m => ("net_flows_site_10m", "bucket"),
            Fold::FlowSites1h => ("net_flows_site_1h", "bucket"),
        }
    }

    /// Keys that keep their port per exporter and bucket (bound as `$3` of the fold).
    fn top_n(self) -> Option<i64> {
        match self {
            Fold::Flows10m | Fold::Flows1h => Some(FLOW_EXPORTER_TOP_N),
            _ => None,
        }
    }

    fn delete_sql(self) -> String {
        let (table, time) = self.target();
        format!(
            "DELETE FROM {table} WHERE {time} >= {} AND {time} < {}",
            at_ms!(1),
            at_ms!(2)
        )
    }

    fn insert_sql(self) -> String {
        let (table, time) = self.target();
        match self {
            Fold::Interfaces1m => concat!(
                "INSERT INTO net_if_1m
                 SELECT interface_id, date_trunc('minute', at, 'UTC'), count(*),
                        sum(in_bps), max(in_bps), sum(out_bps), max(out_bps), sum(in_pps), sum(out_pps),
                        sum(in_errors), sum(out_errors), sum(in_discards), sum(out_discards),
                        count(*) FILTER (WHERE status_changed), (array_agg(oper_status ORDER BY at DESC))[1],
                        min(in_bps), min(out_bps)
                 FROM net_if_samples WHERE at >= ",
                at_ms!(1),
                " AND at < ",
                at_ms!(2),
                " GROUP BY 1, 2"
            )
            .to_owned(),
            Fold::Interfaces1h => concat!(
                "INSERT INTO net_if_1h
                 SELECT interface_id, date_trunc('hour', bucket, 'UTC'), sum(samples),
                        sum(in_bps_sum), max(in_bps_max), sum(out_bps_sum), max(out_bps_max),
                        sum(in_pps_sum), sum(out_pps_sum), sum(in_errors), sum(out_errors),
                        sum(in_discards), sum(out_discards), sum(status_changes),
                        (array_agg(last_status ORDER BY bucket DESC))[1],
                        min(COALESCE(in_bps_min, in_bps_sum / samples)),
                        min(COALESCE(out_bps_min, out_bps_sum / samples))
                 FROM net_if_1m WHERE bucket >= ",
                at_ms!(1),
                " AND bucket < ",
                at_ms!(2),
                " GROUP BY 1, 2"
            )
            .to_owned(),
            Fold::Probes1m => concat!(
                "INSERT INTO net_probe_1m
                 SELECT probe_id, date_trunc('minute', at, 'UTC'), count(*), sum(sent), sum(received),
                        COALESCE(sum(rtt_avg_ms * received) FILTER (WHERE rtt_avg_ms IS NOT NULL), 0),
                        COALESCE(sum(received) FILTER (WHERE rtt_avg_ms IS NOT NULL), 0),
                        min(rtt_min_ms), max(rtt_max_ms), COALESCE(sum(jitter_ms), 0), count(jitter_ms)
                 FROM net_probe_samples WHERE at >= ",
                at_ms!(1),
                " AND at < ",
                at_ms!(2),
                " GROUP BY 1, 2"
            )
            .to_owned(),
            Fold::Probes1h => concat!(
                "INSERT INTO net_probe_1h
                 SELECT probe_id, date_trunc('hour', bucket, 'UTC'), sum(samples), sum(sent), sum(received),
                        sum(rtt_sum), sum(rtt_weight), min(rtt_min_ms), max(rtt_max_ms),
                        sum(jitter_sum), sum(jitter_count)
                 FROM net_probe_1m WHERE bucket >= ",
                at_ms!(1),
                " AND bucket < ",
                at_ms!(2),
                " GROUP BY 1, 2"
            )
            .to_owned(),
            // Every host pair and protocol is kept per (exporter, bucket, interface pair);
            // only the top $3 keys by bytes keep their port, the others' ports fold (ADR 22).
            // Rows without hosts stay one "other" row per interface pair. Written in exporter
            // order, so a device's query reads a few pages per bucket, not one per row.
            Fold::Flows10m | Fold::Flows1h => format!(
                "WITH keyed AS (
                     SELECT exporter_id, date_bin(interval '{size} milliseconds', minute, 'epoch'::timestamptz) AS bucket,
                            in_if, out_if, src, dst, proto, LEAST(sp, dp) AS port,
                            sum(bytes) AS b, sum(packets) AS p, sum(flows) AS f
                     FROM net_flows_1m WHERE minute >= {from} AND minute < {to}
                     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
                 ), ranked AS (
                     SELECT *, row_number() OVER (PARTITION BY exporter_id, bucket ORDER BY b DESC, p DESC) AS rn
                     FROM keyed WHERE src IS NOT NULL
                 )
                 INSERT INTO {table} (exporter_id, {time}, in_if, out_if, src, dst, proto, port, bytes, packets, flows)
                 SELECT exporter_id, bucket, in_if, out_if, src, dst, proto, CASE WHEN rn <= $3 THEN port END,
                        sum(b), sum(p), sum(f)
                 FROM ranked GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
                 UNION ALL
                 SELECT exporter_id, bucket, in_if, out_if, NULL, NULL, NULL, NULL, sum(b), sum(p), sum(f)
                 FROM keyed WHERE src IS NULL
                 GROUP BY 1, 2, 3, 4
                 ORDER BY 1, 2",
                size = self.bucket_ms(),
                from = at_ms!(1),
                to = at_ms!(2),
            ),
            // The exporter rollup of the same bucket size by (namespace, site), as ranked
            // lists (ADR 25): each pair, source, destination, protocol and service port
            // with its rank by bytes and by packets, and the bucket's total. A group of rows
            // without the key's values ("other", folded ports) counts in the total only.
            Fold::FlowSites10m | Fold::FlowSites1h => {
                let (source, source_time) = match self {
                    Fold::FlowSites10m => Fold::Flows10m.target(),
                    _ => Fold::Flows1h.target(),
                };
                format!(
                    "WITH grouped AS (
                         SELECT e.namespace, COALESCE(e.site, '') AS site, r.{source_time} AS bucket,
                                GROUPING(r.src, r.dst, r.proto, r.port) AS g,
                                r.src, r.dst, r.proto, r.port,
                                sum(r.bytes) AS b, sum(r.packets) AS p, sum(r.flows) AS f
                         FROM {source} r JOIN net_exporters e ON e.id = r.exporter_id
                         WHERE r.{source_time} >= {from} AND r.{source_time} < {to}
                         GROUP BY e.namespace, COALESCE(e.site, ''), r.{source_time},
                                  GROUPING SETS ((r.src, r.dst), (r.src), (r.dst), (r.proto), (r.proto, r.port), ())
                     ), keyed AS (
                         SELECT namespace, site, bucket,
                                CASE g WHEN 15 THEN 0 WHEN 3 THEN 1 WHEN 7 THEN 2 WHEN 11 THEN 3 WHEN 13 THEN 4 ELSE 5 END AS dim,
                                src, dst, proto, port, b, p, f
                         FROM grouped
                         WHERE (g & 8 = 8 OR src IS NOT NULL) AND (g & 4 = 4 OR dst IS NOT NULL)
                           AND (g & 2 = 2 OR proto IS NOT NULL) AND (g & 1 = 1 OR port IS NOT NULL)
                     )
                     INSERT INTO {table} (namespace, site, {time}, dim, k, src, dst, proto, port,
                                          bytes, packets, flows, rank_bytes, rank_packets)
                     SELECT namespace, site, bucket, dim, concat_ws(' ', host(src), host(dst), proto, port),
                            src, dst, proto, port, b, p, f,
                            row_number() OVER (PARTITION BY namespace, site, bucket, dim ORDER BY b DESC, p DESC),
                            row_number() OVER (PARTITION BY namespace, site, bucket, dim ORDER BY p DESC, b DESC)
                     FROM keyed",
                    from = at_ms!(1),
                    to = at_ms!(2),
                )
            }
        }
    }
}

/// What one fold step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FoldStep {
    /// Watermark before and after (ms).
    pub from_ms: i64,
    pub to_ms: i64,
    /// Buckets before the old watermark folded again because of late rows.
    pub refolded: usize,
    /// The open bucket was folded provisionally.
    pub provisional: bool,
    /// Rollup rows written.
    pub rows: u64,
    /// More work is waiting (the step was capped).
    pub more: bool,
}

impl Store {
    /// One step of `fold` as of `now_ms`: the closed buckets from the watermark on (at most
    /// `max_buckets`), up to `max_refold` late buckets, and, for hour folds once caught up,
    /// the open bucket (of folds longer than a minute) when it was last folded
    /// `provisional_every_ms` or longer ago.
    #[tracing::instrument(skip(self), fields(fold = fold.name()))]
    pub async fn fold_network(
        &self,
        fold: Fold,
        now_ms: i64,
        max_buckets: i64,
        max_refold: i64,
        provisional_every_ms: i64,
    ) -> Result<FoldStep, StoreError> {
        let size = fold.bucket_ms();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query("begin network rollup transaction"))?;
        // One core and bounded memory: the ingest writers need the rest.
        sqlx::query("SET LOCAL max_parallel_workers_per_gather = 0")
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("limit the network rollup to one core"))?;
        sqlx::query("SET LOCAL work_mem = '64MB'")
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("size the network rollup's memory"))?;
        // The row lock makes operator replicas take turns.
        let (watermark, provisional_at): (i64, Option<i64>) = sqlx::query_as(
            "SELECT (extract(epoch FROM watermark) * 1000)::int8,
                    (extract(epoch FROM provisional_at) * 1000)::int8
             FROM net_rollup_state WHERE fold = $1 FOR UPDATE",
        )
        .bind(fold.name())
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::query("read network rollup watermark"))?;
        let mut target = floor_to(now_ms - FOLD_LAG_MS, size);
        if let Some(parent) = fold.parent() {
            let parent_watermark = watermark_of(&mut tx, parent).await?;
            target = target.min(floor_to(parent_watermark, size));
        }
        let new_watermark = target
            .min(watermark + max_buckets.max(1) * size)
            .max(watermark);

        // Late buckets at or after the old watermark are covered by the range fold.
        let dirty: Vec<i64> = sqlx::query_scalar(concat!(
            "DELETE FROM net_rollup_dirty WHERE fold = $1 AND bucket IN (
                 SELECT bucket FROM net_rollup_dirty WHERE fold = $1 AND bucket < ",
            at_ms!(2),
            " ORDER BY bucket LIMIT $3)
             RETURNING (extract(epoch FROM bucket) * 1000)::int8"
        ))
        .bind(fold.name())
        .bind(new_watermark)
        .bind(max_refold)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::query("take late network buckets"))?;
        let mut refold: Vec<i64> = dirty.iter().copied().filter(|b| *b < watermark).collect();
        refold.sort_unstable();
        let mut ranges: Vec<(i64, i64)> = Vec::new();
        for bucket in &refold {
            match ranges.last_mut() {
                Some((_, end)) if *end == *bucket => *end += size,
                _ => ranges.push((*bucket, bucket + size)),
            }
        }
        if new_watermark > watermark {
            ranges.push((watermark, new_watermark));
        }
        // Buckets longer than a minute are seen by queries before they close.
        let provisional = size > MINUTE_MS
            && new_watermark == target
            && now_ms - FOLD_LAG_MS > new_watermark
            && provisional_at.is_none_or(|at| now_ms - at >= provisional_every_ms);
        if provisional {
            ranges.push((new_watermark, new_watermark + size));
        }
        let mut rows = 0;
        for (from, to) in ranges {
            rows += fold_range(&mut tx, fold, from, to).await?;
        }
        if let Some(child) = fold.child()
            && !refold.is_empty()
        {
            let child_size = child.bucket_ms();
            let buckets: Vec<i64> = refold.iter().map(|b| floor_to(*b, child_size)).collect();
            sqlx::query(
                "INSERT INTO net_rollup_dirty (fold, bucket)
                 SELECT $1, 'epoch'::timestamptz + b * interval '1 millisecond' FROM unnest($2::int8[]) AS b
                 ON CONFLICT DO NOTHING",
            )
            .bind(child.name())
            .bind(&buckets)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("mark network buckets for the next rollup"))?;
        }
        sqlx::query(concat!(
            "UPDATE net_rollup_state SET watermark = ",
            at_ms!(2),
            ", provisional_at = CASE WHEN $3 THEN ",
            at_ms!(4),
            " ELSE provisional_at END WHERE fold = $1"
        ))
        .bind(fold.name())
        .bind(new_watermark)
        .bind(provisional)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("move network rollup watermark"))?;
        tx.commit()
            .await
            .map_err(StoreError::query("commit network rollup transaction"))?;
        Ok(FoldStep {
            from_ms: watermark,
            to_ms: new_watermark,
            refolded: refold.len(),
            provisional,
            rows,
            more: new_watermark < target || dirty.len() as i64 >= max_refold,
        })
    }

    /// Sets the watermark of `fold` (start-up of bulk loads and tests).
    pub async fn set_network_watermark(&self, fold: Fold, ms: i64) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "UPDATE net_rollup_state SET watermark = ",
            at_ms!(2),
            ", provisional_at = NULL WHERE fold = $1"
        ))
        .bind(fold.name())
        .bind(ms)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("set network rollup watermark"))?;
        Ok(())
    }

    /// Forgets late buckets before `before_ms` (their partitions were dropped).
    pub async fn prune_network_dirty(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(concat!(
            "DELETE FROM net_rollup_dirty WHERE bucket < ",
            at_ms!(1)
        ))
        .bind(before_ms)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("prune late network buckets"))?;
        Ok(done.rows_affected())
    }
}

async fn watermark_of(tx: &mut Transaction<'_, Postgres>, fold: Fold) -> Result<i64, StoreError> {
    sqlx::query_scalar(
        "SELECT (extract(epoch FROM watermark) * 1000)::int8 FROM net_rollup_state WHERE fold = $1",
    )
    .bind(fold.name())
    .fetch_one(&mut **tx)
    .await
    .map_err(StoreError::query("read network rollup watermark"))
}

async fn fold_range(
    tx: &mut Transaction<'_, Postgres>,
    fold: Fold,
    from: i64,
    to: i64,
) -> Result<u64, StoreError> {
    // The SQL is built from this module's constants only.
    sqlx::query(sqlx::AssertSqlSafe(fold.delete_sql()))
        .bind(from)
        .bind(to)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("clear network rollup buckets"))?;
    let mut insert = sqlx::query(sqlx::AssertSqlSafe(fold.insert_sql()))
        .bind(from)
        .bind(to);
    if let Some(n) = fold.top_n() {
        insert = insert.bind(n);
    }
    let done = insert
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("fold network rollup"))?;
    Ok(done.rows_affected())
}
