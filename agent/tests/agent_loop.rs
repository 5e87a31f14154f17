//! The agent against a scripted HTTPS operator: enrollment with a pinned fingerprint (JWT
//! mode), then the service loop through an outage, a refused batch and recovery.
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use cdot_agent::{
    client::gunzip,
    config::AgentSettings,
    enroll::{EnrollOptions, TrustAnchor, enroll},
    run::{Agent, AgentStats},
    spool::Spool,
    state::{AuthMode, StatePaths},
    testing::{RunningAgent, ScriptedOperator, wait_for},
};
use cdot_crds::wire::{
    AgentConfig, BatchAck, EnrollRequest, EnrollResponse, ErrorBody, InventoryReport, MetricsBatch,
};
use ring::signature::{ED25519, UnparsedPublicKey};
use uuid::Uuid;

#[derive(Default)]
struct Operator {
    ca_pem: String,
    public_key: Option<Vec<u8>>,
    device_uid: Uuid,
    metrics_requests: usize,
    /// (batch id, first sample time) of acknowledged batches, in order.
    acked: Vec<(Uuid, i64)>,
    rejected: Vec<Uuid>,
    inventories: usize,
    bad_auth: usize,
}

type Shared = Arc<Mutex<Operator>>;

fn check_jwt(op: &mut Operator, headers: &HeaderMap) -> bool {
    let ok = (|| {
        let token = headers
            .get("authorization")?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?;
        let (signed, sig) = token.rsplit_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        UnparsedPublicKey::new(&ED25519, op.public_key.as_ref()?)
            .verify(signed.as_bytes(), &sig)
            .ok()?;
        let claims = URL_SAFE_NO_PAD.decode(signed.split_once('.')?.1).ok()?;
        let claims: serde_json::Value = serde_json::from_slice(&claims).ok()?;
        (claims["sub"] == op.device_uid.to_string() && claims["aud"] == "cdot-rmm").then_some(())
    })()
    .is_some();
    if !ok {
        op.bad_auth += 1;
    }
    ok
}

async fn enroll_route(State(op): State<Shared>, Json(req): Json<EnrollRequest>) -> Response {
    let mut op = op.lock().expect("lock");
    assert_eq!(req.token, "t0ken");
    assert!(req.csr_pem.is_none());
    op.public_key = Some(
        URL_SAFE_NO_PAD
            .decode(req.jwt_public_key.expect("jwt key"))
            .expect("b64"),
    );
    op.device_uid = Uuid::new_v4();
    Json(EnrollResponse {
        namespace: "acme".into(),
        device_name: req.device_name,
        device_uid: op.device_uid,
        certificate_pem: None,
        certificate_expiry: None,
        ca_pem: op.ca_pem.clone(),
        config: AgentConfig::default(),
    })
    .into_response()
}

