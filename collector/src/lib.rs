//! `cdot-collector`: the cdot-rmm site collector.
//!
//! It receives what routers export ([`flow`]: NetFlow v5/v9, IPFIX, sFlow, aggregated per
//! minute), polls interface counters of the site's devices ([`snmp`]), and measures
//! latency, jitter and loss ([`probe`]). It enrolls and reports like an agent (a Device of
//! class Collector), reusing `cdot-agent`'s enrollment, client and spool.
#![forbid(unsafe_code)]

pub mod cli;
mod component;
pub mod flow;
pub mod metrics;
pub mod probe;
pub mod report;
pub mod ship;
pub mod snmp;

/// Version of this collector, sent in every batch.
pub const COLLECTOR_VERSION: &str = env!("CARGO_PKG_VERSION");
