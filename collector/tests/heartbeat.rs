//! An idle collector still reports: with nothing to ship and nothing spooled, each ship
//! tick spools an empty batch (carrying the ship interval), so that its Device's liveness
//! follows it before any flow arrives; and while the operator does not answer, one such
//! batch waits in the spool rather than one per tick.
use std::{
    sync::{Arc, Mutex},
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
    testing::{ScriptedOperator, enrolled_state, spooled, wait_for},
};
use cdot_collector::{
    metrics::ReporterMetrics,
    report::{Inputs, Outputs, Reporter, ReporterSettings},
};
use cdot_crds::wire::{
    BatchAck,
    collector::{CollectorAssignments, CollectorBatch},
};
use cdot_testkit::frozen::FreezableProxy;
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
    time::Instant,
};

/// Batches as the operator received them, with when.
type Received = Arc<Mutex<Vec<(Instant, CollectorBatch)>>>;

async fn batches_route(State(received): State<Received>, body: Bytes) -> Response {
    let batch: CollectorBatch =
        serde_json::from_slice(&gunzip(&body).expect("gzip")).expect("CollectorBatch");
    let ack = BatchAck {
        batch_id: batch.batch_id,
        stored: 0,
        duplicate: false,
    };
    received.lock().expect("lock").push((Instant::now(), batch));
    Json(ack).into_response()
}

fn operator_routes(received: Received) -> Router {
    Router::new()
        .route(
            "/v1/agent/collector/assignments",
            get(|| async { Json(CollectorAssignments::default()) }),
        )
        .route("/v1/agent/collector/batches", post(batches_route))
        .with_state(received)
}

/// A reporter whose components are running and produce nothing; stopped by the sender.
struct Idle {
    shutdown: oneshot::Sender<()>,
    running: JoinHandle<()>,
    /// The components' ends of their queues, kept open.
    _queues: Vec<Box<dyn std::any::Any + Send>>,
}

impl Idle {
    fn start(state_dir: &std::path::Path) -> Self {
        let settings = ReporterSettings {
            ship_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(60),
            retry_backoff_min: Duration::from_millis(100),
            retry_backoff_max: Duration::from_millis(500),
            ..ReporterSettings::default()
        };
        let reporter =
            Reporter::new(state_dir, settings, ReporterMetrics::default()).expect("reporter");
        let (flows_tx, flows) = mpsc::channel(1);
        let (interfaces_tx, interfaces) = mpsc::channel(1);
        let (probes_tx, probes) = mpsc::channel(1);
        let (scans_tx, scans) = mpsc::channel(1);
        let inputs = Inputs {
            flows,
            interfaces,
            probes,
            scans,
        };
        let outputs = Outputs {
            snmp_targets: watch::channel(Vec::new()).0,
            probe_targets: watch::channel(Vec::new()).0,
            scan_targets: watch::channel(Vec::new()).0,
            devices: watch::channel(Vec::new()).0,
            stop_components: watch::channel(false).0,
        };
        let (shutdown, stop) = oneshot::channel::<()>();
        let running = tokio::spawn(reporter.run(inputs, outputs, async {
            let _ = stop.await;
        }));
        Self {
            shutdown,
            running,
            // Dropped on stop: the reporter then sees every queue closed.
            _queues: vec![
                Box::new(flows_tx),
                Box::new(interfaces_tx),
                Box::new(probes_tx),
                Box::new(scans_tx),
            ],
        }
    }

    async fn stop(self) {
        let _ = self.shutdown.send(());
        drop(self._queues);
        tokio::time::timeout(Duration::from_secs(15), self.running)
            .await
            .expect("stops promptly")
            .expect("reporter task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_collector_reports_at_its_ship_interval() {
    let received: Received = Arc::default();
    let operator = ScriptedOperator::start(operator_routes(received.clone())).await;
    let dir = tempfile::tempdir().expect("tempdir");
    enrolled_state(
        dir.path(),
        "collector-1",
        operator.addr,
        operator.cert.pem.clone(),
    );
    let started = Instant::now();
    let idle = Idle::start(dir.path());

    let counted = received.clone();
    wait_for("five batches", Duration::from_secs(10), || {
        counted.lock().expect("lock").len() >= 5
    })
    .await;
    let elapsed = started.elapsed();
    idle.stop().await;

    let received = received.lock().expect("lock").clone();
    for (_, batch) in &received {
        assert_eq!(batch.interval_secs, Some(1), "{batch:?}");
        assert!(
            batch.flows.is_empty()
                && batch.interfaces.is_empty()
                && batch.probes.is_empty()
                && batch.scans.is_empty(),
            "{batch:?}"
        );
    }
    // Ticks at 0, 1, 2, 3 and 4 s: the fifth batch four seconds after the first.
    let times: Vec<Duration> = received.iter().map(|(t, _)| *t - started).collect();
    eprintln!("batches at {times:?}");
    assert!(elapsed < Duration::from_millis(5_500), "{elapsed:?}");
    for pair in times.windows(2).take(4) {
        let gap = pair[1] - pair[0];
        assert!(
            gap > Duration::from_millis(500) && gap < Duration::from_millis(1_500),
            "{times:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_batches_do_not_pile_up_while_the_operator_hangs() {
    let received: Received = Arc::default();
    let backend = ScriptedOperator::start(operator_routes(received.clone())).await;
    let operator = FreezableProxy::start(backend.addr).await;
    operator.freeze();
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = enrolled_state(dir.path(), "collector-1", operator.addr(), backend.cert.pem);
    let idle = Idle::start(dir.path());

    // Four ship ticks with the operator frozen: the first tick's batch is all there is.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(
        spooled(&paths).len(),
        1,
        "one empty batch waits, not one per tick"
    );
    assert!(received.lock().expect("lock").is_empty());

    operator.thaw();
    let counted = received.clone();
    wait_for(
        "the waiting batch and the next ones",
        Duration::from_secs(30),
        || counted.lock().expect("lock").len() >= 3,
    )
    .await;
    idle.stop().await;
}
