//! The discovery engine against a real PostgreSQL, driven through the collector routes
//! (called through `api::app` with the `DeviceIdentity` the TLS/JWT layer inserts): a run
//! is assigned with its credentials, reports are stored and answered, found hosts are
//! matched and proposed, the scan's status follows. The real collector and real SNMP are in
//! `discovery_e2e.rs`; this covers what needs no network namespace, fast.
mod support;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use cdot_crds::{
    api_token::{ApiToken, Role, hash_token},
    kind::Kind,
};
use cdot_operator::{
    api::{self, AppState, TokenIndex, agent_auth::DeviceIdentity},
    discovery::Settings,
    metrics::Metrics,
    store::{Store, heartbeats::Heartbeat},
};
use serde_json::{Value, json};
use support::{TestDb, wait_for};
use tokio::sync::watch;
use tower::ServiceExt;
use uuid::Uuid;

const VIEWER: &str = "cdot_test_discovery_viewer";

struct Harness {
    _db: TestDb,
    store: Store,
    index: cdot_operator::index::Index,
    app: Router,
    collector: DeviceIdentity,
    proposals: tempfile::TempDir,
    _stop: watch::Sender<bool>,
}

async fn insert(store: &Store, kind: &str, name: &str, spec: Value) -> Uuid {
    sqlx::query(
        "INSERT INTO objects (namespace, kind, name, uid, spec) VALUES ('acme', $1, $2, gen_random_uuid(), $3)",
    )
    .bind(kind)
    .bind(name)
    .bind(spec)
    .execute(store.pool())
    .await
    .expect("insert object");
    store
        .get_object("acme", Kind::from_kind_name(kind).expect("kind"), name)
        .await
        .expect("get")
        .expect("object")
        .uid
}

