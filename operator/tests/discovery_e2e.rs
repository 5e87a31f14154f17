//! Discovery end to end, real everything: the real `cdot-operator` (standalone, fresh
//! PostgreSQL database) schedules DiscoveryScans onto the real `cdot-collector` (enrolled
//! over mutual TLS), which sweeps a network-namespace lab with ICMP and asks its hosts over
//! SNMP (net-snmp's snmpd, v2c and v3): see `cdot_testkit::discovery_lab` for who answers
//! what. People then read the Devices, the scan's status and the topology over the API.
//!
//! Needs root, iproute2, snmpd, python3 and iputils-ping (`scripts/test` installs them).
mod support;

use std::{path::Path, time::Duration};

use cdot_testkit::{
    discovery_lab::{self, DiscoveryLab},
    process::Daemon,
};
use serde_json::{Value, json};
use support::{Operator, TestCollector, TestDb, create_token, wait_for};

/// SNMP credentials the scans use: v2c first, then v3 (so the v3 host answers the second).
fn write_manifests(dir: &Path, lab: &DiscoveryLab, scans: &[&str], rate_limit: u32) {
    let v3 = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: snmp-v3, namespace: acme}}\nstringData:\n  username: {}\n  authProtocol: SHA\n  authPassword: {}\n  privProtocol: AES\n  privPassword: {}\n",
        discovery_lab::V3_USER,
        discovery_lab::V3_AUTH_PASSWORD,
        discovery_lab::V3_PRIV_PASSWORD
    );
    let v2 = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: snmp-v2, namespace: acme}}\nstringData:\n  community: {}\n",
        discovery_lab::COMMUNITY
    );
    // A switch a person wrote by hand, by the address discovery will find it on: discovery
    // must match it, fill in its status and leave its spec alone.
    let by_hand = format!(
        "apiVersion: rmm.cdot.io/v1alpha1\nkind: Device\nmetadata: {{name: core-switch, namespace: acme}}\nspec:\n  class: Switch\n  description: set by hand\n  managementAddresses: [\"{}\"]\n",
        lab.switch.addr
    );
    let mut text = format!("{v2}---\n{v3}---\n{by_hand}");
    for name in scans {
        let scan = json!({
            "apiVersion": "rmm.cdot.io/v1alpha1",
            "kind": "DiscoveryScan",
            "metadata": { "name": name, "namespace": "acme" },
            "spec": {
                "targets": [lab.subnet()],
                "excludes": [format!("{}/32", lab.gateway())],
                "methods": { "icmp": true, "snmp": { "credentials": [
                    { "version": "V2c", "secretRef": { "name": "snmp-v2" } },
                    { "version": "V3", "secretRef": { "name": "snmp-v3" } },
                ] } },
                "rateLimit": rate_limit,
                "concurrency": 256,
                "timeout": "1s",
                "retries": 1,
                "registration": { "mode": "Register" },
            },
        });
        text.push_str("---\n");
        text.push_str(&serde_json::to_string(&scan).expect("json"));
        text.push('\n');
    }
    std::fs::write(dir.join("discovery.yaml"), text).expect("write manifests");
}

struct Running {
    operator: Operator,
    viewer: String,
    collector: TestCollector,
    daemon: Daemon,
    http: reqwest::Client,
}

impl Running {
    async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.operator.base))
            .bearer_auth(&self.viewer)
            .send()
            .await
            .expect("GET");
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.expect("json")
    }

    async fn devices(&self) -> Vec<Value> {
        self.get("/v1/namespaces/acme/devices").await["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The scan once every one of its runs finished and was processed.
    async fn settled_scan(&self, name: &str) -> Value {
        let path = format!("/v1/namespaces/acme/discoveryscans/{name}");
        wait_for(Duration::from_secs(120), || async {
            let scan = self.get(&path).await;
            let status = &scan["status"];
            (status["phase"] == "Succeeded"
                && status["lastRun"]["phase"] == "Succeeded"
                && status["hosts"].as_array().is_some_and(|h| !h.is_empty()))
            .then_some(scan)
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "scan {name} did not finish: {}\noperator log:\n{}\ncollector log:\n{}",
                futures_lite_block(self.get(&path)),
                std::fs::read_to_string(&self.operator.log).unwrap_or_default(),
                self.collector.logs()
            )
        })
    }
}

