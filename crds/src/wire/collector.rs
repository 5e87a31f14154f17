//! The collector's side of the wire protocol: what a collector is assigned to poll and
//! probe (`GET /v1/agent/collector/assignments`), and the aggregates it ships
//! (`POST /v1/agent/collector/batches`, gzip JSON, acknowledged with a [`BatchAck`] after
//! commit). A collector is a Device of class `Collector` and authenticates like an agent.
//!
//! Flow data arrives pre-aggregated per minute (see [`FlowGroup`]): the collector turns
//! millions of flow records into at most a few thousand rows a minute per exporter, so the
//! operator's write volume stays bounded whatever the traffic.
//!
//! [`BatchAck`]: super::BatchAck
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::discovery::{ScanAssignment, ScanReport};
use crate::device::{ProbeType, SnmpVersion};

/// Most flow groups, interface samples or probe results one batch may carry (each).
pub const MAX_ITEMS_PER_BATCH: usize = 100_000;

/// `GET /v1/agent/collector/assignments`: everything this collector polls and probes now.
/// Fetched at start and every minute; a change takes effect on the next poll.
/// Unknown fields are ignored: an older collector keeps working with a newer operator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectorAssignments {
    /// The collector's site (`spec.site` of its Device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Devices whose interfaces this collector polls over SNMP.
    #[serde(default)]
    pub snmp: Vec<SnmpTarget>,
    /// Probes this collector runs (its site's devices' `spec.probes`).
    #[serde(default)]
    pub probes: Vec<ProbeTarget>,
    /// Devices of the collector's site and those it polls, with their addresses, so that
    /// what a device pushes by itself (sFlow counter samples) is attributed to it. Older
    /// operators leave it out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<SiteDevice>,
    /// Discovery runs this collector is to run now (its DiscoveryScans). A run that
    /// disappears is stopped; older operators leave it out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scans: Vec<ScanAssignment>,
}

/// A Device and the addresses it sends from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SiteDevice {
    /// Device name (in the collector's namespace).
    pub device: String,
    /// `spec.managementAddresses` and `spec.snmp.address`: IP addresses or host names.
    pub addresses: Vec<String>,
}

/// One device to poll over SNMP.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnmpTarget {
    /// Device name (in the collector's namespace).
    pub device: String,
    /// Host name or address to poll.
    pub address: String,
    /// UDP port.
    pub port: u16,
    pub version: SnmpVersion,
    /// Credentials resolved from the Device's Secret; only ever sent over mutual TLS.
    pub credentials: SnmpCredentials,
    pub poll_interval_secs: u64,
    pub timeout_ms: u64,
    pub retries: u8,
    /// Regular expressions on ifName/ifDescr; empty polls every interface that is up.
    #[serde(default)]
    pub interfaces: Vec<String>,
}

impl std::fmt::Debug for SnmpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnmpTarget")
            .field("device", &self.device)
            .field("address", &self.address)
            .field("port", &self.port)
            .field("version", &self.version)
            .field("credentials", &self.credentials)
            .field("poll_interval_secs", &self.poll_interval_secs)
            .field("interfaces", &self.interfaces)
            .finish_non_exhaustive()
    }
}

/// SNMP credentials. `Debug` never shows a secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum SnmpCredentials {
    /// v1/v2c community.
    Community { community: String },
    /// v3 user-based security (authPriv or authNoPriv).
    #[serde(rename_all = "camelCase")]
    Usm {
        username: String,
        auth_protocol: SnmpAuthProtocol,
        auth_password: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priv_protocol: Option<SnmpPrivProtocol>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priv_password: Option<String>,
    },
}

impl std::fmt::Debug for SnmpCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Community { .. } => f.write_str("Community { community: <redacted> }"),
            Self::Usm {
                username,
                auth_protocol,
                priv_protocol,
                ..
            } => f
                .debug_struct("Usm")
                .field("username", username)
                .field("auth_protocol", auth_protocol)
                .field("priv_protocol", priv_protocol)
                .finish_non_exhaustive(),
        }
    }
}

