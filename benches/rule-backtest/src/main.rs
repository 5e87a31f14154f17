//! `cdot-rule-backtest-bench`: how long `POST /v1/namespaces/{ns}/alertrules:backtest`
//! takes over 30 days of 1-minute rollups of 1,000 devices (the alerting issue asks for
//! under 5 s).
//!
//! The minute tier is written by SQL in the shape and order the minute fold writes (one
//! row per device and minute, minute by minute, four series: cpu, disk, load1, memory, six
//! samples a minute): 43.2 M rows for the defaults, which the real fold would need hours to
//! make from raw samples.
//! The hour tier is made by the real hour fold (`Store::fold_hours`), and its time is
//! reported too. CPU follows a daily curve with noise; each device has three incidents of
//! 10 to 90 minutes at 92-100 %, and 2 % of the devices run a busy week at 91-94 %, so
//! the rules below fire thousands of times and some alerts stay open for days.
//!
//! Backtests go through the operator's router in-process (token check, body, validation,
//! index snapshot, SQL, replay, JSON), each rule `--runs` times; `--cold` drops the OS page
//! cache before each run (root only), so the first read comes from disk.
use std::{sync::Arc, time::Duration, time::Instant};

use anyhow::{Context, bail};
use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use cdot_crds::{
    api_token::{ApiToken, Role, hash_token},
    kind::Kind,
};
use cdot_operator::{
    api::{self, AppState, TokenIndex},
    jobs::{self, TimeseriesArgs},
    metrics::Metrics,
    store::{
        Store,
        partitions::day_of,
        timeseries::{HOUR_MS, MINUTE_MS, Partitioned, SeriesKey},
    },
};
use clap::Parser;
use rand::{Rng, SeedableRng, rngs::StdRng};
use sqlx::Connection;
use tower::ServiceExt;

const DAY_MS: i64 = 24 * HOUR_MS;
const NAMESPACE: &str = "acme";
/// In the order the series dictionary gives them ids (rows keep ids ascending).
const METRICS: [&str; 4] = ["cpu", "disk", "load1", "memory"];

