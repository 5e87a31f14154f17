//! `cdot-fleet-load`: enrolls N simulated agents and has each report a metrics batch every
//! interval over its own mutual-TLS connection, like a real fleet. Prints throughput,
//! ingest latency percentiles and errors; the operator's own counters give stored samples.
//!
//! ```text
//! cdot-fleet-load --server https://127.0.0.1:8443 --ca-cert /var/lib/cdot-rmm/agent-ca.crt \
//!     --token $ENROLL_TOKEN --agents 10000 --interval 10s --duration 300s \
//!     --metrics-url http://127.0.0.1:8080/metrics
//! ```
//!
//! With `--webhook-listen`, it also measures alerting: every `--breach-every` one agent
//! reports a CPU of 99.9 % in its next batch (and a normal value in the one after), and
//! the time from that batch's acknowledgement (the sample committed) to the firing
//! notification arriving at this process's webhook is recorded, as is the resolve.
use std::{
    collections::BTreeMap,
    io::Write as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use cdot_crds::wire::{EnrollRequest, EnrollResponse, MetricsBatch, Sample};
use clap::Parser;
use futures::{StreamExt, stream};
use hdrhistogram::Histogram;

#[derive(Debug, Parser)]
#[command(
    name = "cdot-fleet-load",
    about = "Simulated agent fleet for cdot-rmm ingest benchmarks"
)]
struct Args {
    /// Agent API of the operator.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    server: String,
    /// The operator's agent CA certificate (PEM).
    #[arg(long)]
    ca_cert: std::path::PathBuf,
    /// Enrollment tokens (comma separated; agent i uses token i mod n), together allowing
    /// at least --agents uses. Tokens with different labels put agents in different groups.
    #[arg(long, env = "CDOT_ENROLL_TOKEN", value_delimiter = ',')]
    token: Vec<String>,
    /// Number of simulated agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Reporting interval of every agent.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    interval: Duration,
    /// How long to measure, after the warm-up.
    #[arg(long, value_parser = parse_duration, default_value = "300s")]
    duration: Duration,
    /// Reporting before the measurement starts: every agent connects (a TLS handshake each)
    /// and the operator's caches fill. Reported separately, not part of the figures.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    warmup: Duration,
    /// Samples per batch (at most 60 distinct series are generated, then repeated in time).
    #[arg(long, default_value_t = 60)]
    samples: usize,
    /// Parallel enrollments.
    #[arg(long, default_value_t = 64)]
    enroll_concurrency: usize,
    /// Device name prefix.
    #[arg(long, default_value = "load")]
    prefix: String,
    /// The operator's Prometheus endpoint, to read how many samples it stored.
    #[arg(long)]
    metrics_url: Option<String>,
    /// Address for a webhook receiver (the bench's NotificationChannel points here):
    /// enables the alerting measurement.
    #[arg(long)]
    webhook_listen: Option<std::net::SocketAddr>,
    /// How often one agent breaches the CPU threshold (alerting measurement only).
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    breach_every: Duration,
}

/// Breaches in flight: device name → when its breaching batch was acknowledged, and when
/// its recovering one was.
#[derive(Default)]
struct Breaches {
    /// Agents told to breach in their next batch, by index.
    asked: std::collections::HashSet<usize>,
    /// Agents whose next batch recovers.
    recovering: std::collections::HashSet<usize>,
    fired_sent: std::collections::HashMap<String, Instant>,
    resolved_sent: std::collections::HashMap<String, Instant>,
    firing: Option<Histogram<u64>>,
    resolved: Option<Histogram<u64>>,
    measuring: bool,
    breaches: u64,
    unexpected: u64,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    cdot_crds::common::parse_duration(s)
}

struct Agent {
    client: reqwest::Client,
    name: String,
}

struct Stats {
    ok: u64,
    samples: u64,
    errors: BTreeMap<String, u64>,
    /// Latency of the measured period, in microseconds.
    latency: Histogram<u64>,
    /// Latency since the last progress line.
    window: Histogram<u64>,
    window_errors: u64,
    warmup_ok: u64,
    warmup_errors: BTreeMap<String, u64>,
}

