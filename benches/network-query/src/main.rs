//! `cdot-network-query-bench`: latency of `GET /v1/namespaces/{ns}/network/top-talkers`
//! over 24 hours of flow aggregates.
//!
//! The data is what the real path produces: collector batches (one per namespace and
//! minute) go through `Store::write_collector_batch`, the same call the collector route
//! makes after validation, and the rollups are made by the network job's `fold`. The
//! workload: `--exporters` exporters (default 200) spread over `--namespaces` namespaces,
//! each with `--pairs` distinct (source, destination) pairs every minute (default 1,000; 4
//! interface pairs of 250 keys, Zipf-like bytes, service ports from a fixed set, client
//! ports changing every minute) plus an "other" total per interface pair.
//!
//! Writing 24 × 60 full minutes (288 M rows) is not needed to build the hour rollup a 24-h
//! query reads: the last hour before the query's end is written in full (every minute,
//! so the minute table holds what ranges of up to an hour read), and each of the 23 hours
//! before it gets `--sampled-minutes` full minutes whose counts are scaled by
//! 60 / `--sampled-minutes`, so the hour rollup has an hour's volume and the same keys.
//! Queries go through the operator's router in-process (token check, parameters, SQL,
//! JSON), one at a time, with varied namespaces, filters and rankings.
//!
//! The flow rollups' cost is measured as one run of the job at the close of an hour: the
//! last hour and its last 10 minutes folded again from the full minutes.
use std::{
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use cdot_crds::{
    api_token::{ApiToken, Role, hash_token},
    wire::collector::{CollectorBatch, Counts, FlowCount, FlowGroup},
};
use cdot_operator::{
    api::{self, AppState, TokenIndex},
    jobs::network::{self as network_job, NetworkArgs, PROVISIONAL_EVERY_MS},
    metrics::Metrics,
    store::{
        Store,
        network::{
            HOUR_MS, MINUTE_MS, TEN_MINUTES_MS, floor_to,
            rollup::{FOLD_LAG_MS, Fold},
            write::Collector,
        },
    },
};
use clap::Parser;
use sqlx::Connection;
use tower::ServiceExt;

mod samples;

#[derive(Debug, Parser)]
#[command(
    name = "cdot-network-query-bench",
    about = "Top-talkers query latency over a day of flow aggregates"
)]
struct Args {
    /// PostgreSQL server URL with a role that may create databases; a fresh database is
    /// created on it (and dropped at the end unless --keep).
    #[arg(long, env = "CDOT_TEST_DATABASE_URL")]
    admin_url: String,
    #[arg(long, default_value_t = 200)]
    exporters: usize,
    #[arg(long, default_value_t = 10)]
    namespaces: usize,
    /// Distinct (source, destination) pairs per exporter and minute.
    #[arg(long, default_value_t = 1000)]
    pairs: usize,
    /// Hours of data before the query end (the last one written in full).
    #[arg(long, default_value_t = 24)]
    hours: i64,
    /// Full minutes written for each hour but the last (counts scaled to an hour).
    #[arg(long, default_value_t = 2)]
    sampled_minutes: i64,
    /// Top-talker queries over 24 h that are measured.
    #[arg(long, default_value_t = 500)]
    queries: usize,
    /// Top-talker queries over the last hour (10-minute rollups), measured separately.
    #[arg(long, default_value_t = 30)]
    hour_queries: usize,
    /// Keep the database afterwards.
    #[arg(long)]
    keep: bool,
    /// Measure again on a database kept by an earlier run (--keep) instead of loading one.
    #[arg(long)]
    reuse: Option<String>,
    /// Also write every minute's interface polls and probe results (what the console's
    /// network screen shows beside the flows).
    #[arg(long)]
    samples: bool,
    /// After measuring, serve the API over HTTP here until stopped (the console's
    /// first-screen benchmark, `scripts/bench-first-screen`, reads it).
    #[arg(long)]
    serve: Option<std::net::SocketAddr>,
}

/// A small deterministic generator (xorshift64*), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const SERVICE_PORTS: [(u8, u16); 10] = [
    (6, 443),
    (6, 443),
    (6, 443),
    (6, 80),
    (17, 53),
    (6, 22),
    (6, 3389),
    (6, 445),
    (6, 8080),
    (17, 123),
];
const INTERFACE_PAIRS: u32 = 4;

