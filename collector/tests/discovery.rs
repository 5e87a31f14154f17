//! Discovery runs against the discovery lab (`cdot_testkit::discovery_lab`): real ICMP, real
//! net-snmp agents, a host that answers garbage. Needs root, `snmpd`, `snmp`, `fping` and
//! `python3`.
use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr},
    process::Command,
    time::{Duration, Instant},
};

use cdot_collector::discovery::{self, DiscoveryMetrics};
use cdot_crds::{
    device::SnmpVersion,
    wire::{
        collector::{SnmpAuthProtocol, SnmpCredentials, SnmpPrivProtocol},
        discovery::{
            FoundHost, LldpNeighbour, ScanAssignment, ScanCredential, ScanReport, ScanSnmp,
            ScanState, SnmpFacts,
        },
    },
};
use cdot_testkit::{
    discovery_lab::{self as lab, DiscoveryLab},
    tap::{PacketTap, Probe},
};
use prometheus_client::{encoding::text::encode, registry::Registry};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use uuid::Uuid;

/// Longest a run over the lab may take here.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// v2c `public` first (index 0), the lab's v3 user second (index 1).
fn credentials() -> Vec<ScanCredential> {
    vec![
        ScanCredential {
            index: 0,
            version: SnmpVersion::V2c,
            credentials: SnmpCredentials::Community {
                community: lab::COMMUNITY.into(),
            },
        },
        ScanCredential {
            index: 1,
            version: SnmpVersion::V3,
            credentials: SnmpCredentials::Usm {
                username: lab::V3_USER.into(),
                auth_protocol: SnmpAuthProtocol::Sha1,
                auth_password: lab::V3_AUTH_PASSWORD.into(),
                priv_protocol: Some(SnmpPrivProtocol::Aes128),
                priv_password: Some(lab::V3_PRIV_PASSWORD.into()),
            },
        },
    ]
}

fn assignment(targets: Vec<String>, excludes: Vec<String>, rate_limit: u32) -> ScanAssignment {
    ScanAssignment {
        run: Uuid::new_v4(),
        scan: "lab".into(),
        targets,
        excludes,
        icmp: true,
        snmp: Some(ScanSnmp {
            port: 161,
            credentials: credentials(),
            silent_hosts: false,
        }),
        rate_limit,
        concurrency: 256,
        timeout_ms: 1_000,
        retries: 1,
    }
}

/// The discovery component with its assignments, reports and metrics.
struct Component {
    runs: watch::Sender<Vec<ScanAssignment>>,
    reports: mpsc::Receiver<ScanReport>,
    registry: Registry,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Component {
    fn start(runs: Vec<ScanAssignment>) -> Self {
        let mut registry = Registry::default();
        let metrics = DiscoveryMetrics::register(&mut registry);
        let (runs, runs_rx) = watch::channel(runs);
        let (sink, reports) = mpsc::channel(64);
        let (stop, shutdown) = watch::channel(false);
        let task = discovery::spawn(runs_rx, sink, metrics, shutdown);
        Self {
            runs,
            reports,
            registry,
            stop,
            task,
        }
    }

    /// Reports until the final one (included).
    async fn until_final(&mut self) -> Vec<ScanReport> {
        let mut reports = Vec::new();
        loop {
            let report = tokio::time::timeout(RUN_LIMIT, self.reports.recv())
                .await
                .expect("the run ends in time")
                .expect("component running");
            let last = report.state != ScanState::Running;
            reports.push(report);
            if last {
                return reports;
            }
        }
    }

    async fn next_report(&mut self, limit: Duration) -> Option<ScanReport> {
        tokio::time::timeout(limit, self.reports.recv())
            .await
            .ok()
            .flatten()
    }

    /// A metric's value (`name{labels} value`), 0 when absent.
    fn metric(&self, series: &str) -> f64 {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("encode");
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |v| v.trim().parse().expect("number"))
    }

