//! Patching's routes: the agent's scan report (`PUT /v1/agent/patches`), a policy's plan
//! (`GET /v1/namespaces/{ns}/patchpolicies/{name}/plan`) and the compliance report
//! (`GET /v1/namespaces/{ns}/patches/compliance?format=json|csv|html`).
use axum::{
    Json, Router,
    body::Body,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, put},
};
use cdot_crds::{
    api_token::Role,
    device::DeviceSpec,
    kind::Kind,
    wire::patch::{PatchPlan, PatchScan},
};

use super::{check, compliance, plan, work};
use crate::api::{
    ApiError, AppState, agent_auth::DeviceIdentity, auth::Principal, body::read_json,
    params::Params,
};

pub fn agent_routes() -> Router<AppState> {
    Router::new().route("/patches", put(scan))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/namespaces/{namespace}/patchpolicies/{name}/plan",
            get(plan_route),
        )
        .route(
            "/namespaces/{namespace}/patches/compliance",
            get(compliance_route),
        )
}

/// `PUT /v1/agent/patches`: the device's latest scan, committed before the answer.
async fn scan(
    State(state): State<AppState>,
    identity: DeviceIdentity,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let count = |reason| state.metrics.ingest.reject(reason);
    let scan: PatchScan = read_json(&headers, body, count).await?;
    check::check_scan(&scan).map_err(|r| {
        count(r.reason);
        ApiError::from(r)
    })?;
    state
        .store
        .put_patch_scan(
            identity.uid,
            &identity.namespace,
            &scan,
            jiff::Timestamp::now(),
        )
        .await?;
    tracing::info!(device = %identity.name, namespace = %identity.namespace,
        updates = scan.updates.len(), problem = scan.problem.as_deref().unwrap_or(""), "patch scan");
    state.work.wake_device(identity.uid);
    state.patching.wake();
    Ok(StatusCode::NO_CONTENT)
}

struct Devices {
    rows: Vec<(
        uuid::Uuid,
        String,
        Option<String>,
        std::collections::BTreeMap<String, String>,
    )>,
}

impl Devices {
    fn of(state: &AppState, namespace: &str) -> Self {
        let snapshot = state.index.snapshot();
        let rows = snapshot
            .in_namespace(Kind::Device, namespace)
            .map(|o| {
                let site = serde_json::from_value::<DeviceSpec>(o.spec.clone())
                    .ok()
                    .and_then(|s| s.site)
                    .or_else(|| o.labels.get(cdot_crds::SITE_LABEL).cloned());
                (o.uid, o.name.clone(), site, o.labels.clone())
            })
            .collect();
        Self { rows }
    }

    fn views(&self) -> Vec<compliance::ReportDevice<'_>> {
        self.rows
            .iter()
            .map(|(uid, name, site, labels)| compliance::ReportDevice {
                uid: *uid,
                name,
                site: site.as_deref(),
                labels,
            })
            .collect()
    }
}

async fn plan_route(
    State(state): State<AppState>,
    principal: Principal,
    Path((namespace, name)): Path<(String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<PatchPlan>, ApiError> {
    principal.require(&namespace, Role::Viewer)?;
    Params::parse(pairs, &[])?;
    let snapshot = state.index.snapshot();
    let policies = work::policies(&snapshot, &namespace);
    let Some(policy) = policies.iter().find(|p| p.name == name) else {
        return Err(match snapshot.get(Kind::PatchPolicy, &namespace, &name) {
            Some(_) => ApiError::bad_request(
                format!("PatchPolicy {namespace}/{name} is invalid; its status says why"),
                "path.name",
            ),
            None => ApiError::not_found(format!("no PatchPolicy {namespace}/{name}")),
        });
    };
    let devices = Devices::of(&state, &namespace);
    let ns_state = state.store.patch_namespace(&namespace, None).await?;
    Ok(Json(plan::plan(
        policy,
        &devices.views(),
        &ns_state,
        jiff::Timestamp::now(),
    )))
}

async fn compliance_route(
    State(state): State<AppState>,
    principal: Principal,
    Path(namespace): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    principal.require(&namespace, Role::Viewer)?;
    let params = Params::parse(pairs, &["format", "site"])?;
    let format = params.get("format").unwrap_or("json");
    if !["json", "csv", "html"].contains(&format) {
        return Err(ApiError::bad_request(
            format!("{format:?} is not a format: json, csv or html"),
            "query.format",
        ));
    }
    let site = params.get("site");
    let snapshot = state.index.snapshot();
    let policies = work::policies(&snapshot, &namespace);
    let devices = Devices::of(&state, &namespace);
    let views: Vec<_> = devices
        .views()
        .into_iter()
        .filter(|d| site.is_none() || d.site == site)
        .collect();
    let ns_state = state.store.patch_namespace(&namespace, None).await?;
    let report = compliance::report(
        &namespace,
        &policies,
        &views,
        &ns_state,
        jiff::Timestamp::now(),
    );
    Ok(match format {
        "csv" => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"patch-compliance-{namespace}.csv\""),
                ),
            ],
            compliance::csv(&report),
        )
            .into_response(),
        "html" => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            compliance::html(&report),
        )
            .into_response(),
        _ => Json(report).into_response(),
    })
}
