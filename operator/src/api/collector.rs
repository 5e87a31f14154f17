//! `POST /v1/agent/collector/batches`: flow aggregates, interface samples and probe results
//! of a collector, validated whole, stored in one transaction, acknowledged after commit.
//!
//! The collector is the authenticated [`DeviceIdentity`] (a Device of class `Collector`);
//! the devices its samples name are looked up in its namespace only.
use std::collections::BTreeSet;

use axum::{
    Json, Router,
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use cdot_crds::{
    kind::Kind,
    wire::{BatchAck, collector::CollectorBatch},
};

use super::{ApiError, AppState, agent_auth::DeviceIdentity, body::read_json};
use crate::{
    ingest::{
        Rejection,
        collector::{check_devices, validate_batch},
    },
    store::network::write::Collector,
};

pub fn routes() -> Router<AppState> {
    Router::new().route("/collector/batches", post(batches))
}

/// `POST /v1/agent/collector/batches`: answered only after the batch is committed.
#[tracing::instrument(name = "collector_batch", skip_all, fields(collector = %identity.name, batch = tracing::field::Empty))]
pub async fn batches(
    State(state): State<AppState>,
    identity: DeviceIdentity,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<BatchAck>, ApiError> {
    let batch: CollectorBatch = read_json(&headers, body, |reason| {
        state.metrics.network.reject(reason)
    })
    .await?;
    tracing::Span::current().record("batch", tracing::field::display(batch.batch_id));
    let now = jiff::Timestamp::now().as_millisecond();
    let reject = |r: Rejection| {
        state.metrics.network.reject(r.reason);
        ApiError::from(r)
    };
    validate_batch(&batch, now).map_err(reject)?;
    // The index answers without a query; a Device enrolled a moment ago may not be in it
    // yet, so the store is asked then.
    let indexed = state
        .index
        .snapshot()
        .get(Kind::Device, &identity.namespace, &identity.name)
        .filter(|d| d.uid == identity.uid)
        .map(|d| (d.spec.clone(), d.labels.clone()));
    let device = match indexed {
        Some(found) => Some(found),
        None => state
            .store
            .get_object(&identity.namespace, Kind::Device, &identity.name)
            .await?
            .filter(|d| d.uid == identity.uid)
            .map(|d| (d.spec, d.labels)),
    };
    let (spec, labels) = device.ok_or_else(|| {
        ApiError::not_found(format!(
            "Device {}/{} (uid {}) no longer exists; enroll again",
            identity.namespace, identity.name, identity.uid
        ))
    })?;
    if spec.get("class").and_then(|c| c.as_str()) != Some("Collector") {
        state.metrics.network.reject("not_a_collector");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "Device {}/{} is not of class Collector; only collectors send network data",
                identity.namespace, identity.name
            ),
        ));
    }
    let site = spec
        .get("site")
        .and_then(|s| s.as_str())
        .or_else(|| labels.get(cdot_crds::SITE_LABEL).map(String::as_str))
        .map(str::to_owned);
    let names: BTreeSet<&str> = batch
        .interfaces
        .iter()
        .map(|s| s.device.as_str())
        .chain(batch.probes.iter().map(|p| p.device.as_str()))
        .collect();
    let names: Vec<&str> = names.into_iter().collect();
    let devices = state
        .store
        .network_devices(&identity.namespace, &names)
        .await?;
    check_devices(&batch, &devices, &identity.namespace).map_err(reject)?;
    let collector = Collector {
        namespace: identity.namespace.clone(),
        name: identity.name.clone(),
        uid: identity.uid,
        site,
    };
    let summary = {
        let _timer = state.metrics.network.commit_timer();
        state
            .store
            .write_collector_batch(&collector, &batch.collector_version, &batch, &devices, now)
            .await?
    };
    let m = &state.metrics.network;
    let result = if summary.duplicate {
        "duplicate"
    } else {
        "stored"
    };
    m.batches
        .get_or_create(&crate::metrics::ResultLabels {
            result: result.into(),
        })
        .inc();
    for (kind, n) in [
        ("flows", summary.flow_rows),
        ("interfaces", summary.interface_rows),
        ("probes", summary.probe_rows),
        ("expired", summary.expired),
    ] {
        m.rows
            .get_or_create(&crate::metrics::KindLabels { kind: kind.into() })
            .inc_by(n);
    }
    tracing::debug!(?summary, "collector batch stored");
    if !batch.scans.is_empty() && !summary.duplicate {
        state.discovery.wake();
    }
    if !summary.duplicate {
        let uids = devices
            .iter()
            .map(|(name, d)| (name.clone(), d.uid))
            .collect();
        state.alerting.observe_network(&batch, &uids);
    }
    Ok(Json(BatchAck {
        batch_id: batch.batch_id,
        stored: u32::try_from(summary.stored()).unwrap_or(u32::MAX),
        duplicate: summary.duplicate,
    }))
}
