//! `Device` (`dev`): an endpoint, server or network element of a client.

use std::{collections::BTreeMap, time::Duration};

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    common::{
        Condition, DURATION_PATTERN, SITE_PATTERN, SecretRef, TimeWindow, check_duration_into,
        check_host, check_site_label, check_unique,
    },
    validation::{Errors, FieldError, Validate},
};

/// Desired state of a device: what it is, where it is and how it is monitored.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[kube(
    group = "rmm.cdot.io",
    version = "v1alpha1",
    kind = "Device",
    namespaced,
    status = "DeviceStatus",
    shortname = "dev",
    category = "rmm",
    doc = "A managed endpoint, server or network element of a client (namespace).",
    printcolumn(name = "Class", type_ = "string", json_path = ".spec.class"),
    printcolumn(name = "Site", type_ = "string", json_path = ".spec.site"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Source",
        type_ = "string",
        json_path = ".status.source",
        priority = 1
    ),
    printcolumn(
        name = "OS",
        type_ = "string",
        json_path = ".status.inventory.osName",
        priority = 1
    ),
    printcolumn(name = "Alerts", type_ = "integer", json_path = ".status.firingAlerts"),
    printcolumn(
        name = "Last Seen",
        type_ = "date",
        json_path = ".status.agent.lastSeen"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("!has(self.snmp) || has(self.snmp.address) || (has(self.managementAddresses) && size(self.managementAddresses) > 0)").message("SNMP polling needs snmp.address or at least one managementAddresses entry").field_path(".snmp"))]
pub struct DeviceSpec {
    /// Human-friendly name shown in the console; defaults to the object name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub display_name: Option<String>,
    /// What kind of device this is.
    #[serde(default)]
    pub class: DeviceClass,
    /// Site (client location) of the device. Must equal the `rmm.cdot.io/site` label when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SITE_PATTERN), length(max = 63))]
    pub site: Option<String>,
    /// Free-text notes for technicians.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// IP addresses or DNS names by which the device is managed (SNMP, ICMP, remote access), preferred first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253)))]
    pub management_addresses: Vec<String>,
    /// Settings for the cdot-rmm agent installed on the device (servers and workstations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentSettings>,
    /// SNMP polling by a collector (routers, switches, firewalls, printers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snmp: Option<SnmpSettings>,
    /// Active probes (ICMP, TCP, HTTP, DNS) run from this device's agent or collector.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub probes: Vec<Probe>,
    /// Maintenance: pause monitoring or declare recurring maintenance windows (alerts suppressed, patching allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<Maintenance>,
}

/// Kind of device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum DeviceClass {
    /// Desktop or laptop.
    Workstation,
    /// Physical or virtual server.
    Server,
    /// Router.
    Router,
    /// Switch.
    Switch,
    /// Firewall.
    Firewall,
    /// Wireless access point.
    AccessPoint,
    /// Printer or multifunction device.
    Printer,
    /// A cdot-rmm collector appliance.
    Collector,
    /// Anything else.
    #[default]
    Other,
}

/// Settings for the cdot-rmm agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentSettings {
    /// How often the agent reports metrics (10s to 1h).
    #[serde(default = "default_metrics_interval")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub metrics_interval: String,
    /// How often the agent reports its hardware and software inventory (5m to 7d).
    #[serde(default = "default_inventory_interval")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub inventory_interval: String,
    /// How often the agent scans for missing patches (1h to 7d).
    #[serde(default = "default_patch_scan_interval")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub patch_scan_interval: String,
    /// Services whose state the agent watches (feeds the `serviceFailed` metric), e.g. `Spooler`, `nginx.service`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 256)))]
    pub monitored_services: Vec<String>,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            metrics_interval: default_metrics_interval(),
            inventory_interval: default_inventory_interval(),
            patch_scan_interval: default_patch_scan_interval(),
            monitored_services: Vec::new(),
        }
    }
}

fn default_metrics_interval() -> String {
    "10s".into()
}
fn default_inventory_interval() -> String {
    "6h".into()
}
fn default_patch_scan_interval() -> String {
    "12h".into()
}
fn default_snmp_port() -> u16 {
    161
}
fn default_poll_interval() -> String {
    "10s".into()
}
fn default_snmp_timeout() -> String {
    "2s".into()
}
fn default_snmp_retries() -> u8 {
    2
}
fn default_probe_interval() -> String {
    "30s".into()
}

