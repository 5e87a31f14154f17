//! The alerts API: list and filter alerts, read one with its history, acknowledge and
//! unacknowledge, and silences.
use axum::{
    Json, Router,
    body::Body,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    routing::{delete, get, post},
};
use cdot_crds::{
    api_token::Role,
    wire::alert::{
        AcknowledgeRequest, AlertDetail, AlertList, AlertState, BacktestReport, BacktestRequest,
        Silence, SilenceList, SilenceRequest,
    },
};
use uuid::Uuid;

use super::store::AlertFilter;
use crate::api::{ApiError, AppState, auth::Principal, body::read_json, params::Params};

/// Most alerts one list returns (narrow with filters).
const MAX_LIMIT: i64 = 5000;
const DEFAULT_LIMIT: i64 = 500;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/alerts", get(list_all))
        .route("/namespaces/{namespace}/alerts", get(list))
        .route("/namespaces/{namespace}/alerts/{id}", get(one))
        .route(
            "/namespaces/{namespace}/alerts/{id}/acknowledge",
            post(acknowledge),
        )
        .route(
            "/namespaces/{namespace}/alerts/{id}/unacknowledge",
            post(unacknowledge),
        )
        .route(
            "/namespaces/{namespace}/silences",
            get(silences).post(create_silence),
        )
        .route(
            "/namespaces/{namespace}/silences/{id}",
            delete(expire_silence),
        )
        .route(
            "/namespaces/{namespace}/alertrules:backtest",
            post(backtest),
        )
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    id.parse().map_err(|_| {
        ApiError::bad_request(
            format!("{id:?} is not an alert or silence id (a UUID)"),
            "path.id",
        )
    })
}

fn parse_time(value: &str, field: &str) -> Result<i64, ApiError> {
    value
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| {
            ApiError::bad_request(format!("{value:?} is not an RFC 3339 time: {e}"), field)
        })
}