/// The scan as it stands, for a failure message.
fn futures_lite_block(f: impl std::future::Future<Output = Value>) -> Value {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

async fn start(
    tmp: &Path,
    db: &TestDb,
    lab: &DiscoveryLab,
    scans: &[&str],
    rate_limit: u32,
) -> Running {
    let manifests = tmp.join("repo");
    std::fs::create_dir_all(&manifests).expect("mkdir");
    let enroll_token = support::create_enrollment_token(&manifests, "collectors", "acme");
    let viewer = create_token(&manifests, "viewer", "acme", "viewer", "acme");
    write_manifests(&manifests, lab, scans, rate_limit);
    let operator = Operator::start(
        &[&manifests],
        Some(&db.url),
        &["--discovery-interval", "1s"],
        tmp,
    )
    .await;
    let collector = TestCollector::enroll(&operator, &enroll_token, "col-1", tmp);
    let running = collector.run_scanner();
    Running {
        operator,
        viewer,
        collector,
        daemon: running,
        http: reqwest::Client::new(),
    }
}

/// Every Device whose discovered or spec addresses include `address`.
fn holding<'a>(devices: &'a [Value], address: &str) -> Vec<&'a Value> {
    devices
        .iter()
        .filter(|d| {
            let has = |v: &Value| {
                v.as_array()
                    .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(address)))
            };
            has(&d["spec"]["managementAddresses"]) || has(&d["status"]["discovery"]["addresses"])
        })
        .collect()
}

fn named<'a>(devices: &'a [Value], name: &str) -> &'a Value {
    devices
        .iter()
        .find(|d| d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no Device {name}; have {:?}", names(devices)))
}

fn names(devices: &[Value]) -> Vec<String> {
    devices
        .iter()
        .filter_map(|d| d["metadata"]["name"].as_str().map(str::to_owned))
        .collect()
}