/// SNMP protocol version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SnmpVersion {
    /// SNMPv1 (community string; legacy devices only).
    V1,
    /// SNMPv2c (community string).
    #[default]
    V2c,
    /// SNMPv3 (user-based security).
    V3,
}

/// SNMP polling settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnmpSettings {
    /// Protocol version.
    #[serde(default)]
    pub version: SnmpVersion,
    /// Address to poll; defaults to the first of `managementAddresses`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub address: Option<String>,
    /// UDP port.
    #[serde(default = "default_snmp_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// Secret holding the credentials: `community` for v1/v2c; `username`, `authProtocol`
    /// (SHA, SHA-256, SHA-512), `authPassword`, `privProtocol` (AES, AES-256), `privPassword` for v3.
    pub credentials_secret_ref: SecretRef,
    /// How often interfaces and system counters are polled (10s to 1h).
    #[serde(default = "default_poll_interval")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub poll_interval: String,
    /// Timeout of one request (100ms to 30s).
    #[serde(default = "default_snmp_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub timeout: String,
    /// Retries after a timeout.
    #[serde(default = "default_snmp_retries")]
    #[schemars(range(min = 0, max = 5))]
    pub retries: u8,
    /// Regular expressions on interface names (ifName/ifDescr) to poll; empty polls every interface that is up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 256)))]
    pub interfaces: Vec<String>,
    /// Name of the Collector device that polls this device; defaults to any collector of the same site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub collector: Option<String>,
}

/// Kind of active probe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ProbeType {
    /// ICMP echo.
    #[default]
    Icmp,
    /// TCP connect to `port`.
    Tcp,
    /// HTTP(S) GET of `target` (a URL).
    Http,
    /// DNS query of `target` (a name).
    Dns,
}

/// An active probe; results feed the `probeLatency`, `probeJitter` and `probeLoss` metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probe {
    /// Probe name, unique within the device (the `probe` series label).
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Probe type.
    #[serde(rename = "type", default)]
    pub type_: ProbeType,
    /// Host, address or URL to probe (the `target` series label).
    #[schemars(length(min = 1, max = 2048))]
    pub target: String,
    /// TCP port (`Tcp` probes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// How often to probe (1s to 1h).
    #[serde(default = "default_probe_interval")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub interval: String,
}

/// Maintenance settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Maintenance {
    /// Pause all monitoring, alerting and automation for this device until unset.
    #[serde(default)]
    pub paused: bool,
    /// Recurring maintenance windows: alerts are suppressed and patching and reboots are allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub windows: Vec<TimeWindow>,
}

/// How the device came to exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum DeviceSource {
    /// Created by agent enrollment.
    Agent,
    /// Created by a DiscoveryScan.
    Discovery,
    /// Written by hand (or GitOps).
    Manual,
}

/// Observed state of a device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceStatus {
    /// The `metadata.generation` last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions: `Ready` (see below), `Reconciling` (`False` with reason `Reconciled` once
    /// `observedGeneration` is reconciled), `Degraded` (`True` with reason `ValidationFailed`
    /// when the spec is invalid, the message naming each field; `False` otherwise) and
    /// `Enrolled` (an agent enrolled as this device) and, for a Device discovery found,
    /// `Responding` (`False`, reason `NotFound`, when the last scan covering it did not find
    /// it; it is never deleted for that). `Ready` is `True` while monitoring is not
    /// paused and its agent (or, for a collector, the collector) reported, or a poll of it
    /// over SNMP answered, within three of its intervals.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// How the device came to exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<DeviceSource>,
    /// The enrolled agent, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentStatus>,
    /// Hardware and software inventory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<Inventory>,
    /// Summary of the latest metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_metrics: Option<MetricSummary>,
    /// Number of alerts firing for this device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firing_alerts: Option<u32>,
    /// Patch state summary, written by patching while a PatchPolicy selects the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patches: Option<PatchSummary>,
    /// SNMP polling by a collector: the newest poll that answered. A polled device is
    /// reporting (`Ready`) while its polls answer, as an agent's device while it reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polling: Option<PollingStatus>,
    /// What network discovery last learnt of this device (written by DiscoveryScans; a
    /// device made by hand keeps its spec, discovery only writes here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<DiscoveredDevice>,
}