fn exporter_address(ns: usize, e: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        10,
        ns as u8,
        (e / 250) as u8,
        (e % 250 + 1) as u8,
    ))
}

/// One namespace's flow groups of one minute, counts multiplied by `scale`.
fn minute_groups(
    rng: &mut Rng,
    ns: usize,
    exporters: &[usize],
    pairs: usize,
    minute_ms: i64,
    scale: u64,
) -> Vec<FlowGroup> {
    let mut groups = Vec::with_capacity(exporters.len() * INTERFACE_PAIRS as usize);
    let minute_index = (minute_ms / MINUTE_MS) as u64;
    for &e in exporters {
        let exporter = exporter_address(ns, e);
        // Exporters differ in size (a branch office against a data-centre edge).
        let size = 1.0 + (e % 7) as f64;
        let mut by_if: Vec<Vec<FlowCount>> = vec![Vec::new(); INTERFACE_PAIRS as usize];
        for k in 0..pairs {
            let (proto, port) = SERVICE_PORTS[k % SERVICE_PORTS.len()];
            let client_port = 32768 + ((k as u64 * 31 + minute_index) % 28_000) as u16;
            let weight = 2.0e7 * size / ((k + 1) as f64).powf(0.9);
            let bytes = (weight * (0.7 + 0.6 * rng.unit())) as u64 * scale;
            let src = Ipv4Addr::new(10, ns as u8, (e % 250) as u8, (k % 250 + 1) as u8);
            let dst = Ipv4Addr::new(
                198,
                18 + (k / 250) as u8,
                ((k * 7) % 256) as u8,
                ((k * 13) % 254 + 1) as u8,
            );
            by_if[k % INTERFACE_PAIRS as usize].push(FlowCount {
                src: IpAddr::V4(src),
                dst: IpAddr::V4(dst),
                proto,
                sp: client_port,
                dp: port,
                b: bytes,
                p: bytes / 800 + 1,
                f: (1 + k % 5) as u64 * scale,
            });
        }
        for (i, top) in by_if.into_iter().enumerate() {
            let total: u64 = top.iter().map(|c| c.b).sum();
            groups.push(FlowGroup {
                minute_ms,
                exporter,
                in_if: i as u32 + 1,
                out_if: 100,
                top,
                hosts: Vec::new(),
                other: Counts {
                    b: total / 20,
                    p: total / 16_000 + 1,
                    f: 10 * scale,
                },
            });
        }
    }
    groups
}

struct Tenant {
    namespace: String,
    collector: Collector,
    exporters: Vec<usize>,
}

