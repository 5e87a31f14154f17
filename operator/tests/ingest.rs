//! Agent reports end to end against a real PostgreSQL: the HTTP handlers (called through
//! `api::app` with the `DeviceIdentity` extension the TLS/JWT layer inserts), the group-commit
//! writers, the rollup, partitions and the liveness of devices.
mod support;

use std::{io::Write, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Request, StatusCode, header},
};
use cdot_crds::{
    api_token::{ApiToken, Role, hash_token},
    kind::Kind,
};
use cdot_operator::{
    api::{self, AppState, TokenIndex, agent_auth::DeviceIdentity},
    ingest::{Ingest, IngestConfig, writer},
    jobs::{self, TimeseriesArgs, liveness, partitions, rollup},
    metrics::Metrics,
    store::{
        Store,
        partitions::{day_of, partition_name},
        timeseries::Partitioned,
    },
};
use serde_json::{Value, json};
use sqlx::Row;
use support::{TestDb, wait_for};
use tokio::{sync::watch, task::JoinHandle};
use tower::ServiceExt;
use uuid::Uuid;

const TOKEN: &str = "cdot_test_viewer_token";
const MINUTE: i64 = 60_000;

struct Harness {
    _db: TestDb,
    store: Store,
    state: AppState,
    app: Router,
    web: DeviceIdentity,
    pc: DeviceIdentity,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Harness {
    async fn start() -> Self {
        Self::with(IngestConfig::default(), 2).await
    }

    async fn with(config: IngestConfig, writers: usize) -> Self {
        let db = TestDb::create().await;
        let store = Store::connect(&db.url, 8)
            .await
            .expect("connect and migrate");
        // Objects as enrollment would leave them (not through manifests, whose API moves).
        for (name, spec) in [
            (
                "web-01",
                json!({ "class": "Server", "agent": { "metricsInterval": "10s", "monitoredServices": ["nginx.service"] } }),
            ),
            ("pc-17", json!({ "class": "Workstation" })),
        ] {
            sqlx::query(
                "INSERT INTO objects (namespace, kind, name, uid, spec, managed_by)
                 VALUES ('acme', 'Device', $1, gen_random_uuid(), $2, 'agent')",
            )
            .bind(name)
            .bind(spec)
            .execute(store.pool())
            .await
            .expect("insert device");
        }
        let identity = |name: &str, uid| DeviceIdentity {
            namespace: "acme".into(),
            name: name.into(),
            uid,
        };
        let web = identity("web-01", uid(&store, "web-01").await);
        let pc = identity("pc-17", uid(&store, "pc-17").await);
        let mut state = AppState::new(store.clone(), Arc::new(Metrics::default()));
        state.ingest = Ingest::new(config);
        state.replace_tokens(TokenIndex::new(&[ApiToken {
            name: "viewer".into(),
            namespace: "acme".into(),
            token_sha256: hash_token(TOKEN),
            role: Role::Viewer,
            namespaces: vec!["acme".into()],
        }]));
        jobs::prepare(&store, &state.metrics, &TimeseriesArgs::default())
            .await
            .expect("partitions");
        let (shutdown, rx) = watch::channel(false);
        let tasks = (0..writers)
            .map(|_| {
                tokio::spawn(writer::run(
                    state.ingest.clone(),
                    store.clone(),
                    state.metrics.clone(),
                    rx.clone(),
                ))
            })
            .collect();
        let app = api::app(state.clone(), Duration::from_secs(20));
        Self {
            _db: db,
            store,
            state,
            app,
            web,
            pc,
            shutdown,
            tasks,
        }
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
        let response = self.app.clone().oneshot(request).await.expect("response");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (
            status,
            headers,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn post_metrics(
        &self,
        who: &DeviceIdentity,
        body: Vec<u8>,
        gzip: bool,
    ) -> (StatusCode, HeaderMap, Value) {
        self.send(agent_request("POST", "/v1/agent/metrics", who, body, gzip))
            .await
    }

    async fn post_batch(&self, who: &DeviceIdentity, batch: &Value) -> (StatusCode, Value) {
        let (status, _, body) = self
            .post_metrics(who, serde_json::to_vec(batch).expect("json"), false)
            .await;
        (status, body)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        let request = Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .expect("request");
        let (status, _, body) = self.send(request).await;
        (status, body)
    }

    async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(self.store.pool())
            .await
            .expect("count")
    }

    async fn status(&self, name: &str) -> Value {
        self.store
            .get_object("acme", Kind::Device, name)
            .await
            .expect("get")
            .expect("device")
            .status
    }

    async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            task.await.expect("writer");
        }
    }
}

