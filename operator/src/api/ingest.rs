//! Agent reports: metrics batches, inventory, and the agent's configuration.
//!
//! The device is always the authenticated [`DeviceIdentity`], never anything in a body.
use axum::{
    Json, Router,
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::{get, post, put},
};
use cdot_crds::{
    device::DeviceSpec,
    kind::Kind,
    wire::{AgentConfig, BatchAck, InventoryReport, MetricsBatch},
};

use super::{ApiError, AppState, agent_auth::DeviceIdentity, body::read_json};
use crate::{
    ingest::{
        SubmitError,
        validate::{check_inventory, validate_batch},
    },
    reconcile::device::agent_config,
    store::{heartbeats::Heartbeat, timeseries::InventoryUpdate},
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/metrics", post(metrics))
        .route("/inventory", put(inventory))
        .route("/config", get(config))
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// `POST /v1/agent/metrics`: answered only after the batch is committed.
pub async fn metrics(
    State(state): State<AppState>,
    identity: DeviceIdentity,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<BatchAck>, ApiError> {
    let count = |reason| state.metrics.ingest.reject(reason);
    let batch: MetricsBatch = read_json(&headers, body, count).await?;
    let now = now_ms();
    let batch = validate_batch(batch, identity.uid, now).map_err(|r| {
        count(r.reason);
        ApiError::from(r)
    })?;
    let version = batch.agent_version.clone();
    let latest = batch.latest;
    let every = batch.interval_secs;
    match state
        .ingest
        .submit(&state.metrics.ingest, identity.clone(), batch)
        .await
    {
        Ok(ack) => {
            state
                .ingest
                .reports()
                .observe(&identity, &version, every, now_ms(), &latest);
            Ok(Json(ack))
        }
        Err(SubmitError::QueueFull) => {
            state.metrics.ingest.reject("queue_full");
            Err(ApiError::unavailable(
                "the operator is busy storing other batches; retry later",
            ))
        }
        Err(e @ (SubmitError::WriteFailed | SubmitError::Unavailable)) => {
            state.metrics.ingest.reject("unavailable");
            Err(ApiError::unavailable(e.to_string()))
        }
    }
}

/// `PUT /v1/agent/inventory`: replaces the device's inventory and software list.
pub async fn inventory(
    State(state): State<AppState>,
    identity: DeviceIdentity,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let count = |reason| state.metrics.ingest.reject(reason);
    let report: InventoryReport = read_json(&headers, body, count).await?;
    check_inventory(&report).map_err(|r| {
        count(r.reason);
        ApiError::from(r)
    })?;
    let mut software = report.software;
    software.sort();
    software.dedup();
    let mut inventory = report.inventory;
    inventory.software_count = Some(u32::try_from(software.len()).unwrap_or(u32::MAX));
    let update = InventoryUpdate {
        namespace: identity.namespace.clone(),
        name: identity.name.clone(),
        inventory: serde_json::to_value(inventory).unwrap_or_default(),
        heartbeat: Heartbeat {
            device_uid: identity.uid,
            agent_version: report.agent_version,
            last_seen_ms: now_ms(),
            last_metrics: None,
            report_interval_secs: None,
        },
    };
    if !state.store.replace_inventory(&update, &software).await? {
        return Err(gone(&identity));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/agent/config`: what the Device's spec asks of its agent.
pub async fn config(
    State(state): State<AppState>,
    identity: DeviceIdentity,
) -> Result<Json<AgentConfig>, ApiError> {
    let device = state
        .store
        .get_object(&identity.namespace, Kind::Device, &identity.name)
        .await?
        .filter(|d| d.uid == identity.uid)
        .ok_or_else(|| gone(&identity))?;
    let spec: DeviceSpec = serde_json::from_value(device.spec).unwrap_or_default();
    Ok(Json(agent_config(&spec)))
}

fn gone(identity: &DeviceIdentity) -> ApiError {
    ApiError::not_found(format!(
        "Device {}/{} (uid {}) no longer exists; enroll again",
        identity.namespace, identity.name, identity.uid
    ))
}
