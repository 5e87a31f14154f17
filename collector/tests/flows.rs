//! End-to-end tests of the flow receiver with real peers: softflowd watches a host's
//! interface in a network namespace while real TCP, UDP and ICMP traffic crosses it, and
//! exports NetFlow v5, v9 or IPFIX to Debian's nfcapd, which stores it and repeats every
//! datagram to the collector's receiver. The collector's per (src, dst) byte and packet
//! totals must equal nfdump's over the same exports.
//!
//! Needs root, iproute2, softflowd, nfdump (nfcapd), netcat-openbsd and iputils-ping.
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr, UdpSocket},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use cdot_collector::flow::{self, FlowConfig, FlowMetrics, FlowSink};
use cdot_crds::wire::collector::FlowGroup;
use cdot_testkit::{
    netns::{Host, Lab},
    process::Daemon,
};
use prometheus_client::{encoding::text::encode, registry::Registry};
use tokio::sync::{mpsc, watch};

/// Bytes and packets per (src, dst).
type Totals = BTreeMap<(IpAddr, IpAddr), (u64, u64)>;

/// Port nfcapd listens on, on the lab's gateway address (unique per lab).
const NFCAPD_PORT: u16 = 9995;

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sum of every sample of `name` in the registry's text encoding.
fn metric_sum(registry: &Registry, name: &str) -> u64 {
    let mut text = String::new();
    encode(&mut text, registry).expect("encode metrics");
    text.lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Real traffic across host `a`'s interface: TCP streams and UDP from `a` to `b`, a
/// ping flood, and UDP from the test process to `a`.
fn traffic(lab: &Lab, a: &Host, b: &Host) {
    let b_addr = b.addr.to_string();
    for args in [["-lk", "5001"], ["-ulk", "5002"]] {
        let mut listen = b.command("nc");
        listen
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        lab.spawn(listen);
    }
    wait_for("nc listening in b", Duration::from_secs(10), || {
        let out = b.run("ss", &["-Hltn", "sport = :5001"]);
        !out.stdout.is_empty()
    });
    for size in [3_000_000, 1_500_000, 700_000] {
        a.run(
            "sh",
            &[
                "-c",
                &format!("head -c {size} /dev/zero | nc -N -w 5 {b_addr} 5001"),
            ],
        );
    }
    a.run(
        "sh",
        &[
            "-c",
            &format!("head -c 400000 /dev/urandom | nc -u -w 1 {b_addr} 5002"),
        ],
    );
    a.run("ping", &["-f", "-c", "400", "-s", "900", "-q", &b_addr]);
    let socket = UdpSocket::bind((lab.gateway(), 0)).expect("bind on the gateway");
    for n in 0..300u32 {
        let payload = vec![0u8; 200 + (n as usize % 7) * 100];
        socket
            .send_to(&payload, (a.addr, 7000))
            .expect("send UDP to host a");
    }
}

/// A router's minute of small flows: UDP from 40 source addresses of host `a` to 150
/// destinations routed through `b`, each pair on one or two ports: 6,000 host pairs and
/// 7,500 five-tuples in a few seconds, far more than keep their ports (top N).
fn many_small_flows(_lab: &Lab, a: &Host, b: &Host) {
    for n in 0..40 {
        a.run(
            "ip",
            &[
                "addr",
                "add",
                &format!("198.19.0.{}/32", n + 1),
                "dev",
                "eth0",
            ],
        );
    }
    a.run(
        "ip",
        &["route", "add", "198.18.0.0/16", "via", &b.addr.to_string()],
    );
    let script = r#"
import socket, time
for s in range(40):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((f"198.19.0.{s + 1}", 0))
    for d in range(150):
        dst = f"198.18.{d // 100}.{d % 100 + 1}"
        sock.sendto(b"x" * (60 + (s * 7 + d) % 400), (dst, 53))
        if (s + d) % 4 == 0:
            sock.sendto(b"y" * 120, (dst, 123))
        # softflowd's capture buffer overflows on one unpaced burst.
        time.sleep(0.0002)
"#;
    // The next hop resolved first: packets queued behind ARP may never reach the wire.
    a.run("ping", &["-c", "1", "-W", "2", &b.addr.to_string()]);
    let out = a.run("python3", &["-c", script]);
    assert!(out.status.success(), "traffic script: {out:?}");
}

/// What one export gave the collector and nfdump.
struct Compared {
    ours: Totals,
    theirs: Totals,
    /// Distinct five-tuples nfdump saw.
    five_tuples: usize,
    /// Host pairs the collector shipped with their ports folded.
    folded_pairs: usize,
    /// The hosts the traffic ran between.
    a: IpAddr,
    b: IpAddr,
}

/// Runs one export of `version` (softflowd's `-v`) of `traffic` and returns what the
/// collector and nfdump made of it.
fn export_and_compare(version: &str, traffic: fn(&Lab, &Host, &Host)) -> Compared {
    let lab = Lab::new();
    let a = lab.add_host();
    let b = lab.add_host();
    let work = tempfile::tempdir().expect("tempdir");
    let nfcapd_dir = work.path().join("nfcapd");
    std::fs::create_dir(&nfcapd_dir).expect("nfcapd dir");

    // The collector under test, on loopback.
    let mut registry = Registry::default();
    let metrics = FlowMetrics::register(&mut registry);
    let (groups_tx, mut groups_rx) = mpsc::channel::<Vec<FlowGroup>>(64);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let config = FlowConfig {
        netflow_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        sflow_listen: None,
        ..FlowConfig::default()
    };
    let sink = FlowSink {
        groups: groups_tx,
        counters: None,
    };
    let receivers =
        flow::spawn(config, metrics, sink, shutdown_rx).expect("start the flow receiver");
    let collector = receivers.netflow_addr().expect("netflow address");

    // A second repeater target: the raw datagrams, kept as fuzzing seeds on request.
    let capture = UdpSocket::bind("127.0.0.1:0").expect("bind the capture socket");
    capture
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("capture timeout");
    let capture_port = capture.local_addr().expect("capture address").port();

    let gateway = lab.gateway();
    let mut nfcapd = Daemon::start(Command::new("nfcapd").args([
        "-w",
        path_str(&nfcapd_dir),
        "-b",
        &gateway.to_string(),
        "-p",
        &NFCAPD_PORT.to_string(),
        "-t",
        "60",
        "-S",
        "0",
        // softflowd exports thousands of flows in one burst at shutdown.
        "-B",
        "4194304",
        "-R",
        &format!("127.0.0.1/{}", collector.port()),
        "-R",
        &format!("127.0.0.1/{capture_port}"),
    ]));
    let (stop_capture, stop) = std::sync::mpsc::channel::<()>();
    let captured = std::thread::spawn(move || {
        let mut datagrams = Vec::new();
        let mut buf = vec![0u8; 65_535];
        while matches!(stop.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty)) {
            if let Ok(len) = capture.recv(&mut buf) {
                datagrams.push(buf[..len].to_vec());
            }
        }
        datagrams
    });
    wait_for("nfcapd listening", Duration::from_secs(10), || {
        UdpSocket::bind((gateway, NFCAPD_PORT)).is_err()
    });

    let ctl = work.path().join("softflowd.ctl");
    let pid = work.path().join("softflowd.pid");
    let mut softflowd = Daemon::start(
        a.command("softflowd")
            .args(["-i", "eth0", "-d", "-v", version, "-m", "20000", "-n"])
            .arg(format!("{gateway}:{NFCAPD_PORT}"))
            .args(["-c", path_str(&ctl), "-p", path_str(&pid)])
            .args([
                "-t",
                "maxlife=5",
                "-t",
                "udp=2",
                "-t",
                "tcp=2",
                "-t",
                "icmp=2",
            ])
            // Not its own export traffic, which would never settle.
            .arg(format!("not udp port {NFCAPD_PORT}")),
    );
    wait_for("softflowd control socket", Duration::from_secs(10), || {
        ctl.exists()
    });

    traffic(&lab, &a, &b);

    // softflowd reads its capture behind the traffic: wait until its counts settle.
    let statistics = || {
        let out = Command::new("softflowctl")
            .args(["-c", path_str(&ctl), "statistics"])
            .output()
            .expect("softflowctl statistics");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.contains("time") && !l.contains("Time"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut seen = (statistics(), Instant::now());
    wait_for("softflowd to settle", Duration::from_secs(30), || {
        let now = statistics();
        if now != seen.0 {
            seen = (now, Instant::now());
        }
        seen.1.elapsed() > Duration::from_secs(1)
    });
    eprintln!("softflowd: {}", seen.0);

    // Export everything still tracked and exit.
    let shutdown = Command::new("softflowctl")
        .args(["-c", path_str(&ctl), "shutdown"])
        .output()
        .expect("softflowctl");
    assert!(
        shutdown.status.success(),
        "softflowctl shutdown: {shutdown:?}"
    );
    wait_for("softflowd exit", Duration::from_secs(10), || {
        matches!(softflowd.0.try_wait(), Ok(Some(_)))
    });
    softflowd.stop();

    // The last exports have crossed loopback once the collector's count stops moving.
    let mut last = (0, Instant::now());
    wait_for(
        "the collector to receive the last export",
        Duration::from_secs(20),
        || {
            let now = metric_sum(&registry, "cdot_collector_flow_datagrams_total");
            if now != last.0 {
                last = (now, Instant::now());
            }
            now > 0 && last.1.elapsed() > Duration::from_secs(2)
        },
    );
    let dropped = metric_sum(&registry, "cdot_collector_flow_dropped_total");
    assert_eq!(dropped, 0, "the collector dropped datagrams");

    shutdown_tx.send(true).expect("signal shutdown");
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(receivers.stopped());
    let mut ours = Totals::new();
    let mut folded_pairs = 0;
    while let Ok(groups) = groups_rx.try_recv() {
        for group in groups {
            assert!(
                group.other.is_zero(),
                "every host pair fits the bounds: nothing in other"
            );
            folded_pairs += group.hosts.len();
            let keys = group.top.iter().map(|c| (c.src, c.dst, c.b, c.p));
            let hosts = group.hosts.iter().map(|h| (h.src, h.dst, h.b, h.p));
            for (src, dst, b, p) in keys.chain(hosts) {
                let entry = ours.entry((src, dst)).or_default();
                entry.0 += b;
                entry.1 += p;
            }
        }
    }

    nfcapd.stop();
    drop(stop_capture);
    let datagrams = captured.join().expect("capture thread");
    assert!(!datagrams.is_empty(), "nfcapd repeated nothing");
    if let Some(dir) = std::env::var_os("CDOT_FLOW_SEEDS") {
        write_seed(
            &Path::new(&dir).join("netflow"),
            &format!("softflowd-v{version}"),
            &datagrams,
        );
    }
    let nfdump = Command::new("nfdump")
        .args([
            "-R",
            path_str(&nfcapd_dir),
            "-q",
            "-N",
            // IPv6 addresses in full, not abbreviated.
            "-6",
            "-o",
            "fmt:%sa %da %sp %dp %pr %byt %pkt",
        ])
        .output()
        .expect("run nfdump");
    assert!(
        nfdump.status.success(),
        "nfdump: {}",
        String::from_utf8_lossy(&nfdump.stderr)
    );
    let mut theirs = Totals::new();
    let mut five_tuples = std::collections::BTreeSet::new();
    for line in String::from_utf8_lossy(&nfdump.stdout).lines() {
        let columns: Vec<&str> = line.split_whitespace().collect();
        let [src, dst, sp, dp, proto, bytes, packets] = columns[..] else {
            panic!("unexpected nfdump line {line:?}");
        };
        let parse = |what: &str, text: &str| -> u64 {
            text.parse()
                .unwrap_or_else(|e| panic!("{what} {text:?} in nfdump line {line:?}: {e}"))
        };
        let ip = |text: &str| -> IpAddr {
            text.parse()
                .unwrap_or_else(|e| panic!("address {text:?} in nfdump line {line:?}: {e}"))
        };
        let entry = theirs.entry((ip(src), ip(dst))).or_default();
        entry.0 += parse("bytes", bytes);
        entry.1 += parse("packets", packets);
        five_tuples.insert((
            ip(src),
            ip(dst),
            sp.to_owned(),
            dp.to_owned(),
            proto.to_owned(),
        ));
    }
    Compared {
        ours,
        theirs,
        five_tuples: five_tuples.len(),
        folded_pairs,
        a: IpAddr::V4(a.addr),
        b: IpAddr::V4(b.addr),
    }
}

/// Ordinary traffic: the collector's totals per (src, dst) equal nfdump's.
fn ordinary_totals_match(version: &str) {
    let c = export_and_compare(version, traffic);
    let a_to_b = c.ours.get(&(c.a, c.b)).copied();
    assert!(
        a_to_b.is_some_and(|(bytes, _)| bytes > 5_000_000),
        "a→b traffic in {:?}",
        c.ours
    );
    assert_eq!(c.ours, c.theirs);
}

/// One `netflow` fuzzing input: each datagram framed as [exporter][length u16][bytes].
fn write_seed(dir: &Path, name: &str, datagrams: &[Vec<u8>]) {
    let mut seed = Vec::new();
    for datagram in datagrams.iter().take(64) {
        seed.push(0);
        seed.extend_from_slice(&(datagram.len() as u16).to_be_bytes());
        seed.extend_from_slice(datagram);
    }
    std::fs::create_dir_all(dir).expect("seed dir");
    std::fs::write(dir.join(name), seed).expect("write seed");
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn netflow_v5_totals_match_nfdump() {
    ordinary_totals_match("5");
}

#[test]
fn netflow_v9_totals_match_nfdump() {
    ordinary_totals_match("9");
}

#[test]
fn ipfix_totals_match_nfdump() {
    ordinary_totals_match("10");
}

/// Issue 13: more five-tuples in a minute than keep their ports, from more host pairs
/// than that: every (src, dst) pair's bytes and packets still equal nfdump's, because only
/// ports fold (ADR 22).
#[test]
fn thousands_of_host_pairs_in_a_minute_are_each_exact() {
    let c = export_and_compare("10", many_small_flows);
    assert!(c.five_tuples > 5_000, "{} five-tuples", c.five_tuples);
    assert!(c.theirs.len() > 5_000, "{} host pairs", c.theirs.len());
    assert!(
        c.folded_pairs > 4_000,
        "{} pairs shipped with folded ports",
        c.folded_pairs
    );
    let differing: Vec<_> = c
        .theirs
        .iter()
        .filter(|(pair, counts)| c.ours.get(pair) != Some(counts))
        .take(5)
        .collect();
    assert!(
        differing.is_empty(),
        "pairs differing from nfdump: {differing:?}"
    );
    assert_eq!(c.ours, c.theirs);
}

/// Writes Juniper-shaped NetFlow v9/IPFIX and sFlow fuzzing seeds (softflowd's come
/// from the tests above) into `$CDOT_FLOW_SEEDS/{netflow,sflow}`.
#[test]
#[ignore = "writes fuzzing seeds: CDOT_FLOW_SEEDS=fuzz/seeds cargo nextest run -p cdot-collector --test flows --run-ignored only"]
fn write_synthetic_fuzz_seeds() {
    use cdot_collector::flow::synth::{self, Builder, Flow, SflowBuilder, Version};

    let dir =
        std::path::PathBuf::from(std::env::var_os("CDOT_FLOW_SEEDS").expect("CDOT_FLOW_SEEDS"));
    let flows: Vec<Flow> = (0..10).map(Flow::v4).collect();
    for (name, version, scope) in [
        ("juniper-v9", Version::V9, synth::JUNIPER_SAMPLING_SCOPE_V9),
        (
            "juniper-ipfix",
            Version::Ipfix,
            synth::JUNIPER_SAMPLING_SCOPE_IPFIX,
        ),
    ] {
        let templates = Builder::new(version, 524_288)
            .template(256, synth::JUNIPER_V4)
            .template(257, synth::JUNIPER_V6)
            .options_template(258, scope, synth::JUNIPER_SAMPLING_OPTIONS)
            .build();
        let options = Builder::new(version, 524_288)
            .values(
                258,
                &[scope, synth::JUNIPER_SAMPLING_OPTIONS].concat(),
                &[0, 1000, 2, 60, 15],
            )
            .build();
        let data = Builder::new(version, 524_288)
            .data(256, synth::JUNIPER_V4, &flows)
            .build();
        write_seed(
            &dir.join("netflow"),
            name,
            &[templates, options, data.clone(), data],
        );
    }
    write_seed(
        &dir.join("netflow"),
        "v5",
        &[synth::v5(&flows, 100, 1_764_064_800)],
    );
    let frame = synth::ipv4_frame(&[42], 6, [10, 0, 0, 1], [10, 0, 0, 2], 40000, 443, 1400);
    let sflow = SflowBuilder::default()
        .flow(512, 3, 4, &frame, 1422)
        .counters(3, 1 << 40, 1 << 20)
        .build([192, 0, 2, 1]);
    std::fs::create_dir_all(dir.join("sflow")).expect("sflow seed dir");
    std::fs::write(dir.join("sflow").join("flow-and-counters"), sflow).expect("write sflow seed");
}
