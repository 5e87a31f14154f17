//! `cdot-collector`: the cdot-rmm site collector.
//!
//! It receives what routers export ([`flow`]: NetFlow v5/v9, IPFIX, sFlow, aggregated per
//! minute), polls interface counters of the site's devices ([`snmp`]), measures latency,
//! jitter and loss ([`probe`]), and sweeps networks for devices ([`discovery`]). It enrolls
//! and reports like an agent (a Device of class Collector), reusing `cdot-agent`'s
//! enrollment, client and spool.
#![forbid(unsafe_code)]

pub mod cli;
mod component;
pub mod discovery;
pub mod flow;
mod icmp;
pub mod metrics;
mod pace;
pub mod probe;
pub mod report;
pub mod ship;
pub mod snmp;

/// Version of this collector, sent in every batch.
pub const COLLECTOR_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Now, Unix milliseconds (0 before 1970, the maximum far after it).
pub(crate) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}
