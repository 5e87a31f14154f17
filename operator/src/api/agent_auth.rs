//! Who an agent is: taken from its client certificate (mutual TLS) or a signed JWT, never
//! from a request body.
use axum::{extract::FromRequestParts, http::request::Parts};
use uuid::Uuid;

use super::{ApiError, AppState};

/// The authenticated device behind an agent request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceIdentity {
    pub namespace: String,
    pub name: String,
    pub uid: Uuid,
}

impl FromRequestParts<AppState> for DeviceIdentity {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<DeviceIdentity>()
            .cloned()
            .ok_or_else(|| {
                ApiError::unauthorized("agent routes need a client certificate or a signed JWT")
            })
    }
}
