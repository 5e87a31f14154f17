//! The audit log's route: `GET /v1/namespaces/{ns}/audit?run=&after=&limit=`, oldest first
//! from `after` (the chain's order; page on with the last `seq`).
use axum::{
    Json, Router,
    extract::{Path, Query, State},
    routing::get,
};
use cdot_crds::{api_token::Role, wire::automation::AuditList};
use uuid::Uuid;

use crate::api::{ApiError, AppState, auth::Principal, params::Params};

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

pub fn routes() -> Router<AppState> {
    Router::new().route("/namespaces/{namespace}/audit", get(list))
}

async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(namespace): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<AuditList>, ApiError> {
    principal.require(&namespace, Role::Viewer)?;
    let params = Params::parse(pairs, &["run", "after", "limit"])?;
    let run = params
        .get("run")
        .map(|v| {
            v.parse::<Uuid>().map_err(|_| {
                ApiError::bad_request(format!("{v:?} is not a run id (a UUID)"), "query.run")
            })
        })
        .transpose()?;
    let after = match params.get("after") {
        Some(v) => v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::bad_request(
                format!("{v:?} is not a sequence number (0 or more)"),
                "query.after",
            )
        })?,
        None => 0,
    };
    let limit = match params.get("limit") {
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    format!("limit must be between 1 and {MAX_LIMIT}, not {v:?}"),
                    "query.limit",
                )
            })?,
        None => DEFAULT_LIMIT,
    };
    let entries = super::audit::list(state.store.pool(), &namespace, run, after, limit).await?;
    Ok(Json(AuditList { entries }))
}

/// The audit route in the OpenAPI document, its schema derived from the wire type.
pub fn openapi_paths(
    paths: &mut serde_json::Map<String, serde_json::Value>,
    schemas: &mut serde_json::Map<String, serde_json::Value>,
) {
    use serde_json::json;

    use crate::api::openapi::{DerivedSchemas, error_response as error, json_response as ok};
    let mut derived = DerivedSchemas::new(schemas);
    let list = derived.add::<AuditList>("AuditList");
    derived.finish();
    let query = |n: &str, d: &str| json!({ "name": n, "in": "query", "required": false, "description": d, "schema": { "type": "string" } });
    paths.insert(
        "/v1/namespaces/{namespace}/audit".into(),
        json!({ "get": {
            "tags": ["Automation"],
            "summary": "The namespace's audit entries, oldest first from `after`; each carries its hash and the previous one (`cdot-operator audit verify` checks the whole chain)",
            "parameters": [
                { "name": "namespace", "in": "path", "required": true, "schema": { "type": "string" } },
                query("run", "only this workflow run's entries (its id)"),
                query("after", "only entries with a larger seq (default 0: from the oldest kept)"),
                query("limit", "at most this many (1-1000, default 100)"),
            ],
            "responses": {
                "200": ok("the entries", &list),
                "400": error("a bad parameter (`field` names it)"),
                "404": error("namespace outside the token's scope"),
            },
        }}),
    );
}