/// `state` (comma-separated: pending, firing, resolved; default open ones), `severity`,
/// `rule`, `device`, `site`, `from`/`to` (RFC 3339: alerts open at some time in between),
/// `limit`.
fn filter(
    namespace: Option<String>,
    pairs: Vec<(String, String)>,
) -> Result<AlertFilter, ApiError> {
    let params = Params::parse(
        pairs,
        &[
            "state", "severity", "rule", "device", "site", "metric", "from", "to", "limit",
        ],
    )?;
    let mut f = AlertFilter {
        namespace,
        limit: DEFAULT_LIMIT,
        states: vec![AlertState::Pending, AlertState::Firing],
        ..AlertFilter::default()
    };
    for (key, value) in params.iter() {
        let field = format!("query.{key}");
        match key {
            "state" => {
                f.states = value
                    .split(',')
                    .map(|s| {
                        AlertState::from_name(s.trim()).ok_or_else(|| {
                            ApiError::bad_request(
                                format!("{s:?} is not a state: pending, firing or resolved"),
                                &field,
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?;
            }
            "severity" => {
                if !["Info", "Warning", "Critical"].contains(&value) {
                    return Err(ApiError::bad_request(
                        format!("{value:?} is not a severity: Info, Warning or Critical"),
                        field,
                    ));
                }
                f.severity = Some(value.to_owned());
            }
            "rule" => f.rule = Some(value.to_owned()),
            "device" => f.device = Some(value.to_owned()),
            "site" => f.site = Some(value.to_owned()),
            "metric" => {
                for name in value.split(',').map(str::trim) {
                    if cdot_crds::metrics_catalog::Metric::from_name(name).is_none() {
                        return Err(ApiError::bad_request(
                            format!("{name:?} is not a metric of the catalogue"),
                            &field,
                        ));
                    }
                    f.metrics.push(name.to_owned());
                }
            }
            "from" => f.from_ms = Some(parse_time(value, &field)?),
            "to" => f.to_ms = Some(parse_time(value, &field)?),
            "limit" => {
                f.limit = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            format!("limit must be between 1 and {MAX_LIMIT}"),
                            field,
                        )
                    })?;
            }
            _ => {}
        }
    }
    if let (Some(from), Some(to)) = (f.from_ms, f.to_ms)
        && from >= to
    {
        return Err(ApiError::bad_request(
            "from must be before to",
            "query.from",
        ));
    }
    Ok(f)
}

/// `GET /v1/namespaces/{ns}/alerts`
async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(namespace): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<AlertList>, ApiError> {
    principal.require(&namespace, Role::Viewer)?;
    let f = filter(Some(namespace), pairs)?;
    Ok(Json(AlertList {
        items: state.store.list_alerts(&f).await?,
    }))
}

/// `GET /v1/alerts`: every namespace the token may read.
async fn list_all(
    State(state): State<AppState>,
    principal: Principal,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<AlertList>, ApiError> {
    let f = filter(None, pairs)?;
    let items = state
        .store
        .list_alerts(&f)
        .await?
        .into_iter()
        .filter(|a| principal.0.allows_namespace(&a.namespace))
        .collect();
    Ok(Json(AlertList { items }))
}

/// `GET /v1/namespaces/{ns}/alerts/{id}`: the alert and its whole history.
async fn one(
    State(state): State<AppState>,
    principal: Principal,
    Path((namespace, id)): Path<(String, String)>,
) -> Result<Json<AlertDetail>, ApiError> {
    principal.require(&namespace, Role::Viewer)?;
    let id = parse_id(&id)?;
    let alert = state.store.alert(&namespace, id).await?.ok_or_else(|| {
        ApiError::not_found(format!("alert {id} not found in namespace {namespace}"))
    })?;
    let history = state.store.alert_history(id).await?;
    Ok(Json(AlertDetail { alert, history }))
}

/// `POST .../alerts/{id}/acknowledge`: stops repeats; the alert stays open.
async fn acknowledge(
    State(state): State<AppState>,
    principal: Principal,
    Path((namespace, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    principal.require(&namespace, Role::Operator)?;
    let id = parse_id(&id)?;
    let request: AcknowledgeRequest = read_json(&headers, body, |_| {}).await?;
    if request.comment.len() > 2048 {
        return Err(ApiError::bad_request(
            "comment is longer than 2048 bytes",
            "comment",
        ));
    }
    let who = principal.0.name.as_str();
    if state
        .store
        .acknowledge_alert(&namespace, id, Some((who, &request.comment)), who)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "no open alert {id} in namespace {namespace}"
        )))
    }
}

/// `POST .../alerts/{id}/unacknowledge`: repeats resume.
async fn unacknowledge(
    State(state): State<AppState>,
    principal: Principal,
    Path((namespace, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    principal.require(&namespace, Role::Operator)?;
    let id = parse_id(&id)?;
    if state
        .store
        .acknowledge_alert(&namespace, id, None, &principal.0.name)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "no open alert {id} in namespace {namespace}"
        )))
    }
}

/// `GET .../silences`: silences not yet ended.
async fn silences(
    State(state): State<AppState>,
    principal: Principal,
    Path(namespace): Path<String>,
) -> Result<Json<SilenceList>, ApiError> {
    principal.require(&namespace, Role::Viewer)?;
    let mut items = state.store.silences(Some(&namespace)).await?;
    let now = jiff::Timestamp::now();
    items.extend(
        super::suppress::manifest_silences(&state.index.snapshot())
            .into_iter()
            .filter(|s| {
                s.namespace == namespace
                    && s.ends_at.parse::<jiff::Timestamp>().is_ok_and(|t| now < t)
            }),
    );
    Ok(Json(SilenceList { items }))
}

