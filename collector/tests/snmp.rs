//! SNMP polling against net-snmp's snmpd in a lab namespace (needs root, `snmpd` and
//! `snmp`). The polled interface `q0` is a veth pair to a second host without IPv6 and
//! static neighbours, so that it carries exactly the traffic the test sends.
use std::{
    process::Command,
    time::{Duration, Instant},
};

use cdot_collector::snmp::{self, CounterWidth, InterfaceRow, Poller, SnmpError, SnmpMetrics};
use cdot_crds::{
    device::SnmpVersion,
    wire::collector::{SnmpAuthProtocol, SnmpCredentials, SnmpPrivProtocol, SnmpTarget},
};
use cdot_testkit::{
    netns::{Host, Lab},
    snmpd::{Snmpd, SnmpdConfig},
};
use prometheus_client::{encoding::text::encode, registry::Registry};
use tokio::sync::{mpsc, watch};

const COMMUNITY: &str = "s3cret-community";
/// Address of the agent's end of the quiet link, and its peer's.
const Q_AGENT: &str = "192.168.77.1";
const Q_PEER: &str = "192.168.77.2";
const WAIT: Duration = Duration::from_secs(30);

/// ifHCInOctets, ifHCOutOctets, ifHCInUcastPkts, ifHCOutUcastPkts.
const HC_COLUMNS: [&str; 4] = [
    "1.3.6.1.2.1.31.1.1.1.6",
    "1.3.6.1.2.1.31.1.1.1.10",
    "1.3.6.1.2.1.31.1.1.1.7",
    "1.3.6.1.2.1.31.1.1.1.11",
];
/// ifInOctets, ifOutOctets, ifInUcastPkts, ifOutUcastPkts.
const COUNTER32_COLUMNS: [&str; 4] = [
    "1.3.6.1.2.1.2.2.1.10",
    "1.3.6.1.2.1.2.2.1.16",
    "1.3.6.1.2.1.2.2.1.11",
    "1.3.6.1.2.1.2.2.1.17",
];

/// A lab with an agent host running snmpd and a peer on a quiet link `q0`–`q1`.
struct Site {
    snmpd: Snmpd,
    agent: Host,
    peer: Host,
    /// Removes the namespaces when the site is dropped (after snmpd stopped).
    _lab: Lab,
}

impl Site {
    fn new(config: SnmpdConfig) -> Self {
        let lab = Lab::new();
        let agent = lab.add_host();
        let peer = lab.add_host();
        agent.run(
            "ip",
            &[
                "link",
                "add",
                "q0",
                "address",
                "02:cd:00:00:00:01",
                "type",
                "veth",
                "peer",
                "name",
                "q1",
                "address",
                "02:cd:00:00:00:02",
                "netns",
                &peer.ns,
            ],
        );
        for (host, link, addr, neighbour, mac) in [
            (&agent, "q0", Q_AGENT, Q_PEER, "02:cd:00:00:00:02"),
            (&peer, "q1", Q_PEER, Q_AGENT, "02:cd:00:00:00:01"),
        ] {
            // No IPv6 address, so no neighbour discovery or MLD on the link.
            host.run("ip", &["link", "set", link, "addrgenmode", "none"]);
            host.run("ip", &["addr", "add", &format!("{addr}/30"), "dev", link]);
            host.run("ip", &["link", "set", link, "up"]);
            host.run(
                "ip",
                &[
                    "neigh",
                    "replace",
                    neighbour,
                    "lladdr",
                    mac,
                    "dev",
                    link,
                    "nud",
                    "permanent",
                ],
            );
        }
        let snmpd = Snmpd::start(&agent, config);
        Self {
            snmpd,
            agent,
            peer,
            _lab: lab,
        }
    }

    fn target(&self, version: SnmpVersion, credentials: SnmpCredentials) -> SnmpTarget {
        SnmpTarget {
            device: "edge-1".into(),
            address: self.agent.addr.to_string(),
            port: 161,
            version,
            credentials,
            poll_interval_secs: 10,
            timeout_ms: 1_000,
            retries: 2,
            interfaces: vec!["^q0$".into()],
        }
    }

