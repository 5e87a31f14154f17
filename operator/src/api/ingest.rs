//! Agent reports: metrics batches, inventory, and the agent's configuration.
//!
//! The device is always the authenticated [`DeviceIdentity`], never anything in a body.
use axum::{
    Json, Router,
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use cdot_crds::{
    device::DeviceSpec,
    kind::Kind,
    wire::{AgentConfig, BatchAck, InventoryReport, MAX_BODY_BYTES, MetricsBatch},
};

use super::{ApiError, AppState, agent_auth::DeviceIdentity};
use crate::{
    ingest::{
        Rejection, SubmitError,
        validate::{check_version, decode_body, parse_json, validate_batch},
    },
    reconcile::device::agent_config,
    store::{heartbeats::Heartbeat, timeseries::InventoryUpdate},
};

/// Most packages one inventory report may list.
pub const MAX_PACKAGES: usize = 50_000;
/// Seconds a client should wait after a 503 before retrying.
const RETRY_AFTER_SECS: &str = "2";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/metrics", post(metrics))
        .route("/inventory", put(inventory))
        .route("/config", get(config))
}

/// An error response, with `Retry-After` when trying again later can succeed.
#[derive(Debug)]
pub struct Refusal {
    pub error: ApiError,
    pub retry_after: bool,
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            retry_after: false,
        }
    }
}

impl From<crate::store::StoreError> for Refusal {
    fn from(error: crate::store::StoreError) -> Self {
        ApiError::from(error).into()
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = self.error.into_response();
        if self.retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response
    }
}

fn unavailable(message: &str) -> Refusal {
    Refusal {
        error: ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", message),
        retry_after: true,
    }
}

/// Reads the body (at most [`MAX_BODY_BYTES`] on the wire), decompresses and parses it.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, Refusal> {
    let reject = |r: Rejection| {
        state.metrics.ingest.reject(r.reason);
        Refusal::from(r.error)
    };
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            let too_large =
                std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
                    e.source()
                })
                .any(|e| e.to_string().contains("length limit exceeded"));
            if too_large {
                reject(Rejection {
                    error: ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "PayloadTooLarge",
                        format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
                    )
                    .with_field("body"),
                    reason: "too_large",
                })
            } else {
                reject(Rejection {
                    error: ApiError::bad_request(format!("failed to read the body: {e}"), "body"),
                    reason: "malformed",
                })
            }
        })?;
    let json = decode_body(headers, &bytes).map_err(reject)?;
    parse_json(&json).map_err(reject)
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
) -> Result<Json<BatchAck>, Refusal> {
    let batch: MetricsBatch = read_json(&state, &headers, body).await?;
    let now = now_ms();
    let batch = validate_batch(batch, identity.uid, now).map_err(|r| {
        state.metrics.ingest.reject(r.reason);
        Refusal::from(r.error)
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
            Err(unavailable(
                "the operator is busy storing other batches; retry later",
            ))
        }
        Err(e @ (SubmitError::WriteFailed | SubmitError::Unavailable)) => {
            state.metrics.ingest.reject("unavailable");
            Err(unavailable(&e.to_string()))
        }
    }
}

/// `PUT /v1/agent/inventory`: replaces the device's inventory and software list.
pub async fn inventory(
    State(state): State<AppState>,
    identity: DeviceIdentity,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, Refusal> {
    let report: InventoryReport = read_json(&state, &headers, body).await?;
    let refuse = |reason: &'static str, error: ApiError| {
        state.metrics.ingest.reject(reason);
        Refusal::from(error)
    };
    check_version(&report.agent_version).map_err(|r| refuse(r.reason, r.error))?;
    if report.software.len() > MAX_PACKAGES {
        return Err(refuse(
            "too_many_packages",
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
                format!("at most {MAX_PACKAGES} packages are accepted"),
            )
            .with_field("software"),
        ));
    }
    for (i, package) in report.software.iter().enumerate() {
        for (field, value, max) in [
            ("name", &package.name, 512),
            ("version", &package.version, 256),
        ] {
            if (value.is_empty() && field == "name") || value.len() > max {
                return Err(refuse(
                    "package",
                    ApiError::bad_request(
                        format!("a package {field} must have 1 to {max} bytes"),
                        format!("software[{i}].{field}"),
                    ),
                ));
            }
        }
    }
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
        return Err(gone(&identity).into());
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
