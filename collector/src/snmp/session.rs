//! One SNMP agent over `snmp2`'s async session, with what the crate leaves out: a timeout
//! and retries on every request, v3 engine rediscovery, responses copied out of the
//! session's receive buffer into owned values, and (for discovery) a shared packet rate.
use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use cdot_crds::{
    device::SnmpVersion,
    wire::collector::{SnmpAuthProtocol, SnmpCredentials, SnmpPrivProtocol, SnmpTarget},
};
use prometheus_client::metrics::counter::Counter;
use snmp2::{AsyncSession, Oid, Pdu, Value, v3};
use tokio::time::timeout;

use super::{
    error::{Agent, SnmpError},
    oids::dotted,
};
use crate::pace::Pacer;

/// Shortest request timeout, whatever the target says.
const MIN_TIMEOUT: Duration = Duration::from_millis(50);
/// `AuthUpdated` (the v3 engine's boots/time moved) asks for a resend; more than this in
/// one request means the agent is not converging.
const MAX_AUTH_UPDATES: u32 = 2;

/// An SNMP value copied out of a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnmpValue {
    Integer(i64),
    OctetString(Vec<u8>),
    Counter32(u32),
    /// Gauge32 and Unsigned32 (the same tag on the wire).
    Unsigned32(u32),
    Timeticks(u32),
    Counter64(u64),
    /// An OBJECT IDENTIFIER's arcs (sysObjectID).
    ObjectIdentifier(Vec<u64>),
    EndOfMibView,
    NoSuchObject,
    NoSuchInstance,
    /// Any other type, by name; the IF-MIB objects polled never have one.
    Other(&'static str),
}

impl SnmpValue {
    /// The value as an unsigned number, for counters and gauges of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::Counter32(v) | Self::Unsigned32(v) | Self::Timeticks(v) => Some(u64::from(v)),
            Self::Counter64(v) => Some(v),
            Self::Integer(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as text (an OCTET STRING, lossy UTF-8, trailing NULs some agents add cut).
    pub fn as_text(&self) -> Option<String> {
        match self {
            Self::OctetString(bytes) => Some(
                String::from_utf8_lossy(bytes)
                    .trim_end_matches('\0')
                    .to_owned(),
            ),
            _ => None,
        }
    }

    /// Type name for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Integer(_) => "INTEGER",
            Self::OctetString(_) => "OCTET STRING",
            Self::Counter32(_) => "Counter32",
            Self::Unsigned32(_) => "Gauge32",
            Self::Timeticks(_) => "TimeTicks",
            Self::Counter64(_) => "Counter64",
            Self::ObjectIdentifier(_) => "OBJECT IDENTIFIER",
            Self::EndOfMibView => "endOfMibView",
            Self::NoSuchObject => "noSuchObject",
            Self::NoSuchInstance => "noSuchInstance",
            Self::Other(name) => name,
        }
    }

    fn from_wire(value: &Value<'_>) -> Self {
        match value {
            Value::Integer(v) => Self::Integer(*v),
            Value::OctetString(bytes) => Self::OctetString(bytes.to_vec()),
            Value::Counter32(v) => Self::Counter32(*v),
            Value::Unsigned32(v) => Self::Unsigned32(*v),
            Value::Timeticks(v) => Self::Timeticks(*v),
            Value::Counter64(v) => Self::Counter64(*v),
            Value::ObjectIdentifier(oid) => Self::ObjectIdentifier(arcs(oid)),
            Value::EndOfMibView => Self::EndOfMibView,
            Value::NoSuchObject => Self::NoSuchObject,
            Value::NoSuchInstance => Self::NoSuchInstance,
            Value::Boolean(_) => Self::Other("BOOLEAN"),
            Value::Null => Self::Other("NULL"),
            Value::IpAddress(_) => Self::Other("IpAddress"),
            Value::Opaque(_) => Self::Other("Opaque"),
            _ => Self::Other("constructed"),
        }
    }
}

