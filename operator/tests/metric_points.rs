//! Metric samples stored one row per device and instant, folded into one rollup row per
//! device and minute, and read back through `series_points` (ADR 8); and the migration that
//! moved the one-row-per-sample tables into that layout.
mod support;

use std::{borrow::Cow, collections::BTreeMap, path::Path};

use cdot_operator::{
    jobs::{self, TimeseriesArgs},
    metrics::Metrics,
    store::{
        Store,
        partitions::{day_of, partition_name},
        timeseries::{
            BatchRows, LATE_SAMPLE_MS, MINUTE_MS, Partitioned, Point, PointSource, SeriesKey,
        },
    },
};
use sqlx::{Connection, migrate::Migrator};
use support::TestDb;
use uuid::Uuid;

/// (series, time ms, value) of every sample written.
type Sample = (i64, i64, f64);

async fn store() -> (TestDb, Store) {
    let db = TestDb::create().await;
    let store = Store::connect(&db.url, 4)
        .await
        .expect("connect and migrate");
    jobs::prepare(&store, &Metrics::default(), &TimeseriesArgs::default())
        .await
        .expect("partitions");
    (db, store)
}

async fn series(store: &Store, device: Uuid, metrics: &[(&'static str, &str)]) -> Vec<i64> {
    let keys: Vec<SeriesKey> = metrics
        .iter()
        .map(|(metric, mount)| SeriesKey {
            device_uid: device,
            metric,
            labels: if mount.is_empty() {
                BTreeMap::new()
            } else {
                BTreeMap::from([("mount".to_owned(), (*mount).to_owned())])
            },
        })
        .collect();
    store.resolve_series(&keys).await.expect("series")
}

/// Writes one batch; true when it was new.
async fn write(store: &Store, device: Uuid, batch: Uuid, samples: &[Sample], now: i64) -> bool {
    let ids: Vec<i64> = samples.iter().map(|s| s.0).collect();
    let times: Vec<i64> = samples.iter().map(|s| s.1).collect();
    let values: Vec<f64> = samples.iter().map(|s| s.2).collect();
    let rows = BatchRows {
        device_uid: device,
        batch_id: batch,
        series_ids: &ids,
        times_ms: &times,
        values: &values,
    };
    let new = store
        .write_batches(&[rows], now - LATE_SAMPLE_MS)
        .await
        .expect("write");
    new == [true]
}

/// What `series_points` must return, computed from the samples: avg, min and max by step.
fn expected(samples: &[Sample], series: &[i64], from: i64, to: i64, step: i64) -> Vec<Point> {
    let mut buckets: BTreeMap<(i64, i64), Vec<f64>> = BTreeMap::new();
    for (id, t, v) in samples {
        if series.contains(id) && *t >= from && *t < to {
            buckets.entry((*id, t / step * step)).or_default().push(*v);
        }
    }
    buckets
        .into_iter()
        .map(|((id, ts), vs)| {
            let sum: f64 = vs.iter().sum();
            let min = vs.iter().copied().fold(f64::INFINITY, f64::min);
            let max = vs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (id, ts, sum / vs.len() as f64, min, max)
        })
        .collect()
}

async fn points(store: &Store, series: &[i64], from: i64, to: i64, step: i64) -> Vec<Point> {
    let source = if step >= MINUTE_MS {
        PointSource::Rollup
    } else {
        PointSource::Raw
    };
    store
        .series_points(series, from, to, step, source)
        .await
        .expect("points")
}

/// Every step (raw and rollup) over all series, one series and two series of two devices.
async fn check(
    store: &Store,
    all: &[i64],
    (from, to): (i64, i64),
    label: &str,
    samples: &[Sample],
) {
    for step in [10_000, 30_000, MINUTE_MS, 2 * MINUTE_MS] {
        for ids in [all.to_vec(), vec![all[0]], vec![all[1], all[3]]] {
            assert_eq!(
                points(store, &ids, from, to, step).await,
                expected(samples, &ids, from, to, step),
                "{label}: step {step}, series {ids:?}"
            );
        }
    }
}

async fn count(store: &Store, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(store.pool())
        .await
        .expect("count")
}

#[tokio::test]
async fn batches_fold_into_device_minutes_and_read_back_raw_and_rolled_up() {
    let (_db, store) = store().await;
    let now = jiff::Timestamp::now().as_millisecond();
    let m1 = (now - 20 * MINUTE_MS).div_euclid(MINUTE_MS) * MINUTE_MS;
    let m2 = m1 + MINUTE_MS;
    sqlx::query(
        "UPDATE metric_rollup_state SET watermark = 'epoch'::timestamptz + $1 * interval '1 millisecond'",
    )
    .bind(m1 - 5 * MINUTE_MS)
    .execute(store.pool())
    .await
    .expect("watermark");
    let (web, db) = (Uuid::new_v4(), Uuid::new_v4());
    let w = series(&store, web, &[("cpu", ""), ("disk", "/"), ("disk", "/var")]).await;
    let d = series(&store, db, &[("cpu", "")]).await;

    // Batches carrying several instants (a spool replay), series in any order.
    let mut samples: Vec<Sample> = Vec::new();
    let first: Vec<Sample> = (0..6)
        .flat_map(|i| {
            let t = m1 + i * 10_000;
            let v = i as f64;
            [(w[2], t, 90.0), (w[0], t, v), (w[1], t, 50.0 + v)]
        })
        .collect();
    let second: Vec<Sample> = [(w[0], m2, 10.0), (w[0], m2 + 20_000, 30.0), (w[1], m2, 7.5)].into();
    let other: Vec<Sample> = [(d[0], m1 + 5_000, 3.0), (d[0], m2 + 5_000, 4.0)].into();
    let batch = Uuid::new_v4();
    assert!(write(&store, web, batch, &first, now).await);
    assert!(write(&store, web, Uuid::new_v4(), &second, now).await);
    assert!(
        write(&store, db, batch, &other, now).await,
        "batch ids are per device"
    );
    assert!(
        !write(&store, web, batch, &first, now).await,
        "a retried batch is stored once"
    );
    samples.extend(first.iter().chain(&second).chain(&other));
    // One row per device and instant: web 6 + 2, db 2.
    assert_eq!(
        count(&store, "SELECT count(*) FROM metric_points").await,
        10
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM metric_points, unnest(series_ids)"
        )
        .await,
        samples.len() as i64
    );

    let (from, to) = (m1 - MINUTE_MS, m2 + 2 * MINUTE_MS);
    let all: Vec<i64> = w.iter().chain(&d).copied().collect();
    // Before the fold, minute steps come from raw rows (after the watermark).
    check(&store, &all, (from, to), "before the fold", &samples).await;

    let folded = store.fold_rollups(now, 100, 30).await.expect("fold");
    assert_eq!(
        (folded.to_ms, folded.refolded, folded.rows),
        ((now - MINUTE_MS).div_euclid(MINUTE_MS) * MINUTE_MS, 0, 7),
        "web folds 3 series in m1 and 2 in m2, db 1 in each: {folded:?}"
    );
    assert_eq!(
        count(&store, "SELECT count(*) FROM metric_points_1m").await,
        4,
        "one row per device and minute"
    );
    check(&store, &all, (from, to), "after the fold", &samples).await;
    let again = store.fold_rollups(now, 100, 30).await.expect("fold");
    assert_eq!((again.rows, again.refolded), (0, 0));

    // A late sample lands in a folded minute: raw sees it at once, the rollup after the refold.
    let late: Vec<Sample> = vec![(w[0], m1 + 55_000, 100.0), (w[0], m1 + 55_000, -2.0)];
    assert!(write(&store, web, Uuid::new_v4(), &late, now).await);
    assert_eq!(
        count(&store, "SELECT count(*) FROM metric_rollup_dirty").await,
        1
    );
    let with_late: Vec<Sample> = samples.iter().chain(&late).copied().collect();
    assert_eq!(
        points(&store, &[w[0]], from, to, MINUTE_MS).await,
        expected(&samples, &[w[0]], from, to, MINUTE_MS),
        "the folded minute holds until it is folded again"
    );
    assert_eq!(
        points(&store, &[w[0]], from, to, 10_000).await,
        expected(&with_late, &[w[0]], from, to, 10_000)
    );
    let refold = store.fold_rollups(now, 100, 30).await.expect("fold");
    assert_eq!((refold.refolded, refold.rows), (1, 4), "{refold:?}");
    assert_eq!(
        count(&store, "SELECT count(*) FROM metric_rollup_dirty").await,
        0
    );
    check(&store, &all, (from, to), "after the refold", &with_late).await;
}

#[tokio::test]
async fn the_migration_moves_samples_and_rollups_into_the_new_layout() {
    let db = TestDb::create().await;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let mut before = Migrator::new(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/migrations"
    )))
    .await
    .expect("migrations");
    before.migrations = Cow::Owned(
        before
            .migrations
            .iter()
            .filter(|m| m.version < 6)
            .cloned()
            .collect(),
    );
    before.run(&mut conn).await.expect("migrations before 0006");

    // A day of the old layout: two series of one device, two samples each (one repeated
    // instant), and a folded minute of each series.
    let day_ms = 1_763_596_800_000; // 2025-11-20T00:00:00Z
    let device = Uuid::new_v4();
    for sql in [
        "CREATE TABLE metric_samples_p20251120 PARTITION OF metric_samples
         FOR VALUES FROM ('2025-11-20 00:00:00+00') TO ('2025-11-21 00:00:00+00')",
        "CREATE TABLE metric_rollup_1m_p20251120 PARTITION OF metric_rollup_1m
         FOR VALUES FROM ('2025-11-20 00:00:00+00') TO ('2025-11-21 00:00:00+00')",
        "UPDATE metric_rollup_state SET watermark = '2025-11-20 00:01:00+00'",
    ] {
        sqlx::query(sql).execute(&mut conn).await.expect(sql);
    }
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO metric_series (device_uid, metric, labels)
         VALUES ($1, 'cpu', '{}'), ($1, 'load', '{}') RETURNING id",
    )
    .bind(device)
    .fetch_all(&mut conn)
    .await
    .expect("series");
    let samples: Vec<Sample> = vec![
        (ids[1], day_ms + 10_000, 0.5),
        (ids[0], day_ms + 10_000, 20.0),
        (ids[0], day_ms + 10_000, 22.0),
        (ids[0], day_ms + 40_000, 30.0),
        (ids[1], day_ms + 40_000, 1.5),
    ];
    for (id, t, v) in &samples {
        sqlx::query(
            "INSERT INTO metric_samples (series_id, at, value)
             VALUES ($1, 'epoch'::timestamptz + $2 * interval '1 millisecond', $3)",
        )
        .bind(id)
        .bind(t)
        .bind(v)
        .execute(&mut conn)
        .await
        .expect("sample");
    }
    sqlx::query(
        "INSERT INTO metric_rollup_1m (series_id, bucket, min, max, sum, count)
         SELECT series_id, date_trunc('minute', at, 'UTC'), min(value), max(value), sum(value), count(*)
         FROM metric_samples GROUP BY 1, 2",
    )
    .execute(&mut conn)
    .await
    .expect("rollup");
    conn.close().await.expect("close");

    let store = Store::connect(&db.url, 2).await.expect("migrate to 0006");
    let day = day_of(day_ms);
    for table in Partitioned::ALL {
        let names: Vec<String> = store
            .partitions(table)
            .await
            .expect("partitions")
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(names, [partition_name(table, day)]);
    }
    let gone: i64 = count(
        &store,
        "SELECT count(*) FROM pg_class WHERE relname LIKE 'metric_samples%' OR relname LIKE 'metric_rollup_1m%'",
    )
    .await;
    assert_eq!(gone, 0, "the old tables are dropped");
    assert_eq!(count(&store, "SELECT count(*) FROM metric_points").await, 2);
    let (from, to) = (day_ms, day_ms + MINUTE_MS);
    for step in [10_000, 30_000, MINUTE_MS] {
        assert_eq!(
            points(&store, &ids, from, to, step).await,
            expected(&samples, &ids, from, to, step),
            "step {step}"
        );
    }
    // The minute is served from the moved rollup row (the watermark is past it).
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM metric_points_1m, unnest(series_ids)"
        )
        .await,
        2
    );
    assert_eq!(
        store.rollup_watermark().await.expect("watermark"),
        day_ms + MINUTE_MS
    );
}
