//! Host metrics: CPU, load, memory and swap, filesystems, disk I/O, network, uptime,
//! processes and monitored services, as catalogue samples
//! ([`cdot_crds::metrics_catalog::CATALOG`]).
//!
//! CPU, memory, load and uptime come from `sysinfo` (refreshing only those); filesystem
//! usage from `statvfs` (df-compatible numbers, which sysinfo does not expose), disk I/O from
//! `/proc/diskstats`, network from `/proc/net/dev` (sysinfo has no drop counters), the
//! process count from the entries of `/proc`. Rates need two readings, so the first
//! collection after start omits them (`cpu`, `cpuCore`, disk I/O and network).
use std::{
    collections::BTreeMap,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use cdot_crds::{metrics_catalog::Metric, wire::Sample};
use sysinfo::System;

pub mod cpu;
pub mod disk;
pub mod memory;
pub mod network;
pub mod service;
pub mod system;

/// Failure to set up the collector.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// sysinfo could not initialise.
    #[error("failed to initialise sysinfo: {0}")]
    Sysinfo(String),
}

/// Collects host metrics; keeps the previous counters for rates.
pub struct HostMetrics {
    sys: System,
    cpu_primed: bool,
    disk_io: disk::DiskIo,
    net: network::NetIo,
}

impl std::fmt::Debug for HostMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostMetrics").finish_non_exhaustive()
    }
}

impl HostMetrics {
    /// A collector with no previous reading.
    pub fn new() -> Result<Self, CollectError> {
        let sys = System::new().map_err(|e| CollectError::Sysinfo(e.to_string()))?;
        Ok(Self {
            sys,
            cpu_primed: false,
            disk_io: disk::DiskIo::default(),
            net: network::NetIo::default(),
        })
    }

    /// One reading of every metric. Rate metrics are present from the second call on.
    /// `services` are the systemd units reported as `serviceFailed`.
    pub fn collect(&mut self, services: &[String]) -> Vec<Sample> {
        let mut out = Samples::new(unix_millis());
        let now = Instant::now();
        cpu::collect(&mut self.sys, self.cpu_primed, &mut out);
        self.cpu_primed = true;
        memory::collect(&mut self.sys, &mut out);
        system::collect(&mut out);
        disk::collect_usage(&mut out);
        self.disk_io.collect(now, &mut out);
        self.net.collect(now, &mut out);
        service::collect(services, &mut out);
        out.samples
    }
}

/// Samples of one collection, all with the same timestamp.
#[derive(Debug)]
pub struct Samples {
    t: i64,
    /// The samples so far.
    pub samples: Vec<Sample>,
}

impl Samples {
    /// An empty set at time `t` (Unix ms).
    pub fn new(t: i64) -> Self {
        Self {
            t,
            samples: Vec::with_capacity(64),
        }
    }

    /// Adds an unlabelled sample; non-finite values are skipped.
    pub fn push(&mut self, metric: Metric, v: f64) {
        debug_assert!(metric.info().labels.is_empty(), "{metric:?} needs labels");
        self.push_with(metric, BTreeMap::new(), v);
    }

    /// Adds a sample with the metric's single label set to `value`.
    pub fn push_labelled(&mut self, metric: Metric, value: &str, v: f64) {
        let labels = metric.info().labels;
        debug_assert_eq!(labels.len(), 1, "{metric:?} has not exactly one label");
        let Some(key) = labels.first() else { return };
        self.push_with(
            metric,
            BTreeMap::from([((*key).to_owned(), value.to_owned())]),
            v,
        );
    }

    fn push_with(&mut self, metric: Metric, l: BTreeMap<String, String>, v: f64) {
        if v.is_finite() {
            self.samples.push(Sample {
                t: self.t,
                n: metric.name().to_owned(),
                l,
                v,
            });
        }
    }
}

/// Current time, Unix milliseconds.
pub fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Percentage `part / whole`, 0 when `whole` is 0.
pub(crate) fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        (part / whole * 100.0).clamp(0.0, 100.0)
    } else {
        0.0
    }
}

