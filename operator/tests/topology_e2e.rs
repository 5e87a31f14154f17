//! A dead router pages once: the real `cdot-operator` and `cdot-collector` watch a site
//! whose switch and server sit behind its router (network namespaces, real routing, snmpd
//! in each: `cdot_testkit::discovery_lab::RoutedSite`). A DiscoveryScan learns the LLDP
//! links, the collector polls all three over SNMP, and when the router's link goes down all
//! three stop answering: one `deviceOffline` notification goes out (the router's), the
//! other two alerts are held back and name it.
//!
//! Needs root, iproute2, snmpd and iputils-ping (`scripts/test` installs them).
mod support;

use std::{path::Path, time::Duration};

use cdot_testkit::{
    discovery_lab::{COMMUNITY, RoutedSite},
    receiver::Receiver,
};
use serde_json::Value;
use support::{Operator, TestCollector, TestDb, create_token, wait_for};

const COLLECTOR: &str = "col-1";

fn manifests(dir: &Path, site: &RoutedSite, hook: &str) {
    let [lan, behind] = site.subnets();
    let device = |name: &str, class: &str, address: String| {
        format!(
            "apiVersion: rmm.cdot.io/v1alpha1\nkind: Device\nmetadata: {{name: {name}, namespace: acme, labels: {{role: network}}}}\nspec:\n  class: {class}\n  managementAddresses: [\"{address}\"]\n  snmp: {{collector: {COLLECTOR}, pollInterval: 10s, timeout: 1s, retries: 0, credentialsSecretRef: {{name: snmp-v2}}}}\n"
        )
    };
    let yaml = format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: snmp-v2, namespace: acme}}
stringData: {{community: {COMMUNITY}}}
---
{router}---
{switch}---
{server}---
apiVersion: rmm.cdot.io/v1alpha1
kind: DiscoveryScan
metadata: {{name: site, namespace: acme}}
spec:
  targets: ["{lan}", "{behind}"]
  excludes: ["{gateway}/32"]
  methods: {{icmp: true, snmp: {{credentials: [{{version: V2c, secretRef: {{name: snmp-v2}}}}]}}}}
  rateLimit: 2000
  concurrency: 256
---
apiVersion: rmm.cdot.io/v1alpha1
kind: NotificationChannel
metadata: {{name: hook, namespace: acme}}
spec:
  type: Webhook
  webhook: {{url: "{hook}"}}
---
apiVersion: rmm.cdot.io/v1alpha1
kind: AlertRule
metadata: {{name: offline, namespace: acme}}
spec:
  selector: {{matchLabels: {{role: network}}}}
  metric: deviceOffline
  reduce: {{function: last, window: 1m}}
  condition: {{op: ">=", threshold: 1}}
  severity: Critical
  summary: "{{{{ device }}}} is offline"
  channels: [hook]
"#,
        router = device("rtr-2", "Router", site.router.addr.to_string()),
        switch = device("sw-2", "Switch", site.switch.addr.to_string()),
        server = device("srv-2", "Server", site.server.addr.to_string()),
        gateway = site.gateway(),
    );
    std::fs::write(dir.join("site.yaml"), yaml).expect("write manifests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_router_pages_once_and_the_devices_behind_it_name_it() {
    let db = TestDb::create().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let site = RoutedSite::build(COLLECTOR);
    let receiver = Receiver::start().await;
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    manifests(&repo, &site, &receiver.url("/hook"));
    let enroll_token = support::create_enrollment_token(&repo, "collectors", "acme");
    let viewer = create_token(&repo, "viewer", "acme", "viewer", "acme");
    let ca = tmp.path().join("receiver-ca.pem");
    std::fs::write(&ca, receiver.ca_pem()).expect("ca");
    let ca = ca.display().to_string();
    let operator = Operator::start(
        &[&repo],
        Some(&db.url),
        &["--notify-ca-file", &ca, "--discovery-interval", "1s"],
        tmp.path(),
    )
    .await;
    let collector = TestCollector::enroll(&operator, &enroll_token, COLLECTOR, tmp.path());
    let _collector = collector.run_scanner();
    let http = reqwest::Client::new();
    let get = |path: String| {
        let (http, base, viewer) = (http.clone(), operator.base.clone(), viewer.clone());
        async move {
            let response = http
                .get(format!("{base}{path}"))
                .bearer_auth(&viewer)
                .send()
                .await
                .expect("GET");
            assert!(
                response.status().is_success(),
                "GET {path}: {}",
                response.status()
            );
            response.json::<Value>().await.expect("json")
        }
    };
    let logs = || {
        format!(
            "operator log:\n{}\ncollector log:\n{}",
            std::fs::read_to_string(&operator.log).unwrap_or_default(),
            collector.logs()
        )
    };

    // Discovery links the router to both; polling makes all three Ready.
    let linked = wait_for(Duration::from_secs(90), || async {
        let topology = get("/v1/namespaces/acme/topology".into()).await;
        let mut to: Vec<String> = topology["edges"]
            .as_array()?
            .iter()
            .filter(|e| e["device"] == "rtr-2")
            .filter_map(|e| e["remoteDevice"].as_str().map(str::to_owned))
            .collect();
        to.sort();
        (to == ["srv-2", "sw-2"]).then_some(topology)
    })
    .await;
    assert!(linked.is_some(), "no LLDP links; {}", logs());
    let ready = wait_for(Duration::from_secs(90), || async {
        let devices = get("/v1/namespaces/acme/devices".into()).await;
        let ready = devices["items"]
            .as_array()?
            .iter()
            .filter(|d| d["metadata"]["labels"]["role"] == "network")
            .filter(|d| {
                d["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .count();
        (ready == 3).then_some(())
    })
    .await;
    assert!(
        ready.is_some(),
        "the polled devices never became Ready; {}",
        logs()
    );

    site.cut_router();
    let firing = wait_for(Duration::from_secs(120), || async {
        let alerts = get("/v1/namespaces/acme/alerts?state=firing".into()).await;
        let items = alerts["items"].as_array()?.clone();
        (items.len() == 3).then_some(items)
    })
    .await
    .unwrap_or_else(|| panic!("three offline alerts never fired; {}", logs()));
    // Notifications are grouped after 200 ms; give delivery a moment.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent: Vec<String> = receiver.requests().iter().map(|r| r.text()).collect();
    assert_eq!(sent.len(), 1, "one page, not three: {sent:#?}");
    assert!(sent[0].contains("rtr-2"), "{}", sent[0]);
    assert!(
        !sent[0].contains("sw-2") && !sent[0].contains("srv-2"),
        "{}",
        sent[0]
    );

    let id_of = |device: &str| {
        firing
            .iter()
            .find(|a| a["device"] == device)
            .and_then(|a| a["id"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no alert for {device}"))
    };
    let history = |device: &str| {
        let path = format!("/v1/namespaces/acme/alerts/{}", id_of(device));
        async move { get(path).await.to_string() }
    };
    let router_alert = id_of("rtr-2");
    for device in ["sw-2", "srv-2"] {
        let text = history(device).await;
        assert!(
            text.contains("inhibited") && text.contains(&router_alert),
            "{device}: {text}"
        );
    }
    let text = history("rtr-2").await;
    assert!(text.contains("explains"), "{text}");
}
