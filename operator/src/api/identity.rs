//! `GET /v1/whoami`: what the presented token is and which namespaces it may read, so that
//! a client (the console) offers only those and hides actions its role would be refused.
use axum::{Json, extract::State};
use cdot_crds::wire::query::Identity;

use super::{ApiError, AppState, auth::Principal};

pub async fn whoami(
    State(state): State<AppState>,
    Principal(token): Principal,
) -> Result<Json<Identity>, ApiError> {
    let namespaces = if token.namespaces.iter().any(|n| n == "*") {
        state.store.namespaces().await?
    } else {
        let mut namespaces = token.namespaces.clone();
        namespaces.sort();
        namespaces.dedup();
        namespaces
    };
    Ok(Json(Identity {
        name: token.name.clone(),
        role: token.role,
        namespaces,
    }))
}
