//! Emulator tests of Kubernetes mode: the real `cdot-operator run` binary against a
//! Kubernetes API *emulator* (PyPI's kmock plus our shim, `cdot_testkit::kube_emulator`) on a
//! random loopback port, with a real PostgreSQL. No API server can run on this machine, so
//! these prove the wiring (watches, status subresource, finalizers, Events, Leases, kubectl),
//! not API-server semantics such as validation, admission or RBAC.
mod support;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use cdot_testkit::kube_emulator::KubeEmulator;
use serde_json::{Value, json};
use support::{Operator, TestDb, examples_dir};

const WAIT: Duration = Duration::from_secs(60);

fn get(k8s: &KubeEmulator, path: &str) -> Option<Value> {
    let response = k8s.request("GET", path, "application/json", "");
    match response.status {
        200 => Some(serde_json::from_str(&response.body).expect("JSON from the emulator")),
        404 => None,
        status => panic!("GET {path}: {status} {}", response.body),
    }
}

fn send(k8s: &KubeEmulator, method: &str, path: &str, content_type: &str, body: &Value) -> Value {
    let response = k8s.request(method, path, content_type, &body.to_string());
    assert!(
        (200..300).contains(&response.status),
        "{method} {path}: {} {}",
        response.status,
        response.body
    );
    serde_json::from_str(&response.body).expect("JSON from the emulator")
}

fn path(plural: &str, namespace: &str, name: &str) -> String {
    format!("/apis/rmm.cdot.io/v1alpha1/namespaces/{namespace}/{plural}/{name}")
}

fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Waits until `check` holds for the object at `path`, and returns it.
fn wait_for(
    k8s: &KubeEmulator,
    operator: &Operator,
    path: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(object) = get(k8s, path)
            && check(&object)
        {
            return object;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: not {what} within {WAIT:?}: {:#}\noperator log:\n{}",
            get(k8s, path).unwrap_or_default(),
            operator.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn reconciled(object: &Value) -> bool {
    object["status"]["observedGeneration"] == object["metadata"]["generation"]
        && condition(object, "Ready").is_some()
}

fn ready(object: &Value) -> bool {
    reconciled(object) && condition(object, "Ready").is_some_and(|c| c["status"] == "True")
}

async fn operator(k8s: &KubeEmulator, db: &TestDb, dir: &Path, identity: &str) -> Operator {
    Operator::start_in_cluster(
        k8s.kubeconfig(),
        &db.url,
        &[
            "--identity",
            identity,
            "--lease-duration",
            "3s",
            "--lease-namespace",
            "cdot-system",
        ],
        dir,
    )
    .await
}

fn channel() -> Value {
    json!({
        "apiVersion": "rmm.cdot.io/v1alpha1", "kind": "NotificationChannel",
        "metadata": { "name": "ops", "namespace": "acme" },
        "spec": { "type": "Webhook", "webhook": { "urlSecretRef": { "name": "hook", "key": "url" } } },
    })
}

fn rule(window: &str) -> Value {
    json!({
        "apiVersion": "rmm.cdot.io/v1alpha1", "kind": "AlertRule",
        "metadata": { "name": "cpu-high", "namespace": "acme" },
        "spec": {
            "selector": { "matchLabels": { "role": "server" } },
            "metric": "cpu",
            "reduce": { "function": "avg", "window": window },
            "condition": { "op": ">", "threshold": 90 },
            "severity": "Critical",
            "channels": ["ops"],
        },
    })
}

fn device(name: &str) -> Value {
    json!({
        "apiVersion": "rmm.cdot.io/v1alpha1", "kind": "Device",
        "metadata": { "name": name, "namespace": "acme", "labels": { "role": "server" } },
        "spec": { "class": "Server" },
    })
}

fn create(k8s: &KubeEmulator, plural: &str, object: &Value) -> Value {
    send(
        k8s,
        "POST",
        &format!("/apis/rmm.cdot.io/v1alpha1/namespaces/acme/{plural}"),
        "application/json",
        object,
    )
}

/// Waits for an Event of namespace acme that `wanted` picks, and returns it.
fn event(k8s: &KubeEmulator, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let events = get(k8s, "/apis/events.k8s.io/v1/namespaces/acme/events").expect("events");
        if let Some(e) = events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| wanted(e))
        {
            return e.clone();
        }
        assert!(Instant::now() < deadline, "no {what} event: {events:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An enrollment-token Secret in acme for token `cdot_<name>`, with `extra` string data.
fn enrollment_secret(k8s: &KubeEmulator, name: &str, extra: Value) {
    use cdot_crds::api_token::{format_token_hash, hash_token};
    let mut data = json!({
        "tokenHash": format_token_hash(&hash_token(&format!("cdot_{name}"))),
        "maxUses": "5",
    });
    if let (Some(data), Some(extra)) = (data.as_object_mut(), extra.as_object()) {
        data.extend(extra.clone());
    }
    send(
        k8s,
        "POST",
        "/api/v1/namespaces/acme/secrets",
        "application/json",
        &json!({
            "apiVersion": "v1", "kind": "Secret", "type": "rmm.cdot.io/enrollment-token",
            "metadata": { "name": name, "namespace": "acme" },
            "stringData": data,
        }),
    );
}

async fn metric(operator: &Operator, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", operator.base))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Create → Ready, spec edit → new observedGeneration, an invalid spec → Degraded and a
/// Warning Event, delete → the finalizer cleans the store up and lets the object go.
#[tokio::test(flavor = "multi_thread")]
async fn emulator_objects_go_from_created_to_ready_to_deleted() {
    let k8s = KubeEmulator::start();
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let operator = operator(&k8s, &db, dir.path(), "solo").await;

    create(&k8s, "notificationchannels", &channel());
    create(&k8s, "alertrules", &rule("5m"));
    create(&k8s, "devices", &device("web-01"));

    let rule_path = path("alertrules", "acme", "cpu-high");
    // The rule may be reconciled before the Device is seen; its count follows a few
    // seconds later (dependents wait for their peers to be quiet).
    let first = wait_for(
        &k8s,
        &operator,
        &rule_path,
        "Ready matching 1 device",
        |o| ready(o) && o["status"]["matchedDevices"] == 1,
    );
    assert_eq!(first["status"]["observedGeneration"], 1);
    assert_eq!(
        first["spec"],
        rule("5m")["spec"],
        "status writes never touch spec"
    );

    let device_path = path("devices", "acme", "web-01");
    let web = wait_for(&k8s, &operator, &device_path, "reconciled", reconciled);
    assert_eq!(
        web["metadata"]["finalizers"],
        json!(["rmm.cdot.io/cleanup"])
    );
    assert_eq!(
        condition(&web, "Ready").expect("Ready")["reason"],
        "NotReporting"
    );

    // A spec edit: the generation moves and the status follows it.
    send(
        &k8s,
        "PATCH",
        &rule_path,
        "application/merge-patch+json",
        &json!({ "spec": { "reduce": { "window": "10m" } } }),
    );
    let edited = wait_for(&k8s, &operator, &rule_path, "at generation 2", |o| {
        o["metadata"]["generation"] == 2 && ready(o)
    });
    assert_eq!(edited["status"]["observedGeneration"], 2);

    // Another matching Device: the rule's count follows without a change of its own.
    create(&k8s, "devices", &device("web-02"));
    wait_for(&k8s, &operator, &rule_path, "matching 2 devices", |o| {
        o["status"]["matchedDevices"] == 2
    });

    // An invalid edit: Degraded with the field, and a Warning Event.
    send(
        &k8s,
        "PATCH",
        &rule_path,
        "application/merge-patch+json",
        &json!({ "spec": { "reduce": { "window": "soon" } } }),
    );
    let invalid = wait_for(&k8s, &operator, &rule_path, "Degraded", |o| {
        o["status"]["observedGeneration"] == 3
            && condition(o, "Degraded").is_some_and(|c| c["status"] == "True")
    });
    let message = condition(&invalid, "Degraded").expect("Degraded")["message"]
        .as_str()
        .expect("message")
        .to_owned();
    assert!(message.contains("spec.reduce.window"), "{message}");
    event(&k8s, "InvalidSpec", |e| {
        e["reason"] == "InvalidSpec"
            && e["type"] == "Warning"
            && e["regarding"]["name"] == "cpu-high"
    });

    // Delete with the finalizer: the store forgets the device, then the object goes.
    let response = k8s.request("DELETE", &device_path, "application/json", "");
    assert!(response.status < 300, "{}", response.body);
    let deadline = Instant::now() + WAIT;
    while get(&k8s, &device_path).is_some() {
        assert!(
            Instant::now() < deadline,
            "the Device was not released:\n{}",
            operator.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM objects WHERE kind = 'Device' AND name = 'web-01'",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(left, 0, "the store still holds the deleted Device");
}

/// Two replicas share the Lease: one leads and reconciles, the other only serves; when
/// the leader stops, the other takes over.
#[tokio::test(flavor = "multi_thread")]
async fn emulator_two_replicas_elect_one_leader() {
    let k8s = KubeEmulator::start();
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = operator(&k8s, &db, dir.path(), "replica-a").await;
    let b = operator(&k8s, &db, dir.path(), "replica-b").await;

    let lease_path = "/apis/coordination.k8s.io/v1/namespaces/cdot-system/leases/cdot-operator";
    let deadline = Instant::now() + WAIT;
    let holder = loop {
        if let Some(lease) = get(&k8s, lease_path)
            && let Some(holder) = lease["spec"]["holderIdentity"].as_str()
        {
            break holder.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "nobody took the Lease:\n{}",
            a.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(holder, "replica-a", "the first replica started leads");

    create(&k8s, "notificationchannels", &channel());
    wait_for(
        &k8s,
        &a,
        &path("notificationchannels", "acme", "ops"),
        "reconciled",
        reconciled,
    );
    assert_eq!(metric(&a, "cdot_leader").await, 1.0);
    assert_eq!(metric(&b, "cdot_leader").await, 0.0);
    assert!(metric(&a, "cdot_reconcile_total").await >= 1.0);
    assert_eq!(
        metric(&b, "cdot_reconcile_total").await,
        0.0,
        "a replica that does not lead reconciled"
    );
    // Both serve the API.
    for replica in [&a, &b] {
        let status = reqwest::get(format!("{}/readyz", replica.base))
            .await
            .expect("readyz")
            .status();
        assert!(status.is_success());
    }

    // The leader stops (releasing the Lease); the other takes over and reconciles.
    assert!(a.interrupt().success());
    create(&k8s, "devices", &device("after-failover"));
    wait_for(
        &k8s,
        &b,
        &path("devices", "acme", "after-failover"),
        "reconciled by the new leader",
        reconciled,
    );
    assert_eq!(metric(&b, "cdot_leader").await, 1.0);
    let lease = get(&k8s, lease_path).expect("lease");
    assert_eq!(lease["spec"]["holderIdentity"], "replica-b");
}

/// `kubectl apply --validate=false -f examples/` against the emulator, and every object it
/// created is reconciled at its generation; a Workflow follows its script's ConfigMap.
#[tokio::test(flavor = "multi_thread")]
async fn emulator_kubectl_apply_of_the_examples_is_reconciled() {
    let k8s = KubeEmulator::start();
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let operator = operator(&k8s, &db, dir.path(), "solo").await;

    let examples = examples_dir();
    let out = k8s.kubectl(&[
        "apply",
        "--validate=false",
        "-R",
        "-f",
        examples.to_str().expect("path"),
    ]);
    assert!(
        out.status.success(),
        "kubectl apply failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let mut total = 0;
    for plural in [
        "devices",
        "alertrules",
        "notificationchannels",
        "patchpolicies",
        "workflows",
        "discoveryscans",
    ] {
        let list = get(&k8s, &format!("/apis/rmm.cdot.io/v1alpha1/{plural}")).expect("list");
        for item in list["items"].as_array().expect("items") {
            let object_path = path(
                plural,
                item["metadata"]["namespace"].as_str().expect("namespace"),
                item["metadata"]["name"].as_str().expect("name"),
            );
            let done = wait_for(&k8s, &operator, &object_path, "reconciled", reconciled);
            assert!(
                condition(&done, "Degraded").is_some_and(|c| c["status"] == "False"),
                "an example is invalid: {done:#}"
            );
            total += 1;
        }
    }
    assert!(total >= 10, "only {total} example objects were applied");

    // A Workflow whose script lives in a ConfigMap is Ready while the ConfigMap is there
    // and names it when it is deleted (the ConfigMap watch tells the Workflow reconciler).
    let erp = path("workflows", "acme", "restart-erp-worker");
    wait_for(&k8s, &operator, &erp, "ready", ready);
    let out = k8s.kubectl(&["delete", "configmap", "-n", "acme", "erp-scripts"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let missing = wait_for(&k8s, &operator, &erp, "missing its ConfigMap", |o| {
        condition(o, "Ready").is_some_and(|c| c["reason"] == "ReferenceNotFound")
    });
    assert_eq!(
        condition(&missing, "Ready").expect("Ready")["message"],
        "not found in namespace acme: ConfigMap erp-scripts \
         (spec.steps[2].script.configMapRef)"
    );
}

/// An agent enrolling in Kubernetes mode: the token comes from a Secret in the API server,
/// the Device is created through the API server with labels that say where it came from,
/// and the Enrolled transition is an Event.
#[tokio::test(flavor = "multi_thread")]
async fn emulator_enrollment_creates_the_device_through_the_api_server() {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    use ring::signature::KeyPair as _;

    let k8s = KubeEmulator::start();
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    enrollment_secret(
        &k8s,
        "laptops",
        json!({"labels": "rmm.cdot.io/site=london"}),
    );
    let operator = operator(&k8s, &db, dir.path(), "solo").await;

    let key = ring::signature::Ed25519KeyPair::from_pkcs8(
        ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .expect("key")
            .as_ref(),
    )
    .expect("key pair");
    let client = support::insecure_client();
    let response = client
        .post(format!("{}/v1/agent/enroll", operator.agent_base))
        .json(&cdot_crds::wire::EnrollRequest {
            token: "cdot_laptops".into(),
            device_name: "pc-7".into(),
            namespace: None,
            csr_pem: None,
            jwt_public_key: Some(URL_SAFE_NO_PAD.encode(key.public_key().as_ref())),
            agent_version: "0.1.0-test".into(),
            device_class: Some(cdot_crds::device::DeviceClass::Workstation),
        })
        .send()
        .await
        .expect("enroll");
    let status = response.status();
    let body = response.text().await.expect("body");
    assert!(status.is_success(), "{status}: {body}\n{}", operator.logs());

    let device_path = path("devices", "acme", "pc-7");
    let device = wait_for(&k8s, &operator, &device_path, "enrolled", |o| {
        reconciled(o) && condition(o, "Enrolled").is_some_and(|c| c["status"] == "True")
    });
    let labels = &device["metadata"]["labels"];
    assert_eq!(labels["rmm.cdot.io/origin"], "enrollment", "{device:#}");
    assert_eq!(labels["rmm.cdot.io/enrollment-token"], "laptops");
    assert_eq!(labels["rmm.cdot.io/site"], "london", "the token's labels");
    assert_eq!(device["spec"]["class"], "Workstation");
    assert_eq!(device["status"]["source"], "Agent");
    assert!(device["status"]["agent"]["id"].is_string(), "{device:#}");
    assert!(
        device["status"]["agent"].get("lastSeen").is_none(),
        "the report time stays out of the API server"
    );
    event(&k8s, "Enrolled", |e| {
        e["reason"] == "Enrolled" && e["regarding"]["name"] == "pc-7" && e["type"] == "Normal"
    });
}

/// An alert in Kubernetes mode: an AlertRule applied to the API server, an agent's breach
/// fires it and recovery resolves it, and each is an Event on the AlertRule.
#[tokio::test(flavor = "multi_thread")]
async fn emulator_alerts_fire_and_resolve_as_events_on_the_rule() {
    let k8s = KubeEmulator::start();
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    enrollment_secret(&k8s, "servers", json!({}));
    send(
        &k8s,
        "POST",
        "/apis/rmm.cdot.io/v1alpha1/namespaces/acme/alertrules",
        "application/json",
        &json!({
            "apiVersion": "rmm.cdot.io/v1alpha1", "kind": "AlertRule",
            "metadata": { "name": "cpu-high", "namespace": "acme" },
            "spec": {
                "metric": "cpu", "reduce": {"function": "last", "window": "1m"},
                "condition": {"op": ">", "threshold": 90},
            },
        }),
    );
    let operator = operator(&k8s, &db, dir.path(), "solo").await;
    wait_for(
        &k8s,
        &operator,
        &path("alertrules", "acme", "cpu-high"),
        "rule ready",
        |o| reconciled(o) && condition(o, "Ready").is_some_and(|c| c["status"] == "True"),
    );
    // The status is written when the controller has the rule; the evaluator installs rule
    // sets a moment later (a change set is taken whole), and says so in its gauge.
    let deadline = Instant::now() + WAIT;
    while metric(&operator, "cdot_alerting_rules ").await < 1.0 {
        assert!(Instant::now() < deadline, "the rule was never installed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let agent = support::JwtAgent::enroll(&operator, "cdot_servers", "acme", "web-01").await;
    let on_rule = |reason: &'static str| {
        event(&k8s, reason, |e| {
            e["reason"] == reason
                && e["regarding"]["kind"] == "AlertRule"
                && e["regarding"]["name"] == "cpu-high"
        })
    };
    let now = || jiff::Timestamp::now().as_millisecond();
    assert_eq!(agent.send(now(), &[("cpu", &[], 99.0)]).await, 200);
    let firing = on_rule("AlertFiring");
    assert_eq!(firing["type"], "Warning");
    let note = firing["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("cpu on web-01") && note.contains("threshold 90"),
        "{note}"
    );
    assert_eq!(agent.send(now(), &[("cpu", &[], 10.0)]).await, 200);
    assert_eq!(on_rule("AlertResolved")["type"], "Normal");
}

/// Discovery in Kubernetes mode: a DiscoveryScan and its credential Secret applied to the
/// API server, the real collector (enrolled through the operator, its Device created in the
/// API server) scans the namespace lab, and the Devices it registers are created in the
/// API server (`kubectl get devices` sees them, labelled where they came from); the scan's
/// status there says how the run went, and an Event tells it.
#[tokio::test(flavor = "multi_thread")]
async fn emulator_discovery_registers_devices_through_the_api_server() {
    use cdot_testkit::discovery_lab::{self, DiscoveryLab};

    let k8s = KubeEmulator::start();
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = DiscoveryLab::build();
    enrollment_secret(&k8s, "collectors", json!({}));
    send(
        &k8s,
        "POST",
        "/api/v1/namespaces/acme/secrets",
        "application/json",
        &json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": "snmp-v2", "namespace": "acme" },
            "stringData": { "community": discovery_lab::COMMUNITY },
        }),
    );
    create(
        &k8s,
        "discoveryscans",
        &json!({
            "apiVersion": "rmm.cdot.io/v1alpha1", "kind": "DiscoveryScan",
            "metadata": { "name": "lab", "namespace": "acme" },
            "spec": {
                "targets": [lab.subnet()],
                "excludes": [format!("{}/32", lab.gateway())],
                "methods": { "snmp": { "credentials": [
                    { "version": "V2c", "secretRef": { "name": "snmp-v2" } },
                ] } },
                "rateLimit": 2000, "concurrency": 256,
                "registration": { "mode": "Register" },
            },
        }),
    );
    let operator = Operator::start_in_cluster(
        k8s.kubeconfig(),
        &db.url,
        &[
            "--identity",
            "solo",
            "--lease-namespace",
            "cdot-system",
            "--discovery-interval",
            "1s",
        ],
        dir.path(),
    )
    .await;
    let collector =
        support::TestCollector::enroll(&operator, "cdot_collectors", "col-1", dir.path());
    let _collector = collector.run_scanner();

    let scan = wait_for(
        &k8s,
        &operator,
        &path("discoveryscans", "acme", "lab"),
        "run",
        |o| o["status"]["lastRun"]["phase"] == "Succeeded",
    );
    assert_eq!(scan["status"]["lastRun"]["found"], 7, "{scan:#}");
    let router = wait_for(
        &k8s,
        &operator,
        &path("devices", "acme", discovery_lab::ROUTER_SYS_NAME),
        "registered",
        |o| reconciled(o) && o["status"]["discovery"]["responding"] == true,
    );
    assert_eq!(
        router["metadata"]["labels"]["rmm.cdot.io/origin"],
        "discovery"
    );
    assert_eq!(
        router["metadata"]["labels"]["rmm.cdot.io/discovery-scan"],
        "lab"
    );
    assert_eq!(router["spec"]["class"], "Router");
    assert_eq!(
        router["spec"]["snmp"]["credentialsSecretRef"]["name"],
        "snmp-v2"
    );
    let addresses = router["spec"]["managementAddresses"].to_string();
    assert!(
        addresses.contains(&lab.router.addr.to_string())
            && addresses.contains(&lab.router_second.to_string()),
        "{router:#}"
    );
    // One Device per box in the API server: the router's second address made none.
    let devices = get(&k8s, "/apis/rmm.cdot.io/v1alpha1/namespaces/acme/devices").expect("list");
    let holding_router = devices["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| {
            d["spec"]["managementAddresses"]
                .to_string()
                .contains(&lab.router_second.to_string())
        })
        .count();
    assert_eq!(holding_router, 1, "{devices:#}");
    let finished = event(&k8s, "ScanFinished", |e| {
        e["reason"] == "ScanFinished" && e["regarding"]["name"] == "lab"
    });
    assert!(
        finished["note"]
            .as_str()
            .is_some_and(|n| n.contains("7 found")),
        "{finished:#}"
    );
}
