//! The seven kinds as a value: names, plurals, short names and CRDs.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde::{Deserialize, Serialize};

use crate::{
    alert_rule::AlertRule, device::Device, discovery_scan::DiscoveryScan,
    notification_channel::NotificationChannel, patch_policy::PatchPolicy, silence::Silence,
    workflow::Workflow,
};

/// One of the cdot-rmm custom resource kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    /// [`Device`].
    Device,
    /// [`AlertRule`].
    AlertRule,
    /// [`NotificationChannel`].
    NotificationChannel,
    /// [`PatchPolicy`].
    PatchPolicy,
    /// [`Workflow`].
    Workflow,
    /// [`DiscoveryScan`].
    DiscoveryScan,
    /// [`Silence`].
    Silence,
}

impl Kind {
    /// Every kind, in dependency-friendly order (channels before rules that reference them is
    /// not required, but devices first helps people reading lists).
    pub const ALL: [Kind; 7] = [
        Kind::Device,
        Kind::AlertRule,
        Kind::NotificationChannel,
        Kind::PatchPolicy,
        Kind::Workflow,
        Kind::DiscoveryScan,
        Kind::Silence,
    ];

    /// The `kind` string, e.g. `Device`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Device => "Device",
            Kind::AlertRule => "AlertRule",
            Kind::NotificationChannel => "NotificationChannel",
            Kind::PatchPolicy => "PatchPolicy",
            Kind::Workflow => "Workflow",
            Kind::DiscoveryScan => "DiscoveryScan",
            Kind::Silence => "Silence",
        }
    }

    /// Lowercase plural resource name, e.g. `devices`.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Device => "devices",
            Kind::AlertRule => "alertrules",
            Kind::NotificationChannel => "notificationchannels",
            Kind::PatchPolicy => "patchpolicies",
            Kind::Workflow => "workflows",
            Kind::DiscoveryScan => "discoveryscans",
            Kind::Silence => "silences",
        }
    }

    /// Lowercase singular name, e.g. `device`.
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Device => "device",
            Kind::AlertRule => "alertrule",
            Kind::NotificationChannel => "notificationchannel",
            Kind::PatchPolicy => "patchpolicy",
            Kind::Workflow => "workflow",
            Kind::DiscoveryScan => "discoveryscan",
            Kind::Silence => "silence",
        }
    }

    /// Short name, e.g. `dev`.
    pub fn short_name(self) -> &'static str {
        match self {
            Kind::Device => "dev",
            Kind::AlertRule => "ar",
            Kind::NotificationChannel => "nc",
            Kind::PatchPolicy => "pp",
            Kind::Workflow => "wf",
            Kind::DiscoveryScan => "ds",
            Kind::Silence => "sil",
        }
    }

    /// `rmm.cdot.io/v1alpha1`.
    pub fn api_version(self) -> &'static str {
        crate::API_VERSION
    }

    /// Looks a kind up by its exact `kind` string.
    pub fn from_kind_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Looks a kind up by a URL path segment: plural, lowercase singular or short name.
    pub fn from_path_segment(segment: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.plural() == segment || k.singular() == segment || k.short_name() == segment)
    }

    /// The generated CustomResourceDefinition.
    pub fn crd(self) -> CustomResourceDefinition {
        match self {
            Kind::Device => Device::crd(),
            Kind::AlertRule => AlertRule::crd(),
            Kind::NotificationChannel => NotificationChannel::crd(),
            Kind::PatchPolicy => PatchPolicy::crd(),
            Kind::Workflow => Workflow::crd(),
            Kind::DiscoveryScan => DiscoveryScan::crd(),
            Kind::Silence => Silence::crd(),
        }
    }

    /// CRD name, e.g. `devices.rmm.cdot.io`.
    pub fn crd_name(self) -> String {
        format!("{}.{}", self.plural(), crate::GROUP)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_the_crds() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_kind_name(k.as_str()), Some(k));
            assert_eq!(Kind::from_path_segment(k.plural()), Some(k));
            assert_eq!(Kind::from_path_segment(k.singular()), Some(k));
            assert_eq!(Kind::from_path_segment(k.short_name()), Some(k));
            let crd = k.crd();
            assert_eq!(crd.metadata.name.as_deref(), Some(k.crd_name().as_str()));
            assert_eq!(crd.spec.group, crate::GROUP);
            assert_eq!(crd.spec.names.kind, k.as_str());
            assert_eq!(crd.spec.names.plural, k.plural());
            assert_eq!(
                crd.spec.names.short_names,
                Some(vec![k.short_name().to_owned()])
            );
            assert_eq!(
                crd.spec.names.categories,
                Some(vec![crate::CATEGORY.to_owned()])
            );
            assert_eq!(crd.spec.scope, "Namespaced");
            let v = &crd.spec.versions[0];
            assert_eq!(v.name, crate::VERSION);
            assert!(
                v.subresources
                    .as_ref()
                    .and_then(|s| s.status.as_ref())
                    .is_some()
            );
        }
        assert_eq!(Kind::from_kind_name("device"), None);
        assert_eq!(Kind::from_path_segment("Device"), None);
    }
}
