//! Network discovery: DiscoveryScans run by site collectors (ICMP sweep, SNMP identity,
//! LLDP neighbours), found hosts matched to Devices before anything is registered, and
//! the topology the LLDP links make.
//!
//! - [`schedule`]: when a scan runs (cron in its time zone, or once per generation);
//! - [`collectors`]: which collector runs it;
//! - [`assign`]: the run as the collector receives it (credentials resolved);
//! - [`store`]: runs, found hosts, links, and the Devices discovery writes;
//! - [`identity`], [`classify`], [`register`]: which Device a host is, its class, and what
//!   it becomes;
//! - [`engine`]: the task that drives all of it;
//! - [`topology`]: which Device stands between the collector and another (inhibition);
//! - [`routes`]: the topology API.
pub mod assign;
pub mod classify;
pub mod collectors;
pub mod engine;
pub mod identity;
pub mod inhibit;
pub mod register;
pub mod routes;
pub mod schedule;
pub mod store;
pub mod topology;

pub use engine::{Discovery, Settings};
