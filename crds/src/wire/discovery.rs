//! Discovery over the collector channel: the scan runs a collector is assigned
//! ([`CollectorAssignments::scans`]) and what it reports about them
//! ([`CollectorBatch::scans`], spooled like every other batch, so a report is never lost
//! while the operator is away).
//!
//! A run is identified by the operator's `run` id. The collector sweeps the targets with
//! ICMP, asks every responder (and, with `silentHosts`, every other address) over SNMP with
//! the credentials in order, and reports progress and the hosts it found every few
//! seconds; the operator matches hosts to Devices and registers them.
//!
//! [`CollectorAssignments::scans`]: super::collector::CollectorAssignments::scans
//! [`CollectorBatch::scans`]: super::collector::CollectorBatch::scans
use std::{collections::BTreeMap, net::IpAddr};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::collector::SnmpCredentials;
use crate::device::SnmpVersion;

/// Most hosts one report carries; a collector with more sends several reports.
pub const MAX_HOSTS_PER_REPORT: usize = 1_000;
/// Most interfaces, addresses or LLDP neighbours kept of one host.
pub const MAX_TABLE_ROWS: usize = 4_096;
/// Longest text kept of one SNMP value (sysDescr, names, ids); longer values are cut.
pub const MAX_TEXT_LEN: usize = 1_024;

/// One run of a DiscoveryScan, handed to the collector that runs it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScanAssignment {
    /// The run, chosen by the operator; every report names it.
    pub run: Uuid,
    /// DiscoveryScan name (in the collector's namespace).
    pub scan: String,
    /// Addresses and CIDRs to probe.
    pub targets: Vec<String>,
    /// Addresses and CIDRs inside the targets never probed.
    #[serde(default)]
    pub excludes: Vec<String>,
    /// ICMP echo sweep.
    pub icmp: bool,
    /// SNMP probing; `None` when the scan does not use SNMP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snmp: Option<ScanSnmp>,
    /// Probe packets per second across the whole run (ICMP echoes and SNMP requests).
    pub rate_limit: u32,
    /// Addresses probed at the same time.
    pub concurrency: u32,
    /// Timeout of one probe.
    pub timeout_ms: u64,
    /// Retries after a timeout.
    pub retries: u8,
}

impl std::fmt::Debug for ScanAssignment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanAssignment")
            .field("run", &self.run)
            .field("scan", &self.scan)
            .field("targets", &self.targets)
            .field("excludes", &self.excludes)
            .field("icmp", &self.icmp)
            .field("snmp", &self.snmp)
            .field("rate_limit", &self.rate_limit)
            .finish_non_exhaustive()
    }
}

/// SNMP settings of a run. `Debug` shows no secret (see [`SnmpCredentials`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScanSnmp {
    /// UDP port.
    pub port: u16,
    /// Credential sets, tried in order; the first that answers is reported.
    pub credentials: Vec<ScanCredential>,
    /// Also probe addresses that did not answer ICMP (hosts that filter echo requests).
    #[serde(default)]
    pub silent_hosts: bool,
}

/// One credential set of a run, resolved from its Secret by the operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScanCredential {
    /// Position in the scan's `spec.methods.snmp.credentials`.
    pub index: u8,
    pub version: SnmpVersion,
    pub credentials: SnmpCredentials,
}

/// Where a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScanState {
    /// Probing; more reports follow.
    Running,
    /// Every address was probed; the last report of the run.
    Succeeded,
    /// The run stopped early (`error` says why); the last report of the run.
    Failed,
}

/// Progress of a run and the hosts found since the previous report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScanReport {
    pub run: Uuid,
    /// DiscoveryScan name.
    pub scan: String,
    /// When this collector process started the run, Unix ms: a new value for the same run
    /// says the collector restarted it (from the first address).
    pub started_ms: i64,
    /// Time of the report, Unix ms.
    pub t: i64,
    pub state: ScanState,
    /// Why the run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Addresses the run covers (IPv4 network and broadcast addresses of subnets shorter
    /// than /31 left out, as `fping -g` does).
    pub total: u64,
    /// Addresses done so far (answered, or given up on after the retries).
    pub scanned: u64,
    /// Counts since the run started (not since the previous report).
    #[serde(default)]
    pub counts: ScanCounts,
    /// Hosts found since the previous report, each complete (ICMP and SNMP done).
    #[serde(default)]
    pub hosts: Vec<FoundHost>,
}

/// What each method did in a run so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScanCounts {
    /// Addresses sent an ICMP echo.
    #[serde(default)]
    pub icmp_probed: u64,
    /// Addresses that answered one.
    #[serde(default)]
    pub icmp_answered: u64,
    /// Addresses asked over SNMP.
    #[serde(default)]
    pub snmp_probed: u64,
    /// Addresses that answered with one of the credentials.
    #[serde(default)]
    pub snmp_answered: u64,
    /// SNMP failures by reason (`timeout`, `authentication`, `malformed`, `unreachable`,
    /// `error`), counted once per address and credential. An address silent to ICMP is no
    /// error: it is `icmpProbed - icmpAnswered`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, u64>,
}