    /// `count` echoes of `size` payload bytes from the peer to the agent over the quiet link.
    fn ping_over_quiet_link(&self, count: u32, size: u32) {
        self.peer.run(
            "ping",
            &[
                "-q",
                "-c",
                &count.to_string(),
                "-s",
                &size.to_string(),
                "-i",
                "0.01",
                "-W",
                "2",
                Q_AGENT,
            ],
        );
    }
}

fn community(community: &str) -> SnmpCredentials {
    SnmpCredentials::Community {
        community: community.into(),
    }
}

fn usm(
    username: &str,
    auth_protocol: SnmpAuthProtocol,
    priv_protocol: SnmpPrivProtocol,
) -> SnmpCredentials {
    SnmpCredentials::Usm {
        username: username.into(),
        auth_protocol,
        auth_password: format!("{username}-auth-pass"),
        priv_protocol: Some(priv_protocol),
        priv_password: Some(format!("{username}-priv-pass")),
    }
}

/// Values of `oids` read by net-snmp's own `snmpget` (`args` select version and security).
fn snmpget(endpoint: &str, args: &[&str], oids: &[String]) -> Vec<u64> {
    let output = Command::new("snmpget")
        .args(args)
        .args(["-On", "-Oqv", "-t", "1", "-r", "2", endpoint])
        .args(oids)
        .output()
        .expect("run snmpget (apt-get install snmp)");
    assert!(
        output.status.success(),
        "snmpget {oids:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            line.trim()
                .parse()
                .unwrap_or_else(|e| panic!("{line:?}: {e}"))
        })
        .collect()
}

fn q0(rows: &[InterfaceRow]) -> &InterfaceRow {
    rows.iter()
        .find(|row| row.name == "q0")
        .unwrap_or_else(|| panic!("no q0 among {rows:?}"))
}

/// [in octets, out octets, in packets, out packets] of a row.
fn traffic(row: &InterfaceRow) -> [u64; 4] {
    let c = row.counters.expect("traffic counters");
    [c.in_octets, c.out_octets, c.in_ucast_pkts, c.out_ucast_pkts]
}