impl Stats {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            ok: 0,
            samples: 0,
            errors: BTreeMap::new(),
            latency: Histogram::new_with_bounds(1, 120_000_000, 3)?,
            window: Histogram::new_with_bounds(1, 120_000_000, 3)?,
            window_errors: 0,
            warmup_ok: 0,
            warmup_errors: BTreeMap::new(),
        })
    }

    fn record(&mut self, measured: bool, micros: u64, samples: usize, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                let _ = self.window.record(micros.max(1));
                if measured {
                    self.ok += 1;
                    self.samples += samples as u64;
                    let _ = self.latency.record(micros.max(1));
                } else {
                    self.warmup_ok += 1;
                }
            }
            Err(kind) => {
                self.window_errors += 1;
                let errors = if measured {
                    &mut self.errors
                } else {
                    &mut self.warmup_errors
                };
                *errors.entry(kind).or_default() += 1;
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ca_pem = std::fs::read(&args.ca_cert)
        .with_context(|| format!("failed to read {}", args.ca_cert.display()))?;
    let ca = reqwest::Certificate::from_pem(&ca_pem)?;

    let started = Instant::now();
    let agents: Vec<Agent> = stream::iter(0..args.agents)
        .map(|i| enroll(&args, ca.clone(), i))
        .buffer_unordered(args.enroll_concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    println!(
        "enrolled {} agents in {:.1} s",
        agents.len(),
        started.elapsed().as_secs_f64()
    );

    let stats = Arc::new(Mutex::new(Stats::new()?));
    let breaches = Arc::new(Mutex::new(Breaches {
        firing: Some(Histogram::new_with_bounds(1, 600_000_000, 3)?),
        resolved: Some(Histogram::new_with_bounds(1, 600_000_000, 3)?),
        ..Breaches::default()
    }));
    if let Some(listen) = args.webhook_listen {
        tokio::spawn(webhook(listen, breaches.clone()));
    }
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let deadline = measure_from + args.duration;
    let spread = args.interval.as_secs_f64() / args.agents.max(1) as f64;
    let mut tasks = Vec::with_capacity(agents.len());
    let agent_count = agents.len();
    for (i, agent) in agents.into_iter().enumerate() {
        let stats = stats.clone();
        let breaches = breaches.clone();
        let (interval, samples) = (args.interval, args.samples);
        let offset = Duration::from_secs_f64(spread * i as f64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let url = format!("{}/v1/agent/metrics", agent_url_base());
            loop {
                ticker.tick().await;
                let sent = Instant::now();
                if sent >= deadline {
                    break;
                }
                let (breach, recover) = {
                    let mut b = breaches
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    (b.asked.remove(&i), b.recovering.remove(&i))
                };
                let body = batch_body(samples, breach);
                let result = agent
                    .client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("content-encoding", "gzip")
                    .body(body)
                    .send()
                    .await;
                let micros = sent.elapsed().as_micros() as u64;
                let acked = Instant::now();
                let outcome = match result {
                    Ok(response) if response.status().is_success() => {
                        let mut b = breaches
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        if breach {
                            b.fired_sent.insert(agent.name.clone(), acked);
                            b.recovering.insert(i);
                        } else if recover {
                            b.resolved_sent.insert(agent.name.clone(), acked);
                        }
                        Ok(())
                    }
                    Ok(response) => Err(format!("HTTP {}", response.status().as_u16())),
                    Err(e) if e.is_timeout() => Err("timeout".to_owned()),
                    Err(e) if e.is_connect() => Err("connect".to_owned()),
                    Err(_) => Err("other".to_owned()),
                };
                let measured = sent >= measure_from;
                stats
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .record(measured, micros, samples, outcome);
            }
        }));
    }
    let progress = tokio::spawn({
        let stats = stats.clone();
        async move { report_progress(&stats, deadline).await }
    });
    tokio::time::sleep_until(measure_from.into()).await;
    println!("warm-up done; measuring for {:?}", args.duration);
    if args.webhook_listen.is_some() {
        breaches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .measuring = true;
        let breaches = breaches.clone();
        let every = args.breach_every;
        // Stop breaching early enough for the last resolve to arrive in the window.
        let last = deadline - args.interval * 3;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            let mut next = 7usize;
            while Instant::now() < last {
                ticker.tick().await;
                next = (next * 7919 + 13) % agent_count.max(1);
                let mut b = breaches
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if !b.recovering.contains(&next) {
                    b.asked.insert(next);
                    b.breaches += 1;
                }
            }
        });
    }
    let stored_before = scrape_stored(&args).await;
    let _ = progress.await;
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = args.duration.as_secs_f64();
    let stored_after = scrape_stored(&args).await;

    let (errors, errors_by_kind) = {
        let stats = stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let histogram = &stats.latency;
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "== cdot-fleet-load: {} agents, {} samples every {:?}, measured {:.0} s after a {:?} warm-up ==",
            args.agents, args.samples, args.interval, elapsed, args.warmup
        );
        println!(
            "warm-up: {} batches acknowledged, errors {:?}",
            stats.warmup_ok, stats.warmup_errors
        );
        println!(
            "batches acknowledged: {} ({:.0}/s)",
            stats.ok,
            stats.ok as f64 / elapsed
        );
        println!(
            "samples acknowledged: {} ({:.0}/s)",
            stats.samples,
            stats.samples as f64 / elapsed
        );
        if let (Some(before), Some(after)) = (stored_before, stored_after) {
            println!(
                "samples stored by the operator: {:.0} ({:.0}/s)",
                after - before,
                (after - before) / elapsed
            );
        }
        println!(
            "ingest latency ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            ms(0.5),
            ms(0.9),
            ms(0.99),
            ms(0.999),
            histogram.max() as f64 / 1000.0
        );
        let errors: u64 = stats.errors.values().sum();
        let errors_by_kind = format!("{:?}", stats.errors);
        (errors, errors_by_kind)
    };
    if args.webhook_listen.is_some() {
        // Let the last notifications arrive.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let b = breaches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (what, h) in [("firing", &b.firing), ("resolved", &b.resolved)] {
            if let Some(h) = h {
                let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
                println!(
                    "alert {what}: batch acknowledged → webhook received ms: n {}  p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
                    h.len(),
                    ms(0.5),
                    ms(0.9),
                    ms(0.99),
                    h.max() as f64 / 1000.0
                );
            }
        }
        println!(
            "breaches: {}  not yet notified: firing {}  resolved {}  unexpected notifications {}",
            b.breaches,
            b.fired_sent.len(),
            b.resolved_sent.len(),
            b.unexpected
        );
    }
    println!("errors: {errors} {errors_by_kind}");
    if errors > 0 {
        bail!("{errors} requests failed");
    }
    Ok(())
}

