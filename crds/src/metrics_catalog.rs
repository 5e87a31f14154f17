//! The catalogue of metrics an [`AlertRule`](crate::alert_rule::AlertRule) can watch.
//!
//! Shared by the agent and collector (what to report, under which series labels) and the
//! alert evaluator (what a rule means).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A metric from the catalogue (see `metrics_catalog` in the cdot-crds crate).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Metric {
    /// CPU busy percentage of the whole device (0-100).
    Cpu,
    /// Used physical memory percentage (0-100).
    Memory,
    /// Used space percentage per mounted filesystem (series label `mount`).
    Disk,
    /// Received bits per second per network interface (series label `interface`).
    NetworkIn,
    /// Transmitted bits per second per network interface (series label `interface`).
    NetworkOut,
    /// 1 while the device has not reported (agent) or answered (SNMP/ICMP), else 0.
    DeviceOffline,
    /// Interface utilisation percentage of link speed, max of in/out (series label `interface`).
    InterfaceUtilisation,
    /// Interface errors per second (series labels `interface`, `direction`).
    InterfaceErrors,
    /// Interface discards per second (series labels `interface`, `direction`).
    InterfaceDiscards,
    /// 1 while an interface's ifOperStatus is not up, else 0 (series label `interface`).
    InterfaceDown,
    /// Probe round-trip time in milliseconds (series labels `probe`, `target`).
    ProbeLatency,
    /// Probe jitter in milliseconds (series labels `probe`, `target`).
    ProbeJitter,
    /// Probe packet loss percentage (series labels `probe`, `target`).
    ProbeLoss,
    /// 1 while a monitored service is in the failed state (series label `service`).
    ServiceFailed,
    /// Number of patch installations that failed in the last run (series label `classification`).
    PatchFailed,
    /// CPU busy percentage of one logical core (series label `core`).
    CpuCore,
    /// 1-minute load average.
    Load1,
    /// 5-minute load average.
    Load5,
    /// 15-minute load average.
    Load15,
    /// Used physical memory in bytes.
    MemoryUsedBytes,
    /// Used swap percentage (0-100; 0 without swap).
    Swap,
    /// Used swap in bytes.
    SwapUsedBytes,
    /// Used space in bytes per mounted filesystem (series label `mount`).
    DiskUsedBytes,
    /// Bytes read per second per block device (series label `device`).
    DiskReadBytes,
    /// Bytes written per second per block device (series label `device`).
    DiskWriteBytes,
    /// Received packets per second per interface (series label `interface`).
    NetworkPacketsIn,
    /// Transmitted packets per second per interface (series label `interface`).
    NetworkPacketsOut,
    /// Receive plus transmit errors per second per interface (series label `interface`).
    NetworkErrors,
    /// Receive plus transmit drops per second per interface (series label `interface`).
    NetworkDrops,
    /// Seconds since boot.
    Uptime,
    /// Number of processes.
    Processes,
}

/// What a metric is: its wire name, unit, series labels and meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricInfo {
    /// The metric.
    pub metric: Metric,
    /// Name as written in manifests and in agent reports.
    pub name: &'static str,
    /// Unit of the value.
    pub unit: &'static str,
    /// Series labels that distinguish series of this metric on one device.
    pub labels: &'static [&'static str],
    /// Meaning, for documentation and the console.
    pub description: &'static str,
}

