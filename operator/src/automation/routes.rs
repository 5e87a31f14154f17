//! People's workflow routes: start a run by hand, plan one (dry run), list and read runs,
//! approve and cancel them. See `cdot_crds::wire::automation` for the shapes.
use axum::{
    Json, Router,
    body::Body,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    routing::get,
};
use cdot_crds::{
    api_token::Role,
    kind::Kind,
    validation::Validate,
    wire::automation::{
        DevicePlan, LaneState, RunDecision, RunList, RunPlan, RunState, RunView, StartRun,
    },
    workflow::{StepType, TriggerType, WorkflowSpec},
};
use jiff::Timestamp;
use serde_json::json;
use uuid::Uuid;

use super::{
    audit::{self, NewEntry},
    engine::{self, Fired},
    plan::{self, PlanContext, PlanDevice},
    start, store as runs,
};
use crate::{
    api::{
        ApiError, AppState, auth::Principal, body::read_json, objects, params::check_path_param,
    },
    store::StoreError,
};

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

pub fn routes() -> Router<AppState> {
    Router::new()
        // `{target}` is `NAME` (GET, the object) or `NAME:run` / `NAME:plan` (POST).
        .route(
            "/namespaces/{namespace}/workflows/{target}",
            get(get_workflow).post(verb),
        )
        .route("/namespaces/{namespace}/workflowruns", get(list))
        .route(
            "/namespaces/{namespace}/workflowruns/{target}",
            get(one).post(decide),
        )
}

/// `GET .../workflows/{name}`: the object, as every kind's generic route answers it.
async fn get_workflow(
    state: State<AppState>,
    principal: Principal,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_path_param("name", &name)?;
    objects::get(
        state,
        principal,
        Path((namespace, "workflows".into(), name)),
    )
    .await
}

fn split_verb<'a>(target: &'a str, verbs: &[&str]) -> Result<(&'a str, &'a str), ApiError> {
    match target.rsplit_once(':') {
        Some((name, verb)) if verbs.contains(&verb) => Ok((name, verb)),
        _ => Err(ApiError::not_found(format!(
            "POST {target:?}: expected NAME:{}",
            verbs.join(" or NAME:")
        ))
        .with_field("path.target")),
    }
}

/// `POST .../workflows/{name}:run` (operator) and `:plan` (viewer).
async fn verb(
    State(state): State<AppState>,
    principal: Principal,
    Path((namespace, target)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let (name, verb) = split_verb(&target, &["run", "plan"])?;
    check_path_param("name", name)?;
    principal.require(
        &namespace,
        if verb == "run" {
            Role::Operator
        } else {
            Role::Viewer
        },
    )?;
    let request: StartRun = read_json(&headers, body, |_| {}).await?;
    let snapshot = state.index.snapshot();
    let object = snapshot
        .get(Kind::Workflow, &namespace, name)
        .ok_or_else(|| ApiError::not_found(format!("Workflow {namespace}/{name} not found")))?;
    let spec: WorkflowSpec = serde_json::from_value(object.spec.clone()).map_err(|e| {
        ApiError::conflict(format!("Workflow {namespace}/{name} does not decode: {e}"))
    })?;
    if let Some(e) = spec.validate().first() {
        return Err(ApiError::conflict(format!(
            "Workflow {namespace}/{name} is invalid ({}: {}); fix it first",
            e.path, e.message
        )));
    }
    for (i, d) in request.devices.iter().enumerate() {
        if snapshot.device(&namespace, d).is_none() {
            return Err(ApiError::bad_request(
                format!("Device {namespace}/{d} not found"),
                format!("devices[{i}]"),
            ));
        }
    }
    let mut event = request.event.clone();
    let trigger = event.type_.unwrap_or(TriggerType::Manual);
    event.type_ = Some(trigger);
    let device = event
        .device
        .as_deref()
        .and_then(|d| snapshot.device(&namespace, d))
        .map(|d| d.object.uid);
    if event.device.is_some() && device.is_none() {
        return Err(ApiError::bad_request(
            format!(
                "Device {namespace}/{} not found",
                event.device.as_deref().unwrap_or_default()
            ),
            "event.device",
        ));
    }
    let fired = Fired {
        namespace: namespace.clone(),
        trigger,
        device,
        event,
        dedup: None,
    };
    let now = Timestamp::now();
    if verb == "plan" {
        let plan = plan_run(
            &state,
            &snapshot,
            name,
            &spec,
            &fired,
            &request.devices,
            now,
        )
        .await?;
        return Ok((
            StatusCode::OK,
            Json(serde_json::to_value(plan).unwrap_or_default()),
        ));
    }
    if spec.paused {
        return Err(ApiError::conflict(format!(
            "Workflow {namespace}/{name} is paused (spec.paused)"
        )));
    }
    let manual = start::Manual {
        workflow: name,
        devices: &request.devices,
        by: &principal.0.name,
    };
    let ids = start::start(
        &state.store,
        &snapshot,
        state.automation.sandbox(),
        &fired,
        Some(&manual),
        now,
    )
    .await
    .map_err(|start::StartError::Store(e)| ApiError::from(e))?;
    let Some(id) = ids.first() else {
        return Err(ApiError::conflict(format!(
            "no run started: no device selected by Workflow {namespace}/{name} passes its condition and concurrency policy"
        )));
    };
    state.metrics.automation.runs_started.inc();
    state.automation.wake_run(*id);
    let view = state.store.run_view(&namespace, *id).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::to_value(view).unwrap_or_default()),
    ))
}

