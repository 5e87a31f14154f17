//! Patching: PatchPolicies turned into installs on agents, ring by ring.
//!
//! * [`approve`] decides what a policy does with one update (deny wins, then approval by
//!   pattern, then automatic approval after its deferral).
//! * [`rings`] places devices in rings and moves a rollout from ring to ring, gated on the
//!   previous ring's installs and alerts.
//! * [`work`] turns a device's scan and the decisions into the install item the agent
//!   fetches over the work channel (`crate::work`).
//! * [`engine`] opens rings, halts rollouts and writes the policies' statuses.
//! * [`plan`] and [`compliance`] answer people: what an approval commit would do, and how
//!   compliant devices are.
//! * [`routes`]: the agent's scan report and the people's plan and compliance routes.
pub mod approve;
pub mod check;
pub mod compliance;
pub mod engine;
pub mod plan;
pub mod rings;
pub mod routes;
pub mod store;
pub mod work;

pub use engine::Patching;
