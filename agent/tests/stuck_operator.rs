//! The agent against an operator that freezes (accepts connections, never answers, like a
//! process stopped with SIGSTOP): sampling goes on, every sample reaches the spool, and once
//! the operator answers again every batch is delivered once, in order.
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use cdot_agent::{
    client::gunzip,
    config::AgentSettings,
    run::{Agent, AgentStats},
    state::StatePaths,
    testing::{
        RunningAgent, ScriptedOperator, assert_closed, enrolled_state, spooled, state_left_open,
        wait_for,
    },
};
use cdot_crds::wire::{AgentConfig, BatchAck, MetricsBatch};
use cdot_testkit::frozen::FreezableProxy;
use tempfile::TempDir;
use tokio::time::Instant;
use uuid::Uuid;

/// Batch ids in the order the operator acknowledged them.
type Acked = Arc<Mutex<Vec<Uuid>>>;

async fn metrics_route(State(acked): State<Acked>, body: Bytes) -> Response {
    let batch: MetricsBatch =
        serde_json::from_slice(&gunzip(&body).expect("gzip")).expect("MetricsBatch");
    acked.lock().expect("lock").push(batch.batch_id);
    Json(BatchAck {
        batch_id: batch.batch_id,
        stored: batch.samples.len() as u32,
        duplicate: false,
    })
    .into_response()
}

/// An HTTPS operator on 127.0.0.1 that acknowledges every batch, behind a proxy that is
/// frozen already; and a state directory enrolled with it.
async fn frozen_operator(acked: Acked) -> (FreezableProxy, TempDir, StatePaths) {
    let app = Router::new()
        .route(
            "/v1/agent/config",
            get(|| async { Json(AgentConfig::default()) }),
        )
        .route("/v1/agent/metrics", post(metrics_route))
        .route(
            "/v1/agent/inventory",
            put(|| async { StatusCode::NO_CONTENT }),
        )
        .with_state(acked);
    let backend = ScriptedOperator::start(app).await;
    let operator = FreezableProxy::start(backend.addr).await;
    operator.freeze();
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = enrolled_state(dir.path(), "web-1", operator.addr(), backend.cert.pem);
    (operator, dir, paths)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_goes_on_while_the_operator_hangs() {
    let acked: Acked = Arc::default();
    let (operator, dir, paths) = frozen_operator(acked.clone()).await;

    let mut settings = AgentSettings::new(dir.path());
    settings.metrics_interval_override = Some(Duration::from_secs(1));
    settings.inventory_interval_override = Some(Duration::from_secs(3600));
    // Longer than the hang: the send in flight waits it out, as on a frozen operator.
    settings.request_timeout = Duration::from_secs(60);
    settings.retry_backoff_min = Duration::from_millis(100);
    settings.retry_backoff_max = Duration::from_secs(1);
    let agent = Agent::new(settings).expect("agent");
    let stats = agent.stats();
    let started = Instant::now();
    let running = RunningAgent::spawn(agent);

    // Configuration, inventory and the first batch are all stuck on the frozen operator.
    wait_for(
        "requests stuck on the operator",
        Duration::from_secs(10),
        || operator.held() >= 3,
    )
    .await;
    // Samples at 0 s, 1 s, ..., 10 s; measured between two of them.
    let hang = Duration::from_millis(10_500);
    tokio::time::sleep_until(started + hang).await;
    let taken = AgentStats::get(&stats.batches_collected);
    let in_spool = spooled(&paths);
    eprintln!(
        "operator frozen for {:?}: {taken} samples taken at a 1 s interval (expected {}), {} in the spool",
        started.elapsed(),
        hang.as_secs() + 1,
        in_spool.len()
    );
    assert!(taken >= 10, "only {taken} samples in {hang:?} at 1 s");
    assert_eq!(in_spool.len() as u64, taken, "every sample is in the spool");
    assert_eq!(AgentStats::get(&stats.batches_spooled), taken);
    assert!(acked.lock().expect("lock").is_empty(), "nothing answered");

    // The operator answers again: the held send completes, the spool drains in order.
    operator.thaw();
    let acked_now = acked.clone();
    let waiting = in_spool.clone();
    wait_for(
        "the spooled batches delivered",
        Duration::from_secs(30),
        || {
            let acked = acked_now.lock().expect("lock");
            waiting.iter().all(|id| acked.contains(id))
        },
    )
    .await;
    running.stop().await;

    let acked = acked.lock().expect("lock").clone();
    assert_eq!(
        acked[..in_spool.len()],
        in_spool[..],
        "delivered oldest first, each once"
    );
    let mut unique = acked.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), acked.len(), "no batch delivered twice");
    // Nothing collected is lost: what was not delivered is still spooled.
    let left = spooled(&paths);
    let abandoned = abandoned_at_stop(&acked, &left);
    assert_eq!(
        (acked.len() + left.len() - abandoned) as u64,
        AgentStats::get(&stats.batches_collected)
    );
    assert_eq!(
        AgentStats::get(&stats.batches_sent),
        (acked.len() - abandoned) as u64
    );
}

