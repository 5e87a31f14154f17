//! Open endpoints for probes and scrapers: `/healthz`, `/readyz`, `/metrics`.
use std::sync::atomic::Ordering;

use axum::{extract::State, http::StatusCode, http::header, response::IntoResponse};

use super::AppState;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if !state.ready.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: desired state not loaded yet",
        );
    }
    if !state
        .alerting
        .rules_cover(state.ready_version.load(Ordering::Acquire))
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: alert rules not installed yet",
        );
    }
    // Known from the database watcher (checked every 500 ms), so this answers at once
    // even while the database hangs.
    if !state.store.is_up() {
        return (StatusCode::SERVICE_UNAVAILABLE, "database unreachable");
    }
    (StatusCode::OK, "ready")
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