/// Every metric, in declaration order.
#[rustfmt::skip]
pub const CATALOG: &[MetricInfo] = &[
    MetricInfo { metric: Metric::Cpu, name: "cpu", unit: "percent", labels: &[], description: "CPU busy percentage of the whole device" },
    MetricInfo { metric: Metric::Memory, name: "memory", unit: "percent", labels: &[], description: "Used physical memory percentage" },
    MetricInfo { metric: Metric::Disk, name: "disk", unit: "percent", labels: &["mount"], description: "Used space percentage per mounted filesystem" },
    MetricInfo { metric: Metric::NetworkIn, name: "networkIn", unit: "bits_per_second", labels: &["interface"], description: "Received bits per second per interface" },
    MetricInfo { metric: Metric::NetworkOut, name: "networkOut", unit: "bits_per_second", labels: &["interface"], description: "Transmitted bits per second per interface" },
    MetricInfo { metric: Metric::DeviceOffline, name: "deviceOffline", unit: "boolean", labels: &[], description: "1 while the device does not report or answer, else 0" },
    MetricInfo { metric: Metric::InterfaceUtilisation, name: "interfaceUtilisation", unit: "percent", labels: &["interface"], description: "Interface utilisation of link speed, max of in and out" },
    MetricInfo { metric: Metric::InterfaceErrors, name: "interfaceErrors", unit: "per_second", labels: &["interface", "direction"], description: "Interface errors per second" },
    MetricInfo { metric: Metric::InterfaceDiscards, name: "interfaceDiscards", unit: "per_second", labels: &["interface", "direction"], description: "Interface discards per second" },
    MetricInfo { metric: Metric::InterfaceDown, name: "interfaceDown", unit: "boolean", labels: &["interface"], description: "1 while the interface's operational status is not up, else 0" },
    MetricInfo { metric: Metric::ProbeLatency, name: "probeLatency", unit: "milliseconds", labels: &["probe", "target"], description: "Probe round-trip time" },
    MetricInfo { metric: Metric::ProbeJitter, name: "probeJitter", unit: "milliseconds", labels: &["probe", "target"], description: "Probe jitter (mean deviation of round-trip time)" },
    MetricInfo { metric: Metric::ProbeLoss, name: "probeLoss", unit: "percent", labels: &["probe", "target"], description: "Probe packet loss percentage" },
    MetricInfo { metric: Metric::ServiceFailed, name: "serviceFailed", unit: "boolean", labels: &["service"], description: "1 while a monitored service is failed, else 0" },
    MetricInfo { metric: Metric::PatchFailed, name: "patchFailed", unit: "count", labels: &["classification"], description: "Patch installations that failed in the last run" },
    MetricInfo { metric: Metric::CpuCore, name: "cpuCore", unit: "percent", labels: &["core"], description: "CPU busy percentage of one logical core" },
    MetricInfo { metric: Metric::Load1, name: "load1", unit: "load", labels: &[], description: "1-minute load average" },
    MetricInfo { metric: Metric::Load5, name: "load5", unit: "load", labels: &[], description: "5-minute load average" },
    MetricInfo { metric: Metric::Load15, name: "load15", unit: "load", labels: &[], description: "15-minute load average" },
    MetricInfo { metric: Metric::MemoryUsedBytes, name: "memoryUsedBytes", unit: "bytes", labels: &[], description: "Used physical memory" },
    MetricInfo { metric: Metric::Swap, name: "swap", unit: "percent", labels: &[], description: "Used swap percentage (0 without swap)" },
    MetricInfo { metric: Metric::SwapUsedBytes, name: "swapUsedBytes", unit: "bytes", labels: &[], description: "Used swap" },
    MetricInfo { metric: Metric::DiskUsedBytes, name: "diskUsedBytes", unit: "bytes", labels: &["mount"], description: "Used space per mounted filesystem" },
    MetricInfo { metric: Metric::DiskReadBytes, name: "diskReadBytes", unit: "bytes_per_second", labels: &["device"], description: "Bytes read per second per block device" },
    MetricInfo { metric: Metric::DiskWriteBytes, name: "diskWriteBytes", unit: "bytes_per_second", labels: &["device"], description: "Bytes written per second per block device" },
    MetricInfo { metric: Metric::NetworkPacketsIn, name: "networkPacketsIn", unit: "packets_per_second", labels: &["interface"], description: "Received packets per second per interface" },
    MetricInfo { metric: Metric::NetworkPacketsOut, name: "networkPacketsOut", unit: "packets_per_second", labels: &["interface"], description: "Transmitted packets per second per interface" },
    MetricInfo { metric: Metric::NetworkErrors, name: "networkErrors", unit: "per_second", labels: &["interface"], description: "Receive plus transmit errors per second per interface" },
    MetricInfo { metric: Metric::NetworkDrops, name: "networkDrops", unit: "per_second", labels: &["interface"], description: "Receive plus transmit drops per second per interface" },
    MetricInfo { metric: Metric::Uptime, name: "uptime", unit: "seconds", labels: &[], description: "Seconds since boot" },
    MetricInfo { metric: Metric::Processes, name: "processes", unit: "count", labels: &[], description: "Number of processes" },
];

impl Metric {
    /// Catalogue entry of this metric.
    pub fn info(self) -> &'static MetricInfo {
        CATALOG
            .iter()
            .find(|i| i.metric == self)
            .unwrap_or(&CATALOG[0])
    }

    /// Name as written in manifests.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// Looks a metric up by its manifest name.
    pub fn from_name(name: &str) -> Option<Metric> {
        CATALOG.iter().find(|i| i.name == name).map(|i| i.metric)
    }

    /// Whether the value is a percentage (bounded 0-100).
    pub fn is_percent(self) -> bool {
        self.info().unit == "percent"
    }

    /// Whether the value is a 0/1 state.
    pub fn is_boolean(self) -> bool {
        self.info().unit == "boolean"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_complete_and_names_match_serde() {
        assert_eq!(CATALOG.len(), 31);
        for info in CATALOG {
            let json = serde_json::to_value(info.metric).expect("serialize");
            assert_eq!(json, serde_json::Value::String(info.name.to_owned()));
            assert_eq!(info.metric.info(), info);
            assert_eq!(Metric::from_name(info.name), Some(info.metric));
        }
        assert_eq!(Metric::from_name("nope"), None);
    }
}