/// The URL is the same for every agent; kept in a static so tasks need not clone it.
static AGENT_BASE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn agent_url_base() -> &'static str {
    AGENT_BASE.get().map_or("", String::as_str)
}

async fn enroll(args: &Args, ca: reqwest::Certificate, index: usize) -> anyhow::Result<Agent> {
    let _ = AGENT_BASE.set(args.server.trim_end_matches('/').to_owned());
    let key = rcgen::KeyPair::generate()?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())?
        .serialize_request(&key)?
        .pem()?;
    let anonymous = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca.clone())
        .build()?;
    let request = EnrollRequest {
        token: args.token[index % args.token.len().max(1)].clone(),
        device_name: format!("{}-{index:05}", args.prefix),
        namespace: None,
        csr_pem: Some(csr),
        jwt_public_key: None,
        agent_version: "fleet-load".into(),
        device_class: None,
    };
    let response = anonymous
        .post(format!("{}/v1/agent/enroll", agent_url_base()))
        .json(&request)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!(
            "enrollment of agent {index} failed: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    let enrolled: EnrollResponse = response.json().await?;
    let cert = enrolled
        .certificate_pem
        .context("no certificate in the enrollment response")?;
    let identity =
        reqwest::Identity::from_pem(format!("{cert}{}", key.serialize_pem()).as_bytes())?;
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .identity(identity)
        .http1_only()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(30))
        .build()?;
    Ok(Agent {
        client,
        name: request.device_name,
    })
}

