//! Bearer tokens for people and the console, scoped to namespaces with a role.
//!
//! Tokens are looked up by their SHA-256, so the plaintext is never stored. A token that
//! may not see a namespace gets 404 for everything in it, exactly as if the namespace did
//! not exist, so that names of other tenants' objects do not leak.
use std::collections::HashMap;

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts},
};
use cdot_crds::api_token::{ApiToken, Role, hash_token};

use super::{ApiError, AppState};

/// Tokens of the applied desired state by their SHA-256.
#[derive(Debug, Default)]
pub struct TokenIndex {
    by_hash: HashMap<[u8; 32], ApiToken>,
}

impl TokenIndex {
    pub fn new(tokens: &[ApiToken]) -> Self {
        Self {
            by_hash: tokens.iter().map(|t| (t.token_sha256, t.clone())).collect(),
        }
    }

    pub fn authenticate(&self, token: &str) -> Option<&ApiToken> {
        self.by_hash.get(&hash_token(token))
    }
}

/// The caller of a `/v1` route, established from the `Authorization: Bearer` header.
#[derive(Debug, Clone)]
pub struct Principal(pub ApiToken);

impl Principal {
    /// Fails with 404 (not 403) when the namespace is outside the token's scope.
    pub fn require(&self, namespace: &str, role: Role) -> Result<(), ApiError> {
        if !self.0.allows_namespace(namespace) {
            return Err(ApiError::not_found(format!(
                "namespace {namespace:?} not found"
            )));
        }
        if self.0.role < role {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "Forbidden",
                format!(
                    "this needs the {} role; the token has {}",
                    role.as_str(),
                    self.0.role.as_str()
                ),
            ));
        }
        Ok(())
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer token"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        let tokens = state
            .tokens
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let grant = tokens
            .authenticate(token)
            .ok_or_else(|| ApiError::unauthorized("unknown or revoked token"))?;
        tracing::Span::current().record(
            "token",
            tracing::field::display(format_args!("{}/{}", grant.namespace, grant.name)),
        );
        Ok(Principal(grant.clone()))
    }
}