/// Checks a silence request; the error names the field.
pub fn check_silence(r: &SilenceRequest, now_ms: i64) -> Result<(i64, i64), ApiError> {
    if let Some(e) = cdot_crds::silence::validate_matchers(&r.matchers, "matchers")
        .into_iter()
        .next()
    {
        return Err(ApiError::bad_request(e.message, e.path));
    }
    let starts = match &r.starts_at {
        Some(s) => parse_time(s, "startsAt")?,
        None => now_ms,
    };
    let ends = parse_time(&r.ends_at, "endsAt")?;
    if ends <= starts {
        return Err(ApiError::bad_request(
            "endsAt must be after startsAt",
            "endsAt",
        ));
    }
    if ends <= now_ms {
        return Err(ApiError::bad_request("endsAt is in the past", "endsAt"));
    }
    if r.comment.len() > 2048 {
        return Err(ApiError::bad_request(
            "comment is longer than 2048 bytes",
            "comment",
        ));
    }
    Ok((starts, ends))
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// `POST .../silences` (operator role).
async fn create_silence(
    State(state): State<AppState>,
    principal: Principal,
    Path(namespace): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Silence>), ApiError> {
    principal.require(&namespace, Role::Operator)?;
    let request: SilenceRequest = read_json(&headers, body, |_| {}).await?;
    let (starts, ends) = check_silence(&request, jiff::Timestamp::now().as_millisecond())?;
    let silence = Silence {
        id: Uuid::new_v4(),
        namespace,
        matchers: request.matchers,
        starts_at: rfc3339(starts),
        ends_at: rfc3339(ends),
        created_by: principal.0.name.clone(),
        comment: request.comment,
        name: None,
    };
    state.store.create_silence(&silence).await?;
    state.alerting.silences_changed();
    tracing::info!(silence = %silence.id, namespace = %silence.namespace, by = %silence.created_by, "silence created");
    Ok((StatusCode::CREATED, Json(silence)))
}

/// `DELETE .../silences/{id}`: ends it now.
async fn expire_silence(
    State(state): State<AppState>,
    principal: Principal,
    Path((namespace, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    principal.require(&namespace, Role::Operator)?;
    let id = parse_id(&id)?;
    if let Some(document) = super::suppress::manifest_silences(&state.index.snapshot())
        .into_iter()
        .find(|s| s.id == id && s.namespace == namespace)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "silence {id} is the Silence document {namespace}/{}; change or remove it where it is committed",
                document.name.unwrap_or_default()
            ),
        )
        .with_field("path.id"));
    }
    if state.store.expire_silence(&namespace, id).await? {
        state.alerting.silences_changed();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "no active silence {id} in namespace {namespace}"
        )))
    }
}

