//! Network discovery: the DiscoveryScan runs the operator assigns this collector.
//!
//! A run sweeps its addresses ([`targets`]: targets minus excludes, network and broadcast
//! addresses of IPv4 CIDRs left out as `fping -g` does) with ICMP echoes, then asks every
//! responder (or every address, with `silentHosts` or without ICMP) over SNMP with the
//! run's credentials in order, reading the system group, interfaces, addresses, serial
//! number and LLDP neighbours of the first that answers.
//!
//! Design choices:
//! - **Speed comes from waiting in parallel.** On a real network most addresses are silent,
//!   and each costs `timeout × (1 + retries)`. Up to `concurrency` addresses are in flight
//!   at once; what spaces packets is one pacer per run (`rate_limit` packets a second,
//!   ICMP and SNMP, retries included), never the timeouts.
//! - **Bounded memory.** Addresses are produced from ranges as they are taken, at most
//!   `concurrency` address tasks exist, and found hosts are held only until the next
//!   report (every 2 s), cut to fit a batch.
//! - **Never trusting the network.** Answers are parsed without panics; a peer that answers
//!   garbage costs its timeouts and is counted `malformed`; an optional table that fails
//!   loses only itself.
//! - **Nothing persisted.** A stopped run (assignment removed, collector stopping) sends no
//!   final report; the operator re-assigns it, and a restarted collector starts it over
//!   from the first address with a new `startedMs`.
mod identify;
mod lldp;
mod metrics;
mod oids;
mod progress;
mod run;
mod runner;
mod sweep;
mod tables;
mod targets;
mod values;

pub use metrics::DiscoveryMetrics;
pub use runner::spawn;