    async fn stop(self) {
        self.stop.send(true).expect("shutdown");
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("stops on shutdown")
            .expect("no panic");
    }
}

/// What `fping -a -g` finds alive in `cidr` (one echo and one retry of 1 s, like the run).
fn fping_alive(cidr: &str) -> BTreeSet<IpAddr> {
    let output = Command::new("fping")
        .args(["-a", "-q", "-r1", "-t1000", "-g", cidr])
        .output()
        .expect("run fping (apt-get install fping)");
    // fping exits 1 when some address is unreachable: only its list matters.
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.trim().parse().expect("an address per line"))
        .collect()
}

/// What net-snmp's own tools read of a v2c agent: the system group (`snmpget -Oqv`) and the
/// ifIndex → ifDescr of its ifTable (`snmpwalk -Oqs`).
fn snmp_tools_read(address: Ipv4Addr) -> (Vec<String>, BTreeSet<(u32, String)>) {
    let run = |program: &str, args: &[&str]| -> String {
        let output = Command::new(program)
            .args(["-v2c", "-c", lab::COMMUNITY, "-t", "2", "-r", "1"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {program} (apt-get install snmp): {e}"));
        assert!(output.status.success(), "{program} {args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let address = address.to_string();
    let system = run(
        "snmpget",
        &[
            "-Oqvn",
            &address,
            "1.3.6.1.2.1.1.5.0",
            "1.3.6.1.2.1.1.2.0",
            "1.3.6.1.2.1.1.6.0",
        ],
    );
    let system = system
        .lines()
        .map(|l| {
            l.trim()
                .trim_matches('"')
                .trim_start_matches('.')
                .to_owned()
        })
        .collect();
    let interfaces = run("snmpwalk", &["-Oqn", &address, "1.3.6.1.2.1.2.2.1.2"])
        .lines()
        .filter_map(|l| {
            let (oid, descr) = l.split_once(' ')?;
            let index = oid.rsplit('.').next()?.parse().ok()?;
            Some((index, descr.trim().trim_matches('"').to_owned()))
        })
        .collect();
    (system, interfaces)
}

fn hosts(reports: &[ScanReport]) -> Vec<FoundHost> {
    reports.iter().flat_map(|r| r.hosts.clone()).collect()
}

fn host(found: &[FoundHost], address: Ipv4Addr) -> &FoundHost {
    found
        .iter()
        .find(|h| h.address == IpAddr::V4(address))
        .unwrap_or_else(|| panic!("{address} not found: {found:#?}"))
}

fn facts(found: &[FoundHost], address: Ipv4Addr) -> &SnmpFacts {
    host(found, address)
        .snmp
        .as_ref()
        .unwrap_or_else(|| panic!("no SNMP facts for {address}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_the_lab_finds_what_fping_finds_and_identifies_each_host() {
    let lab = DiscoveryLab::build();
    // fping reports the gateway, the test process's own address. The run leaves it out:
    // its SNMP probe would reach whatever listens in the test machine's namespace.
    let gateway = IpAddr::V4(lab.gateway());
    let mut alive = fping_alive(&lab.subnet());
    assert!(alive.remove(&gateway), "fping finds the gateway: {alive:?}");

    let started = Instant::now();
    let run = assignment(vec![lab.subnet()], vec![gateway.to_string()], 1_000);
    let mut component = Component::start(vec![run.clone()]);
    let reports = component.until_final().await;
    let elapsed = started.elapsed();
    let last = reports.last().expect("a final report");
    eprintln!(
        "{} reports in {elapsed:?}; final: {:?}",
        reports.len(),
        ScanReport {
            hosts: Vec::new(),
            ..last.clone()
        }
    );

    // One run, one final report, Succeeded; the same start in every report.
    assert_eq!(last.state, ScanState::Succeeded);
    assert!(
        reports[..reports.len() - 1]
            .iter()
            .all(|r| r.state == ScanState::Running)
    );
    assert!(
        reports
            .iter()
            .all(|r| r.run == run.run && r.started_ms == last.started_ms && r.scan == "lab")
    );
    assert_eq!((last.total, last.scanned), (253, 253));
    assert!(
        component
            .next_report(Duration::from_secs(3))
            .await
            .is_none()
    );

    // ICMP: exactly what fping finds.
    let found = hosts(&reports);
    let answered: BTreeSet<IpAddr> = found
        .iter()
        .filter(|h| h.rtt_ms.is_some())
        .map(|h| h.address)
        .collect();
    assert_eq!(answered, alive);
    let expected: BTreeSet<IpAddr> = lab
        .responders()
        .into_iter()
        .map(IpAddr::V4)
        .filter(|a| *a != gateway)
        .collect();
    assert_eq!(answered, expected);
    assert_eq!(found.len(), expected.len(), "each host once: {found:#?}");

    // Counts: every address pinged; SNMP asked of the seven responders; the router (on
    // both addresses), the switch and the v3 host answer. Failures per address and
    // credential: v2c times out on the v3 host and the wrong-community host, whose v3
    // attempt is refused (unknown user); the ICMP-only host refuses both, the garbage host
    // answers both with garbage.
    let counts = &last.counts;
    assert_eq!((counts.icmp_probed, counts.icmp_answered), (253, 7));
    assert_eq!((counts.snmp_probed, counts.snmp_answered), (7, 4));
    let errors: Vec<(&str, u64)> = counts
        .errors
        .iter()
        .map(|(r, n)| (r.as_str(), *n))
        .collect();
    assert_eq!(
        errors,
        [
            ("authentication", 1),
            ("malformed", 2),
            ("timeout", 2),
            ("unreachable", 2)
        ]
    );

    // The router, on each of its addresses.
    let router_chassis = lab.chassis_id(&lab.router);
    for address in [lab.router.addr, lab.router_second] {
        let router = facts(&found, address);
        assert_eq!(router.credential, 0);
        assert_eq!(router.sys_name, lab::ROUTER_SYS_NAME);
        assert_eq!(router.sys_descr, lab::ROUTER_SYS_DESCR);
        assert_eq!(router.sys_object_id, lab::ROUTER_SYS_OBJECT_ID);
        assert_eq!(router.sys_location, lab::ROUTER_SYS_LOCATION);
        assert!(router.sys_uptime > 0);
        assert_eq!(router.serial.as_deref(), Some(lab::ROUTER_SERIAL));
        assert_eq!(router.chassis_id.as_deref(), Some(router_chassis.as_str()));
        let addresses: BTreeSet<IpAddr> = router.addresses.iter().copied().collect();
        let both: BTreeSet<IpAddr> = [lab.router.addr, lab.router_second]
            .into_iter()
            .map(IpAddr::V4)
            .collect();
        assert_eq!(addresses, both, "{:?}", router.addresses);
        let eth0 = router
            .interfaces
            .iter()
            .find(|i| i.name == "eth0")
            .unwrap_or_else(|| panic!("eth0 in {:?}", router.interfaces));
        assert_eq!(eth0.mac.as_deref(), Some(router_chassis.as_str()));
        assert_eq!(eth0.oper_status, 1);
        assert!(router.interfaces.iter().any(|i| i.name == "lo"));
        let neighbours: Vec<LldpNeighbour> = lab
            .router_neighbours()
            .into_iter()
            .map(|n| LldpNeighbour {
                local_port: n.local_port,
                chassis_id: n.chassis_id,
                port_id: n.port_id,
                port_descr: n.port_descr,
                sys_name: n.sys_name,
                management_address: Some(IpAddr::V4(n.management_address)),
            })
            .collect();
        assert_eq!(router.neighbours, neighbours);
        assert!(host(&found, address).rtt_ms.is_some_and(|rtt| rtt < 100.0));
    }

    // The switch and the v3 host: what the router's LLDP table says of them.
    let switch = facts(&found, lab.switch.addr);
    assert_eq!(switch.credential, 0);
    assert_eq!(switch.sys_name, lab::SWITCH_SYS_NAME);
    assert_eq!(switch.sys_object_id, lab::SWITCH_SYS_OBJECT_ID);
    assert!(
        switch.sys_descr.contains("Catalyst"),
        "{}",
        switch.sys_descr
    );
    assert_eq!(switch.serial, None);
    assert_eq!(
        switch.chassis_id.as_deref(),
        Some(lab.router_neighbours()[0].chassis_id.as_str())
    );
    assert!(switch.neighbours.is_empty());
    let v3 = facts(&found, lab.v3.addr);
    assert_eq!(v3.credential, 1, "the v3 credential, listed second");
    assert_eq!(v3.sys_name, lab::V3_SYS_NAME);
    assert_eq!(
        v3.chassis_id.as_deref(),
        Some(lab.router_neighbours()[1].chassis_id.as_str())
    );
    assert_eq!(v3.addresses, [IpAddr::V4(lab.v3.addr)]);

    // What the run read over SNMP is what net-snmp's snmpget and snmpwalk read.
    for address in [lab.router.addr, lab.switch.addr] {
        let facts = facts(&found, address);
        let (system, if_descr) = snmp_tools_read(address);
        assert_eq!(
            system,
            [
                facts.sys_name.clone(),
                facts.sys_object_id.clone(),
                facts.sys_location.clone()
            ],
            "{address}"
        );
        let indexes: BTreeSet<u32> = facts.interfaces.iter().map(|i| i.if_index).collect();
        assert_eq!(
            indexes,
            if_descr.iter().map(|(i, _)| *i).collect::<BTreeSet<_>>(),
            "{address}: every ifTable row"
        );
    }

    // Answering ICMP only: found, with a round-trip time and nothing over SNMP.
    for address in [
        lab.icmp_only.addr,
        lab.wrong_community.addr,
        lab.garbage.addr,
    ] {
        let found = host(&found, address);
        assert!(found.rtt_ms.is_some() && found.snmp.is_none(), "{found:?}");
    }
    assert!(!found.iter().any(|h| h.address == IpAddr::V4(lab.silent)));

    assert_eq!(
        component.metric(r#"cdot_collector_discovery_runs_finished_total{state="succeeded"}"#),
        1.0
    );
    assert_eq!(
        component.metric("cdot_collector_discovery_runs_running"),
        0.0
    );
    assert_eq!(
        component.metric("cdot_collector_discovery_runs_assigned"),
        1.0
    );
    component.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_on_the_wire() {
    const RATE: u32 = 50;
    let mut lab = DiscoveryLab::build();
    // A /26 routed to the router, which answers for two addresses of it: an echo to a
    // silent address leaves the machine (on the lab segment itself it would wait for ARP
    // and never be sent, so the wire could not tell).
    let c = lab.gateway().octets()[2];
    let silent = format!("10.232.{c}.0/26");
    let answering = [Ipv4Addr::new(10, 232, c, 5), Ipv4Addr::new(10, 232, c, 6)];
    lab.route_silent(&silent, &answering);
    let tap = PacketTap::start(lab.lab());
    let mut run = assignment(vec![silent], Vec::new(), RATE);
    run.timeout_ms = 500;
    let started = Instant::now();
    let mut component = Component::start(vec![run]);
    let reports = component.until_final().await;
    let elapsed = started.elapsed();
    let last = reports.last().expect("final report");
    assert_eq!(last.state, ScanState::Succeeded);
    assert_eq!((last.scanned, last.counts.icmp_answered), (62, 2));

    // What left for the lab: an echo per address and a retry per silent one, then the
    // SNMP requests to the two that answered (refused: nothing listens there).
    let probes = tap.probes();
    let echoes = probes.iter().filter(|(_, p)| *p == Probe::IcmpEcho).count();
    let snmp = probes.iter().filter(|(_, p)| *p == Probe::Udp(161)).count();
    let sent = component.metric("cdot_collector_discovery_packets_total");
    let busiest = tap.most_within(Duration::from_secs(1));
    eprintln!(
        "{echoes} echoes and {snmp} SNMP requests in {elapsed:?} ({sent} counted); at most {busiest} in one second"
    );
    assert_eq!(echoes, 62 + 60);
    assert!(snmp >= 4, "{snmp}");
    assert_eq!(
        sent as usize,
        echoes + snmp,
        "every packet is paced and counted"
    );
    // No second holds more than the rate (one more at a window's edge), and the run takes
    // at least as long as its packets at that rate.
    assert!(
        busiest <= RATE as usize + 1,
        "{busiest} packets in one second"
    );
    let least = Duration::from_secs_f64((echoes + snmp - 1) as f64 / f64::from(RATE));
    assert!(elapsed >= least, "{elapsed:?} < {least:?}");
    assert_eq!(last.counts.errors.get("unreachable"), Some(&4));
    component.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_run_stops_and_the_same_run_assigned_again_starts_over() {
    let lab = DiscoveryLab::build();
    // 253 addresses at 20 packets a second: over 12 s if left alone.
    let run = assignment(vec![lab.subnet()], vec![lab.gateway().to_string()], 20);
    let mut component = Component::start(vec![run.clone()]);
    let first = component
        .next_report(Duration::from_secs(10))
        .await
        .expect("a progress report");
    assert_eq!(first.state, ScanState::Running);
    assert!(first.scanned < first.total, "{first:?}");

    component.runs.send(Vec::new()).expect("assignments");
    cdot_agent::testing::wait_for("the run stopped", Duration::from_secs(5), || {
        component.metric("cdot_collector_discovery_runs_running") == 0.0
    })
    .await;
    // A report sent as the run was removed may still be queued; then nothing more.
    while component
        .next_report(Duration::from_millis(200))
        .await
        .is_some()
    {}
    assert!(
        component
            .next_report(Duration::from_secs(3))
            .await
            .is_none(),
        "a removed run reports nothing more"
    );
    assert_eq!(
        component.metric(r#"cdot_collector_discovery_runs_finished_total{state="succeeded"}"#),
        0.0
    );

    // Assigned again (as after a collector restart): it starts over, with a new start time.
    component.runs.send(vec![run.clone()]).expect("assignments");
    let again = component
        .next_report(Duration::from_secs(10))
        .await
        .expect("a progress report");
    assert_eq!(again.run, run.run);
    assert!(again.started_ms > first.started_ms, "{again:?}");
    assert!(again.scanned < again.total);
    assert_eq!(
        component.metric("cdot_collector_discovery_runs_started_total"),
        2.0
    );
    component.stop().await;
}

#[tokio::test]
async fn a_run_that_cannot_start_fails_with_one_report_saying_why() {
    let run = assignment(vec!["10.0.0.0/33".into()], Vec::new(), 100);
    let mut component = Component::start(vec![run.clone()]);
    let reports = component.until_final().await;
    let [report] = reports.as_slice() else {
        panic!("one report: {reports:?}");
    };
    assert_eq!((report.run, report.state), (run.run, ScanState::Failed));
    let error = report.error.as_deref().unwrap_or_default();
    assert!(error.contains("target \"10.0.0.0/33\""), "{error}");
    assert_eq!((report.total, report.scanned), (0, 0));
    assert!(
        component
            .next_report(Duration::from_millis(500))
            .await
            .is_none()
    );
    assert_eq!(
        component.metric(r#"cdot_collector_discovery_runs_finished_total{state="failed"}"#),
        1.0
    );
    component.stop().await;
}