async fn config_route(State(op): State<Shared>, headers: HeaderMap) -> Response {
    let mut op = op.lock().expect("lock");
    if !check_jwt(&mut op, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Json(AgentConfig {
        metrics_interval_secs: 3600, // overridden by the test's settings
        ..AgentConfig::default()
    })
    .into_response()
}

async fn metrics_route(State(op): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut op = op.lock().expect("lock");
    if !check_jwt(&mut op, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    assert_eq!(headers["content-encoding"], "gzip");
    assert_eq!(headers["content-type"], "application/json");
    let batch: MetricsBatch =
        serde_json::from_slice(&gunzip(&body).expect("gzip")).expect("MetricsBatch");
    op.metrics_requests += 1;
    match op.metrics_requests {
        // An outage: three server errors.
        1..=3 => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        // One batch the operator refuses for good.
        4 => {
            op.rejected.push(batch.batch_id);
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(ErrorBody {
                    code: 422,
                    reason: "Invalid".into(),
                    message: "samples[0].v is out of range".into(),
                    field: Some("samples[0].v".into()),
                }),
            )
                .into_response()
        }
        _ => {
            let t = batch.samples.first().map_or(0, |s| s.t);
            op.acked.push((batch.batch_id, t));
            Json(BatchAck {
                batch_id: batch.batch_id,
                stored: batch.samples.len() as u32,
                duplicate: false,
            })
            .into_response()
        }
    }
}

async fn inventory_route(State(op): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut op = op.lock().expect("lock");
    if !check_jwt(&mut op, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let report: InventoryReport =
        serde_json::from_slice(&gunzip(&body).expect("gzip")).expect("InventoryReport");
    assert!(report.inventory.hostname.is_some());
    op.inventories += 1;
    StatusCode::NO_CONTENT.into_response()
}

/// The scripted operator; the enrollment answer hands out its own certificate as CA.
async fn start_operator(op: Shared) -> ScriptedOperator {
    let app = Router::new()
        .route("/v1/agent/enroll", post(enroll_route))
        .route("/v1/agent/config", get(config_route))
        .route("/v1/agent/metrics", post(metrics_route))
        .route("/v1/agent/inventory", put(inventory_route))
        .with_state(op.clone());
    let operator = ScriptedOperator::start(app).await;
    op.lock().expect("lock").ca_pem = operator.cert.pem.clone();
    operator
}

#[tokio::test(flavor = "current_thread")]
async fn enroll_with_pin_then_survive_outage_and_refusal() {
    let op: Shared = Arc::default();
    let operator = start_operator(op.clone()).await;
    let server = operator.url();
    let (ca, pin) = (operator.cert.pem, operator.cert.pin);
    let state = tempfile::tempdir().expect("tempdir");

    // A wrong pin is refused before anything is sent.
    let mut opts = EnrollOptions {
        server: server.clone(),
        token: "t0ken".into(),
        device_name: Some("web-1".into()),
        namespace: None,
        trust: TrustAnchor::Fingerprint([0; 32]),
        auth: AuthMode::Jwt,
        state_dir: state.path().to_owned(),
        timeout: Duration::from_secs(5),
        device_class: None,
    };
    let err = enroll(opts.clone()).await.expect_err("wrong pin");
    assert!(format!("{err:?}").contains("fingerprint"), "{err:?}");
    assert!(op.lock().expect("lock").public_key.is_none());

    opts.trust = TrustAnchor::Fingerprint(pin);
    let identity = enroll(opts).await.expect("enroll");
    assert_eq!(identity.namespace, "acme");
    assert_eq!(identity.device_name, "web-1");
    let paths = StatePaths::new(state.path());
    let creds = paths.load().expect("stored credentials");
    assert_eq!(creds.ca_pem, ca);
    assert!(creds.cert_pem.is_none());

    let mut settings = AgentSettings::new(state.path());
    settings.metrics_interval_override = Some(Duration::from_millis(150));
    settings.retry_backoff_min = Duration::from_millis(50);
    settings.retry_backoff_max = Duration::from_millis(200);
    settings.request_timeout = Duration::from_secs(5);
    let agent = Agent::new(settings).expect("agent");
    let stats = agent.stats();
    let running = RunningAgent::spawn(agent);

    let op2 = op.clone();
    wait_for("six acknowledged batches", Duration::from_secs(30), || {
        op2.lock().expect("lock").acked.len() >= 6
    })
    .await;
    wait_for("inventory", Duration::from_secs(30), || {
        op2.lock().expect("lock").inventories >= 1
    })
    .await;
    running.stop().await;

    let op = op.lock().expect("lock");
    assert_eq!(op.bad_auth, 0, "every request carried a valid JWT");
    assert_eq!(op.rejected.len(), 1);
    // Strict order: acknowledged batches were collected in the order they arrived.
    let times: Vec<i64> = op.acked.iter().map(|(_, t)| *t).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "batches drained in creation order");
    let mut ids: Vec<Uuid> = op.acked.iter().map(|(id, _)| *id).collect();
    ids.dedup();
    assert_eq!(ids.len(), op.acked.len(), "no batch acknowledged twice");
    assert!(
        !ids.contains(&op.rejected[0]),
        "the refused batch was not retried"
    );
    assert!(AgentStats::get(&stats.send_retries) >= 3);
    assert_eq!(AgentStats::get(&stats.batches_rejected), 1);

    // Acknowledged and refused batches left the spool; the refusal is counted on disk. The
    // one exception: a send abandoned at stop may have reached the operator before its
    // answer came back; its batch, the oldest, stays to be sent again (idempotently).
    let spool = Spool::open(paths.spool(), u64::MAX).expect("spool");
    assert_eq!(spool.counters().dropped_rejected, 1);
    for (i, entry) in spool.entries().enumerate() {
        assert!(
            i == 0 || !ids.contains(&entry.batch_id),
            "acknowledged batch {} still spooled",
            entry.batch_id
        );
    }
}
