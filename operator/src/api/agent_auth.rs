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

pub use crate::ingest::DeviceIdentity;

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

    /// Looks the agent up in the store, bypassing the cache (credentials that the cached
    /// record does not know may have been issued by another replica).
    pub async fn refresh(
        &self,
        uid: Uuid,
        store: &Store,
    ) -> Result<Option<AgentRecord>, StoreError> {
        self.forget(uid);
        self.lookup(uid, store).await
    }

    /// Forgets an agent, e.g. after it enrolled again with new credentials.
    pub fn forget(&self, uid: Uuid) {
        self.lock().remove(&uid);
    }

    /// Forgets every agent (revocations may have been missed).
    fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (AgentRecord, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Keeps every replica's cache honest: a re-enrollment on one replica (which notifies
/// [`REVOKED_CHANNEL`](crate::store::agents::REVOKED_CHANNEL) in its transaction) revokes the
/// replaced credentials on all of them at once, not after [`CACHE_TTL`]. The cache is
/// cleared whenever listening (re)starts, since notifications may have been missed.
pub async fn follow_revocations(
    store: Store,
    cache: Arc<AgentCache>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use crate::store::agents::REVOKED_CHANNEL;
    let mut warned = false;
    loop {
        let listening = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(store.pool()).await?;
            listener.listen(REVOKED_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            _ = shutdown.changed() => return,
            listener = listening => match listener {
                Ok(listener) => listener,
                Err(e) => {
                    if !warned {
                        tracing::warn!(error = %e, "cannot listen for agent revocations; retrying");
                        warned = true;
                    }
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            },
        };
        warned = false;
        cache.clear();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                notification = listener.try_recv() => match notification {
                    Ok(Some(n)) => match n.payload().parse::<Uuid>() {
                        Ok(uid) => cache.forget(uid),
                        Err(_) => cache.clear(),
                    },
                    // The connection dropped; the next call reconnects, and notifications
                    // sent meanwhile are lost.
                    Ok(None) => cache.clear(),
                    Err(_) => break,
                },
            }
        }
    }
}

/// The serial of the request's client certificate, if it came with one (renewal requires one).
pub fn client_certificate_serial(parts: &Parts) -> Option<String> {
    let info = parts.extensions.get::<Arc<TlsInfo>>()?;
    pki::certificate_serial(info.peer_certificates.first()?)
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
        let serial = pki::certificate_serial(&leaf)
            .ok_or_else(|| ApiError::unauthorized("the client certificate cannot be read"))?;
        return authenticate_certificate(state, uid, &serial).await;
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

/// A certificate the CA signed is accepted only while it is the device's current one (or
/// the one before an unfinished renewal): a re-enrollment revokes the replaced host's.
async fn authenticate_certificate(
    state: &AppState,
    uid: Uuid,
    serial: &str,
) -> Result<DeviceIdentity, ApiError> {
    let not_enrolled = || {
        ApiError::unauthorized(format!(
            "device {uid} is not enrolled, or its Device was deleted"
        ))
    };
    let mut record = state
        .agents
        .lookup(uid, &state.store)
        .await?
        .ok_or_else(not_enrolled)?;
    let mut current = record.certificate_is_current(serial);
    if current.is_none() {
        record = state
            .agents
            .refresh(uid, &state.store)
            .await?
            .ok_or_else(not_enrolled)?;
        current = record.certificate_is_current(serial);
    }
    match current {
        None => Err(ApiError::unauthorized(format!(
            "the client certificate {serial} of device {uid} was replaced by a later enrollment; \
             it no longer authenticates"
        ))),
        Some(true) if record.previous_certificate_serial.is_some() => {
            // The renewed certificate is in use: the one before it stops working.
            state.store.forget_previous_certificate(uid).await?;
            state.agents.forget(uid);
            Ok(DeviceIdentity::from(&record))
        }
        Some(_) => Ok(DeviceIdentity::from(&record)),
    }
}