/// An OID's arcs; empty for an OID with an arc beyond 64 bits (no real agent sends one).
fn arcs(oid: &Oid<'_>) -> Vec<u64> {
    oid.iter()
        .map(|arcs| arcs.collect::<Vec<u64>>())
        .unwrap_or_default()
}

/// One variable binding of a response. An OID with an arc beyond 64 bits comes out empty,
/// which is outside every table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Varbind {
    pub oid: Vec<u64>,
    pub value: SnmpValue,
}

/// A response PDU, copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// 0 noError, 1 tooBig, 2 noSuchName (v1 end of MIB), ...
    pub error_status: u32,
    /// 1-based varbind the error is about.
    pub error_index: u32,
    pub varbinds: Vec<Varbind>,
}

impl Response {
    fn from_pdu(pdu: Pdu<'_>) -> Self {
        let varbinds = pdu
            .varbinds
            .map(|(oid, value)| Varbind {
                oid: arcs(&oid),
                value: SnmpValue::from_wire(&value),
            })
            .collect();
        Self {
            error_status: pdu.error_status,
            error_index: pdu.error_index,
            varbinds,
        }
    }
}

/// The request types this collector sends.
#[derive(Clone, Copy, Debug)]
pub enum Request<'a> {
    Get(&'a [&'a [u64]]),
    /// One OID: `snmp2` sends GETNEXT for a single varbind only.
    GetNext(&'a [u64]),
    GetBulk {
        oids: &'a [&'a [u64]],
        max_repetitions: u32,
    },
}

impl Request<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Get(_) => "GET",
            Self::GetNext(_) => "GETNEXT",
            Self::GetBulk { .. } => "GETBULK",
        }
    }

    /// The first OID, for messages.
    pub fn first_oid(&self) -> String {
        match self {
            Self::Get(oids) | Self::GetBulk { oids, .. } => {
                oids.first().map(|o| dotted(o)).unwrap_or_default()
            }
            Self::GetNext(oid) => dotted(oid),
        }
    }
}

/// How the session authenticates, checked against the version when it is made.
enum Security {
    V1(Vec<u8>),
    V2c(Vec<u8>),
    V3(Box<v3::Security>),
}

/// How a session authenticates and waits: what a session needs of an [`SnmpTarget`] (or of
/// a discovery run's credential).
#[derive(Clone, Copy, Debug)]
pub struct SessionConfig<'a> {
    pub version: SnmpVersion,
    pub credentials: &'a SnmpCredentials,
    /// Per attempt.
    pub timeout: Duration,
    /// Attempts after the first, after a timeout or an unreadable answer.
    pub retries: u8,
}

impl<'a> SessionConfig<'a> {
    pub fn of(target: &'a SnmpTarget) -> Self {
        Self {
            version: target.version,
            credentials: &target.credentials,
            timeout: Duration::from_millis(target.timeout_ms),
            retries: target.retries,
        }
    }
}

/// A session to one agent; reconnects (and rediscovers a v3 engine) after a failure.
pub struct Session {
    agent: Arc<Agent>,
    security: Security,
    timeout: Duration,
    retries: u8,
    inner: Option<AsyncSession>,
    timeouts: Counter,
    pacer: Option<Arc<Pacer>>,
}

impl Session {
    /// A session for `target`; nothing is sent before the first request. `timeouts`
    /// counts requests that were not answered in time (each attempt).
    pub fn new(
        target: &SnmpTarget,
        agent: Arc<Agent>,
        timeouts: Counter,
    ) -> Result<Self, SnmpError> {
        Self::with_config(SessionConfig::of(target), agent, timeouts)
    }