/// SNMPv3 authentication protocol (the Secret's `authProtocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnmpAuthProtocol {
    #[serde(rename = "SHA")]
    Sha1,
    #[serde(rename = "SHA-256")]
    Sha256,
    #[serde(rename = "SHA-512")]
    Sha512,
}

/// SNMPv3 privacy protocol (the Secret's `privProtocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnmpPrivProtocol {
    #[serde(rename = "AES")]
    Aes128,
    #[serde(rename = "AES-256")]
    Aes256,
}

/// One probe to run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProbeTarget {
    /// Device the probe belongs to.
    pub device: String,
    /// Probe name, unique within the device.
    pub name: String,
    #[serde(rename = "type")]
    pub type_: ProbeType,
    /// Host, address or URL.
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub interval_secs: u64,
}

/// `POST /v1/agent/collector/batches`: aggregates of one or more intervals.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CollectorBatch {
    /// Unique id chosen when the batch is made; a retried batch is stored once.
    pub batch_id: Uuid,
    /// Version of the collector binary.
    pub collector_version: String,
    #[serde(default)]
    pub flows: Vec<FlowGroup>,
    #[serde(default)]
    pub interfaces: Vec<InterfaceSample>,
    #[serde(default)]
    pub probes: Vec<ProbeResult>,
    /// Progress and findings of discovery runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scans: Vec<ScanReport>,
    /// Seconds between the collector's batches (`--ship-interval`), so that its Device's
    /// liveness follows it; absent from older collectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_secs: Option<u32>,
}

/// Flow traffic of one minute through one exporter's interface pair: the top five-tuples by
/// bytes with their ports, every other host pair by protocol with its ports folded away,
/// and an `other` total of what no bound had room for. Hosts are exact, only ports fold,
/// up to the collector's documented bound of distinct host pairs (ADR 22).
///
/// A large group may come in several pieces with the same minute, exporter and interfaces;
/// their counts add up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlowGroup {
    /// Start of the minute, Unix milliseconds (a multiple of 60,000).
    pub minute_ms: i64,
    /// Address the export came from (the router or switch).
    pub exporter: IpAddr,
    /// Input ifIndex on the exporter (0 when the record has none).
    pub in_if: u32,
    /// Output ifIndex on the exporter (0 when the record has none).
    pub out_if: u32,
    /// The top keys, bytes descending. Counts are already scaled by the sampling rate.
    pub top: Vec<FlowCount>,
    /// Traffic outside `top`, by (source, destination, protocol).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostCount>,
    /// Everything else of this group.
    #[serde(default, skip_serializing_if = "Counts::is_zero")]
    pub other: Counts,
}

/// Traffic of one flow key in a [`FlowGroup`]. Short names: a batch holds thousands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowCount {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number.
    pub proto: u8,
    /// Source port (0 for protocols without ports).
    pub sp: u16,
    /// Destination port.
    pub dp: u16,
    /// Bytes.
    pub b: u64,
    /// Packets.
    pub p: u64,
    /// Flow records folded in.
    pub f: u64,
}

/// Traffic of one host pair and protocol in a [`FlowGroup`], over all its ports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostCount {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub b: u64,
    pub p: u64,
    pub f: u64,
}

impl FlowGroup {
    /// Rows this group becomes in the store (its keys, host pairs and `other`).
    pub fn rows(&self) -> usize {
        self.top.len() + self.hosts.len() + 1
    }
}

/// Byte, packet and flow totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    pub b: u64,
    pub p: u64,
    pub f: u64,
}