/// The plan of a run of `spec` for `fired`: no row written, nothing sent.
async fn plan_run(
    state: &AppState,
    snapshot: &crate::index::Snapshot,
    name: &str,
    spec: &WorkflowSpec,
    fired: &Fired,
    devices: &[String],
    now: Timestamp,
) -> Result<RunPlan, ApiError> {
    let sandbox = state.automation.sandbox();
    let mut skipped = Vec::new();
    let mut passing = Vec::new();
    for d in start::candidates(snapshot, spec, fired, devices) {
        let view = start::device_view(d);
        match start::condition_holds(sandbox, spec, &fired.event, &view, now) {
            Ok(true) => passing.push((d, view)),
            Ok(false) => skipped.push(format!("{}: condition is false", view.name)),
            Err(e) => skipped.push(format!("{}: condition failed: {e}", view.name)),
        }
    }
    let admitted = start::admit(
        &state.store,
        &fired.namespace,
        name,
        spec,
        passing
            .iter()
            .map(|(d, _)| (d.object.uid, d.object.name.clone()))
            .collect(),
        fired.trigger != TriggerType::Manual,
        now,
    )
    .await?;
    skipped.extend(admitted.skipped);
    let ctx = PlanContext::new(snapshot, &state.config_maps, &fired.namespace).workflow(name);
    let isolate = spec
        .steps
        .iter()
        .find(|s| s.type_ == StepType::IsolateDevice);
    let mut planned: Vec<DevicePlan> = Vec::new();
    for (d, view) in passing {
        if !admitted.devices.iter().any(|a| a.0 == d.object.uid) {
            continue;
        }
        let allow = isolate
            .map(|s| engine::isolation_allow(snapshot, d, s))
            .unwrap_or_default();
        let device = PlanDevice::new(view, allow, d.spec.is_some());
        planned.push(plan::plan_device(
            spec,
            &device,
            &fired.event,
            &ctx,
            sandbox,
        ));
    }
    let (allowed, limit) =
        start::blast_radius(&state.store, &fired.namespace, name, &spec.limits, now).await?;
    let held: Vec<String> = if planned.len() > allowed {
        planned
            .split_off(allowed)
            .into_iter()
            .map(|p| p.device)
            .collect()
    } else {
        Vec::new()
    };
    // Every reason, in the order a person asks: will it run, where not, what it undoes,
    // what waits.
    let mut reasons = Vec::new();
    if spec.paused {
        reasons.push("the workflow is paused (spec.paused)".to_owned());
    }
    match (planned.is_empty() && held.is_empty(), skipped.is_empty()) {
        (true, true) => reasons.push("no device of the namespace is selected".into()),
        (true, false) => reasons.push(skipped.join("; ")),
        (false, false) => reasons.push(format!("not on: {}", skipped.join("; "))),
        (false, true) => {}
    }
    if !admitted.replace.is_empty() {
        reasons.push(format!(
            "would cancel {} active run(s) (concurrency Replace)",
            admitted.replace.len()
        ));
    }
    if !held.is_empty() {
        reasons.push(format!(
            "{} device(s) would wait for an approval: past the blast-radius limit ({})",
            held.len(),
            limit.unwrap_or_default()
        ));
    }
    Ok(RunPlan {
        workflow: name.to_owned(),
        would_start: !spec.paused && (!planned.is_empty() || !held.is_empty()),
        reason: reasons.join("; "),
        devices: planned,
        held,
    })
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    workflow: Option<String>,
    state: Option<String>,
    limit: Option<String>,
}