async fn uid(store: &Store, name: &str) -> Uuid {
    store
        .get_object("acme", Kind::Device, name)
        .await
        .expect("get")
        .expect("device")
        .uid
}

fn agent_request(
    method: &str,
    uri: &str,
    who: &DeviceIdentity,
    body: Vec<u8>,
    gzip: bool,
) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .extension(who.clone());
    let body = if gzip {
        builder = builder.header(header::CONTENT_ENCODING, "gzip");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&body).expect("gzip");
        encoder.finish().expect("gzip")
    } else {
        body
    };
    builder.body(Body::from(body)).expect("request")
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn batch(samples: Vec<Value>) -> Value {
    json!({ "batchId": Uuid::new_v4(), "agentVersion": "0.1.0", "samples": samples })
}

fn host_samples(t: i64) -> Vec<Value> {
    vec![
        json!({ "t": t, "n": "cpu", "v": 12.5 }),
        json!({ "t": t, "n": "memory", "v": 40.0 }),
        json!({ "t": t, "n": "disk", "l": { "mount": "/" }, "v": 70.0 }),
        json!({ "t": t, "n": "disk", "l": { "mount": "/var" }, "v": 91.0 }),
        json!({ "t": t, "n": "load1", "v": 0.5 }),
    ]
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .expect("time")
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn ready(status: &Value) -> (String, String) {
    let c = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    (
        c["status"].as_str().unwrap_or_default().to_owned(),
        c["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn a_batch_sent_twice_is_stored_once_and_acknowledged_after_commit() {
    let h = Harness::start().await;
    let body = batch(host_samples(now_ms()));

    let (status, ack) = h.post_batch(&h.web, &body).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    assert_eq!(
        ack,
        json!({ "batchId": body["batchId"], "stored": 5, "duplicate": false })
    );
    // The ack came after the commit: the rows are visible to any other connection now.
    assert_eq!(
        h.count("SELECT count(*) FROM metric_points, unnest(series_ids)")
            .await,
        5
    );
    assert_eq!(h.count("SELECT count(*) FROM metric_series").await, 5);

    let (status, ack) = h.post_batch(&h.web, &body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        ack,
        json!({ "batchId": body["batchId"], "stored": 0, "duplicate": true })
    );
    assert_eq!(
        h.count("SELECT count(*) FROM metric_points, unnest(series_ids)")
            .await,
        5
    );
    assert_eq!(h.count("SELECT count(*) FROM ingested_batches").await, 1);

    // Batch ids are per device: another device may use the same id.
    let (status, ack) = h.post_batch(&h.pc, &body).await;
    assert_eq!((status, ack["stored"].clone()), (StatusCode::OK, json!(5)));

    // The same new batch sent concurrently (retries racing): stored exactly once.
    let body = batch(host_samples(now_ms()));
    let acks = futures::future::join_all((0..6).map(|_| h.post_batch(&h.web, &body))).await;
    let stored: Vec<bool> = acks
        .iter()
        .map(|(status, ack)| {
            assert_eq!(*status, StatusCode::OK, "{ack}");
            ack["duplicate"] == json!(false)
        })
        .collect();
    assert_eq!(stored.iter().filter(|s| **s).count(), 1, "{acks:?}");
    assert_eq!(
        h.count("SELECT count(*) FROM metric_points, unnest(series_ids)")
            .await,
        15
    );

    let text = h.state.metrics.render();
    assert!(
        text.contains("cdot_ingest_batches_total{result=\"duplicate\"} 6"),
        "{text}"
    );
    assert!(text.contains("cdot_ingest_samples_total 15"), "{text}");
    h.stop().await;
}

#[tokio::test]
async fn every_validation_rule_refuses_the_whole_batch_with_the_field_path() {
    let h = Harness::start().await;
    let now = now_ms();
    let cases = [
        (
            json!({ "t": now, "n": "cpux", "v": 1 }),
            StatusCode::BAD_REQUEST,
            "samples[3].n",
        ),
        (
            json!({ "t": now, "n": "disk", "v": 1 }),
            StatusCode::BAD_REQUEST,
            "samples[3].l",
        ),
        (
            json!({ "t": now, "n": "cpu", "l": { "mount": "/" }, "v": 1 }),
            StatusCode::BAD_REQUEST,
            "samples[3].l",
        ),
        (
            json!({ "t": now, "n": "disk", "l": { "mount": "/", "fs": "ext4" }, "v": 1 }),
            StatusCode::BAD_REQUEST,
            "samples[3].l",
        ),
        (
            json!({ "t": now + 6 * MINUTE, "n": "cpu", "v": 1 }),
            StatusCode::BAD_REQUEST,
            "samples[3].t",
        ),
        (
            json!({ "t": now - 8 * 86_400_000, "n": "cpu", "v": 1 }),
            StatusCode::BAD_REQUEST,
            "samples[3].t",
        ),
        (
            json!({ "t": now, "n": "cpu", "v": "high" }),
            StatusCode::BAD_REQUEST,
            "samples[3].v",
        ),
    ];
    for (bad, code, field) in cases {
        let mut samples = host_samples(now);
        samples.insert(3, bad.clone());
        let (status, body) = h.post_batch(&h.web, &batch(samples)).await;
        assert_eq!(
            (status, body["field"].as_str()),
            (code, Some(field)),
            "{bad}: {body}"
        );
        assert_eq!(body["code"], code.as_u16());
    }
    // A value that is not finite cannot even be written in JSON: 1e999 overflows.
    let text = serde_json::to_string(&batch(host_samples(now))).expect("json");
    let text = text.replacen("12.5", "1e999", 1);
    let (status, _, body) = h.post_metrics(&h.web, text.into_bytes(), false).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("samples[0].v")),
        "{body}"
    );
    // Unknown fields: an identity in the body is refused, never trusted.
    let mut samples = host_samples(now);
    samples[3]["device"] = json!("other");
    let (status, body) = h.post_batch(&h.web, &batch(samples)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["field"]
            .as_str()
            .unwrap_or_default()
            .starts_with("samples[3]"),
        "{body}"
    );
    let mut unknown = batch(host_samples(now));
    unknown["namespace"] = json!("globex");
    let (status, body) = h.post_batch(&h.web, &unknown).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Too many samples.
    let (status, body) = h
        .post_batch(
            &h.web,
            &batch(vec![json!({ "t": now, "n": "cpu", "v": 1 }); 20_001]),
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("samples"))
    );
    // Malformed JSON names line and column.
    let (status, _, body) = h
        .post_metrics(&h.web, b"{\n  \"batchId\": ".to_vec(), false)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("line 2 column"),
        "{body}"
    );
    // Over the size cap, plain and gzip.
    let big = vec![b' '; cdot_crds::wire::MAX_BODY_BYTES + 1];
    let (status, _, body) = h.post_metrics(&h.web, big.clone(), false).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (status, _, body) = h.post_metrics(&h.web, big, true).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("PayloadTooLarge"))
    );
    // Unsupported encodings.
    let mut request = agent_request("POST", "/v1/agent/metrics", &h.web, b"{}".to_vec(), false);
    request
        .headers_mut()
        .insert(header::CONTENT_ENCODING, "br".parse().expect("header"));
    assert_eq!(h.send(request).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // No identity: 401 (the TLS/JWT layer did not vouch for the caller).
    let request = Request::post("/v1/agent/metrics")
        .body(Body::from(
            serde_json::to_vec(&batch(host_samples(now))).expect("json"),
        ))
        .expect("request");
    assert_eq!(h.send(request).await.0, StatusCode::UNAUTHORIZED);

    assert_eq!(
        h.count("SELECT count(*) FROM metric_points, unnest(series_ids)")
            .await,
        0,
        "a refused batch left rows"
    );
    assert_eq!(h.count("SELECT count(*) FROM ingested_batches").await, 0);
    let text = h.state.metrics.render();
    for reason in [
        "unknown_metric",
        "labels",
        "timestamp",
        "malformed",
        "too_many_samples",
        "too_large",
        "encoding",
    ] {
        assert!(
            text.contains(&format!(
                "cdot_ingest_rejected_total{{reason=\"{reason}\"}}"
            )),
            "{reason}: {text}"
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn gzip_bodies_are_accepted() {
    let h = Harness::start().await;
    let body = batch(host_samples(now_ms()));
    let (status, _, ack) = h
        .post_metrics(&h.web, serde_json::to_vec(&body).expect("json"), true)
        .await;
    assert_eq!(
        (status, ack["stored"].clone()),
        (StatusCode::OK, json!(5)),
        "{ack}"
    );
    assert_eq!(
        h.count("SELECT count(*) FROM metric_points, unnest(series_ids)")
            .await,
        5
    );
    h.stop().await;
}

#[tokio::test]
async fn a_full_queue_is_refused_with_retry_after() {
    let config = IngestConfig {
        queue_capacity: 1,
        ..IngestConfig::default()
    };
    let h = Harness::with(config, 0).await;
    let first = batch(host_samples(now_ms()));
    let waiting = {
        let app = h.app.clone();
        let request = agent_request(
            "POST",
            "/v1/agent/metrics",
            &h.web,
            serde_json::to_vec(&first).expect("json"),
            false,
        );
        tokio::spawn(async move { app.oneshot(request).await.expect("response").status() })
    };
    let ingest = h.state.ingest.clone();
    wait_for(Duration::from_secs(5), || {
        let depth = ingest.queue_depth();
        async move { (depth == 1).then_some(()) }
    })
    .await
    .expect("first batch queued");
    let (status, headers, body) = h
        .post_metrics(
            &h.web,
            serde_json::to_vec(&batch(host_samples(now_ms()))).expect("json"),
            false,
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(headers.contains_key(header::RETRY_AFTER));
    assert!(
        h.state
            .metrics
            .render()
            .contains("cdot_ingest_rejected_total{reason=\"queue_full\"} 1")
    );
    // A writer starts: the queued request is committed and answered.
    let (_tx, rx) = watch::channel(false);
    let writer = tokio::spawn(writer::run(
        h.state.ingest.clone(),
        h.store.clone(),
        h.state.metrics.clone(),
        rx,
    ));
    assert_eq!(waiting.await.expect("request"), StatusCode::OK);
    assert_eq!(
        h.count("SELECT count(*) FROM metric_points, unnest(series_ids)")
            .await,
        5
    );
    writer.abort();
    h.stop().await;
}

#[tokio::test]
async fn rollups_match_raw_samples_and_serve_queries() {
    let h = Harness::start().await;
    let now = now_ms();
    let m1 = (now - 20 * MINUTE).div_euclid(MINUTE) * MINUTE;
    let m2 = m1 + MINUTE;
    // Fold from half an hour ago, as if the operator had been running.
    sqlx::query("UPDATE metric_rollup_state SET watermark = 'epoch'::timestamptz + $1 * interval '1 millisecond'")
        .bind(m1 - 10 * MINUTE)
        .execute(h.store.pool())
        .await
        .expect("watermark");
    let mut samples = Vec::new();
    for (i, v) in [1.0, 2.0, 3.0, 4.0, 5.0, 6.0].into_iter().enumerate() {
        samples.push(json!({ "t": m1 + i as i64 * 10_000, "n": "cpu", "v": v }));
        samples.push(json!({ "t": m1 + i as i64 * 10_000, "n": "disk", "l": { "mount": "/" }, "v": 50.0 + v }));
        samples.push(json!({ "t": m1 + i as i64 * 10_000, "n": "disk", "l": { "mount": "/var" }, "v": 90.0 }));
    }
    for (i, v) in [10.0, 20.0, 30.0].into_iter().enumerate() {
        samples.push(json!({ "t": m2 + i as i64 * 10_000, "n": "cpu", "v": v }));
    }
    let (status, ack) = h.post_batch(&h.web, &batch(samples)).await;
    assert_eq!(
        (status, ack["stored"].clone()),
        (StatusCode::OK, json!(21)),
        "{ack}"
    );

    let summary = rollup::fold(&h.store, now).await.expect("fold");
    assert_eq!(summary.to_ms, (now - MINUTE).div_euclid(MINUTE) * MINUTE);
    assert_eq!(
        summary.rows, 0,
        "the last step had nothing left to fold: {summary:?}"
    );
    assert_eq!(
        h.store.rollup_watermark().await.expect("watermark"),
        summary.to_ms
    );
    // Every rollup row equals the aggregate of its raw samples, and every raw minute is rolled up.
    let mismatches = h
        .count(
            "WITH samples AS (
                 SELECT u.series_id, p.at, u.value
                 FROM metric_points p, unnest(p.series_ids, p.vals) AS u(series_id, value)
             ), rollups AS (
                 SELECT u.series_id, r.bucket, u.min, u.max, u.sum, u.count
                 FROM metric_points_1m r, unnest(r.series_ids, r.mins, r.maxs, r.sums, r.counts) AS u(series_id, min, max, sum, count)
             )
             SELECT count(*) FROM (
                 (SELECT series_id, date_trunc('minute', at, 'UTC') AS bucket, min(value), max(value), sum(value), count(*)
                  FROM samples GROUP BY 1, 2
                  EXCEPT SELECT series_id, bucket, min, max, sum, count FROM rollups)
                 UNION ALL
                 (SELECT series_id, bucket, min, max, sum, count FROM rollups
                  EXCEPT SELECT series_id, date_trunc('minute', at, 'UTC'), min(value), max(value), sum(value), count(*)
                  FROM samples GROUP BY 1, 2)) d",
        )
        .await;
    assert_eq!(mismatches, 0);
    assert_eq!(
        h.count("SELECT count(*) FROM metric_points_1m, unnest(series_ids)")
            .await,
        4
    );
    // One row per device and minute (web-01 reported in two minutes).
    assert_eq!(h.count("SELECT count(*) FROM metric_points_1m").await, 2);

    // Folding again changes nothing: each minute is folded once.
    let again = rollup::fold(&h.store, now).await.expect("fold");
    assert_eq!((again.rows, again.refolded), (0, 0));

    // A late sample for an already folded minute folds that minute again.
    let late = batch(vec![json!({ "t": m1 + 55_000, "n": "cpu", "v": 100.0 })]);
    assert_eq!(h.post_batch(&h.web, &late).await.0, StatusCode::OK);
    assert_eq!(h.count("SELECT count(*) FROM metric_rollup_dirty").await, 1);
    let refold = rollup::fold(&h.store, now).await.expect("fold");
    assert_eq!((refold.refolded, refold.rows), (1, 3), "{refold:?}");
    let row = sqlx::query(
        "SELECT u.min, u.max, u.sum, u.count
         FROM metric_points_1m r
         CROSS JOIN LATERAL unnest(r.series_ids, r.mins, r.maxs, r.sums, r.counts) AS u(series_id, min, max, sum, count)
         JOIN metric_series s ON s.id = u.series_id
         WHERE s.metric = 'cpu' AND r.bucket = 'epoch'::timestamptz + $1 * interval '1 millisecond'",
    )
    .bind(m1)
    .fetch_one(h.store.pool())
    .await
    .expect("rollup row");
    assert_eq!(
        (
            row.get::<f64, _>(0),
            row.get::<f64, _>(1),
            row.get::<f64, _>(2),
            row.get::<i64, _>(3)
        ),
        (1.0, 100.0, 121.0, 7)
    );

    // Queries: from the rollup by minute, re-aggregated to 2 minutes, and from raw.
    let base = "/v1/namespaces/acme/devices/web-01/metrics";
    let range = format!("from={}&to={}", rfc3339(m1), rfc3339(m2 + MINUTE));
    let (status, body) = h.get(&format!("{base}/cpu?{range}&step=60s")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["source"], "rollup");
    assert_eq!(
        body["series"],
        json!([{ "labels": {}, "points": [[m1, 121.0 / 7.0, 1.0, 100.0], [m2, 20.0, 10.0, 30.0]] }])
    );
    let (_, body) = h.get(&format!("{base}/cpu?{range}&step=2m")).await;
    let start = m1.div_euclid(2 * MINUTE) * 2 * MINUTE;
    let points = &body["series"][0]["points"];
    let total: f64 = points
        .as_array()
        .expect("points")
        .iter()
        .map(|p| p[3].as_f64().unwrap_or_default())
        .fold(0.0, f64::max);
    assert_eq!(total, 100.0, "{body}");
    assert_eq!(points[0][0], json!(start), "{body}");
    let (_, raw) = h.get(&format!("{base}/cpu?{range}&step=30s")).await;
    assert_eq!(raw["source"], "raw");
    assert_eq!(
        raw["series"][0]["points"],
        json!([
            [m1, 2.0, 1.0, 3.0],
            [m1 + 30_000, (4.0 + 5.0 + 6.0 + 100.0) / 4.0, 4.0, 100.0],
            [m2, 20.0, 10.0, 30.0]
        ])
    );
    // The rollup and raw agree on what a minute holds.
    let (_, by_minute) = h.get(&format!("{base}/cpu?{range}&step=60s")).await;
    let minute_avg = by_minute["series"][0]["points"][0][1]
        .as_f64()
        .expect("avg");
    assert!((minute_avg - 121.0 / 7.0).abs() < 1e-9);
    // Label filters and their errors.
    let (_, disks) = h.get(&format!("{base}/disk?{range}")).await;
    assert_eq!(disks["series"].as_array().map(Vec::len), Some(2));
    let (_, root) = h.get(&format!("{base}/disk?{range}&labels.mount=/")).await;
    assert_eq!(root["series"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        root["series"][0]["points"][0],
        json!([m1, 53.5, 51.0, 56.0])
    );
    let (status, body) = h.get(&format!("{base}/disk?{range}&labels.fs=ext4")).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("query.labels.fs"))
    );
    let (status, body) = h
        .get(&format!("{base}/cpu?from=2020-01-01T00:00:00Z&step=1s"))
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("query.step"))
    );
    let (status, body) = h.get(&format!("{base}/bogus")).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::NOT_FOUND, Some("path.metric"))
    );
    let (status, _) = h.get("/v1/namespaces/acme/devices/nope/metrics/cpu").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h
        .get("/v1/namespaces/globex/devices/web-01/metrics/cpu")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "out of the token's scope");
    h.stop().await;
}