/// Batches both acknowledged by the operator and still spooled: a send abandoned at stop
/// may have reached the operator before its answer came back. The batch is sent again on
/// the next start (its id makes that harmless). One at most: delivery sends one at a time.
fn abandoned_at_stop(acked: &[Uuid], left: &[Uuid]) -> usize {
    let both: Vec<&Uuid> = left.iter().filter(|id| acked.contains(id)).collect();
    assert!(both.len() <= 1, "acknowledged yet spooled: {both:?}");
    both.len()
}

#[test]
fn starting_closes_the_state_and_spool_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path().join("state");
    let paths = state_left_open(&state_dir, "web-1");
    let agent = Agent::new(AgentSettings::new(&state_dir)).expect("agent");
    assert_closed(&paths);
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_spool_drops_the_batch_in_flight_and_its_late_ack_is_harmless() {
    let acked: Acked = Arc::default();
    let (operator, dir, paths) = frozen_operator(acked.clone()).await;

    let mut settings = AgentSettings::new(dir.path());
    settings.metrics_interval_override = Some(Duration::from_millis(200));
    settings.inventory_interval_override = Some(Duration::from_secs(3600));
    settings.request_timeout = Duration::from_secs(60);
    // A few batches' worth: the oldest, the one being sent, is soon dropped.
    settings.spool_max_bytes = 8 * 1024;
    let agent = Agent::new(settings).expect("agent");
    let (stats, spool) = (agent.stats(), agent.spool());
    let running = RunningAgent::spawn(agent);

    let first = {
        let spool = spool.clone();
        let mut first = None;
        wait_for("the first batch spooled", Duration::from_secs(10), || {
            first = spool.lock().oldest().map(|e| e.batch_id);
            first.is_some()
        })
        .await;
        first.expect("first batch")
    };
    let watched = spool.clone();
    wait_for(
        "the full spool dropping batches",
        Duration::from_secs(30),
        || {
            let spool = watched.lock();
            spool.counters().dropped_full >= 2 && !spool.entries().any(|e| e.batch_id == first)
        },
    )
    .await;

    operator.thaw();
    let stats_now = stats.clone();
    wait_for("the late acknowledgement", Duration::from_secs(30), || {
        AgentStats::get(&stats_now.acks_after_drop) >= 1
    })
    .await;
    running.stop().await;

    let acked = acked.lock().expect("lock").clone();
    assert_eq!(
        acked.first(),
        Some(&first),
        "the batch in flight got through"
    );
    let mut unique = acked.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), acked.len(), "no batch delivered twice");
    // Every batch collected was delivered, dropped (counted once) or is still spooled.
    let spool = spool.lock();
    let (sent, late) = (
        AgentStats::get(&stats.batches_sent),
        AgentStats::get(&stats.acks_after_drop),
    );
    let left: Vec<Uuid> = spool.entries().map(|e| e.batch_id).collect();
    assert_eq!(
        sent,
        (acked.len() - abandoned_at_stop(&acked, &left)) as u64
    );
    assert_eq!(
        AgentStats::get(&stats.batches_collected),
        sent - late + spool.counters().dropped_full + spool.len() as u64
    );
    assert_eq!(spool.counters().dropped_rejected, 0);
    assert_eq!(spooled(&paths).len(), spool.len());
}