/// `GET .../workflowruns?workflow=&state=&limit=`
async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(namespace): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<RunList>, ApiError> {
    principal.require(&namespace, Role::Viewer)?;
    let run_state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(RunState::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                format!("{s:?} is not a run state (Running, AwaitingApproval, Succeeded, PartiallyFailed, Failed, Cancelled)"),
                "query.state",
            )
        })?),
    };
    let limit = match q.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                ApiError::bad_request(
                    format!("limit must be from 1 to {MAX_LIMIT}"),
                    "query.limit",
                )
            })?,
    };
    if let Some(w) = &q.workflow {
        check_path_param("name", w).map_err(|_| {
            ApiError::bad_request(format!("{w:?} is not a Workflow name"), "query.workflow")
        })?;
    }
    Ok(Json(RunList {
        runs: state
            .store
            .list_runs(&namespace, q.workflow.as_deref(), run_state, limit)
            .await?,
    }))
}

fn parse_run(id: &str) -> Result<Uuid, ApiError> {
    id.parse()
        .map_err(|_| ApiError::bad_request(format!("{id:?} is not a run id (a UUID)"), "path.id"))
}

/// `GET .../workflowruns/{id}`
async fn one(
    State(state): State<AppState>,
    principal: Principal,
    Path((namespace, id)): Path<(String, String)>,
) -> Result<Json<RunView>, ApiError> {
    principal.require(&namespace, Role::Viewer)?;
    let id = parse_run(&id)?;
    state
        .store
        .run_view(&namespace, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("run {id} not found in namespace {namespace}")))
}

/// `POST .../workflowruns/{id}:approve` and `:cancel` (operator role). The person who
/// started a run cannot approve it.
async fn decide(
    State(state): State<AppState>,
    principal: Principal,
    Path((namespace, target)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<RunView>, ApiError> {
    let (id, verb) = split_verb(&target, &["approve", "cancel"])?;
    principal.require(&namespace, Role::Operator)?;
    let id = parse_run(id)?;
    let decision: RunDecision = read_json(&headers, body, |_| {}).await?;
    if decision.comment.len() > 1024 {
        return Err(ApiError::bad_request(
            "comment is longer than 1024 bytes",
            "comment",
        ));
    }
    let who = principal.0.name.clone();
    let now = Timestamp::now();
    let mut tx = state
        .store
        .pool()
        .begin()
        .await
        .map_err(StoreError::query("begin deciding a run"))?;
    let head = runs::lock_run(&mut tx, id)
        .await?
        .filter(|h| h.namespace == namespace)
        .ok_or_else(|| {
            ApiError::not_found(format!("run {id} not found in namespace {namespace}"))
        })?;
    if head.state.is_final() {
        return Err(ApiError::conflict(format!(
            "run {id} is {} already",
            head.state.as_str()
        )));
    }
    if verb == "cancel" {
        let devices = start::cancel_in(
            &mut tx,
            id,
            &namespace,
            &who,
            &format!("cancelled by {who}: {}", decision.comment),
            now,
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::query("commit cancelling a run"))?;
        for d in devices {
            state.work.wake_device(d);
        }
    } else {
        if head.started_by == who {
            return Err(ApiError::forbidden(format!(
                "{who} started run {id} and cannot approve it; another person with the operator role must"
            )));
        }
        if head.state != RunState::AwaitingApproval {
            return Err(ApiError::conflict(format!(
                "run {id} is {}, not AwaitingApproval",
                head.state.as_str()
            )));
        }
        let at_gate = runs::lanes_in(&mut tx, id, LaneState::AwaitingApproval).await?;
        let held = runs::lanes_in(&mut tx, id, LaneState::Held).await?;
        let spec: Option<WorkflowSpec> = serde_json::from_value(head.spec.clone()).ok();
        let gate = at_gate
            .first()
            .and_then(|l| spec.as_ref().and_then(|s| s.steps.get(l.2)))
            .map(|s| s.name.clone());
        let mut what = Vec::new();
        if let Some(g) = &gate {
            // The gate's attempt ends approved; the lanes go on with the next step.
            sqlx::query(
                "UPDATE workflow_attempts SET state = 'Succeeded', finished = now(), message = $2
                 WHERE run = $1 AND type = 'Approval' AND state = 'Running'",
            )
            .bind(id)
            .bind(format!("approved by {who}"))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("end an approval step"))?;
            runs::move_lanes(
                &mut tx,
                id,
                &[LaneState::AwaitingApproval],
                LaneState::Running,
                true,
                now,
            )
            .await?;
            what.push(format!("step {g} ({} devices)", at_gate.len()));
        }
        if !held.is_empty() {
            runs::move_lanes(
                &mut tx,
                id,
                &[LaneState::Held],
                LaneState::Running,
                false,
                now,
            )
            .await?;
            what.push(format!("blast radius: {} more devices", held.len()));
        }
        let what = what.join("; ");
        runs::insert_approval(&mut tx, id, &what, &who, &decision.comment, now).await?;
        runs::set_run_state(&mut tx, id, RunState::Running, None, now).await?;
        audit::append(
            &mut tx,
            &[NewEntry {
                at: now,
                namespace: namespace.clone(),
                actor: who.clone(),
                action: "run.approved".into(),
                run: Some(id),
                detail: json!({"what": what, "comment": decision.comment}),
            }],
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::query("commit approving a run"))?;
    }
    state.automation.wake_run(id);
    state
        .store
        .run_view(&namespace, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("run {id} not found in namespace {namespace}")))
}