#[tokio::test]
async fn partitions_are_created_ahead_and_dropped_by_retention() {
    let h = Harness::start().await;
    let now = now_ms();
    let today = day_of(now);
    for table in Partitioned::ALL {
        let days: Vec<i64> = h
            .store
            .partitions(table)
            .await
            .expect("partitions")
            .into_iter()
            .map(|p| p.1)
            .collect();
        for day in [today - 14, today, today + 1, today + 2] {
            assert!(days.contains(&day), "{table:?} lacks day {day}: {days:?}");
        }
    }
    for (table, day) in [
        (Partitioned::Samples, today - 30),
        (Partitioned::Rollup, today - 30),
        (Partitioned::Rollup, today - 100),
    ] {
        assert!(h.store.create_partition(table, day).await.expect("create"));
    }
    sqlx::query("INSERT INTO ingested_batches (device_uid, batch_id, samples, received_at) VALUES ($1, $2, 1, now() - interval '9 days'), ($1, $3, 1, now())")
        .bind(h.web.uid)
        .bind(Uuid::new_v4())
        .bind(Uuid::new_v4())
        .execute(h.store.pool())
        .await
        .expect("seed batches");

    let done = partitions::maintain(&h.store, &h.state.metrics, now, &TimeseriesArgs::default())
        .await
        .expect("maintain");
    assert_eq!(
        done.dropped,
        [
            partition_name(Partitioned::Samples, today - 30),
            partition_name(Partitioned::Rollup, today - 100)
        ]
    );
    assert!(done.created.is_empty(), "{done:?}");
    assert_eq!(done.batches_forgotten, 1);
    assert_eq!(h.count("SELECT count(*) FROM ingested_batches").await, 1);

    // A shorter retention drops more; days ahead move with the clock.
    let args = TimeseriesArgs {
        metrics_retention: Duration::from_secs(2 * 86_400),
        metrics_rollup_retention: Duration::from_secs(7 * 86_400),
        ..TimeseriesArgs::default()
    };
    let done = partitions::maintain(&h.store, &h.state.metrics, now + 86_400_000, &args)
        .await
        .expect("maintain");
    assert!(
        done.created
            .contains(&partition_name(Partitioned::Samples, today + 3)),
        "{done:?}"
    );
    let samples: Vec<i64> = h
        .store
        .partitions(Partitioned::Samples)
        .await
        .expect("partitions")
        .into_iter()
        .map(|p| p.1)
        .collect();
    assert_eq!(samples.first(), Some(&(today + 1 - 2)), "{samples:?}");
    let rollups: Vec<i64> = h
        .store
        .partitions(Partitioned::Rollup)
        .await
        .expect("partitions")
        .into_iter()
        .map(|p| p.1)
        .collect();
    assert_eq!(rollups.first(), Some(&(today + 1 - 7)), "{rollups:?}");
    // Samples still land (today's partition exists).
    assert_eq!(
        h.post_batch(&h.web, &batch(host_samples(now))).await.0,
        StatusCode::OK
    );
    h.stop().await;
}

