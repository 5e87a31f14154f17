//! Discovery against fping on the discovery lab, and a large mostly silent range: prints
//! figures, asserts nothing. Needs root, `snmpd`, `fping` and `python3`
//! (`scripts/bench-discovery` installs them).
//!
//! 1. The lab's /24 (its responders, the rest silent): a run at 1,000 packets/s,
//!    concurrency 256, timeout 1 s, one retry; then `fping -g -r1 -t1000` and `fping -g`
//!    (its defaults) over the same /24; durations and ratios.
//! 2. A range routed to the lab's router, silent but for a few addresses (a /18 by
//!    default, `--prefix 16` for 65,534 addresses): addresses and packets per second held,
//!    and this process's resident memory before and at its peak during the run.
//!
//! `cargo bench -p cdot-collector --bench discovery -- [--prefix 16] [--rate 2000]`
use std::{
    net::Ipv4Addr,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use cdot_collector::discovery::{self, DiscoveryMetrics};
use cdot_crds::{
    device::SnmpVersion,
    wire::{
        collector::SnmpCredentials,
        discovery::{ScanAssignment, ScanCredential, ScanReport, ScanSnmp, ScanState},
    },
};
use cdot_testkit::discovery_lab::{COMMUNITY, DiscoveryLab};
use clap::Parser;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

/// The large range, routed to the lab's router (one benchmark at a time).
const LARGE_RANGE: [u8; 2] = [10, 233];

#[derive(Parser)]
struct Args {
    /// Prefix length of the large range (16: 65,534 addresses).
    #[arg(long, default_value_t = 18, value_parser = clap::value_parser!(u8).range(16..=24))]
    prefix: u8,
    /// Packets per second of the large run.
    #[arg(long, default_value_t = 2_000)]
    rate: u32,
    /// Addresses in flight in the large run (the most a DiscoveryScan allows).
    #[arg(long, default_value_t = 1_024)]
    concurrency: u32,
    /// Timeout of one probe in the large run, ms.
    #[arg(long, default_value_t = 500)]
    timeout_ms: u64,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut lab = DiscoveryLab::build();
    runtime.block_on(lab_subnet(&lab));
    runtime.block_on(large_range(&mut lab, &args));
}

fn scan(
    targets: Vec<String>,
    rate_limit: u32,
    concurrency: u32,
    timeout_ms: u64,
) -> ScanAssignment {
    ScanAssignment {
        run: Uuid::new_v4(),
        scan: "bench".into(),
        targets,
        excludes: Vec::new(),
        icmp: true,
        snmp: Some(ScanSnmp {
            port: 161,
            credentials: vec![ScanCredential {
                index: 0,
                version: SnmpVersion::V2c,
                credentials: SnmpCredentials::Community {
                    community: COMMUNITY.into(),
                },
            }],
            silent_hosts: false,
        }),
        rate_limit,
        concurrency,
        timeout_ms,
        retries: 1,
    }
}

/// Runs `assignment` through the discovery component; its final report and duration.
async fn run(
    assignment: ScanAssignment,
    metrics: DiscoveryMetrics,
    progress: bool,
) -> (ScanReport, Duration) {
    let started = Instant::now();
    let (_runs, runs) = watch::channel(vec![assignment]);
    let (sink, mut reports) = mpsc::channel(64);
    let (stop, shutdown) = watch::channel(false);
    let component = discovery::spawn(runs, sink, metrics, shutdown);
    let mut found = 0;
    let last = loop {
        let report = reports.recv().await.expect("component running");
        found += report.hosts.len();
        if progress {
            eprintln!(
                "  {:>6.1} s: {}/{} addresses, {found} found",
                started.elapsed().as_secs_f64(),
                report.scanned,
                report.total
            );
        }
        if report.state != ScanState::Running {
            break report;
        }
    };
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    let _ = component.await;
    (last, elapsed)
}

/// Runs fping with `args`; its duration and the addresses it found alive.
fn fping(args: &[&str]) -> (Duration, usize) {
    let started = Instant::now();
    let output = Command::new("fping")
        .args(["-a", "-q"])
        .args(args)
        .output()
        .expect("run fping (apt-get install fping)");
    let alive = String::from_utf8_lossy(&output.stdout).lines().count();
    (started.elapsed(), alive)
}

async fn lab_subnet(lab: &DiscoveryLab) {
    let subnet = lab.subnet();
    println!("lab /24 {subnet}: {} responders", lab.responders().len());
    let (report, took) = run(
        scan(vec![subnet.clone()], 1_000, 256, 1_000),
        DiscoveryMetrics::default(),
        false,
    )
    .await;
    let (fping_same, fping_same_alive) = fping(&["-r1", "-t1000", "-g", &subnet]);
    let (fping_default, fping_default_alive) = fping(&["-g", &subnet]);
    let secs = |d: Duration| d.as_secs_f64();
    println!(
        "  discovery (rate 1000/s, concurrency 256, timeout 1 s, 1 retry): {:.2} s, {} alive, {} answered SNMP",
        secs(took),
        report.counts.icmp_answered,
        report.counts.snmp_answered
    );
    println!(
        "  fping -g -r1 -t1000:                                           {:.2} s, {fping_same_alive} alive (ratio fping/discovery {:.2})",
        secs(fping_same),
        secs(fping_same) / secs(took)
    );
    println!(
        "  fping -g (defaults: 3 retries, 500 ms timeout with backoff):   {:.2} s, {fping_default_alive} alive (ratio fping/discovery {:.2})",
        secs(fping_default),
        secs(fping_default) / secs(took)
    );
}

async fn large_range(lab: &mut DiscoveryLab, args: &Args) {
    let [a, b] = LARGE_RANGE;
    let cidr = format!("{a}.{b}.0.0/{}", args.prefix);
    // A few answering addresses spread over the range.
    let answering: Vec<Ipv4Addr> = (0..4).map(|i| Ipv4Addr::new(a, b, i * 8, 10)).collect();
    lab.route_silent(&cidr, &answering);
    let metrics = DiscoveryMetrics::default();
    let assignment = scan(
        vec![cidr.clone()],
        args.rate,
        args.concurrency,
        args.timeout_ms,
    );
    let attempts = 2.0;
    let by_rate = f64::from(args.rate) / attempts;
    let by_concurrency =
        f64::from(args.concurrency) / (attempts * args.timeout_ms as f64 / 1_000.0);
    println!(
        "large range {cidr} via the router (silent but {} addresses): rate {}/s, concurrency {}, timeout {} ms, 1 retry",
        answering.len(),
        args.rate,
        args.concurrency,
        args.timeout_ms
    );
    println!(
        "  bound: {:.0} addresses/s (rate / 2 attempts: {by_rate:.0}; concurrency / (2 × timeout): {by_concurrency:.0})",
        by_rate.min(by_concurrency)
    );
    let before = status_kib("VmRSS:");
    let sampler = RssSampler::start();
    let (report, took) = run(assignment, metrics.clone(), true).await;
    let peak = sampler.stop();
    let secs = took.as_secs_f64();
    println!(
        "  {} addresses in {secs:.1} s: {:.0} addresses/s, {:.0} packets/s; {} answered ICMP",
        report.scanned,
        report.scanned as f64 / secs,
        metrics.packets.get() as f64 / secs,
        report.counts.icmp_answered
    );
    println!(
        "  resident memory of this process: {} KiB before the run, {peak} KiB at its peak during it (VmHWM {} KiB)",
        before,
        status_kib("VmHWM:")
    );
}

/// A `/proc/self/status` line's value in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Samples VmRSS every 50 ms and keeps the largest.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl RssSampler {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let thread = std::thread::spawn({
            let (stop, peak) = (stop.clone(), peak.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(status_kib("VmRSS:"), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        });
        Self { stop, peak, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.peak.load(Ordering::Relaxed)
    }
}
