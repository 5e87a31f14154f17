//! SNMP interface polling (IF-MIB), v1, v2c and v3.
//!
//! A [`Poller`] reads one device: sysUpTime.0, then the interface tables in one walk of
//! their columns (GETBULK; GETNEXT for v1), 64-bit ifXTable counters where the agent has
//! them and the 32-bit ifTable ones where it does not. Rates come from the deltas between
//! two polls ([`counters`]): 32-bit counters wrap modulo 2³², a 64-bit counter that goes
//! back was reset, and an agent restart (sysUpTime going back) leaves that interval without
//! rates. [`spawn`] runs one poller per target at the target's interval.
pub mod counters;
mod error;
mod metrics;
pub(crate) mod oids;
mod poller;
mod runner;
pub(crate) mod session;
pub(crate) mod walk;

pub use counters::{CounterSet, CounterWidth, NoRate};
pub use error::{Agent, SnmpError};
pub use metrics::SnmpMetrics;
pub use poller::{InterfaceRow, Poller, Snapshot};
pub use runner::spawn;