/// Reads q0 with the collector and with snmpget until both, and a second collector read
/// around the snmpget, agree (the agent refreshes its counter cache every few seconds).
async fn agreed_counters(
    poller: &mut Poller,
    endpoint: &str,
    args: &[&str],
    columns: [&str; 4],
) -> (InterfaceRow, [u64; 4]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let before = q0(&poller.read().await.expect("read").interfaces).clone();
        let oids: Vec<String> = columns
            .iter()
            .map(|c| format!("{c}.{}", before.if_index))
            .collect();
        let theirs = snmpget(endpoint, args, &oids);
        let after = q0(&poller.read().await.expect("read").interfaces).clone();
        if traffic(&before) == traffic(&after) && traffic(&after).as_slice() == theirs.as_slice() {
            let counters = traffic(&after);
            return (after, counters);
        }
        assert!(
            Instant::now() < deadline,
            "collector read {:?} then {:?}, snmpget {theirs:?}",
            traffic(&before),
            traffic(&after)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads q0 until `done` holds for its counters.
async fn wait_for_counters(poller: &mut Poller, done: impl Fn([u64; 4]) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let row = q0(&poller.read().await.expect("read").interfaces).clone();
        if done(traffic(&row)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "q0 counters stuck at {:?}",
            traffic(&row)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn v2c_counters_match_snmpget_and_rates_match_the_traffic_sent() {
    let site = Site::new(SnmpdConfig::new().community(COMMUNITY));
    let endpoint = site.snmpd.endpoint();
    let mut poller = Poller::new(
        site.target(SnmpVersion::V2c, community(COMMUNITY)),
        SnmpMetrics::default(),
    )
    .expect("poller");
    site.ping_over_quiet_link(20, 500);
    wait_for_counters(&mut poller, |now| now[2] >= 20).await;
    let args = ["-v2c", "-c", COMMUNITY];
    let (row, counters) = agreed_counters(&mut poller, &endpoint, &args, HC_COLUMNS).await;
    assert_eq!(row.counters.map(|c| c.width), Some(CounterWidth::Bits64));
    assert_eq!(row.oper_status, 1);
    assert!(counters[2] >= 20 && counters[3] >= 20, "{counters:?}");

    // Baseline, then a known amount of traffic: 100 echoes of 1000 bytes each way, each
    // frame 1000 + 8 (ICMP) + 20 (IPv4) + 14 (Ethernet) bytes.
    assert!(poller.poll().await.expect("baseline").is_empty());
    let (count, frame) = (100u64, 1_042u64);
    site.ping_over_quiet_link(100, 1_000);
    wait_for_counters(&mut poller, |now| now[2] >= counters[2] + count).await;
    let samples = poller.poll().await.expect("poll");
    let [sample] = samples.as_slice() else {
        panic!("one sample for q0: {samples:?}");
    };
    assert_eq!(
        (sample.device.as_str(), sample.name.as_str()),
        ("edge-1", "q0")
    );
    assert_eq!(sample.if_index, row.if_index);
    let secs = sample.interval_ms as f64 / 1_000.0;
    let close = |rate: f64, expected: u64| (rate * secs - expected as f64).abs() < 0.5;
    assert!(close(sample.in_bps / 8.0, count * frame), "{sample:?}");
    assert!(close(sample.out_bps / 8.0, count * frame), "{sample:?}");
    assert!(close(sample.in_pps, count), "{sample:?}");
    assert!(close(sample.out_pps, count), "{sample:?}");
    assert_eq!((sample.in_errors, sample.out_errors), (0, 0));
    assert_eq!((sample.in_discards, sample.out_discards), (0, 0));
}

#[tokio::test]
async fn v3_auth_priv_with_every_supported_protocol_pair() {
    let users = [
        (
            "sha-aes",
            "SHA",
            "AES",
            SnmpAuthProtocol::Sha1,
            SnmpPrivProtocol::Aes128,
        ),
        (
            "sha256-aes",
            "SHA-256",
            "AES",
            SnmpAuthProtocol::Sha256,
            SnmpPrivProtocol::Aes128,
        ),
        (
            "sha512-aes256",
            "SHA-512",
            "AES-256",
            SnmpAuthProtocol::Sha512,
            SnmpPrivProtocol::Aes256,
        ),
        (
            "sha-aes256",
            "SHA",
            "AES-256",
            SnmpAuthProtocol::Sha1,
            SnmpPrivProtocol::Aes256,
        ),
    ];
    let mut config = SnmpdConfig::new();
    for (user, auth, privacy, _, _) in users {
        let (auth_pass, priv_pass) = (format!("{user}-auth-pass"), format!("{user}-priv-pass"));
        config = config.user(user, auth, &auth_pass, Some((privacy, &priv_pass)));
    }
    let site = Site::new(config);
    let endpoint = site.snmpd.endpoint();
    site.ping_over_quiet_link(10, 100);
    for (user, auth, privacy, auth_protocol, priv_protocol) in users {
        let mut poller = Poller::new(
            site.target(SnmpVersion::V3, usm(user, auth_protocol, priv_protocol)),
            SnmpMetrics::default(),
        )
        .expect("poller");
        let (auth_pass, priv_pass) = (format!("{user}-auth-pass"), format!("{user}-priv-pass"));
        let args = [
            "-v3", "-l", "authPriv", "-u", user, "-a", auth, "-A", &auth_pass, "-x", privacy, "-X",
            &priv_pass,
        ];
        wait_for_counters(&mut poller, |now| now[2] >= 10).await;
        let (row, _) = agreed_counters(&mut poller, &endpoint, &args, HC_COLUMNS).await;
        assert_eq!(
            row.counters.map(|c| c.width),
            Some(CounterWidth::Bits64),
            "{user}"
        );
    }
}

#[tokio::test]
async fn an_agent_without_ifxtable_gives_32_bit_counters() {
    let site = Site::new(SnmpdConfig::new().community_without("legacy", &["1.3.6.1.2.1.31"]));
    let endpoint = site.snmpd.endpoint();
    site.ping_over_quiet_link(10, 100);
    let mut poller = Poller::new(
        site.target(SnmpVersion::V2c, community("legacy")),
        SnmpMetrics::default(),
    )
    .expect("poller");
    wait_for_counters(&mut poller, |now| now[2] >= 10).await;
    let args = ["-v2c", "-c", "legacy"];
    let (row, _) = agreed_counters(&mut poller, &endpoint, &args, COUNTER32_COLUMNS).await;
    assert_eq!(row.counters.map(|c| c.width), Some(CounterWidth::Bits32));
    // Without ifName the name is ifDescr; without ifAlias the alias is empty.
    assert_eq!((row.name.as_str(), row.alias.as_str()), ("q0", ""));
}

#[tokio::test]
async fn v1_walks_with_getnext_and_reads_32_bit_counters() {
    // SNMPv1 cannot carry Counter64: the agent skips the ifXTable counters.
    let site = Site::new(SnmpdConfig::new().community(COMMUNITY));
    let endpoint = site.snmpd.endpoint();
    site.ping_over_quiet_link(10, 100);
    let mut poller = Poller::new(
        site.target(SnmpVersion::V1, community(COMMUNITY)),
        SnmpMetrics::default(),
    )
    .expect("poller");
    wait_for_counters(&mut poller, |now| now[2] >= 10).await;
    let args = ["-v1", "-c", COMMUNITY];
    let (row, _) = agreed_counters(&mut poller, &endpoint, &args, COUNTER32_COLUMNS).await;
    assert_eq!(row.counters.map(|c| c.width), Some(CounterWidth::Bits32));
}

/// Interface samples of the first poll that gives any, polling a second apart: on a loaded
/// machine one poll right after another sometimes yields no rates (about half the runs),
/// and the restart is asserted through its skip counter instead.
async fn rates_within_a_few_polls(poller: &mut Poller) -> usize {
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let samples = poller.poll().await.expect("poll");
        if !samples.is_empty() {
            return samples.len();
        }
    }
    0
}

#[tokio::test]
async fn an_agent_restart_leaves_one_interval_without_rates() {
    let mut site = Site::new(SnmpdConfig::new().user(
        "sha-aes",
        "SHA",
        "sha-aes-auth-pass",
        Some(("AES", "sha-aes-priv-pass")),
    ));
    let mut registry = Registry::default();
    let metrics = SnmpMetrics::register(&mut registry);
    let credentials = usm("sha-aes", SnmpAuthProtocol::Sha1, SnmpPrivProtocol::Aes128);
    let mut poller =
        Poller::new(site.target(SnmpVersion::V3, credentials), metrics).expect("poller");
    // Up long enough that the restarted agent's uptime is surely shorter.
    let deadline = Instant::now() + WAIT;
    while poller.read().await.expect("read").uptime_ticks < 300 {
        assert!(Instant::now() < deadline, "sysUpTime does not advance");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(poller.poll().await.expect("first poll").is_empty());
    assert_eq!(rates_within_a_few_polls(&mut poller).await, 1);
    site.snmpd.restart();
    // The v3 session follows the engine's new boots and time by itself.
    let after_restart = poller.poll().await.expect("poll after restart");
    assert!(after_restart.is_empty(), "{after_restart:?}");
    assert_eq!(rates_within_a_few_polls(&mut poller).await, 1);
    let mut text = String::new();
    encode(&mut text, &registry).expect("encode");
    assert!(
        text.contains(r#"cdot_collector_snmp_intervals_skipped_total{reason="agent_restarted"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn an_unanswered_agent_times_out_after_its_retries() {
    let lab = Lab::new();
    let mut registry = Registry::default();
    let metrics = SnmpMetrics::register(&mut registry);
    // Nobody has this address on the lab segment.
    let address = format!("10.231.{}.250", lab.gateway().octets()[2]);
    let target = SnmpTarget {
        device: "gone-1".into(),
        address,
        port: 161,
        version: SnmpVersion::V2c,
        credentials: community(COMMUNITY),
        poll_interval_secs: 60,
        timeout_ms: 200,
        retries: 2,
        interfaces: Vec::new(),
    };
    let mut poller = Poller::new(target, metrics).expect("poller");
    let started = Instant::now();
    let error = poller.poll().await.expect_err("no agent");
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(error, SnmpError::Timeout { attempts: 3, .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("gone-1") && message.contains("1.3.6.1.2.1.1.3.0"),
        "{message}"
    );
    assert!(!message.contains(COMMUNITY) && !format!("{error:?}").contains(COMMUNITY));
    let mut text = String::new();
    encode(&mut text, &registry).expect("encode");
    assert!(
        text.contains("cdot_collector_snmp_timeouts_total 3"),
        "{text}"
    );
    assert!(!text.contains(COMMUNITY));
}

#[tokio::test]
async fn the_component_polls_its_targets_follows_changes_and_stops() {
    let site = Site::new(SnmpdConfig::new().community(COMMUNITY));
    let mut target = site.target(SnmpVersion::V2c, community(COMMUNITY));
    target.poll_interval_secs = 1;
    let (targets_tx, targets_rx) = watch::channel(vec![target.clone()]);
    let (sink, mut samples) = mpsc::channel(16);
    let (stop, shutdown) = watch::channel(false);
    let mut registry = Registry::default();
    let metrics = SnmpMetrics::register(&mut registry);
    let component = snmp::spawn(targets_rx, sink, metrics, shutdown);

    let batch = tokio::time::timeout(WAIT, samples.recv())
        .await
        .expect("samples in time")
        .expect("a batch");
    assert_eq!(batch.len(), 1);
    assert_eq!(
        (batch[0].device.as_str(), batch[0].name.as_str()),
        ("edge-1", "q0")
    );

    // Renamed device: its poller is replaced and samples come under the new name.
    target.device = "edge-2".into();
    targets_tx.send(vec![target]).expect("update targets");
    let renamed = async {
        while let Some(batch) = samples.recv().await {
            if batch.iter().all(|s| s.device == "edge-2") {
                return batch;
            }
        }
        panic!("sink closed");
    };
    tokio::time::timeout(WAIT, renamed)
        .await
        .expect("samples of the changed target");

    // Removed: its poller stops.
    targets_tx.send(Vec::new()).expect("update targets");
    let deadline = Instant::now() + WAIT;
    loop {
        let mut text = String::new();
        encode(&mut text, &registry).expect("encode");
        if text.contains("cdot_collector_snmp_targets 0") {
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    stop.send(true).expect("shutdown");
    tokio::time::timeout(Duration::from_secs(5), component)
        .await
        .expect("stops on shutdown")
        .expect("no panic");
    let mut text = String::new();
    encode(&mut text, &registry).expect("encode");
    assert!(
        text.contains(r#"cdot_collector_snmp_polls_total{result="ok"}"#),
        "{text}"
    );
    assert!(text.contains("cdot_collector_snmp_targets 0"), "{text}");
}

/// Replies to every request with the next of `replies` (cycling); returns its port.
async fn bogus_agent(replies: Vec<Vec<u8>>) -> u16 {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = socket.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut buf = [0u8; 65_536];
        for reply in replies.iter().cycle() {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            // Echoing the request back is a well-formed message of the wrong type.
            let reply = if reply.is_empty() {
                &buf[..n]
            } else {
                reply.as_slice()
            };
            let _ = socket.send_to(reply, from).await;
        }
    });
    port
}

#[tokio::test]
async fn garbage_from_the_network_is_an_error_not_a_panic() {
    // Pseudo-random bytes, BER headers with absurd lengths, truncations, echoes.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut replies: Vec<Vec<u8>> = (0..60)
        .map(|i| {
            let len = (i * 7) % 97;
            (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 24) as u8
                })
                .collect()
        })
        .collect();
    replies.extend([
        vec![0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x02, 0x01, 0x01],
        vec![0x30, 0x03, 0x02, 0x01],
        vec![
            0x30, 0x0b, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c',
        ],
        vec![0x30, 0x82, 0x00, 0x05, 0xa2, 0x03, 0x02, 0x01, 0x7f],
        Vec::new(),
    ]);
    let port = bogus_agent(replies).await;
    for credentials in [
        community(COMMUNITY),
        usm("sha-aes", SnmpAuthProtocol::Sha1, SnmpPrivProtocol::Aes128),
    ] {
        let version = match credentials {
            SnmpCredentials::Community { .. } => SnmpVersion::V2c,
            SnmpCredentials::Usm { .. } => SnmpVersion::V3,
        };
        let target = SnmpTarget {
            device: "bogus-1".into(),
            address: "127.0.0.1".into(),
            port,
            version,
            credentials,
            poll_interval_secs: 60,
            timeout_ms: 100,
            retries: 2,
            interfaces: Vec::new(),
        };
        let mut poller = Poller::new(target, SnmpMetrics::default()).expect("poller");
        for _ in 0..25 {
            let error = poller.poll().await.expect_err("garbage is not an answer");
            assert!(error.to_string().contains("bogus-1"), "{error}");
        }
    }
}
