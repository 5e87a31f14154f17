//! The collector's reporter against an operator that freezes (accepts connections, never
//! answers): batches are still cut every ship interval and spooled, the components' queues
//! keep flowing, and once the operator answers every batch is delivered once, in order.
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use cdot_agent::{
    client::gunzip,
    testing::{
        ScriptedOperator, assert_closed, enrolled_state, spooled, state_left_open, wait_for,
    },
};
use cdot_collector::{
    metrics::ReporterMetrics,
    report::{Inputs, Outputs, Reporter, ReporterSettings},
};
use cdot_crds::wire::{
    BatchAck,
    collector::{CollectorAssignments, CollectorBatch, ProbeResult},
};
use cdot_testkit::frozen::FreezableProxy;
use prometheus_client::{encoding::text::encode, registry::Registry};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use uuid::Uuid;

/// Batches in the order the operator acknowledged them: id and the probes' sequence numbers.
type Received = Arc<Mutex<Vec<(Uuid, Vec<i64>)>>>;

async fn batches_route(State(received): State<Received>, body: Bytes) -> Response {
    let batch: CollectorBatch =
        serde_json::from_slice(&gunzip(&body).expect("gzip")).expect("CollectorBatch");
    let seqs = batch.probes.iter().map(|p| p.t).collect();
    received.lock().expect("lock").push((batch.batch_id, seqs));
    Json(BatchAck {
        batch_id: batch.batch_id,
        stored: batch.probes.len() as u32,
        duplicate: false,
    })
    .into_response()
}

