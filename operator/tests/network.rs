//! Collector network data end to end against a real PostgreSQL: the collector route (called
//! through `api::app` with the `DeviceIdentity` the TLS/JWT layer inserts), the rollups, the
//! partitions, and the query API with namespace-scoped tokens.
mod support;

use std::{collections::BTreeMap, io::Write, sync::Arc, time::Duration};

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
    jobs::{self, TimeseriesArgs, network as network_job},
    metrics::Metrics,
    store::{
        Store,
        network::{
            HOUR_MS, MINUTE_MS, NetTable, floor_to,
            rollup::{FLOW_EXPORTER_TOP_N, Fold},
        },
        partitions::{day_of, partition_name},
    },
};
use serde_json::{Value, json};
use support::TestDb;
use tower::ServiceExt;
use uuid::Uuid;

const ACME: &str = "cdot_test_acme_viewer";
const GLOBEX: &str = "cdot_test_globex_viewer";

struct Harness {
    _db: TestDb,
    store: Store,
    state: AppState,
    app: Router,
    collector: DeviceIdentity,
    globex_collector: DeviceIdentity,
    router: DeviceIdentity,
}

async fn device(store: &Store, namespace: &str, name: &str, spec: Value) -> DeviceIdentity {
    sqlx::query(
        "INSERT INTO objects (namespace, kind, name, uid, spec, managed_by)
         VALUES ($1, 'Device', $2, gen_random_uuid(), $3, 'agent')",
    )
    .bind(namespace)
    .bind(name)
    .bind(spec)
    .execute(store.pool())
    .await
    .expect("insert device");
    let uid = store
        .get_object(namespace, Kind::Device, name)
        .await
        .expect("get")
        .expect("device")
        .uid;
    DeviceIdentity {
        namespace: namespace.into(),
        name: name.into(),
        uid,
    }
}