#[derive(Debug, Parser)]
#[command(
    name = "cdot-rule-backtest-bench",
    about = "Backtest time over 30 days of 1-minute rollups"
)]
struct Args {
    /// PostgreSQL server URL with a role that may create databases; a fresh database is
    /// created on it (and dropped at the end unless --keep).
    #[arg(long, env = "CDOT_TEST_DATABASE_URL")]
    admin_url: String,
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    #[arg(long, default_value_t = 30)]
    days: i64,
    /// Backtests of each rule that are timed.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Drop the OS page cache before each run (needs root).
    #[arg(long)]
    cold: bool,
    /// Keep the database afterwards.
    #[arg(long)]
    keep: bool,
    /// Measure again on a database kept by an earlier run (--keep) instead of loading one.
    #[arg(long)]
    reuse: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let base = args
        .admin_url
        .rsplit_once('/')
        .map_or(args.admin_url.as_str(), |(base, _)| base)
        .to_owned();
    if let Some(name) = &args.reuse {
        let store = Store::connect(&format!("{base}/{name}"), 16).await?;
        return measure(&args, &store).await;
    }
    let name = format!("cdot_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&args.admin_url)
        .await
        .with_context(|| format!("cannot reach PostgreSQL at {}", args.admin_url))?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    let result = async {
        let store = Store::connect(&format!("{base}/{name}"), 16).await?;
        load(&args, &store).await?;
        measure(&args, &store).await
    }
    .await;
    if args.keep {
        println!("kept database {name} (measure again with --reuse {name})");
    } else {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await?;
    }
    result
}

/// The devices, their series, 30 days of minutes and the hour tier folded from them.
async fn load(args: &Args, store: &Store) -> anyhow::Result<()> {
    let now = jiff::Timestamp::now().as_millisecond();
    let end = now.div_euclid(HOUR_MS) * HOUR_MS - HOUR_MS;
    let start = end - args.days * DAY_MS;
    jobs::prepare(store, &Metrics::default(), &TimeseriesArgs::default()).await?;
    for day in day_of(start)..=day_of(end) {
        for table in [Partitioned::Rollup, Partitioned::Hourly] {
            store.create_partition(table, day).await?;
        }
    }
    let names: Vec<String> = (0..args.devices).map(|i| format!("srv-{i:04}")).collect();
    sqlx::query(
        "INSERT INTO objects (namespace, kind, name, uid, labels, spec, managed_by)
         SELECT $1, 'Device', n, gen_random_uuid(), '{\"role\": \"server\"}', '{\"class\": \"Server\"}', 'manifests'
         FROM unnest($2::text[]) AS u(n)",
    )
    .bind(NAMESPACE)
    .bind(&names)
    .execute(store.pool())
    .await?;
    // The channel the rules notify: resolved notifications count too.
    sqlx::query(
        "INSERT INTO objects (namespace, kind, name, uid, spec, managed_by)
         VALUES ($1, 'NotificationChannel', 'noc', gen_random_uuid(),
                 '{\"type\": \"Webhook\", \"sendResolved\": true, \"webhook\": {\"url\": \"https://noc.example.net/hook\"}}', 'manifests')",
    )
    .bind(NAMESPACE)
    .execute(store.pool())
    .await?;
    let uids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT uid FROM objects WHERE kind = 'Device' ORDER BY name")
            .fetch_all(store.pool())
            .await?;
    // Series in the order of METRICS per device; rows keep ids ascending, as the writers do.
    let mut ids = Vec::with_capacity(uids.len() * METRICS.len());
    for uid in &uids {
        let keys = METRICS.map(|metric| SeriesKey {
            device_uid: *uid,
            metric,
            labels: if metric == "disk" {
                [("mount".to_owned(), "/".to_owned())].into()
            } else {
                Default::default()
            },
        });
        let got = store.resolve_series(&keys).await?;
        if !got.is_sorted() {
            bail!("series ids of {uid} are not ascending: {got:?}");
        }
        ids.extend(got);
    }

    // Incidents: three per device in disjoint thirds of the range, a busy week for 2 %.
    let mut rng = StdRng::seed_from_u64(42);
    let (mut inc_uid, mut inc_from, mut inc_to, mut inc_level) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let third = args.days * DAY_MS / 3;
    for (i, uid) in uids.iter().enumerate() {
        if i % 50 == 7 {
            let from = start + rng.random_range(0..args.days.max(8) - 7) * DAY_MS;
            inc_uid.push(*uid);
            inc_from.push(from);
            inc_to.push(from + 7 * DAY_MS);
            inc_level.push(91.0);
            continue;
        }
        for k in 0..3 {
            let from = start
                + k * third
                + rng.random_range(0..third - 2 * HOUR_MS) / MINUTE_MS * MINUTE_MS;
            inc_uid.push(*uid);
            inc_from.push(from);
            inc_to.push(from + rng.random_range(10..=90) * MINUTE_MS);
            inc_level.push(92.0 + rng.random_range(0.0..6.0));
        }
    }
    sqlx::query(
        "CREATE TABLE bench_incidents AS
         SELECT * FROM unnest($1::uuid[], $2::int8[], $3::int8[], $4::float8[]) AS u(uid, f, t, level)",
    )
    .bind(&inc_uid)
    .bind(&inc_from)
    .bind(&inc_to)
    .bind(&inc_level)
    .execute(store.pool())
    .await?;

    let started = Instant::now();
    let phases: Vec<f64> = (0..uids.len())
        .map(|_| rng.random_range(0.0..std::f64::consts::TAU))
        .collect();
    for day in 0..args.days {
        let from = start + day * DAY_MS;
        sqlx::query(
            "INSERT INTO metric_points_1m (device_uid, bucket, series_ids, mins, maxs, sums, counts)
             SELECT d.uid, 'epoch'::timestamptz + b.t * interval '1 millisecond', d.ids,
                    ARRAY[v.cpu - 4 * random(), v.disk, v.cpu / 25 - 0.2, v.mem - 1],
                    ARRAY[least(100, v.cpu + 4 * random()), v.disk, v.cpu / 25 + 0.2, v.mem + 1],
                    ARRAY[v.cpu * 6, v.disk * 6, v.cpu / 25 * 6, v.mem * 6],
                    ARRAY[6, 6, 6, 6]::int8[]
             FROM (SELECT u.uid, u.phase, ids.ids, u.k
                   FROM unnest($1::uuid[], $2::float8[]) WITH ORDINALITY AS u(uid, phase, k)
                   CROSS JOIN LATERAL (SELECT ($3::int8[])[(u.k - 1) * 4 + 1:(u.k - 1) * 4 + 4] AS ids) AS ids) AS d
             CROSS JOIN generate_series($4::int8, $4::int8 + 86400000 - 60000, 60000) AS b(t)
             LEFT JOIN bench_incidents i ON i.uid = d.uid AND b.t >= i.f AND b.t < i.t
             CROSS JOIN LATERAL (SELECT
                 coalesce(i.level + 3 * random(),
                          greatest(1, 35 + 20 * sin(d.phase + b.t / 86400000.0 * 6.2832) + 10 * (random() - 0.5))) AS cpu,
                 55 + 10 * random() AS mem,
                 40 + (d.k % 40) AS disk) AS v
             -- Minute by minute, as the fold writes them: a device's minutes are
             -- scattered over the day's pages, not side by side.
             ORDER BY b.t, d.uid",
        )
        .bind(&uids)
        .bind(&phases)
        .bind(&ids)
        .bind(from)
        .execute(store.pool())
        .await
        .with_context(|| format!("writing day {day}"))?;
    }
    let rows = uids.len() as i64 * args.days * 1440;
    let written = started.elapsed();
    println!(
        "minute tier: {rows} rows ({} devices x {} days x 1,440 minutes, {} series each) written in {:.1} s",
        uids.len(),
        args.days,
        METRICS.len(),
        written.as_secs_f64()
    );

    // The hour tier, by the real fold: minutes are "folded" up to the end, hours from start.
    sqlx::query(
        "UPDATE metric_rollup_state SET watermark = 'epoch'::timestamptz + $1::int8 * interval '1 millisecond'",
    )
    .bind(end)
    .execute(store.pool())
    .await?;
    sqlx::query(
        "UPDATE metric_rollup_1h_state SET watermark = 'epoch'::timestamptz + $1::int8 * interval '1 millisecond'",
    )
    .bind(start)
    .execute(store.pool())
    .await?;
    sqlx::query("VACUUM ANALYZE metric_points_1m")
        .execute(store.pool())
        .await?;
    let started = Instant::now();
    let mut device_hours = 0;
    loop {
        let summary = store.fold_hours(Duration::from_secs(10)).await?;
        device_hours += summary.rows;
        if !summary.more {
            break;
        }
    }
    let folded = started.elapsed().as_secs_f64();
    sqlx::query("VACUUM ANALYZE metric_points_1h")
        .execute(store.pool())
        .await?;
    println!(
        "hour tier: {device_hours} device-hours folded in {folded:.1} s ({:.0} device-hours/s, one core)",
        device_hours as f64 / folded
    );
    Ok(())
}

struct Case {
    name: &'static str,
    about: &'static str,
    spec: serde_json::Value,
}

fn cases() -> Vec<Case> {
    use serde_json::json;
    vec![
        Case {
            name: "cpu-high",
            about: "avg 5m > 90 for 5m, resolve < 70 for 2m",
            spec: json!({
                "selector": {"matchLabels": {"role": "server"}}, "metric": "cpu",
                "reduce": {"function": "avg", "window": "5m"},
                "condition": {"op": ">", "threshold": 90}, "for": "5m",
                "resolve": {"threshold": 70, "for": "2m"}, "repeatInterval": "4h",
                "channels": ["noc"],
            }),
        },
        Case {
            name: "cpu-spiky",
            about: "max 1m > 85, no for (fires on every incident minute's peak)",
            spec: json!({
                "metric": "cpu", "reduce": {"function": "max", "window": "1m"},
                "condition": {"op": ">", "threshold": 85}, "channels": ["noc"],
            }),
        },
        Case {
            name: "memory-full",
            about: "avg 10m > 95 (never breaches: the hour tier rules out every hour)",
            spec: json!({
                "metric": "memory", "reduce": {"function": "avg", "window": "10m"},
                "condition": {"op": ">", "threshold": 95},
            }),
        },
    ]
}

async fn measure(args: &Args, store: &Store) -> anyhow::Result<()> {
    let (from, to): (i64, i64) = sqlx::query_as(
        "SELECT (extract(epoch FROM min(bucket)) * 1000)::int8, (extract(epoch FROM max(bucket)) * 1000)::int8 + 60000
         FROM metric_points_1h",
    )
    .fetch_one(store.pool())
    .await?;
    let to = to + HOUR_MS - MINUTE_MS;
    let state = AppState::new(store.clone(), Arc::new(Metrics::default()));
    let mut objects = store.objects_of_kind(Kind::Device).await?;
    objects.extend(store.objects_of_kind(Kind::NotificationChannel).await?);
    state.index.replace(&objects);
    let token = "cdot_bench_viewer";
    state.replace_tokens(TokenIndex::new(&[ApiToken {
        name: "bench".into(),
        namespace: "cdot-system".into(),
        token_sha256: hash_token(token),
        role: Role::Viewer,
        namespaces: vec![NAMESPACE.into()],
    }]));
    let app = api::app(state, Duration::from_secs(120));
    let rfc3339 = |ms: i64| -> anyhow::Result<String> {
        Ok(jiff::Timestamp::from_millisecond(ms)?.to_string())
    };
    println!(
        "range {} .. {} ({:.1} days)",
        rfc3339(from)?,
        rfc3339(to)?,
        (to - from) as f64 / DAY_MS as f64
    );
    for case in cases() {
        let body = serde_json::json!({
            "rule": {
                "apiVersion": "rmm.cdot.io/v1alpha1", "kind": "AlertRule",
                "metadata": {"name": case.name}, "spec": case.spec,
            },
            "from": rfc3339(from)?, "to": rfc3339(to)?,
        });
        let mut times = Vec::new();
        let mut last = serde_json::Value::Null;
        for _ in 0..args.runs.max(1) {
            if args.cold {
                drop_caches()?;
            }
            let request = Request::post(format!("/v1/namespaces/{NAMESPACE}/alertrules:backtest"))
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))?;
            let started = Instant::now();
            let response = app.clone().oneshot(request).await?;
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
            times.push(started.elapsed().as_secs_f64());
            if status != StatusCode::OK {
                bail!(
                    "{}: {status}: {}",
                    case.name,
                    String::from_utf8_lossy(&bytes)
                );
            }
            last = serde_json::from_slice(&bytes)?;
        }
        let t = &last["totals"];
        println!(
            "{:<12} {:<58} runs {}: {} s; {} series, {} of {} series-minutes replayed; fired {} on {} devices, {} pending only, {} open at end, {} notifications",
            case.name,
            case.about,
            times.len(),
            times
                .iter()
                .map(|t| format!("{t:.2}"))
                .collect::<Vec<_>>()
                .join(" / "),
            last["series"],
            last["minutesReplayed"],
            last["series"].as_u64().unwrap_or(0) * ((to - from) / MINUTE_MS) as u64,
            t["fired"],
            t["devicesFired"],
            t["pendingOnly"],
            t["openAtEnd"],
            t["notifications"],
        );
    }
    Ok(())
}

fn drop_caches() -> anyhow::Result<()> {
    std::process::Command::new("sync").status()?;
    std::fs::write("/proc/sys/vm/drop_caches", "3")
        .context("--cold needs root to write /proc/sys/vm/drop_caches")
}
