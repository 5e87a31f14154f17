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
    let labels = crate::metrics::ResultLabels {
        result: if scan.problem.is_some() {
            "problem"
        } else {
            "ok"
        }
        .into(),
    };
    state.metrics.patching.scans.get_or_create(&labels).inc();
    tracing::info!(device = %identity.name, namespace = %identity.namespace,
        updates = scan.updates.len(), problem = scan.problem.as_deref().unwrap_or(""), "patch scan");
    state.work.wake_device(identity.uid);
    state.patching.wake();
    Ok(StatusCode::NO_CONTENT)
}

/// A Device of the namespace as the reports name it.
struct DeviceRow {
    uid: uuid::Uuid,
    name: String,
    site: Option<String>,
    labels: std::collections::BTreeMap<String, String>,
}

struct Devices {
    rows: Vec<DeviceRow>,
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
                DeviceRow {
                    uid: o.uid,
                    name: o.name.clone(),
                    site,
                    labels: o.labels.clone(),
                }
            })
            .collect();
        Self { rows }
    }

    fn views(&self) -> Vec<compliance::ReportDevice<'_>> {
        self.rows
            .iter()
            .map(|d| compliance::ReportDevice {
                uid: d.uid,
                name: &d.name,
                site: d.site.as_deref(),
                labels: &d.labels,
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
    let now = jiff::Timestamp::now();
    let facts = compliance::facts(&state.store, &namespace, &policies, &views, now).await?;
    let report = compliance::report(&namespace, &policies, &views, &facts, now);
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

/// Patching's routes in the OpenAPI document, with schemas derived from the wire types.
pub fn openapi_paths(
    paths: &mut serde_json::Map<String, serde_json::Value>,
    schemas: &mut serde_json::Map<String, serde_json::Value>,
) {
    use cdot_crds::wire::{
        patch::ComplianceReport,
        work::{WorkList, WorkReport},
    };
    use serde_json::json;

    use crate::api::openapi::{DerivedSchemas, error_response as error, json_response as ok};
    let mut derived = DerivedSchemas::new(schemas);
    let plan = derived.add::<PatchPlan>("PatchPlan");
    let report = derived.add::<ComplianceReport>("ComplianceReport");
    let scan = derived.add::<PatchScan>("PatchScan");
    let work = derived.add::<WorkList>("WorkList");
    let work_report = derived.add::<WorkReport>("WorkReport");
    derived.finish();
    let path = |n: &str| json!({ "name": n, "in": "path", "required": true, "schema": { "type": "string" } });
    let query = |n: &str, d: &str| json!({ "name": n, "in": "query", "required": false, "description": d, "schema": { "type": "string" } });
    paths.insert(
        "/v1/namespaces/{namespace}/patchpolicies/{name}/plan".into(),
        json!({ "get": {
            "tags": ["Patching"],
            "summary": "What the policy as committed does, per device: each update in scope, from -> to, the decision and why",
            "parameters": [path("namespace"), path("name")],
            "responses": { "200": ok("the plan", &plan), "400": error("the policy is invalid"), "404": error("no such policy") },
        }}),
    );
    paths.insert(
        "/v1/namespaces/{namespace}/patches/compliance".into(),
        json!({ "get": {
            "tags": ["Patching"],
            "summary": "Compliance per device, site and namespace (JSON; `format=csv` and `format=html` carry the same numbers)",
            "parameters": [path("namespace"), query("format", "json (default), csv or html"), query("site", "only this site's devices")],
            "responses": {
                "200": {
                    "description": "the report",
                    "content": {
                        "application/json": { "schema": report },
                        "text/csv": { "schema": { "type": "string" } },
                        "text/html": { "schema": { "type": "string" } },
                    },
                },
                "400": error("a bad format (`field` names it)"),
            },
        }}),
    );
    let agent = |summary: &str| json!({ "tags": ["Agent"], "summary": summary, "security": [] });
    let mut put_scan =
        agent("The device's latest patch scan (gzip allowed); it replaces the previous one");
    put_scan["requestBody"] =
        json!({ "required": true, "content": { "application/json": { "schema": scan } } });
    put_scan["responses"] = json!({ "204": { "description": "stored" }, "400": error("a bad field (`field` names it)") });
    paths.insert("/v1/agent/patches".into(), json!({ "put": put_scan }));
    let mut get_work =
        agent("The device's pending work; with `seen`, held until it changes (long-poll)");
    get_work["parameters"] = json!([
        query(
            "wait",
            "seconds to hold the request while the work is `seen` (0-60, default 25)"
        ),
        query("seen", "the revision the agent has"),
    ]);
    get_work["responses"] = json!({ "200": ok("the work", &work), "400": error("a bad `wait`") });
    paths.insert("/v1/agent/work".into(), json!({ "get": get_work }));
    let mut post_report = agent(
        "Progress of one work item (gzip allowed); acknowledged once committed, once per `reportId`",
    );
    post_report["requestBody"] =
        json!({ "required": true, "content": { "application/json": { "schema": work_report } } });
    post_report["responses"] = json!({ "200": { "description": "the acknowledgement (`batchId` is the `reportId`)" }, "400": error("a bad field (`field` names it)") });
    paths.insert(
        "/v1/agent/work/reports".into(),
        json!({ "post": post_report }),
    );
}