/// The newest SNMP poll of a device that answered.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PollingStatus {
    /// The collector that polls it.
    pub collector: String,
    /// When the poll answered (RFC 3339).
    pub last_seen: String,
    /// Seconds between polls.
    pub interval_seconds: u64,
}

/// What discovery learnt of a device: its identity (the keys it is matched on) and whether
/// it still answers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredDevice {
    /// The DiscoveryScan that last found (or missed) it.
    pub scan: String,
    /// Last time a scan found it (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// Whether the last scan covering its addresses found it. A device that stops
    /// answering is marked, never deleted.
    #[serde(default)]
    pub responding: bool,
    /// Every address it answered on or reported (ipAddrTable), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// LLDP chassis id (lldpLocChassisId).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chassis_id: Option<String>,
    /// ENTITY-MIB chassis serial number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Interface MAC addresses (ifPhysAddress), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub macs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sys_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sys_descr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sys_object_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sys_location: Option<String>,
    /// The class the scan's rules give it (the spec's class wins where a person set it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<DeviceClass>,
    /// Interfaces in ifTable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<u32>,
}

/// The enrolled agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// Agent identity (certificate subject).
    #[serde(default)]
    pub id: String,
    /// Agent version.
    #[serde(default)]
    pub version: String,
    /// Last report (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// Expiry of the agent's client certificate (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_expiry: Option<String>,
    /// Seconds between reports as the agent says it runs (it may override the interval of
    /// `spec.agent.metricsInterval` locally); liveness allows three of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_interval_seconds: Option<u64>,
}

/// Hardware and software inventory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    /// Host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Operating system name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_name: Option<String>,
    /// Operating system version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    /// Kernel version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// CPU model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    /// Physical cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<u32>,
    /// Hardware threads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_threads: Option<u32>,
    /// Physical memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Disks / filesystems.
    #[serde(default)]
    pub disks: Vec<DiskInfo>,
    /// Network interfaces.
    #[serde(default)]
    pub nics: Vec<NicInfo>,
    /// Hardware vendor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Hardware model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Serial number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Number of installed software packages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_count: Option<u32>,
}

/// A filesystem.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiskInfo {
    /// Mount point or drive letter.
    #[serde(default)]
    pub mount: String,
    /// Filesystem type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<String>,
    /// Total bytes.
    #[serde(default)]
    pub total_bytes: u64,
    /// Free bytes.
    #[serde(default)]
    pub free_bytes: u64,
}

/// A network interface.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NicInfo {
    /// Interface name.
    #[serde(default)]
    pub name: String,
    /// MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// IP addresses with prefix length.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Link speed in Mbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_mbps: Option<u64>,
}

/// Latest metric values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricSummary {
    /// When the values were measured (RFC 3339).
    #[serde(default)]
    pub at: String,
    /// CPU busy percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    /// Memory used percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_percent: Option<f64>,
    /// Highest used percentage over all filesystems.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_percent_max: Option<f64>,
}

/// Patch state summary.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatchSummary {
    /// Installed packages (last scan).
    #[serde(default)]
    pub installed: u32,
    /// Approved updates not installed yet.
    #[serde(default)]
    pub pending: u32,
    /// Approved updates whose latest install failed.
    #[serde(default)]
    pub failed: u32,
    /// Updates in scope the policy has not approved (or denies).
    #[serde(default)]
    pub not_approved: u32,
    /// The device asks for a reboot.
    #[serde(default)]
    pub reboot_required: bool,
    /// Last patch scan (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scan: Option<String>,
}

fn check_range(
    errs: &mut Errors,
    path: String,
    d: Option<Duration>,
    min: Duration,
    max: Duration,
    text: &str,
) {
    if let Some(d) = d
        && (d < min || d > max)
    {
        errs.push(path, format!("must be between {text}"));
    }
}