    /// A session as `config` says; see [`Session::new`].
    pub fn with_config(
        config: SessionConfig<'_>,
        agent: Arc<Agent>,
        timeouts: Counter,
    ) -> Result<Self, SnmpError> {
        let mismatch = |version, expected| SnmpError::CredentialsMismatch {
            agent: agent.clone(),
            version,
            expected,
        };
        let security = match (config.version, config.credentials) {
            (SnmpVersion::V1, SnmpCredentials::Community { community }) => {
                Security::V1(community.as_bytes().to_vec())
            }
            (SnmpVersion::V2c, SnmpCredentials::Community { community }) => {
                Security::V2c(community.as_bytes().to_vec())
            }
            (SnmpVersion::V3, credentials @ SnmpCredentials::Usm { .. }) => {
                let security = usm_security(credentials).ok_or_else(|| {
                    mismatch("v3", "a privacy password with the privacy protocol")
                })?;
                Security::V3(Box::new(security))
            }
            (SnmpVersion::V1, _) => return Err(mismatch("v1", "community")),
            (SnmpVersion::V2c, _) => return Err(mismatch("v2c", "community")),
            (SnmpVersion::V3, _) => return Err(mismatch("v3", "user (USM)")),
        };
        Ok(Self {
            agent,
            security,
            timeout: config.timeout.max(MIN_TIMEOUT),
            retries: config.retries,
            inner: None,
            timeouts,
            pacer: None,
        })
    }

    /// Every packet this session sends (requests, retries, v3 engine discovery) waits for
    /// a slot of `pacer` first.
    pub(crate) fn paced(mut self, pacer: Arc<Pacer>) -> Self {
        self.pacer = Some(pacer);
        self
    }

    /// Whether GETBULK is available (v2c and v3).
    pub fn has_bulk(&self) -> bool {
        !matches!(self.security, Security::V1(_))
    }

    pub fn agent(&self) -> &Arc<Agent> {
        &self.agent
    }

    /// Sends `request`, waiting at most the target's timeout for each of 1 + retries
    /// attempts. After a timeout or an error the session is dropped and the next attempt
    /// opens a new one (a new socket): a late answer to the abandoned request would
    /// otherwise be read as the answer to the next one and refused.
    pub async fn request(&mut self, request: Request<'_>) -> Result<Response, SnmpError> {
        let oids = self.wire_oids(&request)?;
        let refs: Vec<&Oid<'static>> = oids.iter().collect();
        let mut last_error = None;
        let mut auth_updates = 0;
        let mut attempt = 0;
        while attempt <= u32::from(self.retries) {
            let mut session = match self.inner.take() {
                Some(session) => session,
                None => {
                    if matches!(self.security, Security::V3(_)) {
                        // Engine discovery is a packet of its own.
                        self.pace().await;
                    }
                    match timeout(self.timeout, self.connect()).await {
                        Ok(Ok(session)) => session,
                        Ok(Err(error)) => return Err(error),
                        Err(_) => {
                            self.timeouts.inc();
                            attempt += 1;
                            last_error = Some(self.timeout_error(&request, attempt));
                            continue;
                        }
                    }
                }
            };
            self.pace().await;
            match timeout(self.timeout, execute(&mut session, &request, &refs)).await {
                Ok(Ok(response)) => {
                    self.inner = Some(session);
                    return Ok(response);
                }
                Ok(Err(snmp2::Error::AuthUpdated)) if auth_updates < MAX_AUTH_UPDATES => {
                    // The agent told us its engine's new boots/time: resend at once.
                    auth_updates += 1;
                    self.inner = Some(session);
                    continue;
                }
                Ok(Err(source)) => {
                    last_error = Some(SnmpError::Protocol {
                        agent: self.agent.clone(),
                        request: request.name(),
                        oid: request.first_oid(),
                        source,
                    });
                }
                Err(_) => {
                    self.timeouts.inc();
                    last_error = Some(self.timeout_error(&request, attempt + 1));
                }
            }
            attempt += 1;
        }
        Err(last_error.unwrap_or_else(|| self.timeout_error(&request, attempt)))
    }

    async fn pace(&self) {
        if let Some(pacer) = &self.pacer {
            pacer.wait().await;
        }
    }

