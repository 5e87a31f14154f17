//! Bearer tokens for people and the console, scoped to namespaces with a role.
//!
//! Tokens are looked up by their SHA-256, so the plaintext is never stored. A token that
//! may not see a namespace gets 404 for everything in it, exactly as if the namespace did
//! not exist, so that names of other tenants' objects do not leak.
use std::collections::{HashMap, HashSet};

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts},
};
use cdot_crds::api_token::{ApiToken, Role, hash_token};

use super::{ApiError, AppState};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `namespace/name` of the Secret that defines the token, for audit logs.
    pub token: String,
    pub role: Role,
    pub namespaces: HashSet<String>,
}

#[derive(Debug, Default)]
pub struct TokenIndex {
    by_hash: HashMap<[u8; 32], Grant>,
}

impl TokenIndex {
    pub fn new(tokens: &[ApiToken]) -> Self {
        let by_hash = tokens
            .iter()
            .map(|t| {
                let grant = Grant {
                    token: format!("{}/{}", t.namespace, t.name),
                    role: t.role,
                    namespaces: t.namespaces.iter().cloned().collect(),
                };
                (t.token_sha256, grant)
            })
            .collect();
        Self { by_hash }
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    pub fn authenticate(&self, token: &str) -> Option<&Grant> {
        self.by_hash.get(&hash_token(token))
    }
}

/// The caller of a `/v1` route, established from the `Authorization: Bearer` header.
#[derive(Debug, Clone)]
pub struct Principal(pub Grant);

impl Principal {
    /// Fails with 404 (not 403) when the namespace is outside the token's scope.
    pub fn require(&self, namespace: &str, role: Role) -> Result<(), ApiError> {
        if !self.0.namespaces.contains(namespace) && !self.0.namespaces.contains("*") {
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
        tracing::Span::current().record("token", grant.token.as_str());
        Ok(Principal(grant.clone()))
    }
}