/// Two scans of the same lab at once: every host is one Device (the router's two
/// addresses included), each classified, registered with the credential that answered,
/// the hand-written switch matched and left alone, the LLDP neighbours linked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_overlapping_scans_register_each_box_once() {
    let db = TestDb::create().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let lab = DiscoveryLab::build();
    let running = start(tmp.path(), &db, &lab, &["lab", "lab-again"], 2000).await;
    let first = running.settled_scan("lab").await;
    let second = running.settled_scan("lab-again").await;
    let devices = running.devices().await;

    // The router answered on two addresses: one Device with both.
    let router = named(&devices, discovery_lab::ROUTER_SYS_NAME);
    for address in [lab.router.addr, lab.router_second] {
        let holders = holding(&devices, &address.to_string());
        assert_eq!(holders.len(), 1, "{address} is on {:?}", names(&devices));
    }
    let addresses = router["spec"]["managementAddresses"]
        .as_array()
        .expect("addresses");
    assert!(
        addresses.contains(&json!(lab.router.addr.to_string())),
        "{addresses:?}"
    );
    assert!(
        addresses.contains(&json!(lab.router_second.to_string())),
        "{addresses:?}"
    );
    assert_eq!(router["spec"]["class"], "Router");
    assert_eq!(
        router["spec"]["snmp"]["credentialsSecretRef"]["name"],
        "snmp-v2"
    );
    assert_eq!(
        router["metadata"]["labels"]["rmm.cdot.io/origin"],
        "discovery"
    );
    assert_eq!(router["status"]["source"], "Discovery");
    assert_eq!(
        router["status"]["discovery"]["serial"],
        discovery_lab::ROUTER_SERIAL.to_ascii_lowercase()
    );

    // The v3-only host answered the second credential.
    let v3 = named(&devices, discovery_lab::V3_SYS_NAME);
    assert_eq!(v3["spec"]["snmp"]["version"], "V3");
    assert_eq!(
        v3["spec"]["snmp"]["credentialsSecretRef"]["name"],
        "snmp-v3"
    );

    // The switch someone wrote by hand: matched by its address, spec untouched.
    let switch = named(&devices, "core-switch");
    assert_eq!(switch["spec"]["description"], "set by hand");
    assert!(switch["spec"]["snmp"].is_null(), "{switch}");
    assert_eq!(
        switch["status"]["discovery"]["sysName"],
        discovery_lab::SWITCH_SYS_NAME
    );
    assert!(
        devices
            .iter()
            .all(|d| d["metadata"]["name"] != discovery_lab::SWITCH_SYS_NAME),
        "the switch was registered a second time: {:?}",
        names(&devices)
    );

    // Hosts without a working credential are registered by address, class Other, unpolled.
    for host in [&lab.icmp_only, &lab.wrong_community, &lab.garbage] {
        let holders = holding(&devices, &host.addr.to_string());
        assert_eq!(holders.len(), 1, "{} on {:?}", host.addr, names(&devices));
        assert_eq!(holders[0]["spec"]["class"], "Other");
        assert!(holders[0]["spec"]["snmp"].is_null());
    }
    assert!(holding(&devices, &lab.silent.to_string()).is_empty());

    // What the runs say: every responder found, errors by reason.
    for scan in [&first, &second] {
        let run = &scan["status"]["lastRun"];
        assert_eq!(run["total"], 253, "{run}");
        assert_eq!(run["scanned"], 253, "{run}");
        assert_eq!(run["found"], 7, "6 hosts, the router twice: {run}");
        assert!(run["errors"]["malformed"].as_u64() >= Some(1), "{run}");
        assert!(run["errors"]["timeout"].as_u64() >= Some(1), "{run}");
    }
    let registered = first["status"]["lastRun"]["registered"]
        .as_u64()
        .unwrap_or(0)
        + second["status"]["lastRun"]["registered"]
            .as_u64()
            .unwrap_or(0);
    assert_eq!(
        registered, 5,
        "router, v3 host and three by address, once across both scans"
    );

    // Interface polling of what was registered starts by itself: the collector that found
    // them polls them with the credential that answered.
    let metrics = format!(
        "http://127.0.0.1:{}/metrics",
        running.collector.metrics_port
    );
    let polled = wait_for(Duration::from_secs(60), || async {
        let text = reqwest::get(&metrics).await.ok()?.text().await.ok()?;
        text.lines()
            .any(|l| l.starts_with(r#"cdot_collector_snmp_polls_total{result="ok"}"#))
            .then_some(())
    })
    .await;
    assert!(polled.is_some(), "no SNMP poll of a registered device");

    // The router's LLDP neighbours are edges to the Devices that are those boxes.
    let topology = running.get("/v1/namespaces/acme/topology").await;
    let edges = topology["edges"].as_array().expect("edges");
    let linked: Vec<&str> = edges
        .iter()
        .filter(|e| e["device"] == discovery_lab::ROUTER_SYS_NAME)
        .filter_map(|e| e["remoteDevice"].as_str())
        .collect();
    assert!(linked.contains(&"core-switch"), "{topology}");
    assert!(linked.contains(&discovery_lab::V3_SYS_NAME), "{topology}");
}

/// A collector killed in the middle of a run (SIGKILL: nothing flushed) and started again
/// starts the run over; the status counts the restart and the result is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_survives_its_collector_being_killed() {
    let db = TestDb::create().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let lab = DiscoveryLab::build();
    // 253 addresses and their retries at 40 probes/s: long enough to kill it midway.
    let mut running = start(tmp.path(), &db, &lab, &["slow"], 40).await;
    let path = "/v1/namespaces/acme/discoveryscans/slow";
    let midway = wait_for(Duration::from_secs(60), || async {
        let scan = running.get(path).await;
        let scanned = scan["status"]["progress"]["scanned"].as_u64().unwrap_or(0);
        (scan["status"]["phase"] == "Running" && scanned > 0).then_some(scanned)
    })
    .await
    .expect("the run never reported progress");
    running.daemon.0.kill().expect("kill the collector");
    let _ = running.daemon.0.wait();
    running.daemon = running.collector.run_scanner();
    let scan = running.settled_scan("slow").await;
    let run = &scan["status"]["lastRun"];
    assert!(
        run["restarts"].as_u64() >= Some(1),
        "killed at {midway} scanned: {run}"
    );
    assert_eq!(run["scanned"], 253, "{run}");
    assert_eq!(run["found"], 7, "{run}");
    let devices = running.devices().await;
    for address in [lab.router.addr, lab.router_second] {
        assert_eq!(
            holding(&devices, &address.to_string()).len(),
            1,
            "{:?}",
            names(&devices)
        );
    }
}