    fn timeout_error(&self, request: &Request<'_>, attempts: u32) -> SnmpError {
        SnmpError::Timeout {
            agent: self.agent.clone(),
            request: request.name(),
            oid: request.first_oid(),
            timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            attempts,
        }
    }

    fn wire_oids(&self, request: &Request<'_>) -> Result<Vec<Oid<'static>>, SnmpError> {
        let list: Vec<&[u64]> = match request {
            Request::Get(oids) | Request::GetBulk { oids, .. } => oids.to_vec(),
            Request::GetNext(oid) => vec![oid],
        };
        list.into_iter()
            .map(|oid| {
                Oid::from(oid).map_err(|e| SnmpError::Session {
                    agent: self.agent.clone(),
                    message: format!("OID {} cannot be encoded: {e:?}", dotted(oid)),
                })
            })
            .collect()
    }

    async fn resolve(&self) -> Result<SocketAddr, SnmpError> {
        let agent = &self.agent;
        let mut addrs = tokio::net::lookup_host((agent.address.as_str(), agent.port))
            .await
            .map_err(|source| SnmpError::Resolve {
                agent: agent.clone(),
                source,
            })?;
        addrs.next().ok_or_else(|| SnmpError::NoAddress {
            agent: agent.clone(),
        })
    }

    async fn connect(&self) -> Result<AsyncSession, SnmpError> {
        let addr = self.resolve().await?;
        let session_error = |e: &dyn std::fmt::Display| SnmpError::Session {
            agent: self.agent.clone(),
            message: e.to_string(),
        };
        let request_id = first_request_id();
        match &self.security {
            Security::V1(community) => AsyncSession::new_v1(addr, community, request_id)
                .await
                .map_err(|e| session_error(&e)),
            Security::V2c(community) => AsyncSession::new_v2c(addr, community, request_id)
                .await
                .map_err(|e| session_error(&e)),
            Security::V3(security) => {
                let security = v3::Security::clone(security);
                let mut session = AsyncSession::new_v3(addr, request_id, security)
                    .await
                    .map_err(|e| session_error(&e))?;
                // Engine discovery: learns the agent's engine id, boots and time.
                session
                    .init()
                    .await
                    .map_err(|source| SnmpError::EngineDiscovery {
                        agent: self.agent.clone(),
                        source,
                    })?;
                Ok(session)
            }
        }
    }
}

/// v3 security parameters from USM credentials; `None` for a privacy protocol without
/// a password.
fn usm_security(credentials: &SnmpCredentials) -> Option<v3::Security> {
    let SnmpCredentials::Usm {
        username,
        auth_protocol,
        auth_password,
        priv_protocol,
        priv_password,
    } = credentials
    else {
        return None;
    };
    let auth_protocol = match auth_protocol {
        SnmpAuthProtocol::Sha1 => v3::AuthProtocol::Sha1,
        SnmpAuthProtocol::Sha256 => v3::AuthProtocol::Sha256,
        SnmpAuthProtocol::Sha512 => v3::AuthProtocol::Sha512,
    };
    let security = v3::Security::new(username.as_bytes(), auth_password.as_bytes())
        .with_auth_protocol(auth_protocol);
    let Some(priv_protocol) = priv_protocol else {
        return Some(security.with_auth(v3::Auth::AuthNoPriv));
    };
    let cipher = match priv_protocol {
        SnmpPrivProtocol::Aes128 => v3::Cipher::Aes128,
        SnmpPrivProtocol::Aes256 => v3::Cipher::Aes256,
    };
    let security = security.with_auth(v3::Auth::AuthPriv {
        cipher,
        privacy_password: priv_password.as_ref()?.as_bytes().to_vec(),
    });
    Some(if cipher.priv_key_needs_extension(&auth_protocol) {
        // AES-256 with SHA-1: the key is stretched the way net-snmp's "AES-256" does
        // (draft-blumenthal-aes-usm); Cisco's "AES-256C" variant is Reeder's.
        security.with_key_extension_method(v3::KeyExtension::Blumenthal)
    } else {
        security
    })
}

async fn execute(
    session: &mut AsyncSession,
    request: &Request<'_>,
    oids: &[&Oid<'_>],
) -> Result<Response, snmp2::Error> {
    let pdu = match request {
        Request::Get(_) => session.get_many(oids).await?,
        Request::GetNext(_) => match oids.first() {
            Some(oid) => session.getnext(oid).await?,
            None => return Err(snmp2::Error::ValueOutOfRange),
        },
        Request::GetBulk {
            max_repetitions, ..
        } => session.getbulk(oids, 0, *max_repetitions).await?,
    };
    Ok(Response::from_pdu(pdu))
}

/// Request ids start somewhere different for every session, so that a reply meant for an
/// earlier session that reached this port is refused.
fn first_request_id() -> i32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    i32::try_from(nanos & 0x3fff_ffff).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(version: SnmpVersion, credentials: SnmpCredentials) -> SnmpTarget {
        SnmpTarget {
            device: "sw1".into(),
            address: "192.0.2.1".into(),
            port: 161,
            version,
            credentials,
            poll_interval_secs: 60,
            timeout_ms: 1_000,
            retries: 1,
            interfaces: Vec::new(),
        }
    }

    fn agent() -> Arc<Agent> {
        Arc::new(Agent {
            name: "device sw1".into(),
            address: "192.0.2.1".into(),
            port: 161,
        })
    }

    fn usm(priv_password: Option<&str>) -> SnmpCredentials {
        SnmpCredentials::Usm {
            username: "monitor".into(),
            auth_protocol: SnmpAuthProtocol::Sha256,
            auth_password: "auth-s3cret".into(),
            priv_protocol: Some(SnmpPrivProtocol::Aes256),
            priv_password: priv_password.map(Into::into),
        }
    }

    #[test]
    fn credentials_must_fit_the_version_and_errors_never_show_them() {
        let community = SnmpCredentials::Community {
            community: "c0mmunity-s3cret".into(),
        };
        let refused = [
            target(SnmpVersion::V3, community.clone()),
            target(SnmpVersion::V2c, usm(Some("priv-s3cret"))),
            target(SnmpVersion::V1, usm(Some("priv-s3cret"))),
            target(SnmpVersion::V3, usm(None)),
        ];
        for target in refused {
            let Err(error) = Session::new(&target, agent(), Counter::default()) else {
                panic!("{target:?} accepted");
            };
            assert!(matches!(error, SnmpError::CredentialsMismatch { .. }));
            let shown = format!("{error} {error:?}");
            assert!(
                shown.contains("sw1") && !shown.contains("s3cret"),
                "{shown}"
            );
        }
        for (version, credentials) in [
            (SnmpVersion::V1, community.clone()),
            (SnmpVersion::V2c, community),
            (SnmpVersion::V3, usm(Some("priv-s3cret"))),
        ] {
            let session = Session::new(&target(version, credentials), agent(), Counter::default())
                .expect("accepted");
            assert_eq!(session.has_bulk(), version != SnmpVersion::V1);
        }
    }

    #[test]
    fn values_as_numbers_and_text() {
        assert_eq!(SnmpValue::Counter64(u64::MAX).as_u64(), Some(u64::MAX));
        assert_eq!(SnmpValue::Counter32(7).as_u64(), Some(7));
        assert_eq!(SnmpValue::Unsigned32(1000).as_u64(), Some(1000));
        assert_eq!(SnmpValue::Integer(-1).as_u64(), None);
        assert_eq!(SnmpValue::OctetString(b"1".to_vec()).as_u64(), None);
        assert_eq!(
            SnmpValue::OctetString(b"eth0\0".to_vec())
                .as_text()
                .as_deref(),
            Some("eth0")
        );
        assert_eq!(
            SnmpValue::OctetString(vec![0xff, b'a'])
                .as_text()
                .as_deref(),
            Some("\u{fffd}a")
        );
        assert_eq!(SnmpValue::Integer(1).as_text(), None);
    }
}