impl Harness {
    async fn start(scan: Value) -> Self {
        let db = TestDb::create().await;
        let store = Store::connect(&db.url, 8)
            .await
            .expect("connect and migrate");
        let uid = insert(&store, "Device", "col-1", json!({ "class": "Collector" })).await;
        // A collector that reports is Ready: only Ready collectors get runs.
        store
            .record_heartbeats(&[Heartbeat {
                device_uid: uid,
                agent_version: "test".into(),
                last_seen_ms: jiff::Timestamp::now().as_millisecond(),
                last_metrics: None,
                report_interval_secs: Some(3600),
            }])
            .await
            .expect("heartbeat");
        insert(&store, "DiscoveryScan", "lan", scan).await;
        let state = AppState::new(store.clone(), Arc::new(Metrics::default()));
        state.replace_tokens(TokenIndex::new(&[ApiToken {
            name: "viewer".into(),
            namespace: "acme".into(),
            token_sha256: hash_token(VIEWER),
            role: Role::Viewer,
            namespaces: vec!["acme".into()],
        }]));
        state
            .index
            .replace(&store.all_objects().await.expect("objects"));
        state.secrets.replace([(
            "acme".to_owned(),
            "snmp-v2".to_owned(),
            [("community".to_owned(), b"public".to_vec())].into(),
        )]);
        let proposals = tempfile::tempdir().expect("tmp");
        let (stop, shutdown) = watch::channel(false);
        state.discovery.spawn(
            store.clone(),
            state.index.clone(),
            state.secrets.clone(),
            None,
            state.changes.clone(),
            Settings {
                interval: Duration::from_millis(200),
                proposals_dir: proposals.path().to_path_buf(),
            },
            Arc::new(std::sync::atomic::AtomicBool::new(true)),
            shutdown,
        );
        let index = state.index.clone();
        let app = api::app(state, Duration::from_secs(20));
        Self {
            _db: db,
            store,
            index,
            app,
            collector: DeviceIdentity {
                namespace: "acme".into(),
                name: "col-1".into(),
                uid,
            },
            proposals,
            _stop: stop,
        }
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.app.clone().oneshot(request).await.expect("response");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn assignments(&self) -> Value {
        let request = Request::get("/v1/agent/collector/assignments")
            .extension(self.collector.clone())
            .body(Body::empty())
            .expect("request");
        let (status, body) = self.send(request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn report(&self, reports: Value) -> (StatusCode, Value) {
        let batch = json!({
            "batchId": Uuid::new_v4(),
            "collectorVersion": "test",
            "intervalSecs": 10,
            "scans": reports,
        });
        let request = Request::post("/v1/agent/collector/batches")
            .header(header::CONTENT_TYPE, "application/json")
            .extension(self.collector.clone())
            .body(Body::from(serde_json::to_vec(&batch).expect("json")))
            .expect("request");
        self.send(request).await
    }

    async fn scan(&self) -> Value {
        let request = Request::get("/v1/namespaces/acme/discoveryscans/lan")
            .header(header::AUTHORIZATION, format!("Bearer {VIEWER}"))
            .body(Body::empty())
            .expect("request");
        let (status, body) = self.send(request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

/// A router found on two addresses (its second one also in its ipAddrTable) and a printer.
fn hosts() -> Value {
    let router = |address: &str| {
        json!({
            "address": address,
            "rttMs": 0.4,
            "snmp": {
                "credential": 0,
                "sysName": "rtr-1.example.net",
                "sysDescr": "Cisco IOS Software, C1100",
                "sysObjectId": "1.3.6.1.4.1.9.1.1208",
                "sysUptime": 1234,
                "chassisId": "00:11:22:33:44:55",
                "addresses": ["10.0.0.1", "10.0.1.1"],
                "interfaces": [{ "ifIndex": 1, "name": "Gi0/0", "mac": "00:11:22:33:44:56", "speedBps": 1000000000u64, "operStatus": 1 }],
                "neighbours": [{ "localPort": "Gi0/1", "chassisId": "00:aa:bb:cc:dd:ee", "portId": "Gi1/0/1", "sysName": "sw-1" }],
            },
        })
    };
    json!([
        router("10.0.0.1"),
        router("10.0.1.1"),
        {
            "address": "10.0.0.20",
            "snmp": {
                "credential": 0,
                "sysName": "",
                "sysDescr": "HP LaserJet M404",
                "sysObjectId": "1.3.6.1.4.1.11.2.3.9.1",
                "sysUptime": 99,
            },
        },
    ])
}

/// One-shot scan in mode Propose: assigned once with its credential, reports stored,
/// one Device proposed per box (the router's two addresses are one), nothing registered,
/// and the status tells the run.
#[tokio::test]
async fn a_proposing_scan_runs_once_and_proposes_each_box_once() {
    let h = Harness::start(json!({
        "targets": ["10.0.0.0/23"],
        "methods": { "icmp": true, "snmp": { "credentials": [
            { "version": "V2c", "secretRef": { "name": "snmp-v2" } },
        ] } },
        "registration": { "mode": "Propose" },
    }))
    .await;

    let assigned = wait_for(Duration::from_secs(20), || async {
        let a = h.assignments().await;
        a["scans"].as_array().filter(|s| !s.is_empty()).cloned()
    })
    .await
    .expect("the run was never assigned");
    assert_eq!(assigned.len(), 1);
    let run = assigned[0]["run"].as_str().expect("run id").to_owned();
    assert_eq!(assigned[0]["scan"], "lan");
    assert_eq!(
        assigned[0]["snmp"]["credentials"][0]["credentials"],
        json!({ "type": "community", "community": "public" }),
        "resolved from the Secret"
    );

    let now = jiff::Timestamp::now().as_millisecond();
    let report = |state: &str, scanned: u64, hosts: Value| {
        json!({
            "run": run, "scan": "lan", "startedMs": now - 5_000, "t": now, "state": state,
            "total": 510, "scanned": scanned,
            "counts": { "icmpProbed": scanned, "icmpAnswered": 3, "snmpProbed": 3, "snmpAnswered": 3, "errors": { "timeout": 7 } },
            "hosts": hosts,
        })
    };
    // Progress more than the total is refused, naming the field.
    let (status, body) = h.report(json!([report("Running", 600, json!([]))])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "scans[0].scanned");

    let (status, body) = h.report(json!([report("Running", 300, hosts())])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = h.report(json!([report("Succeeded", 510, json!([]))])).await;
    assert_eq!(status, StatusCode::OK);
    // A report of a run that is not this collector's is stored nowhere.
    let mut stray = report("Running", 1, hosts());
    stray["run"] = json!(Uuid::new_v4());
    assert_eq!(h.report(json!([stray])).await.0, StatusCode::OK);

    let scan = wait_for(Duration::from_secs(20), || async {
        let scan = h.scan().await;
        (scan["status"]["lastRun"]["phase"] == "Succeeded"
            && scan["status"]["hosts"]
                .as_array()
                .is_some_and(|a| a.len() == 3))
        .then_some(scan)
    })
    .await
    .unwrap_or_else(|| panic!("the run was not settled"));
    let status = &scan["status"];
    assert_eq!(status["phase"], "Succeeded");
    let last = &status["lastRun"];
    assert_eq!(last["id"], run);
    assert_eq!(last["collector"], "col-1");
    assert_eq!(
        (last["scanned"].as_u64(), last["total"].as_u64()),
        (Some(510), Some(510))
    );
    assert_eq!(last["found"], 3);
    assert_eq!(
        last["registered"], 2,
        "two proposals: the router once, the printer"
    );
    assert_eq!(last["errors"]["timeout"], 7);
    let outcomes: Vec<(&str, &str, &str)> = status["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| {
            let text = |k: &str| h[k].as_str().unwrap_or("");
            (text("address"), text("outcome"), text("device"))
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("10.0.0.1", "proposed", "rtr-1"),
            ("10.0.0.20", "proposed", "host-10-0-0-20"),
            ("10.0.1.1", "proposed", "rtr-1"),
        ]
    );

    // Nothing registered: the proposals are a file to review.
    let devices: i64 = sqlx::query_scalar("SELECT count(*) FROM objects WHERE kind = 'Device'")
        .fetch_one(h.store.pool())
        .await
        .expect("count");
    assert_eq!(devices, 1, "only the collector");
    let file = h.proposals.path().join("acme").join("lan.yaml");
    let text = std::fs::read_to_string(&file).expect("proposals written");
    assert_eq!(text.matches("kind: Device").count(), 2, "{text}");
    assert_eq!(text.matches("name: rtr-1").count(), 1, "{text}");
    assert!(
        text.contains("10.0.1.1") && text.contains("class: Router"),
        "{text}"
    );
    assert!(text.contains("class: Printer"), "{text}");

    // One-shot: it does not run again for the same spec.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        h.assignments().await["scans"]
            .as_array()
            .is_none_or(Vec::is_empty)
    );
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM discovery_runs")
        .fetch_one(h.store.pool())
        .await
        .expect("count");
    assert_eq!(runs, 1);
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// The topology explains offline Devices: with the router and the two Devices behind it
/// all offline, only the router's alert is left to page; a Device with a second path (via
/// the firewall) is not explained by the switch alone.
#[tokio::test]
async fn offline_devices_behind_an_offline_router_are_inhibited() {
    let db = TestDb::create().await;
    let store = Store::connect(&db.url, 4)
        .await
        .expect("connect and migrate");
    insert(
        &store,
        "Device",
        "col-1",
        json!({ "class": "Collector", "site": "london" }),
    )
    .await;
    // col-1 — rtr — sw — {srv, ap}; rtr — fw — srv.
    for (device, remote, name) in [
        ("rtr", None, "col-1"),
        ("rtr", Some("sw"), "sw"),
        ("sw", Some("srv"), "srv"),
        ("sw", Some("ap"), "ap"),
        ("rtr", Some("fw"), "fw"),
        ("fw", Some("srv"), "srv"),
    ] {
        sqlx::query(
            "INSERT INTO topology_links (namespace, device, local_port, remote_chassis, remote_port, remote_device, remote_name, seen_at)
             VALUES ('acme', $1, $3, $3, 'p', $2, $3, now())",
        )
        .bind(device)
        .bind(remote)
        .bind(name)
        .execute(store.pool())
        .await
        .expect("link");
    }
    let alert = |device: &str| {
        let id = Uuid::new_v4();
        let store = store.clone();
        let device = device.to_owned();
        async move {
            sqlx::query(
                "INSERT INTO alerts (id, namespace, rule, rule_uid, device, device_uid, site, metric, severity, state,
                                     value, peak, threshold, summary, started_at, fired_at)
                 VALUES ($1, 'acme', 'offline', gen_random_uuid(), $2, gen_random_uuid(), 'london', 'deviceOffline',
                         'Critical', 'firing', 1, 1, 1, $2 || ' is offline', now(), now())",
            )
            .bind(id)
            .bind(&device)
            .execute(store.pool())
            .await
            .expect("alert");
            id
        }
    };
    let rtr = alert("rtr").await;
    let sw = alert("sw").await;
    let srv = alert("srv").await;
    let ap = alert("ap").await;
    let mut tx = store.pool().begin().await.expect("tx");
    let all = cdot_operator::alerting::store::alerts_in(&mut tx, &[rtr, sw, srv, ap])
        .await
        .expect("alerts");
    let held = cdot_operator::discovery::inhibit::decide(&mut tx, &all, now_ms())
        .await
        .expect("inhibited")
        .inhibited;
    let mut by: Vec<(&str, &str)> = held
        .iter()
        .map(|h| (h.device.as_str(), h.upstream_device.as_str()))
        .collect();
    by.sort_unstable();
    assert_eq!(by, [("ap", "rtr"), ("srv", "rtr"), ("sw", "rtr")]);
    assert!(held.iter().all(|h| h.upstream_alert == rtr));
    tx.rollback().await.expect("rollback");

    // The router back: the access point is behind the switch, the server is not (via fw).
    sqlx::query("UPDATE alerts SET state = 'resolved', resolved_at = now() WHERE id = $1")
        .bind(rtr)
        .execute(store.pool())
        .await
        .expect("resolve");
    let mut tx = store.pool().begin().await.expect("tx");
    let all = cdot_operator::alerting::store::alerts_in(&mut tx, &[sw, srv, ap])
        .await
        .expect("alerts");
    let held = cdot_operator::discovery::inhibit::decide(&mut tx, &all, now_ms())
        .await
        .expect("inhibited")
        .inhibited;
    let by: Vec<(&str, &str)> = held
        .iter()
        .map(|h| (h.device.as_str(), h.upstream_device.as_str()))
        .collect();
    assert_eq!(by, [("ap", "sw")]);
}

/// Deleting a scan ends its unfinished run (its collector stops being assigned it), so a
/// scan made again under the same name runs anew.
#[tokio::test]
async fn a_deleted_scan_ends_its_run() {
    let h = Harness::start(json!({ "targets": ["10.0.0.0/30"] })).await;
    wait_for(Duration::from_secs(20), || async {
        h.assignments().await["scans"]
            .as_array()
            .filter(|s| !s.is_empty())
            .map(|_| ())
    })
    .await
    .expect("the run was never assigned");
    sqlx::query("DELETE FROM objects WHERE kind = 'DiscoveryScan'")
        .execute(h.store.pool())
        .await
        .expect("delete");
    h.index
        .replace(&h.store.all_objects().await.expect("objects"));
    let ended = wait_for(Duration::from_secs(20), || async {
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT state, message FROM discovery_runs")
                .fetch_optional(h.store.pool())
                .await
                .expect("run");
        row.filter(|(state, _)| state == "Failed")
    })
    .await
    .expect("the run did not end");
    assert_eq!(ended.1.as_deref(), Some("the DiscoveryScan was deleted"));
    assert!(
        h.assignments().await["scans"]
            .as_array()
            .is_none_or(Vec::is_empty)
    );
}
