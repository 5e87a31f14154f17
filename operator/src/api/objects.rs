//! Read access to the custom resources and their status, in the Kubernetes API's shapes.
use axum::{
    Json,
    extract::{Path, State},
};
use cdot_crds::{
    api_token::Role,
    kind::Kind,
    wire::query::{ListMeta, ObjectList},
};
use serde_json::Value;

use super::{ApiError, AppState, auth::Principal};

/// `GET /v1/namespaces/{namespace}/{resource}`: `{"items": [...]}` like a Kubernetes list.
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path((namespace, resource)): Path<(String, String)>,
) -> Result<Json<ObjectList<Value>>, ApiError> {
    let kind = resolve(&principal, &namespace, &resource)?;
    let items: Vec<Value> = state
        .store
        .list_objects(&namespace, kind)
        .await?
        .iter()
        .map(|o| o.to_resource())
        .collect();
    Ok(Json(ObjectList {
        api_version: cdot_crds::API_VERSION.into(),
        kind: format!("{}List", kind.as_str()),
        metadata: ListMeta::default(),
        items,
    }))
}

/// `GET /v1/namespaces/{namespace}/{resource}/{name}`.
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path((namespace, resource, name)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let kind = resolve(&principal, &namespace, &resource)?;
    match state.store.get_object(&namespace, kind, &name).await? {
        Some(object) => Ok(Json(object.to_resource())),
        None => Err(
            ApiError::not_found(format!("{} {namespace}/{name} not found", kind.as_str()))
                .with_field("path.name"),
        ),
    }
}

/// Checks the scope (first, so that out-of-scope requests learn nothing) and the resource
/// name; `params::check_path` already refused names that cannot exist.
fn resolve(principal: &Principal, namespace: &str, resource: &str) -> Result<Kind, ApiError> {
    principal.require(namespace, Role::Viewer)?;
    Kind::from_path_segment(resource).ok_or_else(|| {
        let known: Vec<&str> = Kind::ALL.iter().map(|k| k.plural()).collect();
        ApiError::not_found(format!(
            "unknown resource type {resource:?}; known: {}",
            known.join(", ")
        ))
        .with_field("path.resource")
    })
}