/// A host that answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FoundHost {
    /// The probed address.
    pub address: IpAddr,
    /// ICMP round-trip time; absent when it did not answer ICMP (or ICMP was off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// What it said over SNMP; absent when no credential worked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snmp: Option<SnmpFacts>,
}

/// A host's identity and tables read over SNMP.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnmpFacts {
    /// The credential that answered ([`ScanCredential::index`]).
    pub credential: u8,
    pub sys_name: String,
    pub sys_descr: String,
    /// Numeric, without a leading dot (`1.3.6.1.4.1.9.1.1208`).
    pub sys_object_id: String,
    /// sysUpTime in hundredths of a second.
    pub sys_uptime: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sys_location: String,
    /// ENTITY-MIB entPhysicalSerialNum of the chassis (the first non-empty one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// LLDP-MIB lldpLocChassisId, formatted as [`LldpNeighbour::chassis_id`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chassis_id: Option<String>,
    /// Its own addresses (ipAddrTable, ipAddressTable); loopback, link-local, multicast and
    /// unspecified ones left out (they repeat on every device).
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// ifTable and ifXTable.
    #[serde(default)]
    pub interfaces: Vec<FoundInterface>,
    /// LLDP-MIB lldpRemTable.
    #[serde(default)]
    pub neighbours: Vec<LldpNeighbour>,
}

/// One row of ifTable/ifXTable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FoundInterface {
    pub if_index: u32,
    /// ifName (ifDescr when ifName is empty or absent).
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub alias: String,
    /// ifPhysAddress as `aa:bb:cc:dd:ee:ff`; absent when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// bits/s (ifHighSpeed × 10⁶, or ifSpeed); 0 when unknown.
    #[serde(default)]
    pub speed_bps: u64,
    /// ifOperStatus.
    #[serde(default)]
    pub oper_status: u8,
}

/// One LLDP neighbour (a row of lldpRemTable, with its management address).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LldpNeighbour {
    /// The local port it was seen on (lldpLocPortId, or the port number when absent).
    pub local_port: String,
    /// The neighbour's chassis id: a MAC address as `aa:bb:cc:dd:ee:ff` (subtype 4), else
    /// its text, else hex.
    pub chassis_id: String,
    /// The neighbour's port id (lldpRemPortId), formatted the same way.
    pub port_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub port_descr: String,
    /// lldpRemSysName.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sys_name: String,
    /// lldpRemManAddrTable (IPv4 or IPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_address: Option<IpAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::collector::SnmpAuthProtocol;

    #[test]
    fn assignments_never_show_credentials_in_debug_output() {
        let run = ScanAssignment {
            run: Uuid::nil(),
            scan: "lan".into(),
            targets: vec!["10.0.0.0/24".into()],
            excludes: Vec::new(),
            icmp: true,
            snmp: Some(ScanSnmp {
                port: 161,
                credentials: vec![ScanCredential {
                    index: 0,
                    version: SnmpVersion::V3,
                    credentials: SnmpCredentials::Usm {
                        username: "monitor".into(),
                        auth_protocol: SnmpAuthProtocol::Sha1,
                        auth_password: "auth-s3cret".into(),
                        priv_protocol: None,
                        priv_password: None,
                    },
                }],
                silent_hosts: false,
            }),
            rate_limit: 100,
            concurrency: 64,
            timeout_ms: 1_000,
            retries: 1,
        };
        let shown = format!("{run:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        let json = serde_json::to_string(&run).expect("json");
        let back: ScanAssignment = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, run);
    }

    #[test]
    fn reports_round_trip() {
        let report = ScanReport {
            run: Uuid::nil(),
            scan: "lan".into(),
            started_ms: 1,
            t: 2,
            state: ScanState::Running,
            error: None,
            total: 256,
            scanned: 10,
            counts: ScanCounts {
                icmp_probed: 10,
                icmp_answered: 1,
                snmp_probed: 1,
                errors: [("timeout".to_owned(), 1)].into(),
                ..Default::default()
            },
            hosts: vec![FoundHost {
                address: "10.0.0.1".parse().expect("ip"),
                rtt_ms: Some(0.4),
                snmp: Some(SnmpFacts {
                    sys_name: "rtr-1".into(),
                    sys_object_id: "1.3.6.1.4.1.9.1.1208".into(),
                    neighbours: vec![LldpNeighbour {
                        local_port: "Gi0/1".into(),
                        chassis_id: "00:11:22:33:44:55".into(),
                        port_id: "Gi0/24".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }],
        };
        let json = serde_json::to_string(&report).expect("json");
        assert!(
            json.contains(r#""sysObjectId":"1.3.6.1.4.1.9.1.1208""#),
            "{json}"
        );
        let back: ScanReport = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, report);
    }
}
