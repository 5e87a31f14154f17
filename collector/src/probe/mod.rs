//! Active probes: ICMP echo latency, jitter and loss.
//!
//! A [`Prober`] runs one round of echoes to a target ([`RoundPlan`]: five echoes spaced so
//! that the round fits its interval) and summarises it ([`stats`]); [`spawn`] runs every
//! ICMP probe at its interval. TCP, HTTP and DNS probes are not supported yet: they are
//! skipped, counted and logged once. ICMP needs root, CAP_NET_RAW or a
//! `net.ipv4.ping_group_range` that includes the collector's group.
mod error;
mod icmp;
mod metrics;
mod runner;
pub mod stats;

pub use error::{ProbeError, ProbeId};
pub use icmp::{Prober, RoundPlan};
pub use metrics::ProbeMetrics;
pub use runner::spawn;