#[tokio::test]
async fn devices_go_offline_after_three_missed_intervals_and_back_on_the_next_report() {
    let h = Harness::start().await;
    // Enrollment owns certificateExpiry; reports must not erase it.
    sqlx::query("UPDATE objects SET status = '{\"agent\": {\"certificateExpiry\": \"2027-01-01T00:00:00Z\"}}' WHERE name = 'web-01'")
        .execute(h.store.pool())
        .await
        .expect("seed");
    let t0 = now_ms();
    assert_eq!(
        h.post_batch(&h.web, &batch(host_samples(t0))).await.0,
        StatusCode::OK
    );
    // Not written per request: only the flush writes status.
    assert!(h.status("web-01").await["agent"].get("lastSeen").is_none());
    assert_eq!(
        h.state
            .ingest
            .reports()
            .flush(&h.store)
            .await
            .expect("flush"),
        1
    );
    let status = h.status("web-01").await;
    assert_eq!(status["agent"]["id"], h.web.uid.to_string());
    assert_eq!(status["agent"]["version"], "0.1.0");
    assert_eq!(status["agent"]["certificateExpiry"], "2027-01-01T00:00:00Z");
    assert_eq!(status["lastMetrics"]["cpuPercent"], 12.5);
    assert_eq!(status["lastMetrics"]["diskPercentMax"], 91.0);
    let seen = jiff::Timestamp::from_millisecond(t0)
        .expect("t")
        .as_second()
        * 1000;

    liveness::device_pass(&h.store, &rfc3339(seen + 5_000))
        .await
        .expect("pass");
    assert_eq!(
        ready(&h.status("web-01").await),
        ("True".into(), "Reporting".into())
    );
    // web-01 reports every 10s: 3 missed intervals later it is offline.
    liveness::device_pass(&h.store, &rfc3339(seen + 32_000))
        .await
        .expect("pass");
    let status = h.status("web-01").await;
    assert_eq!(
        ready(&status),
        ("False".into(), "Offline".into()),
        "{status}"
    );
    assert_eq!(
        ready(&h.status("pc-17").await),
        ("False".into(), "NotReporting".into())
    );

    // The next report makes it Ready again, through the real background jobs this time.
    let (stop, rx) = watch::channel(false);
    let args = TimeseriesArgs {
        status_flush_interval: Duration::from_millis(100),
        liveness_interval: Duration::from_millis(100),
        rollup_interval: Duration::from_millis(200),
        ingest_writers: 1,
        ..TimeseriesArgs::default()
    };
    let tasks = jobs::spawn(&h.state, &args, rx);
    assert_eq!(
        h.post_batch(&h.web, &batch(host_samples(now_ms()))).await.0,
        StatusCode::OK
    );
    let store = h.store.clone();
    wait_for(Duration::from_secs(10), || {
        let store = store.clone();
        async move {
            let status = store
                .get_object("acme", Kind::Device, "web-01")
                .await
                .ok()??
                .status;
            (ready(&status).0 == "True").then_some(())
        }
    })
    .await
    .expect("Ready again after the next report");
    let _ = stop.send(true);
    for task in tasks {
        task.await.expect("job");
    }
    h.stop().await;
}

