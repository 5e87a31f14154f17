//! Per-interface network rates from `/proc/net/dev`: `networkIn`/`networkOut` (bits/s),
//! `networkPacketsIn`/`networkPacketsOut`, `networkErrors` and `networkDrops` (per second,
//! receive plus transmit). The loopback interface is skipped.
use std::{collections::HashMap, time::Instant};

use cdot_crds::metrics_catalog::Metric;

use super::{Samples, rate};

/// Counters of one interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Receive drops.
    pub rx_drops: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Transmit drops.
    pub tx_drops: u64,
}

/// Parses `/proc/net/dev`.
pub fn parse_net_dev(text: &str) -> Vec<(String, NetCounters)> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect();
            if f.len() < 16 {
                return None;
            }
            Some((
                name.trim().to_owned(),
                NetCounters {
                    rx_bytes: f[0],
                    rx_packets: f[1],
                    rx_errors: f[2],
                    rx_drops: f[3],
                    tx_bytes: f[8],
                    tx_packets: f[9],
                    tx_errors: f[10],
                    tx_drops: f[11],
                },
            ))
        })
        .collect()
}

/// Network rates from consecutive readings.
#[derive(Debug, Default)]
pub struct NetIo {
    prev: Option<(Instant, HashMap<String, NetCounters>)>,
}

impl NetIo {
    /// Reads `/proc/net/dev`; emits rates when a previous reading exists.
    pub fn collect(&mut self, now: Instant, out: &mut Samples) {
        let Ok(text) = std::fs::read_to_string("/proc/net/dev") else {
            return;
        };
        let current: HashMap<String, NetCounters> = parse_net_dev(&text)
            .into_iter()
            .filter(|(name, _)| name != "lo")
            .collect();
        if let Some((then, prev)) = &self.prev {
            let secs = now.duration_since(*then).as_secs_f64();
            let mut names: Vec<&String> = current.keys().collect();
            names.sort();
            for name in names {
                let (Some(c), Some(p)) = (current.get(name), prev.get(name)) else {
                    continue;
                };
                let mut emit = |metric, old: u64, new: u64, factor: f64| {
                    if let Some(r) = rate(old, new, secs) {
                        out.push_labelled(metric, name, r * factor);
                    }
                };
                emit(Metric::NetworkIn, p.rx_bytes, c.rx_bytes, 8.0);
                emit(Metric::NetworkOut, p.tx_bytes, c.tx_bytes, 8.0);
                emit(Metric::NetworkPacketsIn, p.rx_packets, c.rx_packets, 1.0);
                emit(Metric::NetworkPacketsOut, p.tx_packets, c.tx_packets, 1.0);
                emit(
                    Metric::NetworkErrors,
                    p.rx_errors.saturating_add(p.tx_errors),
                    c.rx_errors.saturating_add(c.tx_errors),
                    1.0,
                );
                emit(
                    Metric::NetworkDrops,
                    p.rx_drops.saturating_add(p.tx_drops),
                    c.rx_drops.saturating_add(c.tx_drops),
                    1.0,
                );
            }
        }
        self.prev = Some((now, current));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 5000000   4000    1    2    0     0          0         0  2000000    3000    3    4    0     0       0          0
";

    #[test]
    fn net_dev_parses() {
        let parsed = parse_net_dev(DEV);
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            parsed[1],
            (
                "eth0".to_owned(),
                NetCounters {
                    rx_bytes: 5_000_000,
                    rx_packets: 4000,
                    rx_errors: 1,
                    rx_drops: 2,
                    tx_bytes: 2_000_000,
                    tx_packets: 3000,
                    tx_errors: 3,
                    tx_drops: 4
                }
            )
        );
    }

    #[test]
    fn rates_from_real_proc_net_dev() {
        let mut net = NetIo::default();
        let start = Instant::now();
        let mut out = Samples::new(0);
        net.collect(start, &mut out);
        assert!(out.samples.is_empty(), "first reading has no rates");
        net.collect(start + Duration::from_secs(2), &mut out);
        assert!(
            out.samples
                .iter()
                .all(|s| s.l["interface"] != "lo" && s.v >= 0.0)
        );
    }
}