/// Receives the bench channel's notifications and matches them to the breaches sent.
async fn webhook(listen: std::net::SocketAddr, breaches: Arc<Mutex<Breaches>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(listener) = tokio::net::TcpListener::bind(listen).await else {
        eprintln!("cannot listen on {listen} for the webhook");
        return;
    };
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let breaches = breaches.clone();
        tokio::spawn(async move {
            // A minimal HTTP/1.1 server: one request per connection is all the operator's
            // client needs when told to close.
            let mut buf = Vec::new();
            let mut chunk = [0u8; 16 * 1024];
            let body = loop {
                let Ok(n) = socket.read(&mut chunk).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    break buf[end + 4..end + 4 + length].to_vec();
                }
            };
            let received = Instant::now();
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
            let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&body) else {
                return;
            };
            let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
            let mut b = breaches
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for alert in doc["alerts"].as_array().into_iter().flatten() {
                let device = alert["device"].as_str().unwrap_or_default();
                let (sent, histogram) = match kind.as_str() {
                    "firing" => (b.fired_sent.remove(device), 0),
                    "resolved" => (b.resolved_sent.remove(device), 1),
                    _ => (None, 2),
                };
                match sent {
                    Some(at) if b.measuring => {
                        let micros = received.duration_since(at).as_micros() as u64;
                        let h = if histogram == 0 {
                            &mut b.firing
                        } else {
                            &mut b.resolved
                        };
                        if let Some(h) = h {
                            let _ = h.record(micros.max(1));
                        }
                    }
                    Some(_) => {}
                    None => b.unexpected += 1,
                }
            }
        });
    }
}

/// A gzip-compressed batch of realistic host metrics with valid catalogue labels; with
/// `breach`, the CPU is 99.9 % (otherwise at most 90 %).
fn batch_body(samples: usize, breach: bool) -> Vec<u8> {
    let now = jiff::Timestamp::now().as_millisecond();
    let mut series: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("cpu", vec![]),
        ("memory", vec![]),
        ("memoryUsedBytes", vec![]),
        ("swap", vec![]),
        ("swapUsedBytes", vec![]),
        ("load1", vec![]),
        ("load5", vec![]),
        ("load15", vec![]),
        ("uptime", vec![]),
        ("processes", vec![]),
    ];
    series.extend((0..8).map(|c| ("cpuCore", vec![("core", c.to_string())])));
    for mount in ["/", "/var", "/home", "/srv"] {
        series.push(("disk", vec![("mount", mount.to_owned())]));
        series.push(("diskUsedBytes", vec![("mount", mount.to_owned())]));
    }
    for device in ["sda", "sdb"] {
        series.push(("diskReadBytes", vec![("device", device.to_owned())]));
        series.push(("diskWriteBytes", vec![("device", device.to_owned())]));
    }
    for interface in ["eth0", "eth1", "eth2", "wlan0", "lo"] {
        for metric in [
            "networkIn",
            "networkOut",
            "networkPacketsIn",
            "networkPacketsOut",
            "networkErrors",
            "networkDrops",
        ] {
            series.push((metric, vec![("interface", interface.to_owned())]));
        }
    }
    let samples: Vec<Sample> = (0..samples)
        .map(|i| {
            let (name, labels) = &series[i % series.len()];
            let round = (i / series.len()) as i64;
            Sample {
                t: now - round * 1000,
                n: (*name).to_owned(),
                l: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
                v: match (*name, breach) {
                    ("cpu", true) => 99.9,
                    ("cpu", false) => ((now % 1000) as f64 / 10.0).min(90.0),
                    _ => (now % 1000) as f64 / 10.0 + i as f64,
                },
            }
        })
        .collect();
    let batch = MetricsBatch {
        batch_id: uuid::Uuid::new_v4(),
        agent_version: "fleet-load".into(),
        samples,
        interval_secs: None,
    };
    let json = serde_json::to_vec(&batch).unwrap_or_default();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = encoder.write_all(&json);
    encoder.finish().unwrap_or_default()
}

async fn report_progress(stats: &Mutex<Stats>, deadline: Instant) {
    let mut last = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(
            Duration::from_secs(10).min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
        let mut stats = stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let window = &stats.window;
        let ms = |v: u64| v as f64 / 1000.0;
        println!(
            "  {:.0} batches/s, latency ms p50 {:.1} p99 {:.1} max {:.1}, errors {}",
            window.len() as f64 / last.elapsed().as_secs_f64(),
            ms(window.value_at_quantile(0.5)),
            ms(window.value_at_quantile(0.99)),
            ms(window.max()),
            stats.window_errors,
        );
        stats.window.reset();
        stats.window_errors = 0;
        last = Instant::now();
    }
}

/// `cdot_ingest_samples_total` from the operator's metrics, when given.
async fn scrape_stored(args: &Args) -> Option<f64> {
    let url = args.metrics_url.as_ref()?;
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    text.lines()
        .filter(|l| l.starts_with("cdot_ingest_samples_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}