/// OpenAPI paths of these routes, with their shapes derived from the types.
pub fn openapi_paths(
    paths: &mut serde_json::Map<String, serde_json::Value>,
    schemas: &mut serde_json::Map<String, serde_json::Value>,
) {
    use cdot_crds::wire::automation::{RunDecision, RunList, RunPlan, RunView, StartRun};

    use crate::api::openapi::{DerivedSchemas, error_response as error, json_response as ok};
    let mut derived = DerivedSchemas::new(schemas);
    let start = derived.add::<StartRun>("StartRun");
    let plan = derived.add::<RunPlan>("RunPlan");
    let view = derived.add::<RunView>("RunView");
    let list = derived.add::<RunList>("RunList");
    let decision = derived.add::<RunDecision>("RunDecision");
    derived.finish();
    let path = |n: &str| json!({ "name": n, "in": "path", "required": true, "schema": { "type": "string" } });
    let query = |n: &str, d: &str| json!({ "name": n, "in": "query", "required": false, "description": d, "schema": { "type": "string" } });
    let body = |s: &serde_json::Value| json!({ "required": false, "content": { "application/json": { "schema": s } } });
    paths.insert(
        "/v1/namespaces/{namespace}/workflows/{name}:run".into(),
        json!({ "post": {
            "tags": ["Automation"],
            "summary": "Start a run by hand (operator role); the event imitates a trigger",
            "parameters": [path("namespace"), path("name")],
            "requestBody": body(&start),
            "responses": { "201": ok("the run", &view), "400": error("a device or field is wrong"), "404": error("no such workflow"), "409": error("paused, invalid, or nothing to run on") },
        }}),
    );
    paths.insert(
        "/v1/namespaces/{namespace}/workflows/{name}:plan".into(),
        json!({ "post": {
            "tags": ["Automation"],
            "summary": "Dry run: each step's concrete effect per device and whether it can be undone; nothing is written or sent",
            "parameters": [path("namespace"), path("name")],
            "requestBody": body(&start),
            "responses": { "200": ok("the plan", &plan), "400": error("a device or field is wrong"), "404": error("no such workflow") },
        }}),
    );
    paths.insert(
        "/v1/namespaces/{namespace}/workflowruns".into(),
        json!({ "get": {
            "tags": ["Automation"],
            "summary": "Runs of the namespace, newest first",
            "parameters": [path("namespace"), query("workflow", "only this Workflow"), query("state", "only runs in this state"), query("limit", "at most this many (1-1000, default 100)")],
            "responses": { "200": ok("the runs", &list), "400": error("a parameter is wrong") },
        }}),
    );
    paths.insert(
        "/v1/namespaces/{namespace}/workflowruns/{id}".into(),
        json!({ "get": {
            "tags": ["Automation"],
            "summary": "One run with every device's steps, attempts, outputs and approvals",
            "parameters": [path("namespace"), path("id")],
            "responses": { "200": ok("the run", &view), "404": error("no such run") },
        }}),
    );
    for (verb, summary) in [
        (
            "approve",
            "Approve a run waiting at an Approval step or past a blast-radius limit (operator role; not its starter)",
        ),
        (
            "cancel",
            "Cancel a run: open steps end, no further step starts (operator role)",
        ),
    ] {
        paths.insert(
            format!("/v1/namespaces/{{namespace}}/workflowruns/{{id}}:{verb}"),
            json!({ "post": {
                "tags": ["Automation"],
                "summary": summary,
                "parameters": [path("namespace"), path("id")],
                "requestBody": body(&decision),
                "responses": { "200": ok("the run", &view), "403": error("the starter cannot approve"), "404": error("no such run"), "409": error("the run is not waiting or already finished") },
            }}),
        );
    }
}