impl Validate for DeviceSpec {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Errors::default();
        for (i, a) in self.management_addresses.iter().enumerate() {
            errs.check(format!("spec.managementAddresses[{i}]"), check_host(a));
        }
        check_unique(
            &mut errs,
            "spec.managementAddresses",
            "address",
            self.management_addresses.iter().map(String::as_str),
        );
        if let Some(agent) = &self.agent {
            let s = Duration::from_secs;
            let d = check_duration_into(
                &mut errs,
                "spec.agent.metricsInterval",
                &agent.metrics_interval,
                true,
            );
            check_range(
                &mut errs,
                "spec.agent.metricsInterval".into(),
                d,
                s(10),
                s(3600),
                "10s and 1h",
            );
            let d = check_duration_into(
                &mut errs,
                "spec.agent.inventoryInterval",
                &agent.inventory_interval,
                true,
            );
            check_range(
                &mut errs,
                "spec.agent.inventoryInterval".into(),
                d,
                s(300),
                s(7 * 86_400),
                "5m and 7d",
            );
            let d = check_duration_into(
                &mut errs,
                "spec.agent.patchScanInterval",
                &agent.patch_scan_interval,
                true,
            );
            check_range(
                &mut errs,
                "spec.agent.patchScanInterval".into(),
                d,
                s(3600),
                s(7 * 86_400),
                "1h and 7d",
            );
            check_unique(
                &mut errs,
                "spec.agent.monitoredServices",
                "service",
                agent.monitored_services.iter().map(String::as_str),
            );
        }
        if let Some(snmp) = &self.snmp {
            if snmp.address.is_none() && self.management_addresses.is_empty() {
                errs.push(
                    "spec.snmp",
                    "SNMP polling needs snmp.address or at least one managementAddresses entry",
                );
            }
            if let Some(a) = &snmp.address {
                errs.check("spec.snmp.address", check_host(a));
            }
            snmp.credentials_secret_ref
                .validate_into("spec.snmp.credentialsSecretRef", &mut errs);
            let d = check_duration_into(
                &mut errs,
                "spec.snmp.pollInterval",
                &snmp.poll_interval,
                true,
            );
            check_range(
                &mut errs,
                "spec.snmp.pollInterval".into(),
                d,
                Duration::from_secs(10),
                Duration::from_secs(3600),
                "10s and 1h",
            );
            let d = check_duration_into(&mut errs, "spec.snmp.timeout", &snmp.timeout, true);
            check_range(
                &mut errs,
                "spec.snmp.timeout".into(),
                d,
                Duration::from_millis(100),
                Duration::from_secs(30),
                "100ms and 30s",
            );
            for (i, re) in snmp.interfaces.iter().enumerate() {
                if let Err(e) = regex::Regex::new(re) {
                    errs.push(
                        format!("spec.snmp.interfaces[{i}]"),
                        format!("invalid regular expression: {e}"),
                    );
                }
            }
        }
        check_unique(
            &mut errs,
            "spec.probes",
            "probe name",
            self.probes.iter().map(|p| p.name.as_str()),
        );
        for (i, p) in self.probes.iter().enumerate() {
            let path = format!("spec.probes[{i}]");
            let d = check_duration_into(&mut errs, format!("{path}.interval"), &p.interval, true);
            check_range(
                &mut errs,
                format!("{path}.interval"),
                d,
                Duration::from_secs(1),
                Duration::from_secs(3600),
                "1s and 1h",
            );
            match p.type_ {
                ProbeType::Tcp if p.port.is_none() => {
                    errs.push(format!("{path}.port"), "Tcp probes need a port")
                }
                ProbeType::Icmp | ProbeType::Http | ProbeType::Dns if p.port.is_some() => {
                    errs.push(format!("{path}.port"), "port is only used by Tcp probes")
                }
                _ => {}
            }
            match p.type_ {
                ProbeType::Http => {
                    if !(p.target.starts_with("http://") || p.target.starts_with("https://")) {
                        errs.push(
                            format!("{path}.target"),
                            "Http probes need an http:// or https:// URL",
                        );
                    }
                }
                _ => {
                    errs.check(format!("{path}.target"), check_host(&p.target));
                }
            }
        }
        if let Some(m) = &self.maintenance {
            for (i, w) in m.windows.iter().enumerate() {
                w.validate_into(&format!("spec.maintenance.windows[{i}]"), &mut errs);
            }
        }
        errs.into_vec()
    }

    fn validate_metadata(&self, labels: &BTreeMap<String, String>) -> Vec<FieldError> {
        check_site_label(self.site.as_deref(), labels)
            .into_iter()
            .collect()
    }
}

