//! `cdot-agent`: the cdot-rmm endpoint agent.
//!
//! It collects host metrics ([`sources::host_metrics`]) and inventory
//! ([`sources::inventory`]), enrolls with the operator ([`enroll`]), and reports over mutual
//! TLS or signed JWTs ([`client`], [`jwt`]). Every metrics batch is written to the on-disk
//! [`spool`] before it is sent and removed only when the operator acknowledges it, so an
//! operator outage or a restart loses nothing. Workflow steps (scripts, service restarts,
//! network isolation) come over the work channel ([`work`]) and run in [`actions`]. [`run::Agent`] runs it all as tasks that never
//! wait on each other: collection goes on while delivery is stuck.
//!
//! The modules are public so that end-to-end tests and load generators can drive the same
//! code the binary runs; [`testing`] (feature `test-support`) holds the fixtures of those
//! tests, the collector's included.
#![forbid(unsafe_code)]

pub mod actions;
pub mod cli;
pub mod client;
pub mod config;
pub mod delivery;
pub mod enroll;
pub mod jwt;
pub mod patches;
pub mod refresh;
pub mod run;
pub mod service;
pub mod sources;
pub mod spool;
pub mod state;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod work;

/// Version of this agent, sent in every report.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
