//! SNMP identification of one address: the run's credentials are tried in order, and the
//! first that gets an answer to a GET of the system group wins; its session then reads
//! the optional tables ([`super::tables`]).
//!
//! Each credential that fails is one failure of the address, by reason:
//! `timeout` (no answer after the retries), `authentication` (a v3 report: unknown user,
//! wrong digest, decryption error), `malformed` (an answer that is not valid SNMP),
//! `unreachable` (ICMP port or host unreachable) and `error` (anything else).
use std::{net::IpAddr, sync::Arc, time::Duration};

use cdot_crds::wire::discovery::{ScanCredential, ScanSnmp, SnmpFacts};
use prometheus_client::metrics::counter::Counter;
use tracing::debug;

use super::{
    oids, tables,
    values::{number, object_id, text},
};
use crate::{
    pace::Pacer,
    snmp::{
        Agent, SnmpError,
        oids::dotted,
        session::{Request, Session, SessionConfig},
    },
};

pub(super) const TIMEOUT: &str = "timeout";
pub(super) const AUTHENTICATION: &str = "authentication";
pub(super) const MALFORMED: &str = "malformed";
pub(super) const UNREACHABLE: &str = "unreachable";
pub(super) const ERROR: &str = "error";

/// The system group, asked for in one GET.
const SYSTEM: [&[u64]; 5] = [
    oids::SYS_DESCR,
    oids::SYS_OBJECT_ID,
    oids::SYS_UPTIME,
    oids::SYS_NAME,
    oids::SYS_LOCATION,
];

/// What one address said over SNMP.
#[derive(Debug, Default)]
pub(super) struct Identified {
    /// The facts read with the credential that answered.
    pub facts: Option<SnmpFacts>,
    /// Why each credential tried before it (or every credential) failed.
    pub failures: Vec<&'static str>,
    /// Optional tables that could not be read.
    pub tables_failed: u32,
}

/// The SNMP side of a run.
pub(super) struct Identifier {
    /// `scan NAME`, for messages.
    name: String,
    snmp: ScanSnmp,
    timeout: Duration,
    retries: u8,
    pacer: Arc<Pacer>,
}

impl Identifier {
    pub(super) fn new(
        scan: &str,
        snmp: ScanSnmp,
        timeout: Duration,
        retries: u8,
        pacer: Arc<Pacer>,
    ) -> Self {
        Self {
            name: format!("scan {scan}"),
            snmp,
            timeout,
            retries,
            pacer,
        }
    }

    /// Whether addresses that did not answer ICMP are asked too.
    pub(super) fn silent_hosts(&self) -> bool {
        self.snmp.silent_hosts
    }

    /// Tries the credentials on `address` in order until one answers.
    pub(super) async fn identify(&self, address: IpAddr) -> Identified {
        let mut identified = Identified::default();
        for credential in &self.snmp.credentials {
            let result = match self.session(address, credential) {
                Ok(mut session) => match system(&mut session, credential.index).await {
                    Ok(mut facts) => {
                        identified.tables_failed = tables::read(&mut session, &mut facts).await;
                        identified.facts = Some(facts);
                        return identified;
                    }
                    Err(error) => error,
                },
                Err(error) => error,
            };
            debug!(%address, credential = credential.index, error = %result, "credential failed");
            identified.failures.push(reason(&result));
        }
        identified
    }

    fn session(&self, address: IpAddr, credential: &ScanCredential) -> Result<Session, SnmpError> {
        let agent = Arc::new(Agent {
            name: self.name.clone(),
            address: address.to_string(),
            port: self.snmp.port,
        });
        let config = SessionConfig {
            version: credential.version,
            credentials: &credential.credentials,
            timeout: self.timeout,
            retries: self.retries,
        };
        // Timeouts are counted per address and credential by the run, not per attempt.
        let session = Session::with_config(config, agent, Counter::default())?;
        Ok(session.paced(self.pacer.clone()))
    }
}

/// The system group; an answer of any kind but an error status means the credential works.
async fn system(session: &mut Session, credential: u8) -> Result<SnmpFacts, SnmpError> {
    let request = Request::Get(&SYSTEM);
    let response = session.request(request).await?;
    if response.error_status != 0 {
        return Err(SnmpError::ErrorStatus {
            agent: session.agent().clone(),
            request: request.name(),
            oid: dotted(oids::SYS_DESCR),
            status: response.error_status,
            index: response.error_index,
        });
    }
    let value = |oid: &[u64]| {
        response
            .varbinds
            .iter()
            .find(|vb| vb.oid == oid)
            .map(|vb| &vb.value)
    };
    Ok(SnmpFacts {
        credential,
        sys_name: text(value(oids::SYS_NAME)),
        sys_descr: text(value(oids::SYS_DESCR)),
        sys_object_id: object_id(value(oids::SYS_OBJECT_ID)),
        sys_uptime: number(value(oids::SYS_UPTIME)).unwrap_or(0),
        sys_location: text(value(oids::SYS_LOCATION)),
        ..SnmpFacts::default()
    })
}

/// The failure reason of a credential (a label of `ScanCounts::errors`).
pub(super) fn reason(error: &SnmpError) -> &'static str {
    match error {
        SnmpError::Timeout { .. } => TIMEOUT,
        SnmpError::Protocol { source, .. } | SnmpError::EngineDiscovery { source, .. } => {
            protocol_reason(source)
        }
        _ => ERROR,
    }
}

fn protocol_reason(error: &snmp2::Error) -> &'static str {
    use snmp2::Error as E;
    match error {
        E::AuthFailure(_) | E::Crypto(_) => AUTHENTICATION,
        // A connected UDP socket reports ICMP port and host unreachable on receive.
        E::Send | E::Receive => UNREACHABLE,
        E::AsnParse
        | E::AsnInvalidLen
        | E::AsnWrongType
        | E::AsnUnsupportedType
        | E::AsnEof
        | E::AsnIntOverflow
        | E::UnsupportedVersion
        | E::RequestIdMismatch
        | E::CommunityMismatch
        | E::ValueOutOfRange
        | E::BufferOverflow => MALFORMED,
        _ => ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> Arc<Agent> {
        Arc::new(Agent {
            name: "scan lan".into(),
            address: "192.0.2.1".into(),
            port: 161,
        })
    }

    fn protocol(source: snmp2::Error) -> SnmpError {
        SnmpError::Protocol {
            agent: agent(),
            request: "GET",
            oid: "1.3.6.1.2.1.1.1.0".into(),
            source,
        }
    }

    #[test]
    fn failures_map_to_the_reasons_of_a_report() {
        let timeout = SnmpError::Timeout {
            agent: agent(),
            request: "GET",
            oid: String::new(),
            timeout_ms: 1_000,
            attempts: 2,
        };
        assert_eq!(reason(&timeout), TIMEOUT);
        let wrong_user = snmp2::Error::AuthFailure(snmp2::v3::AuthErrorKind::NotAuthenticated);
        assert_eq!(reason(&protocol(wrong_user)), AUTHENTICATION);
        assert_eq!(reason(&protocol(snmp2::Error::AsnParse)), MALFORMED);
        assert_eq!(reason(&protocol(snmp2::Error::Receive)), UNREACHABLE);
        let discovery = SnmpError::EngineDiscovery {
            agent: agent(),
            source: snmp2::Error::AsnWrongType,
        };
        assert_eq!(reason(&discovery), MALFORMED);
        let session = SnmpError::Session {
            agent: agent(),
            message: "no socket".into(),
        };
        assert_eq!(reason(&session), ERROR);
    }
}
