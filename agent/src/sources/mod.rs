//! Data sources: one folder per component.
pub mod host_metrics;
pub mod inventory;