#[tokio::test]
async fn inventory_replaces_software_and_config_follows_the_spec() {
    let h = Harness::start().await;
    let report = json!({
        "agentVersion": "0.2.0",
        "inventory": { "hostname": "web-01", "osName": "Debian GNU/Linux", "osVersion": "12", "cpuCores": 2 },
        "software": [
            { "name": "nginx", "version": "1.22.1" },
            { "name": "bash", "version": "5.2.15" },
            { "name": "nginx", "version": "1.22.1" }
        ]
    });
    let put = |who: &DeviceIdentity, body: &Value, gzip: bool| {
        agent_request(
            "PUT",
            "/v1/agent/inventory",
            who,
            serde_json::to_vec(body).expect("json"),
            gzip,
        )
    };
    let (status, _, body) = h.send(put(&h.web, &report, true)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let status = h.status("web-01").await;
    assert_eq!(status["inventory"]["osName"], "Debian GNU/Linux");
    assert_eq!(status["inventory"]["softwareCount"], 2);
    assert_eq!(status["agent"]["version"], "0.2.0");
    assert!(status["agent"]["lastSeen"].is_string());
    let (code, list) = h.get("/v1/namespaces/acme/devices/web-01/software").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        list["items"],
        json!([{ "name": "bash", "version": "5.2.15" }, { "name": "nginx", "version": "1.22.1" }])
    );
    // The list is replaced, not merged.
    let mut next = report.clone();
    next["software"] = json!([{ "name": "curl", "version": "7.88.1" }]);
    assert_eq!(
        h.send(put(&h.web, &next, false)).await.0,
        StatusCode::NO_CONTENT
    );
    let (_, list) = h.get("/v1/namespaces/acme/devices/web-01/software").await;
    assert_eq!(
        list["items"],
        json!([{ "name": "curl", "version": "7.88.1" }])
    );
    assert_eq!(h.status("web-01").await["inventory"]["softwareCount"], 1);
    // Validation names the field.
    let mut bad = report.clone();
    bad["software"][1]["name"] = json!("");
    let (status, _, body) = h.send(put(&h.web, &bad, false)).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("software[1].name"))
    );

    // The agent's configuration comes from its Device's spec.
    let get =
        |who: &DeviceIdentity| agent_request("GET", "/v1/agent/config", who, Vec::new(), false);
    let (status, _, config) = h.send(get(&h.web)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        config,
        json!({ "metricsIntervalSecs": 10, "inventoryIntervalSecs": 21600, "monitoredServices": ["nginx.service"] })
    );
    let (_, _, config) = h.send(get(&h.pc)).await;
    assert_eq!(config["metricsIntervalSecs"], 10);
    // An identity whose device was replaced (another uid) gets 404 and writes nothing.
    let stale = DeviceIdentity {
        uid: Uuid::new_v4(),
        ..h.web.clone()
    };
    assert_eq!(h.send(get(&stale)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        h.send(put(&stale, &report, false)).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, list) = h.get("/v1/namespaces/acme/devices/web-01/software").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    h.stop().await;
}