impl Counts {
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

/// One poll of one interface: counter deltas since the previous poll turned into rates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InterfaceSample {
    /// Time of the poll, Unix milliseconds.
    pub t: i64,
    /// Polled Device (in the collector's namespace).
    pub device: String,
    pub if_index: u32,
    /// ifName (ifDescr when ifName is empty).
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub alias: String,
    /// ifOperStatus (1 up, 2 down, 3 testing, 5 dormant, 7 lowerLayerDown, ...).
    pub oper_status: u8,
    /// Interface speed in bits/s (ifHighSpeed × 10⁶, or ifSpeed); 0 when unknown.
    pub speed_bps: u64,
    /// Milliseconds between the two polls the rates come from.
    pub interval_ms: u64,
    pub in_bps: f64,
    pub out_bps: f64,
    pub in_pps: f64,
    pub out_pps: f64,
    /// Errors and discards during the interval.
    pub in_errors: u64,
    pub out_errors: u64,
    pub in_discards: u64,
    pub out_discards: u64,
}

/// Result of one probe interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProbeResult {
    /// End of the interval, Unix milliseconds.
    pub t: i64,
    /// Device the probe belongs to.
    pub device: String,
    /// Probe name.
    pub probe: String,
    /// What was probed.
    pub target: String,
    pub sent: u32,
    pub received: u32,
    /// Round-trip times in milliseconds; absent when nothing came back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_min_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_avg_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_max_ms: Option<f64>,
    /// Mean absolute difference of consecutive round-trip times (RFC 3550 style).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show_in_debug_output() {
        let v2 = SnmpCredentials::Community {
            community: "s3cret-community".into(),
        };
        let v3 = SnmpCredentials::Usm {
            username: "monitor".into(),
            auth_protocol: SnmpAuthProtocol::Sha1,
            auth_password: "auth-s3cret".into(),
            priv_protocol: Some(SnmpPrivProtocol::Aes128),
            priv_password: Some("priv-s3cret".into()),
        };
        let shown = format!("{v2:?} {v3:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("monitor"));
    }

    #[test]
    fn assignments_of_operators_without_devices_still_decode() {
        let old: CollectorAssignments =
            serde_json::from_str(r#"{"site":"london","snmp":[],"probes":[]}"#).expect("old");
        assert!(old.devices.is_empty());
        let json = serde_json::to_string(&old).expect("json");
        assert!(!json.contains("devices"), "{json}");
        let new: CollectorAssignments = serde_json::from_str(
            r#"{"devices":[{"device":"sw-1","addresses":["10.0.0.2","sw-1.lan"]}]}"#,
        )
        .expect("new");
        assert_eq!(new.devices[0].addresses, ["10.0.0.2", "sw-1.lan"]);
    }

    #[test]
    fn batches_round_trip() {
        let batch = CollectorBatch {
            batch_id: Uuid::nil(),
            collector_version: "0.1.0".into(),
            flows: vec![FlowGroup {
                minute_ms: 1_764_064_800_000,
                exporter: "10.0.0.1".parse().expect("ip"),
                in_if: 1,
                out_if: 2,
                top: vec![FlowCount {
                    src: "192.0.2.1".parse().expect("ip"),
                    dst: "2001:db8::1".parse().expect("ip"),
                    proto: 6,
                    sp: 443,
                    dp: 51000,
                    b: 1500,
                    p: 1,
                    f: 1,
                }],
                hosts: Vec::new(),
                other: Counts { b: 10, p: 1, f: 1 },
            }],
            ..Default::default()
        };
        let json = serde_json::to_string(&batch).expect("json");
        assert!(json.contains(r#""sp":443"#), "{json}");
        let back: CollectorBatch = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, batch);
        let creds: SnmpCredentials = serde_json::from_str(
            r#"{"type":"usm","username":"u","authProtocol":"SHA","authPassword":"a","privProtocol":"AES","privPassword":"p"}"#,
        )
        .expect("usm");
        assert!(matches!(
            creds,
            SnmpCredentials::Usm {
                priv_protocol: Some(SnmpPrivProtocol::Aes128),
                ..
            }
        ));
    }
}
