//! The declarative API of cdot-rmm.
//!
//! Everything an MSP configures is a namespaced custom resource of the group
//! [`GROUP`] (`rmm.cdot.io`), version [`VERSION`]: [`device::Device`],
//! [`alert_rule::AlertRule`], [`notification_channel::NotificationChannel`],
//! [`patch_policy::PatchPolicy`], [`workflow::Workflow`] and
//! [`discovery_scan::DiscoveryScan`]. This crate holds their types (whose `///` comments
//! become the `kubectl explain` text), defaults, schema and CEL rules, the extra validation a
//! schema cannot express ([`validation::Validate`]), the standalone manifest parser
//! ([`manifest`]) and the CRD generator ([`crdgen`]). It needs no Kubernetes cluster.
#![forbid(unsafe_code)]
// `#[kube(printcolumn(type_ = .., ..), printcolumn(type_ = .., ..))]` repeats keys by design.
#![allow(clippy::duplicated_attributes)]

pub mod alert_rule;
pub mod api_token;
pub mod common;
pub mod crdgen;
pub mod device;
pub mod discovery_scan;
pub mod enrollment_token;
pub mod excerpt;
pub mod kind;
pub mod manifest;
pub mod metrics_catalog;
pub mod notification_channel;
pub mod patch_policy;
pub mod silence;
pub mod template;
#[cfg(test)]
mod test_support;
pub mod validation;
pub mod wire;
pub mod workflow;

/// API group of every cdot-rmm custom resource.
pub const GROUP: &str = "rmm.cdot.io";
/// The only served (and stored) version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every cdot-rmm custom resource.
pub const API_VERSION: &str = "rmm.cdot.io/v1alpha1";
/// Label naming the site (a client's location) of a device or scan.
pub const SITE_LABEL: &str = "rmm.cdot.io/site";
/// Label of objects the system created: `enrollment` (an agent enrolled), `discovery`.
pub const ORIGIN_LABEL: &str = "rmm.cdot.io/origin";
/// Label of enrolled Devices: the enrollment token (Secret name) the agent used.
pub const ENROLLMENT_TOKEN_LABEL: &str = "rmm.cdot.io/enrollment-token";
/// Category shared by all kinds, so `kubectl get rmm` lists them all.
pub const CATEGORY: &str = "rmm";

pub use kind::Kind;
pub use validation::{FieldError, Validate};
