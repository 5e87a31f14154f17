//! Automation: Workflows run as persisted state machines, one lane per device.
//!
//! * [`triggers`]: where runs come from (alert transitions, service failures, patch
//!   failures, offline devices, schedules), each occurrence with a dedup key.
//! * [`start`]: which runs an event starts (condition, concurrency, cooldown, blast radius).
//! * [`engine`]: moves each lane step by step, in transactions with their audit entries;
//!   agent steps go out over the work channel (`crate::work`) with their idempotency key as
//!   the item id.
//! * [`store`]: runs, lanes, attempts and approvals (migration 0017).
//! * [`deliver`]: Notify and OpenTicket steps through NotificationChannels.
//! * [`routes`]: start, plan, list, read, approve and cancel runs.
//! * [`sandbox`]: the rhai engine with its limits, for conditions, `until` and Rhai steps.
//! * [`plan`]: the dry-run plan of a run (each step's concrete effect per device, and its undo).
//! * [`audit`]: the hash-chained audit log of every run and step, and its verification.

pub mod audit;
pub mod audit_routes;
pub mod deliver;
pub mod engine;
pub mod plan;
pub mod routes;
pub mod sandbox;
pub mod start;
pub mod store;
pub mod triggers;

pub use engine::Automation;
