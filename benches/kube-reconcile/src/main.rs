//! Reconcile throughput of Kubernetes mode, against the API emulator (no API server can run
//! on this machine; the emulator is PyPI's kmock with our shim, so its own speed is part of
//! the figure).
//!
//! Starts the emulator, a fresh PostgreSQL database and `cdot-operator run`; creates
//! `--devices` Devices and `--rules` AlertRules (plus one NotificationChannel per namespace)
//! through the API, marks each Device's agent as reporting (a heartbeat row, as an agent's
//! report would write), and measures the time from the first create until every object has
//! `status.observedGeneration == metadata.generation` and `Ready=True`. Then it counts the
//! operator's reconciles over `--idle` with nothing changing.
use std::{
    collections::HashMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use cdot_testkit::{free_port, kube_emulator::KubeEmulator, pg::TestDb};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

/// Wait after everything is Ready before counting idle reconciles.
const SETTLE: Duration = Duration::from_secs(10);

#[derive(Debug, Parser)]
#[command(about = "Kubernetes-mode reconcile throughput against the API emulator")]
struct Args {
    /// Devices to create.
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// AlertRules to create.
    #[arg(long, default_value_t = 1_000)]
    rules: usize,
    /// Namespaces the objects are spread over.
    #[arg(long, default_value_t = 10)]
    namespaces: usize,
    /// Creates in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Give up waiting for Ready after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// How long to count reconciles once everything is Ready and nothing changes.
    #[arg(long, default_value_t = 60)]
    idle: u64,
    /// The operator binary.
    #[arg(long, default_value = "target/release/cdot-operator")]
    operator: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.operator.exists(),
        "{} not found; build it with `cargo build --release -p cdot-operator`",
        args.operator.display()
    );
    let k8s = KubeEmulator::start();
    let db = TestDb::create().await;
    let dir =
        std::env::temp_dir().join(format!("cdot-kube-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let (mut operator, base) = start_operator(&args, &k8s, &db, &dir).await?;
    let result = run(&args, &k8s, &db, &base).await;
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(operator.id().to_string())
        .status();
    let _ = operator.wait();
    match &result {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Err(_) => eprintln!("operator log: {}", dir.join("operator.log").display()),
    }
    result
}

async fn start_operator(
    args: &Args,
    k8s: &KubeEmulator,
    db: &TestDb,
    dir: &std::path::Path,
) -> anyhow::Result<(Child, String)> {
    let port = free_port();
    let log = std::fs::File::create(dir.join("operator.log"))?;
    let child = Command::new(&args.operator)
        .arg("run")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--agent-listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--database-url", &db.url])
        .env("KUBECONFIG", k8s.kubeconfig())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("start cdot-operator")?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok((child, base));
        }
        ensure!(
            Instant::now() < deadline,
            "the operator was not ready within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run(args: &Args, k8s: &KubeEmulator, db: &TestDb, base: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let api = format!("{}/apis/rmm.cdot.io/v1alpha1", k8s.url());
    let namespace = |i: usize| format!("tenant-{:02}", i % args.namespaces);
    println!(
        "creating {} Devices and {} AlertRules in {} namespaces ({} in flight)",
        args.devices, args.rules, args.namespaces, args.concurrency
    );

    // Rules count the servers of their namespace: done means the count is final too.
    let mut servers = HashMap::<String, u64>::new();
    for i in (0..args.devices).filter(|i| i % 2 == 0) {
        *servers.entry(namespace(i)).or_default() += 1;
    }
    let device_tally = Tally::default();
    let rule_tally = Tally::default();
    let watches = [
        tokio::spawn(watch(
            http.clone(),
            format!("{api}/devices"),
            None,
            device_tally.clone(),
        )),
        tokio::spawn(watch(
            http.clone(),
            format!("{api}/alertrules"),
            Some(servers),
            rule_tally.clone(),
        )),
    ];

    let started = Instant::now();
    for i in 0..args.namespaces {
        post(&http, &format!("{api}/namespaces/{}/notificationchannels", namespace(i)), json!({
            "apiVersion": "rmm.cdot.io/v1alpha1", "kind": "NotificationChannel",
            "metadata": { "name": "noc" },
            "spec": { "type": "Webhook", "webhook": { "urlSecretRef": { "name": "hook", "key": "url" } } },
        }))
        .await?;
    }
    let uids: Vec<uuid::Uuid> = futures::stream::iter(0..args.devices)
        .map(|i| {
            let http = http.clone();
            let url = format!("{api}/namespaces/{}/devices", namespace(i));
            async move {
                let created = post(&http, &url, json!({
                    "apiVersion": "rmm.cdot.io/v1alpha1", "kind": "Device",
                    "metadata": { "name": format!("dev-{i:05}"), "labels": { "role": if i % 2 == 0 { "server" } else { "workstation" } } },
                    "spec": { "class": "Server", "agent": { "metricsInterval": "5m" } },
                }))
                .await?;
                created["metadata"]["uid"]
                    .as_str()
                    .and_then(|u| u.parse::<uuid::Uuid>().ok())
                    .context("a created Device without a uid")
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect()
        .await?;
    futures::stream::iter(0..args.rules)
        .map(|i| {
            let http = http.clone();
            let url = format!("{api}/namespaces/{}/alertrules", namespace(i));
            async move {
                post(
                    &http,
                    &url,
                    json!({
                        "apiVersion": "rmm.cdot.io/v1alpha1", "kind": "AlertRule",
                        "metadata": { "name": format!("rule-{i:04}") },
                        "spec": {
                            "selector": { "matchLabels": { "role": "server" } },
                            "metric": "cpu",
                            "reduce": { "function": "avg", "window": "5m" },
                            "condition": { "op": ">", "threshold": 50 + (i % 50) },
                            "severity": "Warning",
                            "channels": ["noc"],
                        },
                    }),
                )
                .await
                .map(drop)
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<()>()
        .await?;
    let created = started.elapsed();
    println!("created in {:.1} s", created.as_secs_f64());

    // Every agent reports: what an agent's report leaves in the store.
    let pool = sqlx::PgPool::connect(&db.url).await?;
    sqlx::query(
        "INSERT INTO device_heartbeats (device_uid, agent_version, last_seen)
         SELECT u, 'bench', now() FROM unnest($1::uuid[]) AS u
         ON CONFLICT (device_uid) DO UPDATE SET last_seen = now()",
    )
    .bind(&uids)
    .execute(&pool)
    .await?;

    let deadline = started + Duration::from_secs(args.timeout);
    let mut all_observed = None;
    let mut last_print = Instant::now();
    loop {
        let devices = progress(&device_tally);
        let rules = progress(&rule_tally);
        let elapsed = started.elapsed();
        if all_observed.is_none()
            && devices.observed == args.devices
            && rules.observed == args.rules
        {
            all_observed = Some(elapsed);
        }
        if last_print.elapsed() >= Duration::from_secs(2) {
            last_print = Instant::now();
            println!(
                "{:6.1} s  devices observed {}/{} ready {}   rules observed {}/{} ready {}",
                elapsed.as_secs_f64(),
                devices.observed,
                args.devices,
                devices.ready,
                rules.observed,
                args.rules,
                rules.ready
            );
        }
        if devices.ready == args.devices && rules.ready == args.rules {
            break;
        }
        if Instant::now() > deadline {
            bail!("not all Ready within {} s", args.timeout);
        }
        if let Some(ended) = watches.iter().find(|w| w.is_finished()) {
            bail!("a watch ended early: {ended:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ready = started.elapsed();
    for w in &watches {
        w.abort();
    }

    // Reconciles that the last changes still cause (dependents gather changes for a few
    // seconds) are not idleness; let them finish first.
    tokio::time::sleep(SETTLE).await;
    let before = reconciles(&http, base).await?;
    tokio::time::sleep(Duration::from_secs(args.idle)).await;
    let after = reconciles(&http, base).await?;
    let per_minute = |n: f64| n * 60.0 / args.idle as f64;
    let mut idle_total = 0.0;
    for (labels, n) in &after {
        let delta = n - before.get(labels).copied().unwrap_or(0.0);
        if delta > 0.0 {
            println!("idle reconciles {labels}: {:.1}/min", per_minute(delta));
        }
        idle_total += delta;
    }

    println!();
    println!(
        "objects:                         {} Devices + {} AlertRules + {} NotificationChannels",
        args.devices, args.rules, args.namespaces
    );
    println!(
        "all created through the API:     {:.1} s",
        created.as_secs_f64()
    );
    println!(
        "all observedGeneration current:  {:.1} s",
        all_observed.unwrap_or(ready).as_secs_f64()
    );
    println!(
        "all Ready, counts final (≤ 60 s): {:.1} s",
        ready.as_secs_f64()
    );
    println!(
        "idle reconciles per minute:      {:.1} (over {} s, from 10 s after Ready; resync is 10 min ± 10 %)",
        per_minute(idle_total),
        args.idle
    );
    Ok(())
}

async fn post(http: &reqwest::Client, url: &str, body: Value) -> anyhow::Result<Value> {
    let response = http
        .post(url)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let text = response.text().await?;
    ensure!(status.is_success(), "POST {url}: {status} {text}");
    Ok(serde_json::from_str(&text)?)
}

struct Progress {
    observed: usize,
    ready: usize,
}

/// Reconciled-at-its-generation and Ready (for AlertRules: also matching every server
/// Device of their namespace), per `namespace/name`.
type Tally = Arc<Mutex<HashMap<String, (bool, bool)>>>;

fn progress(tally: &Tally) -> Progress {
    let tally = tally
        .lock()
        .map(|t| t.values().copied().collect::<Vec<_>>())
        .unwrap_or_default();
    Progress {
        observed: tally.iter().filter(|(observed, _)| *observed).count(),
        ready: tally
            .iter()
            .filter(|(observed, ready)| *observed && *ready)
            .count(),
    }
}

fn state(item: &Value, servers: Option<&HashMap<String, u64>>) -> (bool, bool) {
    let observed = item["status"]["observedGeneration"] == item["metadata"]["generation"];
    let ready = item["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    let counted = servers.is_none_or(|servers| {
        let namespace = item["metadata"]["namespace"].as_str().unwrap_or_default();
        item["status"]["matchedDevices"].as_u64()
            == Some(servers.get(namespace).copied().unwrap_or(0))
    });
    (observed, ready && counted)
}

/// Follows `url` with a watch (cheap for the emulator, unlike listing 10,000 objects every
/// second) and keeps `tally` current.
async fn watch(
    http: reqwest::Client,
    url: String,
    servers: Option<HashMap<String, u64>>,
    tally: Tally,
) -> anyhow::Result<()> {
    let mut response = http
        .get(format!(
            "{url}?watch=1&resourceVersion=0&timeoutSeconds=3600"
        ))
        .send()
        .await?
        .error_for_status()?;
    let mut buffer = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let event: Value = serde_json::from_slice(&line).context("a watch event")?;
            let object = &event["object"];
            let key = format!(
                "{}/{}",
                object["metadata"]["namespace"].as_str().unwrap_or_default(),
                object["metadata"]["name"].as_str().unwrap_or_default()
            );
            let Ok(mut tally) = tally.lock() else {
                bail!("tally lock poisoned");
            };
            match event["type"].as_str() {
                Some("ADDED" | "MODIFIED") => {
                    tally.insert(key, state(object, servers.as_ref()));
                }
                Some("DELETED") => {
                    tally.remove(&key);
                }
                Some("ERROR") => bail!("watch of {url} failed: {object}"),
                _ => {}
            }
        }
    }
    Ok(())
}

/// The operator's `cdot_reconcile_total` per label set.
async fn reconciles(
    http: &reqwest::Client,
    base: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, f64>> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("cdot_reconcile_total"))
        .filter_map(|l| {
            let (labels, value) = l.rsplit_once(' ')?;
            Some((
                labels.trim_start_matches("cdot_reconcile_total").to_owned(),
                value.parse().ok()?,
            ))
        })
        .collect())
}