/// `POST .../alertrules:backtest` (viewer role): replays a rule over the stored minutes.
async fn backtest(
    State(state): State<AppState>,
    principal: Principal,
    Path(namespace): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<BacktestReport>, ApiError> {
    principal.require(&namespace, Role::Viewer)?;
    let request: BacktestRequest = read_json(&headers, body, |_| {}).await?;
    let rule = super::backtest::compile(&namespace, &request.rule)?;
    let (from, to) = super::backtest::range(&request, jiff::Timestamp::now().as_millisecond())?;
    let started = std::time::Instant::now();
    let snapshot = state.index.snapshot();
    let report = super::backtest::run(&state.store, &snapshot, rule, from, to).await?;
    tracing::info!(
        namespace = %namespace, rule = %report.rule, from = %report.from, to = %report.to,
        series = report.series, minutes = report.minutes_replayed, fired = report.totals.fired,
        elapsed_ms = started.elapsed().as_millis() as u64, "backtest replayed"
    );
    Ok(Json(report))
}

/// The alerts and silences routes of the OpenAPI document, their bodies' schemas derived
/// from the wire types.
pub fn openapi_paths(
    paths: &mut serde_json::Map<String, serde_json::Value>,
    schemas: &mut serde_json::Map<String, serde_json::Value>,
) {
    use serde_json::json;

    use crate::api::openapi::{DerivedSchemas, error_response as error, json_response as ok};
    let mut derived = DerivedSchemas::new(schemas);
    let alert_list = derived.add::<AlertList>("AlertList");
    let alert_detail = derived.add::<AlertDetail>("AlertDetail");
    let ack = derived.add::<AcknowledgeRequest>("AcknowledgeRequest");
    let silence_request = derived.add::<SilenceRequest>("SilenceRequest");
    let silence = derived.add::<Silence>("Silence");
    let silence_list = derived.add::<SilenceList>("SilenceList");
    let backtest_request = derived.add::<BacktestRequest>("BacktestRequest");
    let backtest_report = derived.add::<BacktestReport>("BacktestReport");
    // Not a route: what a generic webhook receives (`format: Generic`), in the document so
    // that receivers can be generated from it.
    derived.add::<cdot_crds::wire::alert::AlertNotification>("AlertNotification");
    derived.finish();
    let param = |n: &str, d: &str| json!({ "name": n, "in": "path", "required": true, "description": d, "schema": { "type": "string" } });
    let query = |n: &str, d: &str| json!({ "name": n, "in": "query", "required": false, "description": d, "schema": { "type": "string" } });
    let filters = vec![
        query(
            "state",
            "comma-separated: pending, firing, resolved (default pending,firing)",
        ),
        query("severity", "Info, Warning or Critical"),
        query("rule", "AlertRule name"),
        query("device", "Device name"),
        query("site", "the Device's site"),
        query(
            "metric",
            "comma-separated catalogue metrics, e.g. networkIn,interfaceUtilisation",
        ),
        query("from", "RFC 3339: alerts open at some time after it"),
        query("to", "RFC 3339: alerts started before it"),
        query("limit", "at most this many (1-5000, default 500)"),
    ];
    let ns = param("namespace", "the namespace (client)");
    let id = param("id", "the alert or silence id (UUID)");
    let mut with_ns = vec![ns.clone()];
    with_ns.extend(filters.clone());
    paths.insert("/v1/alerts".into(), json!({ "get": {
        "tags": ["Alerts"], "summary": "Alerts of every namespace the token may read, newest first",
        "parameters": filters,
        "responses": { "200": ok("the alerts", &alert_list), "400": error("a bad filter (`field` names it)"), "401": error("no or unknown token") }
    }}));
    paths.insert("/v1/namespaces/{namespace}/alerts".into(), json!({ "get": {
        "tags": ["Alerts"], "summary": "Alerts of one namespace, newest first",
        "parameters": with_ns,
        "responses": { "200": ok("the alerts", &alert_list), "400": error("a bad filter (`field` names it)"), "401": error("no or unknown token"), "404": error("namespace outside the token's scope") }
    }}));
    paths.insert("/v1/namespaces/{namespace}/alerts/{id}".into(), json!({ "get": {
        "tags": ["Alerts"], "summary": "One alert with its whole history",
        "parameters": [ns, id],
        "responses": { "200": ok("the alert", &alert_detail), "400": error("not a UUID"), "404": error("no such alert") }
    }}));
    for (action, summary) in [
        (
            "acknowledge",
            "Acknowledge an open alert: repeats stop, the alert stays open (operator role)",
        ),
        (
            "unacknowledge",
            "Withdraw an acknowledgement: repeats resume (operator role)",
        ),
    ] {
        let mut op = json!({
            "tags": ["Alerts"], "summary": summary, "parameters": [ns, id],
            "responses": { "204": { "description": "done" }, "403": error("the token is not an operator"), "404": error("no open alert with this id") }
        });
        if action == "acknowledge" {
            op["requestBody"] =
                json!({ "required": false, "content": { "application/json": { "schema": ack } } });
        }
        paths.insert(
            format!("/v1/namespaces/{{namespace}}/alerts/{{id}}/{action}"),
            json!({ "post": op }),
        );
    }
    paths.insert("/v1/namespaces/{namespace}/silences".into(), json!({
        "get": { "tags": ["Alerts"], "summary": "Silences not yet ended", "parameters": [ns],
                 "responses": { "200": ok("the silences", &silence_list), "404": error("namespace outside the token's scope") } },
        "post": { "tags": ["Alerts"], "summary": "Create a silence (operator role); notifications of matching alerts are held back",
                  "parameters": [ns],
                  "requestBody": { "required": true, "content": { "application/json": { "schema": silence_request } } },
                  "responses": { "201": ok("the silence", &silence), "400": error("a bad field (`field` names it)"), "403": error("the token is not an operator") } }
    }));
    paths.insert("/v1/namespaces/{namespace}/alertrules:backtest".into(), json!({ "post": {
        "tags": ["Alerts"], "summary": "Replay an AlertRule, committed or not, over the stored 1-minute rollups: when it would have fired and resolved, and the notifications it would have sent",
        "parameters": [ns],
        "requestBody": { "required": true, "content": { "application/json": { "schema": backtest_request } } },
        "responses": { "200": ok("what the rule would have done", &backtest_report), "400": error("a bad range (`field` names it)"), "422": error("the rule is invalid (`field` names the first problem, the message all)"), "404": error("namespace outside the token's scope") }
    }}));
    paths.insert("/v1/namespaces/{namespace}/silences/{id}".into(), json!({ "delete": {
        "tags": ["Alerts"], "summary": "End a silence now (operator role)", "parameters": [ns, id],
        "responses": { "204": { "description": "ended" }, "404": error("no active silence with this id"), "409": error("the silence is a Silence document: change it where it is committed") }
    }}));
}
