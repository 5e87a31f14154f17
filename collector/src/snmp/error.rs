//! Errors of SNMP polling and discovery. Each names the agent and what it was asked for (a
//! device, a scan) and, for a request, the OID; none carries a credential.
use std::{fmt, sync::Arc};

/// The agent a request went to, as configured: `device sw1 (address port N)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agent {
    /// What the agent is asked for: `device sw1`, `scan lan`.
    pub name: String,
    pub address: String,
    pub port: u16,
}

impl fmt::Display for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} port {})", self.name, self.address, self.port)
    }
}

/// Why a poll of one device failed. (The agent is shared: errors stay small.)
#[derive(Debug, thiserror::Error)]
pub enum SnmpError {
    #[error("{agent}: interface filter {pattern:?} is not a valid regular expression: {source}")]
    InvalidFilter {
        agent: Arc<Agent>,
        pattern: String,
        #[source]
        source: Box<regex::Error>,
    },
    #[error("{agent}: SNMP {version} needs {expected} credentials")]
    CredentialsMismatch {
        agent: Arc<Agent>,
        version: &'static str,
        expected: &'static str,
    },
    #[error("{agent}: cannot resolve the agent's address: {source}")]
    Resolve {
        agent: Arc<Agent>,
        #[source]
        source: std::io::Error,
    },
    #[error("{agent}: the agent's address resolves to nothing")]
    NoAddress { agent: Arc<Agent> },
    #[error("{agent}: cannot open an SNMP session: {message}")]
    Session { agent: Arc<Agent>, message: String },
    #[error("{agent}: SNMPv3 engine discovery failed: {source}")]
    EngineDiscovery {
        agent: Arc<Agent>,
        #[source]
        source: snmp2::Error,
    },
    #[error(
        "{agent}: {request} of {oid} not answered within {timeout_ms} ms ({attempts} attempts)"
    )]
    Timeout {
        agent: Arc<Agent>,
        request: &'static str,
        oid: String,
        timeout_ms: u64,
        attempts: u32,
    },
    #[error("{agent}: {request} of {oid} failed: {source}")]
    Protocol {
        agent: Arc<Agent>,
        request: &'static str,
        oid: String,
        #[source]
        source: snmp2::Error,
    },
    #[error("{agent}: {request} of {oid} answered with error status {status} at varbind {index}")]
    ErrorStatus {
        agent: Arc<Agent>,
        request: &'static str,
        oid: String,
        status: u32,
        index: u32,
    },
    #[error("{agent}: {oid} is {found}, expected {expected}")]
    UnexpectedValue {
        agent: Arc<Agent>,
        oid: String,
        expected: &'static str,
        found: String,
    },
    #[error("{agent}: {request} of {oid} got an empty response")]
    EmptyResponse {
        agent: Arc<Agent>,
        request: &'static str,
        oid: String,
    },
    #[error(
        "{agent}: walking {column} the agent returned {oid} after {previous} (OIDs must increase)"
    )]
    NotIncreasing {
        agent: Arc<Agent>,
        column: String,
        oid: String,
        previous: String,
    },
    #[error("{agent}: walking {column} passed {limit} rows")]
    TooManyRows {
        agent: Arc<Agent>,
        column: String,
        limit: usize,
    },
}

impl SnmpError {
    /// Short label for metrics: never a device name, address or credential.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidFilter { .. } => "invalid_filter",
            Self::CredentialsMismatch { .. } => "credentials_mismatch",
            Self::Resolve { .. } | Self::NoAddress { .. } => "resolve",
            Self::Session { .. } => "session",
            Self::EngineDiscovery { .. } => "engine_discovery",
            Self::Timeout { .. } => "timeout",
            Self::Protocol { .. } => "protocol",
            Self::ErrorStatus { .. } => "error_status",
            Self::UnexpectedValue { .. } => "unexpected_value",
            Self::EmptyResponse { .. } => "empty_response",
            Self::NotIncreasing { .. } => "not_increasing",
            Self::TooManyRows { .. } => "too_many_rows",
        }
    }
}