impl Harness {
    async fn start() -> Self {
        let db = TestDb::create().await;
        let store = Store::connect(&db.url, 8)
            .await
            .expect("connect and migrate");
        let collector = device(
            &store,
            "acme",
            "col-1",
            json!({ "class": "Collector", "site": "london" }),
        )
        .await;
        let router = device(
            &store,
            "acme",
            "core-rtr",
            json!({ "class": "Router", "site": "london", "managementAddresses": ["10.0.0.1"] }),
        )
        .await;
        device(
            &store,
            "acme",
            "edge-sw",
            json!({ "class": "Switch", "site": "paris" }),
        )
        .await;
        device(&store, "acme", "web-01", json!({ "class": "Server" })).await;
        let globex_collector = device(
            &store,
            "globex",
            "col-g",
            json!({ "class": "Collector", "site": "berlin" }),
        )
        .await;
        let state = AppState::new(store.clone(), Arc::new(Metrics::default()));
        let token = |name: &str, secret: &str, namespace: &str| ApiToken {
            name: name.into(),
            namespace: namespace.into(),
            token_sha256: hash_token(secret),
            role: Role::Viewer,
            namespaces: vec![namespace.into()],
        };
        state.replace_tokens(TokenIndex::new(&[
            token("acme-viewer", ACME, "acme"),
            token("globex-viewer", GLOBEX, "globex"),
        ]));
        jobs::prepare(&store, &state.metrics, &TimeseriesArgs::default())
            .await
            .expect("partitions");
        let app = api::app(state.clone(), Duration::from_secs(20));
        Self {
            _db: db,
            store,
            state,
            app,
            collector,
            globex_collector,
            router,
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

    async fn post_raw(
        &self,
        who: &DeviceIdentity,
        body: Vec<u8>,
        gzip: bool,
    ) -> (StatusCode, Value) {
        let mut builder = Request::post("/v1/agent/collector/batches")
            .header(header::CONTENT_TYPE, "application/json")
            .extension(who.clone());
        let body = if gzip {
            builder = builder.header(header::CONTENT_ENCODING, "gzip");
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(&body).expect("gzip");
            encoder.finish().expect("gzip")
        } else {
            body
        };
        self.send(builder.body(Body::from(body)).expect("request"))
            .await
    }

    async fn post(&self, who: &DeviceIdentity, batch: &Value) -> (StatusCode, Value) {
        self.post_raw(who, serde_json::to_vec(batch).expect("json"), true)
            .await
    }

    async fn get_as(&self, token: &str, uri: &str) -> (StatusCode, Value) {
        let request = Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request");
        let (status, body) = self.send(request).await;
        if status == StatusCode::OK {
            support::assert_documented(uri, &body);
        }
        (status, body)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.get_as(ACME, uri).await
    }

    async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(self.store.pool())
            .await
            .expect("count")
    }

    /// Every rollup starts folding at `ms`, as if the operator had been running since.
    async fn fold_from(&self, ms: i64) {
        for fold in Fold::ALL {
            self.store
                .set_network_watermark(fold, ms)
                .await
                .expect("watermark");
        }
    }

    async fn fold(&self) {
        network_job::fold(&self.store, now_ms(), 0)
            .await
            .expect("fold");
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .expect("time")
        .to_string()
}

fn batch(flows: Vec<Value>, interfaces: Vec<Value>, probes: Vec<Value>) -> Value {
    json!({
        "batchId": Uuid::new_v4(),
        "collectorVersion": "0.1.0",
        "flows": flows,
        "interfaces": interfaces,
        "probes": probes,
    })
}

fn count(src: &str, dst: &str, proto: u8, sp: u16, dp: u16, b: u64, p: u64) -> Value {
    json!({ "src": src, "dst": dst, "proto": proto, "sp": sp, "dp": dp, "b": b, "p": p, "f": 1 })
}

/// Two minutes of flows through core-rtr (10.0.0.1), in 1 out 2:
/// pairs by bytes: .1→100.1 10000, .2→100.1 3000, .1→100.2 2000, other 1000 (16000 bytes,
/// 64 packets in all).
fn known_flows(m1: i64) -> Vec<Value> {
    vec![
        json!({
            "minuteMs": m1, "exporter": "10.0.0.1", "inIf": 1, "outIf": 2,
            "top": [
                count("192.0.2.1", "198.51.100.1", 6, 51000, 443, 6000, 6),
                count("192.0.2.2", "198.51.100.1", 17, 53, 40000, 3000, 30),
            ],
            "other": { "b": 1000, "p": 4, "f": 2 },
        }),
        json!({
            "minuteMs": m1 + MINUTE_MS, "exporter": "10.0.0.1", "inIf": 1, "outIf": 2,
            "top": [
                count("192.0.2.1", "198.51.100.1", 6, 51001, 443, 4000, 4),
                count("192.0.2.1", "198.51.100.2", 6, 52000, 22, 2000, 20),
            ],
        }),
    ]
}

fn interface(t: i64, device: &str, status: u8, in_bps: f64, in_errors: u64) -> Value {
    json!({
        "t": t, "device": device, "ifIndex": 1, "name": "ge-0/0/1", "alias": "uplink",
        "operStatus": status, "speedBps": 1_000_000, "intervalMs": 20_000,
        "inBps": in_bps, "outBps": 50_000.0, "inPps": 10.0, "outPps": 5.0,
        "inErrors": in_errors, "outErrors": 0, "inDiscards": 0, "outDiscards": 1,
    })
}

/// core-rtr ge-0/0/1 at 1 Mbit/s: 100k, 200k, 300k bit/s in the first minute (status up,
/// up, down), 400k in the second (up again): 2 status changes, 3 input errors.
fn known_interfaces(m1: i64) -> Vec<Value> {
    vec![
        interface(m1, "core-rtr", 1, 100_000.0, 1),
        interface(m1 + 20_000, "core-rtr", 1, 200_000.0, 0),
        interface(m1 + 40_000, "core-rtr", 2, 300_000.0, 2),
        interface(m1 + MINUTE_MS, "core-rtr", 1, 400_000.0, 0),
    ]
}

fn probe(
    t: i64,
    device: &str,
    sent: u32,
    received: u32,
    rtt: (f64, f64, f64),
    jitter: f64,
) -> Value {
    json!({
        "t": t, "device": device, "probe": "gw", "target": "192.0.2.254",
        "sent": sent, "received": received,
        "rttMinMs": rtt.0, "rttAvgMs": rtt.1, "rttMaxMs": rtt.2, "jitterMs": jitter,
    })
}

/// 20 sent, 18 received (10 % loss), latency (10·8 + 19·10) / 18 = 15 ms, jitter 3 ms.
fn known_probes(m1: i64) -> Vec<Value> {
    vec![
        probe(m1 + 10_000, "core-rtr", 10, 8, (5.0, 10.0, 20.0), 2.0),
        probe(m1 + 40_000, "core-rtr", 10, 10, (6.0, 19.0, 30.0), 4.0),
    ]
}

#[tokio::test]
async fn a_batch_is_stored_once_and_acknowledged_after_commit() {
    let h = Harness::start().await;
    let m1 = floor_to(now_ms(), MINUTE_MS) - 5 * MINUTE_MS;
    let body = batch(known_flows(m1), known_interfaces(m1), known_probes(m1));
    let (status, ack) = h.post(&h.collector, &body).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    // 4 top keys + 1 other, 4 interface samples, 2 probe results.
    assert_eq!(
        ack,
        json!({ "batchId": body["batchId"], "stored": 11, "duplicate": false })
    );
    assert_eq!(h.count("SELECT count(*) FROM net_flows_1m").await, 5);
    assert_eq!(h.count("SELECT count(*) FROM net_if_samples").await, 4);
    assert_eq!(h.count("SELECT count(*) FROM net_probe_samples").await, 2);

    let (status, ack) = h.post(&h.collector, &body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        ack,
        json!({ "batchId": body["batchId"], "stored": 0, "duplicate": true })
    );
    assert_eq!(h.count("SELECT count(*) FROM net_flows_1m").await, 5);
    // Concurrent retries of a new batch: stored exactly once.
    let body = batch(known_flows(m1), Vec::new(), Vec::new());
    let acks = futures::future::join_all((0..4).map(|_| h.post(&h.collector, &body))).await;
    let stored = acks
        .iter()
        .filter(|(status, ack)| *status == StatusCode::OK && ack["duplicate"] == json!(false))
        .count();
    assert_eq!(stored, 1, "{acks:?}");
    assert_eq!(h.count("SELECT count(*) FROM net_flows_1m").await, 10);

    // The exporter was matched to the Device listing its address, with that Device's site.
    let (device, site): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT device_name, site FROM net_exporters WHERE address = '10.0.0.1'")
            .fetch_one(h.store.pool())
            .await
            .expect("exporter");
    assert_eq!(
        (device.as_deref(), site.as_deref()),
        (Some("core-rtr"), Some("london"))
    );
    // Status changes are counted across batches: the last poll said up (1).
    let later = batch(
        Vec::new(),
        vec![interface(m1 + 2 * MINUTE_MS, "core-rtr", 2, 1.0, 0)],
        Vec::new(),
    );
    assert_eq!(h.post(&h.collector, &later).await.0, StatusCode::OK);
    assert_eq!(
        h.count("SELECT count(*) FILTER (WHERE status_changed) FROM net_if_samples")
            .await,
        3
    );
    // The collector is alive: its heartbeat was recorded.
    let seen: i64 =
        sqlx::query_scalar("SELECT count(*) FROM device_heartbeats WHERE device_uid = $1")
            .bind(h.collector.uid)
            .fetch_one(h.store.pool())
            .await
            .expect("heartbeat");
    assert_eq!(seen, 1);
    let text = h.state.metrics.render();
    assert!(
        text.contains("cdot_network_batches_total{result=\"duplicate\"} 4"),
        "{text}"
    );
    assert!(
        text.contains("cdot_network_rows_total{kind=\"flows\"} 10"),
        "{text}"
    );
}

#[tokio::test]
async fn invalid_batches_are_refused_whole_with_the_field_path() {
    let h = Harness::start().await;
    let now = now_ms();
    let m1 = floor_to(now, MINUTE_MS) - 5 * MINUTE_MS;
    let good = || batch(known_flows(m1), known_interfaces(m1), known_probes(m1));
    type Change = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Change, StatusCode, &str)> = vec![
        (
            Box::new(move |b: &mut Value| b["flows"][1]["minuteMs"] = json!(m1 + 30_000)),
            StatusCode::BAD_REQUEST,
            "flows[1].minuteMs",
        ),
        (
            Box::new(move |b: &mut Value| b["flows"][0]["minuteMs"] = json!(m1 + 60 * MINUTE_MS)),
            StatusCode::BAD_REQUEST,
            "flows[0].minuteMs",
        ),
        (
            Box::new(move |b: &mut Value| b["interfaces"][2]["t"] = json!(now - 8 * 86_400_000)),
            StatusCode::BAD_REQUEST,
            "interfaces[2].t",
        ),
        (
            Box::new(move |b: &mut Value| b["interfaces"][3]["device"] = json!("nope")),
            StatusCode::BAD_REQUEST,
            "interfaces[3].device",
        ),
        (
            Box::new(move |b: &mut Value| b["probes"][1]["device"] = json!("col-g")),
            StatusCode::BAD_REQUEST,
            "probes[1].device",
        ),
        (
            Box::new(move |b: &mut Value| b["interfaces"][0]["inBps"] = json!(-5.0)),
            StatusCode::BAD_REQUEST,
            "interfaces[0].inBps",
        ),
        (
            Box::new(move |b: &mut Value| b["probes"][0]["received"] = json!(11)),
            StatusCode::BAD_REQUEST,
            "probes[0].received",
        ),
        (
            Box::new(move |b: &mut Value| b["flows"][0]["top"][0]["b"] = json!(u64::MAX)),
            StatusCode::BAD_REQUEST,
            "flows[0].top[0].b",
        ),
        (
            Box::new(move |b: &mut Value| b["flows"][0]["top"][0]["tos"] = json!(1)),
            StatusCode::BAD_REQUEST,
            "flows[0].top[0]",
        ),
    ];
    for (change, code, field) in cases {
        let mut body = good();
        change(&mut body);
        let (status, error) = h.post(&h.collector, &body).await;
        assert_eq!(status, code, "{field}: {error}");
        assert!(
            error["field"]
                .as_str()
                .unwrap_or_default()
                .starts_with(field),
            "{field}: {error}"
        );
    }
    // Not finite: 1e999 overflows JSON numbers.
    let text = serde_json::to_string(&good())
        .expect("json")
        .replacen("100000.0", "1e999", 1);
    let (status, error) = h.post_raw(&h.collector, text.into_bytes(), false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["field"], "interfaces[0].inBps");
    // Over the size cap.
    let big = vec![b' '; cdot_crds::wire::MAX_BODY_BYTES + 1];
    assert_eq!(
        h.post_raw(&h.collector, big, true).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // Only collectors send network data; a collector writes only its own namespace.
    let server = DeviceIdentity {
        namespace: "acme".into(),
        name: "core-rtr".into(),
        uid: h.router.uid,
    };
    assert_eq!(h.post(&server, &good()).await.0, StatusCode::FORBIDDEN);
    let (status, error) = h.post(&h.globex_collector, &good()).await;
    assert_eq!(
        (status, error["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("interfaces[0].device"))
    );
    // No identity: 401.
    let request = Request::post("/v1/agent/collector/batches")
        .body(Body::from(serde_json::to_vec(&good()).expect("json")))
        .expect("request");
    assert_eq!(h.send(request).await.0, StatusCode::UNAUTHORIZED);

    for table in [
        "net_flows_1m",
        "net_if_samples",
        "net_probe_samples",
        "ingested_batches",
    ] {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(h.store.pool())
                .await
                .expect("count");
        assert_eq!(n, 0, "a refused batch left rows in {table}");
    }
    let text = h.state.metrics.render();
    for reason in ["minute", "timestamp", "unknown_device", "rate", "count"] {
        assert!(
            text.contains(&format!(
                "cdot_network_rejected_total{{reason=\"{reason}\"}}"
            )),
            "{reason}: {text}"
        );
    }
}

#[tokio::test]
async fn queries_return_the_numbers_of_known_data() {
    let h = Harness::start().await;
    let now = now_ms();
    let hour = floor_to(now, HOUR_MS) - 3 * HOUR_MS;
    let m1 = hour + 10 * MINUTE_MS;
    h.fold_from(hour - HOUR_MS).await;
    let body = batch(known_flows(m1), known_interfaces(m1), known_probes(m1));
    assert_eq!(h.post(&h.collector, &body).await.0, StatusCode::OK);
    h.fold().await;

    // Top talkers over the hour holding the data: by 10 minutes (from the site rollup).
    let range = format!("from={}&to={}", rfc3339(hour), rfc3339(hour + HOUR_MS));
    let base = "/v1/namespaces/acme/network";
    let (status, top) = h.get(&format!("{base}/top-talkers?{range}")).await;
    assert_eq!(status, StatusCode::OK, "{top}");
    assert_eq!(top["resolution"], "10m");
    assert_eq!(
        (top["totalBytes"].clone(), top["totalPackets"].clone()),
        (json!(16000), json!(64))
    );
    assert_eq!(
        top["items"],
        json!([
            { "src": "192.0.2.1", "dst": "198.51.100.1", "bytes": 10000, "packets": 10, "share": 0.625 },
            { "src": "192.0.2.2", "dst": "198.51.100.1", "bytes": 3000, "packets": 30, "share": 0.1875 },
            { "src": "192.0.2.1", "dst": "198.51.100.2", "bytes": 2000, "packets": 20, "share": 0.125 },
        ])
    );
    assert_eq!(
        top["other"],
        json!({ "bytes": 1000, "packets": 4, "share": 0.0625 })
    );
    let (_, by_packets) = h
        .get(&format!("{base}/top-talkers?{range}&rank=packets&limit=1"))
        .await;
    assert_eq!(by_packets["items"][0]["src"], "192.0.2.2");
    assert_eq!(by_packets["items"][0]["share"], json!(30.0 / 64.0));
    assert_eq!(by_packets["other"]["packets"], 34);
    let (_, sources) = h
        .get(&format!("{base}/top-talkers?{range}&by=sources"))
        .await;
    assert_eq!(
        sources["items"],
        json!([
            { "src": "192.0.2.1", "bytes": 12000, "packets": 30, "share": 0.75 },
            { "src": "192.0.2.2", "bytes": 3000, "packets": 30, "share": 0.1875 },
        ])
    );
    let (_, ports) = h.get(&format!("{base}/top-talkers?{range}&by=ports")).await;
    let ports: Vec<(i64, i64, i64)> = ports["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["protocol"].as_i64().unwrap_or(-1),
                i["port"].as_i64().unwrap_or(-1),
                i["bytes"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(ports, [(6, 443, 10000), (17, 53, 3000), (6, 22, 2000)]);
    let (_, protocols) = h
        .get(&format!("{base}/top-talkers?{range}&by=protocols"))
        .await;
    assert_eq!(
        protocols["items"][0],
        json!({ "protocol": 6, "bytes": 12000, "packets": 30, "share": 0.75 })
    );

    // The same by minute over the two minutes, and by hour over a day.
    let minutes = format!("from={}&to={}", rfc3339(m1), rfc3339(m1 + 2 * MINUTE_MS));
    let (_, by_minute) = h.get(&format!("{base}/top-talkers?{minutes}")).await;
    assert_eq!(by_minute["resolution"], "1m");
    assert_eq!(by_minute["items"], top["items"]);
    assert_eq!(by_minute["other"], top["other"]);
    let day = format!("from={}&to={}", rfc3339(now - 24 * HOUR_MS), rfc3339(now));
    let (status, daily) = h.get(&format!("{base}/top-talkers?{day}")).await;
    assert_eq!(status, StatusCode::OK, "{daily}");
    assert_eq!(daily["resolution"], "1h");
    assert_eq!(daily["items"], top["items"]);
    assert_eq!(daily["totalBytes"], 16000);
    let (_, daily_ports) = h.get(&format!("{base}/top-talkers?{day}&by=ports")).await;
    assert_eq!(daily_ports["items"][0]["port"], 443);
    // Filters: device and interface of the exporter, site.
    let (_, on_if) = h
        .get(&format!(
            "{base}/top-talkers?{range}&device=core-rtr&interface=ge-0/0/1"
        ))
        .await;
    assert_eq!(on_if["totalBytes"], 16000, "{on_if}");
    let (_, other_if) = h
        .get(&format!(
            "{base}/top-talkers?{range}&device=core-rtr&interface=7"
        ))
        .await;
    assert_eq!(other_if["totalBytes"], 0, "{other_if}");
    let (_, paris) = h
        .get(&format!("{base}/top-talkers?{range}&site=paris"))
        .await;
    assert_eq!(paris["items"], json!([]));
    let (status, error) = h
        .get(&format!("{base}/top-talkers?{range}&interface=ge-0/0/1"))
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("query.interface"))
    );
    let (status, error) = h.get(&format!("{base}/top-talkers?by=hosts")).await;
    assert_eq!(
        (status, error["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("query.by"))
    );
    let (status, error) = h.get(&format!("{base}/top-talkers?device=nope")).await;
    assert_eq!(
        (status, error["field"].as_str()),
        (StatusCode::NOT_FOUND, Some("query.device"))
    );

    // Interface report: 1 Mbit/s; sample average 250k, minute averages 200k and 400k.
    let (status, report) = h.get(&format!("{base}/interfaces?{range}")).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let item = &report["items"][0];
    assert_eq!(
        (
            item["device"].clone(),
            item["interface"].clone(),
            item["site"].clone()
        ),
        (json!("core-rtr"), json!("ge-0/0/1"), json!("london"))
    );
    let close = |v: &Value, want: f64| (v.as_f64().unwrap_or(f64::NAN) - want).abs() < 1e-6;
    assert!(close(&item["in"]["avgUtilization"], 25.0), "{item}");
    assert!(close(&item["in"]["p95Utilization"], 39.0), "{item}");
    assert!(close(&item["in"]["maxUtilization"], 40.0), "{item}");
    assert!(close(&item["out"]["avgBps"], 50_000.0), "{item}");
    assert_eq!(item["errors"], json!({ "in": 3, "out": 0 }));
    assert_eq!(item["discards"], json!({ "in": 0, "out": 4 }));
    assert_eq!(item["statusChanges"], 2, "down, then up again: {item}");
    // Over three days the hour rollup answers, with the same average and maximum.
    let long = format!("from={}&to={}", rfc3339(now - 72 * HOUR_MS), rfc3339(now));
    let (_, long) = h.get(&format!("{base}/interfaces?{long}")).await;
    assert_eq!(long["resolution"], "1h");
    assert!(
        close(&long["items"][0]["in"]["avgUtilization"], 25.0),
        "{long}"
    );
    assert!(
        close(&long["items"][0]["in"]["maxUtilization"], 40.0),
        "{long}"
    );

    // Bandwidth by minute and probes by two minutes.
    let (status, bw) = h
        .get(&format!(
            "{base}/interfaces/bandwidth?{range}&step=1m&device=core-rtr"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{bw}");
    assert_eq!(
        bw["series"][0]["points"],
        json!([
            [
                m1, 200_000.0, 50_000.0, 300_000.0, 50_000.0, 100_000.0, 50_000.0, 3, 0, 0, 3
            ],
            [
                m1 + MINUTE_MS,
                400_000.0,
                50_000.0,
                400_000.0,
                50_000.0,
                400_000.0,
                50_000.0,
                0,
                0,
                0,
                1
            ]
        ])
    );
    // Decimated to one point (an hour): the average, and the peak and dip of the polls.
    let (status, one) = h
        .get(&format!(
            "{base}/interfaces/bandwidth?{range}&points=1&device=core-rtr"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    let points = one["series"][0]["points"].as_array().expect("points");
    assert_eq!(points.len(), 1, "{one}");
    assert_eq!(
        points[0].as_array().map(|p| json!(p[1..])),
        Some(json!([
            250_000.0, 50_000.0, 400_000.0, 50_000.0, 100_000.0, 50_000.0, 3, 0, 0, 4
        ])),
        "{one}"
    );
    let (status, error) = h
        .get(&format!(
            "{base}/interfaces/bandwidth?{range}&points=10&step=1m"
        ))
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("query.points"))
    );
    // The sum over every interface in scope is one series: per minute the interfaces'
    // averages added up, per step their average and extremes.
    let (_, each) = h
        .get(&format!("{base}/interfaces/bandwidth?{range}&step=1m"))
        .await;
    let (status, total) = h
        .get(&format!(
            "{base}/interfaces/bandwidth?{range}&step=1m&aggregate=sum"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{total}");
    assert_eq!(total["series"].as_array().map(Vec::len), Some(1), "{total}");
    let mut summed: BTreeMap<i64, f64> = BTreeMap::new();
    for series in each["series"].as_array().expect("series") {
        for p in series["points"].as_array().expect("points") {
            *summed.entry(p[0].as_i64().expect("ms")).or_default() += p[1].as_f64().expect("in");
        }
    }
    let totals: BTreeMap<i64, f64> = total["series"][0]["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| (p[0].as_i64().expect("ms"), p[1].as_f64().expect("in")))
        .collect();
    assert_eq!(totals, summed, "{total}");
    let (status, error) = h
        .get(&format!(
            "{base}/interfaces/bandwidth?{range}&aggregate=avg"
        ))
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("query.aggregate"))
    );
    let (_, chosen) = h.get(&format!("{base}/interfaces/bandwidth?{range}")).await;
    assert_eq!(chosen["stepMs"], MINUTE_MS, "chosen from the range");
    let (status, probes) = h.get(&format!("{base}/probes?{range}&step=2m")).await;
    assert_eq!(status, StatusCode::OK, "{probes}");
    let series = &probes["series"][0];
    assert_eq!(
        (series["probe"].clone(), series["target"].clone()),
        (json!("gw"), json!("192.0.2.254"))
    );
    assert_eq!(series["points"], json!([[m1, 15.0, 5.0, 30.0, 3.0, 10.0]]));
    let (status, error) = h.get(&format!("{base}/probes?{range}&step=30s")).await;
    assert_eq!(
        (status, error["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("query.step"))
    );

    // Namespace isolation: another tenant's token sees nothing of acme.
    for path in [
        "top-talkers",
        "interfaces",
        "interfaces/bandwidth",
        "probes",
        "sites",
    ] {
        let (status, _) = h.get_as(GLOBEX, &format!("{base}/{path}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        let query = if path == "sites" {
            String::new()
        } else {
            format!("?{range}")
        };
        let (status, body) = h
            .get_as(
                GLOBEX,
                &format!("/v1/namespaces/globex/network/{path}{query}"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let empty = ["items", "series", "sites"]
            .iter()
            .filter_map(|k| body.get(*k))
            .all(|v| v.as_array().is_some_and(Vec::is_empty));
        assert!(empty, "{path}: {body}");
    }
    // The OpenAPI document lists the routes.
    // A token says what it is and which namespaces it reads.
    let (status, me) = h.get_as(GLOBEX, "/v1/whoami").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(
        me,
        json!({ "name": "globex-viewer", "role": "viewer", "namespaces": ["globex"] })
    );
    let (_, doc) = h.get("/v1/openapi.json").await;
    assert!(doc["paths"]["/v1/namespaces/{namespace}/network/top-talkers"].is_object());
}

#[tokio::test]
async fn the_site_summary_ranks_what_is_worst_now() {
    let h = Harness::start().await;
    let m = floor_to(now_ms(), MINUTE_MS) - 3 * MINUTE_MS;
    let mut interfaces = known_interfaces(m);
    interfaces.truncate(2);
    let mut down = interface(m, "edge-sw", 2, 0.0, 0);
    down["ifIndex"] = json!(3);
    down["name"] = json!("eth3");
    let mut busy = interface(m, "core-rtr", 1, 900_000.0, 0);
    busy["ifIndex"] = json!(2);
    busy["name"] = json!("ge-0/0/2");
    interfaces.extend([down, busy]);
    let mut probes = known_probes(m);
    let mut lossy = probe(m, "edge-sw", 10, 5, (1.0, 2.0, 3.0), 0.1);
    lossy["probe"] = json!("isp");
    probes.push(lossy);
    let body = batch(Vec::new(), interfaces, probes);
    assert_eq!(h.post(&h.collector, &body).await.0, StatusCode::OK);
    h.fold().await;
    let (status, summary) = h
        .get("/v1/namespaces/acme/network/sites?window=10m&limit=1")
        .await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    let sites = summary["sites"].as_array().expect("sites");
    assert_eq!(sites.len(), 2, "{summary}");
    assert_eq!(sites[0]["site"], "london");
    assert_eq!(
        sites[0]["interfaces"][0]["interface"], "ge-0/0/2",
        "busiest first"
    );
    assert_eq!(sites[0]["interfaces"].as_array().map(Vec::len), Some(1));
    assert_eq!(sites[0]["probes"][0]["lossPercent"], 10.0);
    assert_eq!(sites[1]["site"], "paris");
    assert_eq!(sites[1]["interfaces"][0]["interface"], "eth3", "down");
    assert_eq!(sites[1]["probes"][0]["lossPercent"], 50.0);
    // The same over a range given by its ends.
    let range = format!(
        "from={}&to={}",
        rfc3339(m - 5 * MINUTE_MS),
        rfc3339(m + 5 * MINUTE_MS)
    );
    let (status, ranged) = h
        .get(&format!(
            "/v1/namespaces/acme/network/sites?{range}&limit=1"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{ranged}");
    assert_eq!(ranged["sites"], summary["sites"], "{ranged}");
    let (status, error) = h
        .get(&format!(
            "/v1/namespaces/acme/network/sites?{range}&window=1h"
        ))
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("query.window"))
    );
    let (status, error) = h.get("/v1/namespaces/acme/network/sites?window=3d").await;
    assert_eq!(
        (status, error["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("query.window"))
    );
}

#[tokio::test]
async fn rollups_keep_the_top_keys_refold_late_rows_and_retention_drops_partitions() {
    let h = Harness::start().await;
    let now = now_ms();
    let hour = floor_to(now, HOUR_MS) - 2 * HOUR_MS;
    h.fold_from(hour - HOUR_MS).await;
    // More keys in one minute than keep their port: the hour keeps every host pair, the
    // top FLOW_EXPORTER_TOP_N with their port, the rest with the port folded (ADR 22).
    let keys = FLOW_EXPORTER_TOP_N as u64 + 100;
    let top: Vec<Value> = (0..keys)
        .map(|i| {
            count(
                &format!("10.{}.{}.1", i / 250, i % 250),
                "198.51.100.1",
                6,
                40000,
                443,
                1000 + i,
                1,
            )
        })
        .collect();
    let flows = vec![
        json!({ "minuteMs": hour, "exporter": "10.9.9.9", "inIf": 0, "outIf": 0, "top": top, "other": { "b": 5, "p": 1, "f": 1 } }),
    ];
    assert_eq!(
        h.post(&h.collector, &batch(flows, Vec::new(), Vec::new()))
            .await
            .0,
        StatusCode::OK
    );
    h.fold().await;
    assert_eq!(
        h.count("SELECT count(*) FROM net_flows_1h WHERE src IS NOT NULL")
            .await,
        keys as i64,
        "every host pair"
    );
    assert_eq!(
        h.count("SELECT count(*) FROM net_flows_1h WHERE port IS NOT NULL")
            .await,
        FLOW_EXPORTER_TOP_N
    );
    assert_eq!(
        h.count("SELECT count(*) FROM net_flows_1h WHERE src IS NULL")
            .await,
        1
    );
    let minute_total = h.count("SELECT sum(bytes)::int8 FROM net_flows_1m").await;
    assert_eq!(
        h.count("SELECT sum(bytes)::int8 FROM net_flows_1h").await,
        minute_total
    );
    assert_eq!(
        h.count("SELECT min(bytes) FROM net_flows_1h WHERE port IS NOT NULL")
            .await,
        1100,
        "the smallest key with its port is the 1000th largest"
    );
    // The unmatched exporter takes the collector's site.
    let site: Option<String> =
        sqlx::query_scalar("SELECT site FROM net_exporters WHERE address = '10.9.9.9'")
            .fetch_one(h.store.pool())
            .await
            .expect("site");
    assert_eq!(site.as_deref(), Some("london"));

    // Late rows for a folded hour and minute: both are folded again.
    let late = batch(
        vec![
            json!({ "minuteMs": hour + MINUTE_MS, "exporter": "10.9.9.9", "inIf": 0, "outIf": 0, "top": [], "other": { "b": 1000, "p": 1, "f": 1 } }),
        ],
        vec![interface(hour + MINUTE_MS, "core-rtr", 1, 10.0, 0)],
        Vec::new(),
    );
    assert_eq!(h.post(&h.collector, &late).await.0, StatusCode::OK);
    assert_eq!(
        h.count("SELECT count(*) FROM net_rollup_dirty").await,
        3,
        "the flows' 10 minutes and hour, the interface's minute"
    );
    h.fold().await;
    assert_eq!(
        h.count("SELECT sum(bytes)::int8 FROM net_flows_1h").await,
        minute_total + 1000
    );
    assert_eq!(h.count("SELECT count(*) FROM net_if_1m").await, 1);
    assert_eq!(
        h.count("SELECT count(*) FROM net_if_1h").await,
        1,
        "the hour was told"
    );
    assert_eq!(h.count("SELECT count(*) FROM net_rollup_dirty").await, 0);

    // Retention: partitions past it are dropped, partitions ahead are created.
    let today = day_of(now);
    for table in [NetTable::Flows1m, NetTable::Flows1h, NetTable::Interfaces1h] {
        assert!(
            h.store
                .create_partition(table, today - 20)
                .await
                .expect("create")
        );
    }
    let args = network_job::NetworkArgs {
        network_flow_retention: Duration::from_secs(3 * 86_400),
        ..network_job::NetworkArgs::default()
    };
    let done = network_job::maintain(&h.store, &h.state.metrics, now + 86_400_000, &args)
        .await
        .expect("maintain");
    assert!(
        done.dropped
            .contains(&partition_name(NetTable::Flows1m, today - 20)),
        "{done:?}"
    );
    assert!(
        !done
            .dropped
            .contains(&partition_name(NetTable::Flows1h, today - 20)),
        "{done:?}"
    );
    assert!(
        !done
            .dropped
            .contains(&partition_name(NetTable::Interfaces1h, today - 20)),
        "{done:?}"
    );
    assert!(
        done.created
            .contains(&partition_name(NetTable::ProbeSamples, today + 3)),
        "{done:?}"
    );
    let flows: Vec<i64> = h
        .store
        .partitions(NetTable::Flows1m)
        .await
        .expect("partitions")
        .into_iter()
        .map(|p| p.1)
        .collect();
    assert_eq!(flows.first(), Some(&(today + 1 - 3)), "{flows:?}");
    // Rows older than the oldest partition are not stored (past retention), yet acknowledged.
    let old = batch(
        vec![
            json!({ "minuteMs": floor_to(now, MINUTE_MS) - 4 * 86_400_000, "exporter": "10.9.9.9", "inIf": 0, "outIf": 0, "top": [], "other": { "b": 1, "p": 1, "f": 1 } }),
        ],
        Vec::new(),
        Vec::new(),
    );
    let (status, ack) = h.post(&h.collector, &old).await;
    assert_eq!(
        (status, ack["stored"].clone()),
        (StatusCode::OK, json!(0)),
        "{ack}"
    );
}

/// The flow rollups that must add up to the minute table (the site lists by their totals).
const FLOW_ROLLUPS: [&str; 4] = [
    "net_flows_10m",
    "net_flows_1h",
    "net_flows_site_10m WHERE dim = 0",
    "net_flows_site_1h WHERE dim = 0",
];

/// Sum of bytes of `table` (a constant of the test, with its filter if any).
async fn bytes_of(store: &Store, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COALESCE(sum(bytes), 0)::int8 FROM {table}"
    )))
    .fetch_one(store.pool())
    .await
    .expect("sum of bytes")
}

/// Bytes in the minute table between two RFC 3339 times, of exporters matching `filter`.
async fn minute_bytes(store: &Store, answer: &Value, filter: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COALESCE(sum(f.bytes), 0)::int8 FROM net_flows_1m f
         JOIN net_exporters e ON e.id = f.exporter_id
         WHERE f.minute >= $1::timestamptz AND f.minute < $2::timestamptz AND {filter}"
    )))
    .bind(answer["from"].as_str().expect("from"))
    .bind(answer["to"].as_str().expect("to"))
    .fetch_one(store.pool())
    .await
    .expect("minute bytes")
}

/// src, dst, protocol, port, bytes, packets.
type RankedRow = (
    Option<String>,
    Option<String>,
    Option<i16>,
    Option<i32>,
    i64,
    i64,
);

/// The top `limit` keys of `by` ranked by `rank`, added up from the minute table over the
/// answer's range for exporters matching `filter`: `[src, dst, protocol, port, bytes,
/// packets]` as the API names them.
async fn exact_top(
    store: &Store,
    answer: &Value,
    filter: &str,
    by: &str,
    rank: &str,
    limit: i64,
) -> Vec<Value> {
    let (columns, keyed) = match by {
        "pairs" => ("host(f.src), host(f.dst), NULL::int2, NULL::int4", "true"),
        "sources" => ("host(f.src), NULL, NULL::int2, NULL::int4", "true"),
        "destinations" => ("NULL, host(f.dst), NULL::int2, NULL::int4", "true"),
        "protocols" => ("NULL, NULL, f.proto, NULL::int4", "true"),
        _ => ("NULL, NULL, f.proto, LEAST(f.sp, f.dp)", "f.sp IS NOT NULL"),
    };
    let order = if rank == "bytes" {
        "5 DESC, 6 DESC"
    } else {
        "6 DESC, 5 DESC"
    };
    let rows: Vec<RankedRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {columns}, sum(f.bytes)::int8, sum(f.packets)::int8 FROM net_flows_1m f
             JOIN net_exporters e ON e.id = f.exporter_id
             WHERE f.minute >= $1::timestamptz AND f.minute < $2::timestamptz
               AND f.src IS NOT NULL AND {keyed} AND {filter}
             GROUP BY 1, 2, 3, 4 ORDER BY {order} LIMIT $3"
    )))
    .bind(answer["from"].as_str().expect("from"))
    .bind(answer["to"].as_str().expect("to"))
    .bind(limit)
    .fetch_all(store.pool())
    .await
    .expect("exact top");
    rows.into_iter()
        .map(|(src, dst, proto, port, bytes, packets)| {
            json!([src, dst, proto, port, bytes, packets])
        })
        .collect()
}

#[tokio::test]
async fn flow_tiers_match_the_minutes_follow_the_range_and_refold_late_rows() {
    let h = Harness::start().await;
    device(
        &h.store,
        "acme",
        "paris-rtr",
        json!({ "class": "Router", "site": "paris", "managementAddresses": ["10.0.0.2"] }),
    )
    .await;
    let now = now_ms();
    let start = floor_to(now, HOUR_MS) - 3 * HOUR_MS;
    h.fold_from(start).await;
    // Every 7th minute of two hours: core-rtr (london) with 400 keys, paris-rtr with 3; both
    // with an "other" total.
    let flows: Vec<Value> = (0..120i64)
        .step_by(7)
        .flat_map(|m| {
            [("10.0.0.1", 400u64), ("10.0.0.2", 3)].map(|(exporter, keys)| {
                let top: Vec<Value> = (0..keys)
                    .map(|k| {
                        count(
                            &format!("192.0.{}.{}", 3 + k / 250, k % 250 + 1),
                            "198.51.100.1",
                            6,
                            40_000 + m as u16,
                            443,
                            1000 + k * 10 + m as u64,
                            1 + k % 3,
                        )
                    })
                    .collect();
                json!({
                    "minuteMs": start + m * MINUTE_MS, "exporter": exporter, "inIf": 1, "outIf": 2,
                    "top": top, "other": { "b": 500, "p": 2, "f": 1 },
                })
            })
        })
        .collect();
    let body = batch(flows, Vec::new(), Vec::new());
    assert_eq!(h.post(&h.collector, &body).await.0, StatusCode::OK);
    h.fold().await;

    // Every tier adds up to the minute table; exporter buckets keep the top keys' ports.
    let minute_total = bytes_of(&h.store, "net_flows_1m").await;
    for table in FLOW_ROLLUPS {
        assert_eq!(bytes_of(&h.store, table).await, minute_total, "{table}");
    }
    assert_eq!(
        h.count(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM net_flows_10m
             WHERE port IS NOT NULL GROUP BY exporter_id, bucket) k"
        )
        .await,
        400,
        "under FLOW_EXPORTER_TOP_N every key keeps its port"
    );
    assert_eq!(
        h.count("SELECT count(DISTINCT site) FROM net_flows_site_1h")
            .await,
        2
    );

    // The rollup read follows the range; totals equal the minutes of the widened range, and
    // the largest pair (in every top) is exact.
    let base = "/v1/namespaces/acme/network/top-talkers";
    let cases = [
        (start + 7 * MINUTE_MS, start + 17 * MINUTE_MS, "1m"),
        (start + 5 * MINUTE_MS, start + 65 * MINUTE_MS, "10m"),
        (start, start + 2 * HOUR_MS, "10m"),
        (now - 24 * HOUR_MS, now, "1h"),
    ];
    for (from, to, resolution) in cases {
        let range = format!("from={}&to={}", rfc3339(from), rfc3339(to));
        for (filter, sql) in [
            ("", "true"),
            ("&site=paris", "e.site = 'paris'"),
            ("&device=core-rtr", "e.device_name = 'core-rtr'"),
        ] {
            let (status, top) = h.get(&format!("{base}?{range}{filter}")).await;
            assert_eq!(status, StatusCode::OK, "{top}");
            assert_eq!(top["resolution"], resolution, "{range}{filter}");
            let want = minute_bytes(&h.store, &top, sql).await;
            assert!(want > 0, "{range}{filter}");
            assert_eq!(top["totalBytes"], want, "{range}{filter}: {top}");
            let first = &top["items"][0];
            let pair_sql = format!(
                "{sql} AND f.src = '{}' AND f.dst = '{}'",
                first["src"].as_str().unwrap_or_default(),
                first["dst"].as_str().unwrap_or_default()
            );
            assert_eq!(
                first["bytes"],
                minute_bytes(&h.store, &top, &pair_sql).await,
                "{range}{filter}: {top}"
            );
            // The traffic series of the scope and of that pair add up to the same bytes.
            let pair = format!(
                "&src={}&dst={}",
                first["src"].as_str().unwrap_or_default(),
                first["dst"].as_str().unwrap_or_default()
            );
            for (talker, sql) in [("", sql.to_owned()), (pair.as_str(), pair_sql)] {
                let uri =
                    format!("/v1/namespaces/acme/network/traffic?{range}{filter}{talker}&points=7");
                let (status, series) = h.get(&uri).await;
                assert_eq!(status, StatusCode::OK, "{uri}: {series}");
                assert_eq!(series["resolution"], resolution, "{uri}");
                let step = series["stepMs"].as_f64().expect("step");
                let points = series["points"].as_array().expect("points");
                assert!(!points.is_empty() && points.len() <= 7, "{uri}: {series}");
                let bytes: f64 = points
                    .iter()
                    .map(|p| p[1].as_f64().unwrap_or_default() * step / 8000.0)
                    .sum();
                let want = minute_bytes(&h.store, &series, &sql).await;
                assert_eq!(bytes.round() as i64, want, "{uri}: {series}");
                assert!(
                    points.iter().all(|p| p[2].as_f64() >= p[1].as_f64()),
                    "a bucket's peak is at least the step's average: {series}"
                );
            }
        }
    }
    // Every ranking of the site lists (ADR 25) is the minutes' exact ranking: core-rtr's
    // 400 keys make full heads of the first depth, so the bound on unseen keys is used.
    for (from, to) in [(start, start + 2 * HOUR_MS), (now - 24 * HOUR_MS, now)] {
        let range = format!("from={}&to={}", rfc3339(from), rfc3339(to));
        for (filter, sql) in [("", "true"), ("&site=london", "e.site = 'london'")] {
            for by in ["pairs", "sources", "destinations", "protocols", "ports"] {
                for rank in ["bytes", "packets"] {
                    let uri = format!("{base}?{range}{filter}&by={by}&rank={rank}&limit=7");
                    let (status, top) = h.get(&uri).await;
                    assert_eq!(status, StatusCode::OK, "{uri}: {top}");
                    let items: Vec<Value> = top["items"]
                        .as_array()
                        .expect("items")
                        .iter()
                        .map(|i| {
                            json!([
                                i["src"],
                                i["dst"],
                                i["protocol"],
                                i["port"],
                                i["bytes"],
                                i["packets"]
                            ])
                        })
                        .collect();
                    let want = exact_top(&h.store, &top, sql, by, rank, 7).await;
                    assert_eq!(items, want, "{uri}");
                }
            }
        }
    }
    let paris = format!(
        "{base}?site=paris&from={}&to={}",
        rfc3339(start),
        rfc3339(start + 2 * HOUR_MS)
    );
    let (_, answer) = h.get(&paris).await;
    assert_eq!(
        answer["items"].as_array().map(Vec::len),
        Some(3),
        "{answer}"
    );

    // A late minute of folded buckets: the exporter rollups and, through them, the site
    // rollups are folded again.
    let late = batch(
        vec![json!({
            "minuteMs": start + 8 * MINUTE_MS, "exporter": "10.0.0.2", "inIf": 1, "outIf": 2,
            "top": [count("192.0.2.200", "198.51.100.9", 17, 53, 5353, 70_000, 70)],
            "other": { "b": 30, "p": 1, "f": 1 },
        })],
        Vec::new(),
        Vec::new(),
    );
    assert_eq!(h.post(&h.collector, &late).await.0, StatusCode::OK);
    assert_eq!(h.count("SELECT count(*) FROM net_rollup_dirty").await, 2);
    h.fold().await;
    assert_eq!(h.count("SELECT count(*) FROM net_rollup_dirty").await, 0);
    for table in FLOW_ROLLUPS {
        assert_eq!(
            bytes_of(&h.store, table).await,
            minute_total + 70_030,
            "{table}"
        );
    }
    let (_, refolded) = h.get(&paris).await;
    assert_eq!(refolded["items"][0]["src"], "192.0.2.200", "{refolded}");
}