/// Per-second rate of a counter; `None` when the counter went backwards (reset or wrap).
pub(crate) fn rate(prev: u64, cur: u64, secs: f64) -> Option<f64> {
    (cur >= prev && secs > 0.0).then(|| (cur - prev) as f64 / secs)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use cdot_crds::metrics_catalog::CATALOG;

    use super::*;

    fn value(samples: &[Sample], name: &str) -> f64 {
        samples
            .iter()
            .find(|s| s.n == name && s.l.is_empty())
            .map(|s| s.v)
            .unwrap_or_else(|| panic!("no sample {name}"))
    }

    #[test]
    fn first_reading_omits_rates_second_has_them() {
        let mut hm = HostMetrics::new().expect("sysinfo");
        let first = hm.collect(&[]);
        let names: BTreeSet<&str> = first.iter().map(|s| s.n.as_str()).collect();
        for rate in ["cpu", "cpuCore", "networkIn", "diskReadBytes"] {
            assert!(!names.contains(rate), "{rate} in first batch");
        }
        for present in ["memory", "load1", "uptime", "processes", "disk"] {
            assert!(names.contains(present), "{present} missing");
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        let second = hm.collect(&[]);
        let names: BTreeSet<&str> = second.iter().map(|s| s.n.as_str()).collect();
        assert!(
            names.contains("cpu") && names.contains("cpuCore"),
            "{names:?}"
        );
        let cores = second.iter().filter(|s| s.n == "cpuCore").count();
        assert_eq!(
            cores,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        for s in &second {
            let info = CATALOG.iter().find(|i| i.name == s.n).expect("catalogued");
            let keys: Vec<&str> = s.l.keys().map(String::as_str).collect();
            assert_eq!(keys, info.labels, "{s:?}");
            assert!(s.v.is_finite() && s.v >= 0.0, "{s:?}");
            if info.unit == "percent" {
                assert!(s.v <= 100.0, "{s:?}");
            }
        }
    }

    #[test]
    fn memory_matches_proc_meminfo() {
        let mut hm = HostMetrics::new().expect("sysinfo");
        let samples = hm.collect(&[]);
        let meminfo = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
        let field = |name: &str| -> f64 {
            meminfo
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
                .map(|kib| kib * 1024.0)
                .unwrap_or_else(|| panic!("no {name} in /proc/meminfo"))
        };
        let used = field("MemTotal") - field("MemAvailable");
        let reported = value(&samples, "memoryUsedBytes");
        // Other processes allocate between the two readings: allow 64 MiB or 5 %.
        let tolerance = (64.0 * 1024.0 * 1024.0f64).max(field("MemTotal") * 0.05);
        assert!(
            (reported - used).abs() < tolerance,
            "memoryUsedBytes {reported} vs /proc/meminfo {used}"
        );
        let pct = value(&samples, "memory");
        assert!(
            (pct - used / field("MemTotal") * 100.0).abs() < 5.0,
            "{pct}"
        );
        let swap_used = field("SwapTotal") - field("SwapFree");
        assert!((value(&samples, "swapUsedBytes") - swap_used).abs() < tolerance);
    }

    #[test]
    fn uptime_and_load_match_proc() {
        let mut hm = HostMetrics::new().expect("sysinfo");
        let samples = hm.collect(&[]);
        let uptime: f64 = std::fs::read_to_string("/proc/uptime")
            .expect("uptime")
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .expect("number");
        assert!((value(&samples, "uptime") - uptime).abs() < 3.0);
        let loadavg = std::fs::read_to_string("/proc/loadavg").expect("loadavg");
        let loads: Vec<f64> = loadavg
            .split_whitespace()
            .take(3)
            .map(|s| s.parse().expect("load"))
            .collect();
        // The 1-minute average may move a little between the two readings.
        assert!((value(&samples, "load1") - loads[0]).abs() < 0.5);
        assert!((value(&samples, "load5") - loads[1]).abs() < 0.2);
        assert!((value(&samples, "load15") - loads[2]).abs() < 0.1);
        let procs = value(&samples, "processes");
        assert!(procs >= 1.0);
    }
}