impl Device {
    /// The device's site: `spec.site`, else the `rmm.cdot.io/site` label.
    pub fn site(&self) -> Option<&str> {
        self.spec.site.as_deref().or_else(|| {
            self.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(crate::SITE_LABEL))
                .map(String::as_str)
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::test_support::{doc, err_at, ok};

    fn base() -> Value {
        doc(
            "Device",
            json!({
                "class": "Router",
                "site": "london",
                "managementAddresses": ["10.0.0.1"],
                "agent": {},
                "snmp": {"credentialsSecretRef": {"name": "snmp"}},
                "probes": [{"name": "gw", "type": "Tcp", "target": "10.0.0.254", "port": 443}],
                "maintenance": {"windows": [{"days": ["Sun"], "start": "02:00", "duration": "2h", "timeZone": "Europe/London"}]}
            }),
        )
    }

    #[test]
    fn base_is_valid_and_defaults_apply() {
        ok(&base(), json!({}));
        let crate::manifest::Document::Resource(o) =
            crate::manifest::validate_document(&base()).expect("valid")
        else {
            panic!("not a resource")
        };
        assert_eq!(o.spec["agent"]["metricsInterval"], "10s");
        assert_eq!(o.spec["snmp"]["port"], 161);
        assert_eq!(o.spec["snmp"]["version"], "V2c");
    }

    #[test]
    fn metadata() {
        err_at(
            &base(),
            json!({"metadata": {"name": "Bad_Name"}}),
            "metadata.name",
        );
        err_at(
            &base(),
            json!({"metadata": {"name": null}}),
            "metadata.name",
        );
        err_at(
            &base(),
            json!({"metadata": {"namespace": null}}),
            "metadata.namespace",
        );
        err_at(
            &base(),
            json!({"metadata": {"namespace": "a.b"}}),
            "metadata.namespace",
        );
        err_at(
            &base(),
            json!({"metadata": {"labels": {"bad key!": "x"}}}),
            "metadata.labels.bad key!",
        );
        err_at(
            &base(),
            json!({"metadata": {"labels": {"k": "bad value!"}}}),
            "metadata.labels.k",
        );
        ok(
            &base(),
            json!({"metadata": {"name": "lon-sw.01", "labels": {"role": "network"}}}),
        );
        err_at(
            &base(),
            json!({"apiVersion": "rmm.cdot.io/v1"}),
            "apiVersion",
        );
        err_at(&base(), json!({"kind": "Gadget"}), "kind");
    }

    #[test]
    fn schema_enums_ranges_patterns() {
        err_at(&base(), json!({"spec": {"class": "Toaster"}}), "spec.class");
        err_at(
            &base(),
            json!({"spec": {"snmp": {"port": 0}}}),
            "spec.snmp.port",
        );
        err_at(
            &base(),
            json!({"spec": {"snmp": {"port": 70000}}}),
            "spec.snmp.port",
        );
        ok(&base(), json!({"spec": {"snmp": {"port": 1161}}}));
        err_at(
            &base(),
            json!({"spec": {"snmp": {"retries": 6}}}),
            "spec.snmp.retries",
        );
        err_at(
            &base(),
            json!({"spec": {"agent": {"metricsInterval": "1.5m"}}}),
            "spec.agent.metricsInterval",
        );
        err_at(&base(), json!({"spec": {"site": "has space"}}), "spec.site");
        err_at(
            &base(),
            json!({"spec": {"displayName": ""}}),
            "spec.displayName",
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        err_at(&base(), json!({"spec": {"colour": "red"}}), "spec.colour");
        err_at(
            &base(),
            json!({"spec": {"snmp": {"community": "public"}}}),
            "spec.snmp.community",
        );
    }

    #[test]
    fn status_is_ignored() {
        ok(&base(), json!({"status": {"firingAlerts": "lots"}}));
    }

    #[test]
    fn addresses() {
        err_at(
            &base(),
            json!({"spec": {"managementAddresses": ["10.0.0.1", "not an address"]}}),
            "spec.managementAddresses[1]",
        );
        err_at(
            &base(),
            json!({"spec": {"managementAddresses": ["10.0.0.1", "10.0.0.1"]}}),
            "spec.managementAddresses[1]",
        );
        ok(
            &base(),
            json!({"spec": {"managementAddresses": ["sw1.example.net", "2001:db8::1"]}}),
        );
    }

    #[test]
    fn intervals() {
        err_at(
            &base(),
            json!({"spec": {"agent": {"metricsInterval": "5s"}}}),
            "spec.agent.metricsInterval",
        );
        ok(
            &base(),
            json!({"spec": {"agent": {"metricsInterval": "10s"}}}),
        );
        err_at(
            &base(),
            json!({"spec": {"agent": {"inventoryInterval": "1m"}}}),
            "spec.agent.inventoryInterval",
        );
        err_at(
            &base(),
            json!({"spec": {"agent": {"patchScanInterval": "30m"}}}),
            "spec.agent.patchScanInterval",
        );
        err_at(
            &base(),
            json!({"spec": {"snmp": {"pollInterval": "2h"}}}),
            "spec.snmp.pollInterval",
        );
        err_at(
            &base(),
            json!({"spec": {"snmp": {"timeout": "1m"}}}),
            "spec.snmp.timeout",
        );
        ok(&base(), json!({"spec": {"snmp": {"timeout": "500ms"}}}));
    }

    #[test]
    fn snmp_needs_an_address() {
        err_at(
            &base(),
            json!({"spec": {"managementAddresses": null}}),
            "spec.snmp",
        );
        ok(
            &base(),
            json!({"spec": {"managementAddresses": null, "snmp": {"address": "10.0.0.9"}}}),
        );
        err_at(
            &base(),
            json!({"spec": {"snmp": {"address": "bad host!"}}}),
            "spec.snmp.address",
        );
    }

    #[test]
    fn snmp_secret_and_interface_patterns() {
        err_at(
            &base(),
            json!({"spec": {"snmp": {"credentialsSecretRef": {"name": "Bad_Secret"}}}}),
            "spec.snmp.credentialsSecretRef.name",
        );
        err_at(
            &base(),
            json!({"spec": {"snmp": {"interfaces": ["(unclosed"]}}}),
            "spec.snmp.interfaces[0]",
        );
        ok(&base(), json!({"spec": {"snmp": {"interfaces": ["^Gi"]}}}));
    }

    #[test]
    fn probes() {
        err_at(
            &base(),
            json!({"spec": {"probes": [{"name": "a", "type": "Tcp", "target": "h"}]}}),
            "spec.probes[0].port",
        );
        err_at(
            &base(),
            json!({"spec": {"probes": [{"name": "a", "type": "Icmp", "target": "h", "port": 1}]}}),
            "spec.probes[0].port",
        );
        err_at(
            &base(),
            json!({"spec": {"probes": [{"name": "a", "type": "Http", "target": "example.com"}]}}),
            "spec.probes[0].target",
        );
        ok(
            &base(),
            json!({"spec": {"probes": [{"name": "a", "type": "Http", "target": "https://example.com/"}]}}),
        );
        err_at(
            &base(),
            json!({"spec": {"probes": [{"name": "a", "target": "h"}, {"name": "a", "target": "h"}]}}),
            "spec.probes[1]",
        );
        err_at(
            &base(),
            json!({"spec": {"probes": [{"name": "a", "target": "h", "interval": "2h"}]}}),
            "spec.probes[0].interval",
        );
    }

    #[test]
    fn maintenance_windows() {
        let w = |patch: Value| {
            let mut win = json!({"start": "02:00", "duration": "2h", "timeZone": "UTC"});
            crate::test_support::merge(&mut win, &patch);
            json!({"spec": {"maintenance": {"windows": [win]}}})
        };
        err_at(
            &base(),
            w(json!({"start": "25:00"})),
            "spec.maintenance.windows[0].start",
        );
        err_at(
            &base(),
            w(json!({"duration": "0s"})),
            "spec.maintenance.windows[0].duration",
        );
        err_at(
            &base(),
            w(json!({"duration": "8d"})),
            "spec.maintenance.windows[0].duration",
        );
        err_at(
            &base(),
            w(json!({"timeZone": "Mars/Base"})),
            "spec.maintenance.windows[0].timeZone",
        );
        err_at(
            &base(),
            w(json!({"days": ["Mon", "Mon"]})),
            "spec.maintenance.windows[0].days[1]",
        );
        err_at(
            &base(),
            w(json!({"days": ["Funday"]})),
            "spec.maintenance.windows[0].days[0]",
        );
        ok(
            &base(),
            w(json!({"days": ["Mon", "Tue"], "timeZone": "America/New_York"})),
        );
    }

    #[test]
    fn site_label_must_agree() {
        err_at(
            &base(),
            json!({"metadata": {"labels": {"rmm.cdot.io/site": "leeds"}}}),
            "spec.site",
        );
        ok(
            &base(),
            json!({"metadata": {"labels": {"rmm.cdot.io/site": "london"}}}),
        );
        ok(
            &base(),
            json!({"metadata": {"labels": {"rmm.cdot.io/site": "leeds"}}, "spec": {"site": null}}),
        );
    }
}
