//! Who an agent is: taken from its client certificate (mutual TLS) or a signed JWT, never
//! from a request body.
//!
//! The certificate chain was verified against the operator's CA during the TLS handshake;
//! here the device uid it names is mapped to a Device that still exists. Lookups are cached
//! for [`CACHE_TTL`], so deleting a Device revokes its agent within that time.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts},
};
use axum_server::tls::TlsInfo;
use uuid::Uuid;

use super::{ApiError, AppState};
use crate::{
    pki::{self, jwt},
    store::{Store, StoreError, agents::AgentRecord},
};

pub const CACHE_TTL: Duration = Duration::from_secs(30);

/// The authenticated device behind an agent request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceIdentity {
    pub namespace: String,
    pub name: String,
    pub uid: Uuid,
}

impl From<&AgentRecord> for DeviceIdentity {
    fn from(record: &AgentRecord) -> Self {
        Self {
            namespace: record.namespace.clone(),
            name: record.name.clone(),
            uid: record.uid,
        }
    }
}

/// Known agents by uid, refreshed from the store after [`CACHE_TTL`].
#[derive(Debug, Default)]
pub struct AgentCache {
    entries: Mutex<HashMap<Uuid, (AgentRecord, Instant)>>,
}

impl AgentCache {
    pub async fn lookup(
        &self,
        uid: Uuid,
        store: &Store,
    ) -> Result<Option<AgentRecord>, StoreError> {
        if let Some((record, at)) = self.lock().get(&uid)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(Some(record.clone()));
        }
        let record = store.agent(uid).await?;
        let mut entries = self.lock();
        match &record {
            Some(record) => {
                entries.insert(uid, (record.clone(), Instant::now()));
            }
            None => {
                entries.remove(&uid);
            }
        }
        Ok(record)
    }

    /// Forgets an agent, e.g. after it enrolled again with new credentials.
    pub fn forget(&self, uid: Uuid) {
        self.lock().remove(&uid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (AgentRecord, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether the request came with a client certificate (renewal requires one).
pub fn has_client_certificate(parts: &Parts) -> bool {
    parts
        .extensions
        .get::<Arc<TlsInfo>>()
        .is_some_and(|info| !info.peer_certificates.is_empty())
}

impl FromRequestParts<AppState> for DeviceIdentity {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(identity) = parts.extensions.get::<DeviceIdentity>() {
            return Ok(identity.clone());
        }
        let identity = authenticate(parts, state).await?;
        tracing::Span::current().record(
            "device",
            tracing::field::display(format!("{}/{}", identity.namespace, identity.name)),
        );
        parts.extensions.insert(identity.clone());
        Ok(identity)
    }
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<DeviceIdentity, ApiError> {
    if let Some(leaf) = parts
        .extensions
        .get::<Arc<TlsInfo>>()
        .and_then(|info| info.peer_certificates.first().cloned())
    {
        let uid = pki::device_uid_from_certificate(&leaf).ok_or_else(|| {
            ApiError::unauthorized("the client certificate names no cdot-rmm device")
        })?;
        let record = state.agents.lookup(uid, &state.store).await?;
        return record.as_ref().map(DeviceIdentity::from).ok_or_else(|| {
            ApiError::unauthorized(format!(
                "device {uid} is not enrolled, or its Device was deleted"
            ))
        });
    }
    let token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::unauthorized("agent routes need a client certificate or a signed JWT")
        })?;
    let uid = jwt::unverified_subject(token)
        .map_err(|e| ApiError::unauthorized(format!("invalid agent JWT: {e}")))?;
    let record = state
        .agents
        .lookup(uid, &state.store)
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized(format!(
                "device {uid} is not enrolled, or its Device was deleted"
            ))
        })?;
    let key = record.jwt_public_key.as_deref().ok_or_else(|| {
        ApiError::unauthorized(format!(
            "device {uid} enrolled for mutual TLS; JWTs are not accepted for it"
        ))
    })?;
    jwt::verify(token, key, jiff::Timestamp::now().as_second())
        .map_err(|e| ApiError::unauthorized(format!("invalid agent JWT: {e}")))?;
    Ok(DeviceIdentity::from(&record))
}