/// `cdot_collector_batches_total{result="..."}`.
fn batches_counter(registry: &Registry, result: &str) -> u64 {
    let mut text = String::new();
    encode(&mut text, registry).expect("encode metrics");
    let prefix = format!("cdot_collector_batches_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().expect("counter value"))
}

/// Routes of an operator that acknowledges every batch and assigns nothing.
fn operator_routes(received: Received) -> Router {
    Router::new()
        .route(
            "/v1/agent/collector/assignments",
            get(|| async { Json(CollectorAssignments::default()) }),
        )
        .route("/v1/agent/collector/batches", post(batches_route))
        .with_state(received)
}

fn probe(seq: i64) -> ProbeResult {
    ProbeResult {
        t: seq,
        device: "router-1".into(),
        probe: "ping".into(),
        target: "192.0.2.1".into(),
        sent: 5,
        received: 5,
        rtt_min_ms: Some(1.0),
        rtt_avg_ms: Some(1.5),
        rtt_max_ms: Some(2.0),
        jitter_ms: Some(0.1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_spooled_while_the_operator_hangs() {
    let received: Received = Arc::default();
    let backend = ScriptedOperator::start(operator_routes(received.clone())).await;
    let operator = FreezableProxy::start(backend.addr).await;
    operator.freeze();
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = enrolled_state(dir.path(), "collector-1", operator.addr(), backend.cert.pem);

    let mut registry = Registry::default();
    let metrics = ReporterMetrics::register(&mut registry);
    let settings = ReporterSettings {
        ship_interval: Duration::from_secs(1),
        // Longer than the hang: the request in flight waits it out.
        request_timeout: Duration::from_secs(60),
        retry_backoff_min: Duration::from_millis(100),
        retry_backoff_max: Duration::from_secs(1),
        ..ReporterSettings::default()
    };
    let reporter = Reporter::new(dir.path(), settings, metrics).expect("reporter");

    // A probe component: one result every 100 ms until told to stop or to finish.
    let (stop_components, mut components_stop) = watch::channel(false);
    let (probes_tx, probes_rx) = mpsc::channel(256);
    let (fed, paused) = (
        Arc::new(AtomicI64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let (fed_by, paused_by) = (fed.clone(), paused.clone());
    let component = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = components_stop.wait_for(|stop| *stop) => break,
                _ = tick.tick() => {}
            }
            if paused_by.load(Ordering::SeqCst) {
                break;
            }
            let seq = fed_by.load(Ordering::SeqCst);
            // The reporter must keep reading: a full queue would block the component.
            tokio::time::timeout(Duration::from_secs(1), probes_tx.send(vec![probe(seq)]))
                .await
                .expect("the reporter keeps taking results")
                .expect("reporter running");
            fed_by.store(seq + 1, Ordering::SeqCst);
        }
    });
    let (flows_tx, flows_rx) = mpsc::channel(1);
    let (interfaces_tx, interfaces_rx) = mpsc::channel(1);
    let (scans_tx, scans_rx) = mpsc::channel(1);
    drop((flows_tx, interfaces_tx, scans_tx));
    let inputs = Inputs {
        flows: flows_rx,
        interfaces: interfaces_rx,
        probes: probes_rx,
        scans: scans_rx,
    };
    let outputs = Outputs {
        snmp_targets: watch::channel(Vec::new()).0,
        probe_targets: watch::channel(Vec::new()).0,
        scan_targets: watch::channel(Vec::new()).0,
        devices: watch::channel(Vec::new()).0,
        stop_components,
    };
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let running = tokio::spawn(reporter.run(inputs, outputs, async {
        let _ = shutdown_rx.await;
    }));

    wait_for(
        "the assignments request stuck",
        Duration::from_secs(10),
        || operator.held() >= 1,
    )
    .await;
    // Ship ticks at 0 s (little or nothing to cut yet), 1 s, ..., 10 s: ten batches.
    let hang = Duration::from_millis(10_500);
    tokio::time::sleep_until(started + hang).await;
    let in_spool = spooled(&paths);
    eprintln!(
        "operator frozen for {:?}: {} batches spooled at a 1 s ship interval (expected {}), {} probe results taken",
        started.elapsed(),
        in_spool.len(),
        hang.as_secs(),
        fed.load(Ordering::SeqCst)
    );
    assert!(
        in_spool.len() >= 9,
        "only {} batches in {hang:?} at 1 s",
        in_spool.len()
    );
    assert_eq!(batches_counter(&registry, "spooled"), in_spool.len() as u64);
    assert!(
        received.lock().expect("lock").is_empty(),
        "nothing answered"
    );

    // The operator answers again: the spool drains in order.
    operator.thaw();
    let received_now = received.clone();
    let waiting = in_spool.clone();
    wait_for(
        "the spooled batches delivered",
        Duration::from_secs(30),
        || {
            let received = received_now.lock().expect("lock");
            waiting
                .iter()
                .all(|id| received.iter().any(|(r, _)| r == id))
        },
    )
    .await;
    // The component finishes; everything it produced is delivered and acknowledged before
    // the shutdown, so that no send is in flight then (it would be abandoned and sent again
    // by the final drain, which the operator's batch ids make harmless but this test counts).
    paused.store(true, Ordering::SeqCst);
    component.await.expect("component");
    let total = fed.load(Ordering::SeqCst);
    wait_for(
        "every probe result delivered and acknowledged",
        Duration::from_secs(30),
        || {
            let received = received_now.lock().expect("lock");
            received.iter().map(|(_, s)| s.len() as i64).sum::<i64>() >= total
                && batches_counter(&registry, "sent") == received.len() as u64
        },
    )
    .await;
    shutdown_tx.send(()).expect("shutdown");
    tokio::time::timeout(Duration::from_secs(15), running)
        .await
        .expect("stops promptly")
        .expect("reporter task");

    let received = received.lock().expect("lock").clone();
    let ids: Vec<Uuid> = received.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids[..in_spool.len()], in_spool[..], "oldest first");
    // An empty batch (the idle collector's heartbeat) in flight at the shutdown is sent
    // again by the final drain, which its id makes harmless; batches with results are not.
    let with_results: Vec<Uuid> = received
        .iter()
        .filter(|(_, seqs)| !seqs.is_empty())
        .map(|(id, _)| *id)
        .collect();
    let mut unique = with_results.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), with_results.len(), "no batch delivered twice");
    let seqs: Vec<i64> = received.iter().flat_map(|(_, s)| s.clone()).collect();
    assert_eq!(
        seqs,
        (0..fed.load(Ordering::SeqCst)).collect::<Vec<_>>(),
        "every result delivered once, in order"
    );
    assert!(spooled(&paths).is_empty());
    assert_eq!(batches_counter(&registry, "sent"), ids.len() as u64);
}

#[test]
fn starting_closes_the_state_and_spool_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path().join("state");
    let paths = state_left_open(&state_dir, "collector-1");
    let reporter = Reporter::new(
        &state_dir,
        ReporterSettings::default(),
        ReporterMetrics::default(),
    )
    .expect("reporter");
    assert_closed(&paths);
    drop(reporter);
}
