//! The collector's own Prometheus metrics, registered in one place, and the `/metrics`
//! endpoint that serves them. Components register their counters into the same registry.
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use cdot_agent::spool::Spool;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::sync::watch;

/// Labels of a family by result, e.g. `{result="ok"}`; shared by the components.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

/// Labels of a family by reason, e.g. `{reason="timeout"}`; shared by the components.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// Counters of the reporter (batches by outcome, spool size and drops).
#[derive(Clone, Debug, Default)]
pub struct ReporterMetrics {
    batches: Family<ResultLabels, Counter>,
    spooled_batches: Gauge,
    spooled_bytes: Gauge,
    spool_dropped_full: Gauge,
}

impl ReporterMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "cdot_collector_batches",
            "Collector batches by outcome (spooled, sent, sent_after_drop, refused, retry, spool_failed, encode_failed)",
            metrics.batches.clone(),
        );
        registry.register(
            "cdot_collector_spool_batches",
            "Batches waiting in the spool",
            metrics.spooled_batches.clone(),
        );
        registry.register(
            "cdot_collector_spool_bytes",
            "Bytes waiting in the spool",
            metrics.spooled_bytes.clone(),
        );
        registry.register(
            "cdot_collector_spool_dropped_full",
            "Batches dropped (oldest first) because the spool was full, since start",
            metrics.spool_dropped_full.clone(),
        );
        metrics
    }

    pub fn batch(&self, result: &'static str) {
        self.batches.get_or_create(&ResultLabels { result }).inc();
    }

    pub fn set_spool(&self, spool: &Spool) {
        self.spooled_batches.set(spool.len() as i64);
        self.spooled_bytes
            .set(i64::try_from(spool.total_bytes()).unwrap_or(i64::MAX));
        self.spool_dropped_full
            .set(i64::try_from(spool.counters().dropped_full).unwrap_or(i64::MAX));
    }
}

/// Serves `GET /metrics` on `addr` until `shutdown` turns true.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Mutex<Registry>>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render))
        .with_state(registry);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "collector metrics listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

async fn render(State(registry): State<Arc<Mutex<Registry>>>) -> impl IntoResponse {
    let mut body = String::new();
    let registry = registry
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Err(e) = encode(&mut body, &registry) {
        tracing::error!(error = %e, "failed to encode metrics");
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}