async fn create_database(admin: &str) -> anyhow::Result<(String, String)> {
    let name = format!("cdot_bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .with_context(|| format!("cannot reach PostgreSQL at {admin}"))?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    let base = admin.rsplit_once('/').map_or(admin, |(base, _)| base);
    Ok((format!("{base}/{name}"), name))
}

async fn drop_database(admin: &str, name: &str) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(admin).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// Devices: per namespace a collector and one router per exporter (the exporter's address
/// as management address), over four sites.
async fn create_tenants(store: &Store, args: &Args) -> anyhow::Result<Vec<Tenant>> {
    let mut tenants = Vec::new();
    for ns in 0..args.namespaces {
        let namespace = format!("client-{ns:02}");
        let exporters: Vec<usize> = (0..args.exporters)
            .filter(|e| e % args.namespaces == ns)
            .collect();
        let mut names = vec![format!("collector-{ns:02}")];
        let mut specs = vec![serde_json::json!({ "class": "Collector", "site": "site-0" })];
        for &e in &exporters {
            names.push(format!("rtr-{e:03}"));
            specs.push(serde_json::json!({
                "class": "Router",
                "site": format!("site-{}", e % 4),
                "managementAddresses": [exporter_address(ns, e).to_string()],
            }));
        }
        sqlx::query(
            "INSERT INTO objects (namespace, kind, name, uid, spec, managed_by)
             SELECT $1, 'Device', n, gen_random_uuid(), s, 'manifests'
             FROM unnest($2::text[], $3::jsonb[]) AS u(n, s)",
        )
        .bind(&namespace)
        .bind(&names)
        .bind(&specs)
        .execute(store.pool())
        .await?;
        let uid: uuid::Uuid =
            sqlx::query_scalar("SELECT uid FROM objects WHERE namespace = $1 AND name = $2")
                .bind(&namespace)
                .bind(&names[0])
                .fetch_one(store.pool())
                .await?;
        tenants.push(Tenant {
            collector: Collector {
                namespace: namespace.clone(),
                name: "collector".into(),
                uid,
                site: Some("site-0".into()),
            },
            namespace,
            exporters,
        });
    }
    Ok(tenants)
}

/// Writes every minute of the workload through the collector write path.
async fn load(store: &Store, args: &Args, tenants: &[Tenant], end_ms: i64) -> anyhow::Result<u64> {
    let mut minutes: Vec<(i64, u64)> = Vec::new();
    let sampled = args.sampled_minutes.clamp(1, 60);
    for h in 1..args.hours {
        let hour = end_ms - (h + 1) * HOUR_MS;
        for i in 0..sampled {
            minutes.push((hour + i * (60 / sampled) * MINUTE_MS, (60 / sampled) as u64));
        }
    }
    for m in 0..60 {
        minutes.push((end_ms - HOUR_MS + m * MINUTE_MS, 1));
    }
    let now = jiff::Timestamp::now().as_millisecond();
    let started = Instant::now();
    let mut rows = 0u64;
    let store = Arc::new(store.clone());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Two writers: one per core, as the operator's writers would use them.
    let mut pending = tokio::task::JoinSet::new();
    for (n, (minute, scale)) in minutes.iter().enumerate() {
        for tenant in tenants {
            let batch = CollectorBatch {
                batch_id: uuid::Uuid::new_v4(),
                collector_version: "bench".into(),
                scans: Vec::new(),
                interval_secs: None,
                flows: minute_groups(
                    &mut rng,
                    tenant
                        .namespace
                        .trim_start_matches("client-")
                        .parse()
                        .unwrap_or_default(),
                    &tenant.exporters,
                    args.pairs,
                    *minute,
                    *scale,
                ),
                interfaces: Vec::new(),
                probes: Vec::new(),
            };
            let store = store.clone();
            let collector = tenant.collector.clone();
            pending.spawn(async move {
                store
                    .write_collector_batch(
                        &collector,
                        "bench",
                        &batch,
                        &std::collections::HashMap::new(),
                        now,
                    )
                    .await
            });
            while pending.len() >= 2 {
                if let Some(done) = pending.join_next().await {
                    rows += done??.flow_rows;
                }
            }
        }
        if n % 20 == 19 {
            eprintln!(
                "  {}/{} minutes written, {rows} rows, {:.0} rows/s",
                n + 1,
                minutes.len(),
                rows as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    while let Some(done) = pending.join_next().await {
        rows += done??.flow_rows;
    }
    Ok(rows)
}

struct Query {
    uri: String,
    namespace: String,
}

fn queries(rng: &mut Rng, tenants: &[Tenant], n: usize, end_ms: i64, range_ms: i64) -> Vec<Query> {
    let by = [
        "pairs",
        "pairs",
        "pairs",
        "pairs",
        "pairs",
        "pairs",
        "sources",
        "destinations",
        "protocols",
        "ports",
    ];
    let limits = [10, 10, 25, 100];
    (0..n)
        .map(|_| {
            let tenant = &tenants[rng.below(tenants.len())];
            // Ends anywhere in the last hour of data; long ranges are widened to whole hours.
            let to = end_ms - rng.below(60) as i64 * MINUTE_MS;
            let from = to - range_ms;
            let mut uri = format!(
                "/v1/namespaces/{}/network/top-talkers?from={}&to={}&by={}&rank={}&limit={}",
                tenant.namespace,
                jiff::Timestamp::from_millisecond(from)
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                jiff::Timestamp::from_millisecond(to)
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                by[rng.below(by.len())],
                if rng.below(4) == 0 {
                    "packets"
                } else {
                    "bytes"
                },
                limits[rng.below(limits.len())],
            );
            let e = tenant.exporters[rng.below(tenant.exporters.len())];
            match rng.below(10) {
                0..=3 => {}
                4..=6 => uri.push_str(&format!("&site=site-{}", rng.below(4))),
                7..=8 => uri.push_str(&format!("&device=rtr-{e:03}")),
                _ => uri.push_str(&format!(
                    "&device=rtr-{e:03}&interface={}",
                    1 + rng.below(4)
                )),
            }
            Query {
                uri,
                namespace: tenant.namespace.clone(),
            }
        })
        .collect()
}

async fn measure(
    app: &axum::Router,
    token: &str,
    queries: &[Query],
) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(queries.len());
    for q in queries {
        let request = Request::get(&q.uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())?;
        let started = Instant::now();
        let response = app.clone().oneshot(request).await?;
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
        times.push(started.elapsed());
        if status != StatusCode::OK {
            bail!(
                "{} ({}): {status} {}",
                q.uri,
                q.namespace,
                String::from_utf8_lossy(&body)
            );
        }
    }
    Ok(times)
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let pick = |q: f64| {
        let i = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1;
        times[i].as_secs_f64() * 1000.0
    };
    if times.is_empty() {
        return;
    }
    println!(
        "{what}: {} queries  p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        times.len(),
        pick(0.50),
        pick(0.90),
        pick(0.99),
        pick(1.0)
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.namespaces == 0 || args.exporters < args.namespaces {
        bail!("--exporters must be at least --namespaces (and that at least 1)");
    }
    if let Some(name) = &args.reuse {
        let base = args
            .admin_url
            .rsplit_once('/')
            .map_or(args.admin_url.as_str(), |(base, _)| base);
        return run(&args, &format!("{base}/{name}")).await;
    }
    let (url, name) = create_database(&args.admin_url).await?;
    let result = run(&args, &url).await;
    if !args.keep {
        drop_database(&args.admin_url, &name).await?;
    } else {
        println!("kept database {name}");
    }
    result
}

async fn run(args: &Args, url: &str) -> anyhow::Result<()> {
    let store = Store::connect(url, 8).await?;
    let metrics = Arc::new(Metrics::default());
    if args.reuse.is_some() {
        // The load ended at the start of an hour: its last full minute tells which.
        let last: i64 = sqlx::query_scalar(
            "SELECT (extract(epoch FROM max(minute)) * 1000)::int8 FROM net_flows_1m",
        )
        .fetch_one(store.pool())
        .await?;
        let tenants = existing_tenants(&store).await?;
        return query_phase(args, &store, metrics, &tenants, last + MINUTE_MS).await;
    }
    let now = jiff::Timestamp::now().as_millisecond();
    // Queries end at the start of the current hour: the data before it is complete.
    let end = floor_to(now, HOUR_MS);
    network_job::maintain(&store, &metrics, now, &NetworkArgs::default()).await?;
    let tenants = create_tenants(&store, args).await?;
    for fold in Fold::ALL {
        store
            .set_network_watermark(fold, end - args.hours * HOUR_MS)
            .await?;
    }
    println!(
        "workload: {} exporters in {} namespaces, {} pairs per exporter and minute, {} h ({} full minutes in the last hour, {} per earlier hour scaled x{})",
        args.exporters,
        args.namespaces,
        args.pairs,
        args.hours,
        60,
        args.sampled_minutes,
        60 / args.sampled_minutes.clamp(1, 60)
    );
    let started = Instant::now();
    let rows = load(&store, args, &tenants, end).await?;
    println!(
        "wrote {rows} minute rows through Store::write_collector_batch in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    if args.samples {
        let started = Instant::now();
        let rows = samples::load(&store, &tenants, args.hours, end).await?;
        println!(
            "wrote {rows} interface polls and probe results in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    let started = Instant::now();
    network_job::fold(&store, now, PROVISIONAL_EVERY_MS).await?;
    let mut counts = Vec::new();
    for table in [
        "net_flows_10m",
        "net_flows_1h",
        "net_flows_site_10m",
        "net_flows_site_1h",
    ] {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(store.pool())
                .await?;
        counts.push(format!("{table} {n}"));
    }
    println!(
        "folded the rollups with jobs::network::fold in {:.0} s: {} rows",
        started.elapsed().as_secs_f64(),
        counts.join(", ")
    );
    closing_run(&store, end).await?;
    sqlx::query("VACUUM ANALYZE").execute(store.pool()).await?;
    query_phase(args, &store, metrics, &tenants, end).await
}

/// Times one run of the network job at the close of the hour ending at `end`: the flow
/// folds behind by their last bucket (the hour, its last 10 minutes), everything else
/// caught up. Prints each fold's time.
async fn closing_run(store: &Store, end: i64) -> anyhow::Result<()> {
    let flow_folds = [
        (Fold::Flows10m, TEN_MINUTES_MS),
        (Fold::Flows1h, HOUR_MS),
        (Fold::FlowSites10m, TEN_MINUTES_MS),
        (Fold::FlowSites1h, HOUR_MS),
    ];
    for (fold, bucket) in flow_folds {
        store.set_network_watermark(fold, end - bucket).await?;
    }
    let started = Instant::now();
    let mut times = Vec::new();
    for (fold, _) in flow_folds {
        let step_started = Instant::now();
        // No provisional fold: it was never folded "now" at that time.
        let step = store
            .fold_network(fold, end + FOLD_LAG_MS, 1, 0, i64::MAX)
            .await?;
        times.push(format!(
            "{} {:.1} s ({} rows)",
            fold.name(),
            step_started.elapsed().as_secs_f64(),
            step.rows
        ));
    }
    println!(
        "rollup run at the close of an hour: {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        times.join(", ")
    );
    Ok(())
}

/// Namespaces and exporters of a kept database.
async fn existing_tenants(store: &Store) -> anyhow::Result<Vec<Tenant>> {
    let rows: Vec<(String, uuid::Uuid, Vec<String>)> = sqlx::query_as(
        "SELECT namespace, collector_uid, array_agg(device_name ORDER BY device_name)
         FROM net_exporters GROUP BY 1, 2 ORDER BY 1",
    )
    .fetch_all(store.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(namespace, uid, routers)| Tenant {
            collector: Collector {
                namespace: namespace.clone(),
                name: "collector".into(),
                uid,
                site: Some("site-0".into()),
            },
            namespace,
            exporters: routers
                .iter()
                .filter_map(|r| r.strip_prefix("rtr-")?.parse().ok())
                .collect(),
        })
        .collect())
}

async fn query_phase(
    args: &Args,
    store: &Store,
    metrics: Arc<Metrics>,
    tenants: &[Tenant],
    end: i64,
) -> anyhow::Result<()> {
    let state = AppState::new(store.clone(), metrics);
    let token = "cdot_bench_viewer";
    state.replace_tokens(TokenIndex::new(&[ApiToken {
        name: "bench".into(),
        namespace: "cdot-system".into(),
        token_sha256: hash_token(token),
        role: Role::Viewer,
        namespaces: tenants.iter().map(|t| t.namespace.clone()).collect(),
    }]));
    let app = api::app(state, Duration::from_secs(60));
    let mut rng = Rng(42);
    let warmup = queries(&mut rng, tenants, 20, end, 24 * HOUR_MS);
    measure(&app, token, &warmup).await?;
    let day = queries(&mut rng, tenants, args.queries, end, 24 * HOUR_MS);
    let times = measure(&app, token, &day).await?;
    report("top talkers, 24 h (hour rollups)", times.clone());
    // Without a device the ranked site lists answer; with one, that exporter's rollup.
    let (with_device, without): (Vec<_>, Vec<_>) = day
        .iter()
        .zip(times.iter().copied())
        .partition(|(q, _)| q.uri.contains("&device="));
    report(
        "  of which without a device (site lists)",
        without.into_iter().map(|(_, t)| t).collect(),
    );
    report(
        "  of which with a device (exporter rollup)",
        with_device.into_iter().map(|(_, t)| t).collect(),
    );
    let mut slowest: Vec<(&Query, Duration)> = day.iter().zip(times.iter().copied()).collect();
    slowest.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
    for (q, t) in slowest.iter().take(5) {
        println!("  slow: {:.1} ms {}", t.as_secs_f64() * 1e3, q.uri);
    }
    let hour = queries(&mut rng, tenants, args.hour_queries, end, HOUR_MS);
    report(
        "top talkers, 1 h (10-minute rollups)",
        measure(&app, token, &hour).await?,
    );
    if let Some(addr) = args.serve {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        // The script waits for this line.
        println!("serving the API at http://{addr} (token {token})");
        // Stopped by SIGTERM or Ctrl-C, so the database is still dropped afterwards.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            })
            .await?;
    }
    Ok(())
}
