//! `PatchPolicy` (`pp`): which patches are approved for which devices, in which rings and windows.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    common::{
        Condition, DURATION_PATTERN, LabelSelector, TimeWindow, check_duration_into, check_unique,
        validate_selector,
    },
    excerpt::excerpt,
    validation::{Errors, FieldError, Validate, is_dns1123_label},
};

/// Desired state of a patch policy. Approving a patch is editing this resource (a commit).
#[derive(CustomResource, KubeSchema, Clone, Debug, Serialize, Deserialize, PartialEq)]
#[kube(
    group = "rmm.cdot.io",
    version = "v1alpha1",
    kind = "PatchPolicy",
    namespaced,
    status = "PatchPolicyStatus",
    shortname = "pp",
    category = "rmm",
    plural = "patchpolicies",
    doc = "Approves and schedules operating-system and third-party patches for selected devices, in rings.",
    printcolumn(name = "Audit Only", type_ = "boolean", json_path = ".spec.auditOnly"),
    printcolumn(
        name = "Devices",
        type_ = "integer",
        json_path = ".status.devicesInScope"
    ),
    printcolumn(name = "Compliant", type_ = "integer", json_path = ".status.compliant"),
    printcolumn(
        name = "Rollout",
        type_ = "string",
        json_path = ".status.rollout.state"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("!has(self.rings) || self.rings.all(r, self.rings.exists_one(o, o.name == r.name))").message("ring names must be unique").field_path(".rings"))]
pub struct PatchPolicySpec {
    /// Devices (in this namespace) the policy applies to; empty selects all devices.
    #[serde(default)]
    pub selector: LabelSelector,
    /// Patch classifications in scope; others are ignored (neither installed nor reported missing).
    #[serde(default = "default_classifications")]
    #[schemars(length(min = 1, max = 5))]
    pub classifications: Vec<Classification>,
    /// How patches are approved.
    #[serde(default)]
    pub approval: Approval,
    /// Ordered rollout rings. A device belongs to the first ring whose selector matches; a ring
    /// without a selector takes every remaining device. Empty: one ring with every device.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub rings: Vec<Ring>,
    /// When installation may start; none means any time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_window: Option<TimeWindow>,
    /// Reboot policy after installation.
    #[serde(default)]
    pub reboot: RebootPolicy,
    /// Time between the end of an install and the reboot, e.g. `5m`, so users can save.
    #[serde(default = "default_reboot_delay")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub reboot_delay: String,
    /// Message broadcast to logged-in users when a reboot is scheduled.
    #[serde(default = "default_reboot_message")]
    #[schemars(length(min = 1, max = 256))]
    pub reboot_message: String,
    /// Only report compliance; never install.
    #[serde(default)]
    pub audit_only: bool,
}

/// The message users see before a patch reboot unless the policy sets another.
pub const DEFAULT_REBOOT_MESSAGE: &str =
    "This machine restarts to finish installing updates. Save your work.";

fn default_reboot_delay() -> String {
    "5m".into()
}

fn default_reboot_message() -> String {
    DEFAULT_REBOOT_MESSAGE.into()
}

fn default_classifications() -> Vec<Classification> {
    vec![Classification::Security, Classification::Critical]
}

/// Patch classification.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Classification {
    /// Security updates.
    Security,
    /// Critical (non-security) fixes.
    Critical,
    /// Bug fixes.
    Bugfix,
    /// Feature updates.
    Feature,
    /// Third-party application updates.
    ThirdParty,
}

/// Approval mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ApprovalMode {
    /// Only patches matching `approve` are installed.
    #[default]
    Manual,
    /// Patches are approved automatically after the deferral.
    Automatic,
}

/// Approval settings. Deny wins over approve and over automatic approval.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Approval {
    /// Per-classification approval rules; classifications without a rule are approved manually.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub rules: Vec<ApprovalRule>,
    /// Regular expressions on patch names (KB numbers, package names) that are approved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500), inner(length(min = 1, max = 256)))]
    pub approve: Vec<String>,
    /// Regular expressions on patch names that are never installed (wins over everything).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500), inner(length(min = 1, max = 256)))]
    pub deny: Vec<String>,
}

/// Approval of one classification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("self.mode == 'Automatic' || !has(self.deferralDays) || self.deferralDays == 0").message("deferralDays only applies to Automatic approval").field_path(".deferralDays"))]
pub struct ApprovalRule {
    /// Classification this rule applies to.
    pub classification: Classification,
    /// Approval mode.
    #[serde(default)]
    pub mode: ApprovalMode,
    /// Days after release before automatic approval (Automatic only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 365))]
    pub deferral_days: Option<u32>,
}

/// A rollout ring.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ring {
    /// Ring name (RFC 1123 label), unique in the policy.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Extra selector narrowing the policy's devices; omitted takes every remaining device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Delay after approval (or after the previous ring completed) before this ring starts, e.g. `2d`.
    #[serde(default = "default_delay")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub delay: String,
    /// Halt later rings when more than this percentage of this ring's devices failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_failure_percent: Option<u8>,
    /// How long this ring is watched after its devices finish before the next ring may
    /// start: a failed install or a new firing alert on its devices in that time halts the
    /// rollout. E.g. `1h`.
    #[serde(default = "default_soak")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub soak: String,
}

fn default_delay() -> String {
    "0s".into()
}

fn default_soak() -> String {
    "1h".into()
}

/// What happens after installation when a reboot is needed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum RebootPolicy {
    /// Never reboot; the device reports a pending reboot.
    Never,
    /// Reboot only when a patch requires it (inside the install window).
    #[default]
    IfRequired,
    /// Always reboot after installing.
    Always,
}

/// Observed state of a patch policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatchPolicyStatus {
    /// The `metadata.generation` last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions: `Ready` (see below), `Reconciling` (`False` with reason `Reconciled` once
    /// `observedGeneration` is reconciled), `Degraded` (`True` with reason `ValidationFailed`
    /// when the spec is invalid, the message naming each field; `False` otherwise).
    /// `Ready` is `True` once the spec is valid (reason `DevicesOutsideRings` when devices in
    /// scope match no ring); it does not mean patches are installed: `compliant`, `rings`
    /// and `rollout` say how far installs got.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Devices of the namespace the policy applies to; not updated while the spec is invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices_in_scope: Option<u32>,
    /// Devices in scope with a scan, no scan problem and every approved update installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compliant: Option<u32>,
    /// Where the rollouts of approved updates stand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// The devices of each ring of `spec.rings`, in order; not updated while the spec is
    /// invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rings: Option<Vec<RingStatus>>,
}

/// Progress of one ring.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RingStatus {
    /// Ring name.
    #[serde(default)]
    pub name: String,
    /// Devices in the ring.
    #[serde(default)]
    pub devices: u32,
    /// Devices with a scan and every approved update installed.
    #[serde(default)]
    pub completed: u32,
    /// Devices whose latest install of some approved update failed.
    #[serde(default)]
    pub failed: u32,
    /// Devices with approved updates not installed yet (their ring may not be open).
    #[serde(default)]
    pub pending: u32,
}

/// The state of a policy's rollouts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RolloutState {
    /// Nothing approved is missing on any device in scope, or the policy is audit only.
    #[default]
    Idle,
    /// Approved updates are on their way through the rings.
    Progressing,
    /// A ring's failed installs or new alerts stopped a rollout; a commit resumes it.
    Halted,
}

/// Rollout summary of a policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// Overall state.
    pub state: RolloutState,
    /// One line for people: what is halted and why, or what waits for what.
    pub message: String,
    /// Halted rollouts, one line each (`openssl 3.0.15: 1 of 2 installs in ring pilot failed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub halted: Vec<String>,
    /// Updates whose rollout is open in some ring, and the furthest ring each reached (the
    /// first 20; the plan lists every update).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub updates: Vec<UpdateRollout>,
}

/// How far one approved update got.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRollout {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// The last ring opened.
    pub ring: String,
    /// When the next ring opens, if it only waits for time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_ring_at: Option<String>,
}

impl Validate for PatchPolicySpec {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Errors::default();
        validate_selector(&self.selector, "spec.selector", &mut errs);
        let mut seen = std::collections::BTreeSet::new();
        for (i, c) in self.classifications.iter().enumerate() {
            if !seen.insert(*c) {
                errs.push(
                    format!("spec.classifications[{i}]"),
                    format!("classification {c:?} listed twice"),
                );
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, r) in self.approval.rules.iter().enumerate() {
            let path = format!("spec.approval.rules[{i}]");
            if !seen.insert(r.classification) {
                errs.push(
                    format!("{path}.classification"),
                    format!("classification {:?} has two rules", r.classification),
                );
            }
            if !self.classifications.contains(&r.classification) {
                errs.push(
                    format!("{path}.classification"),
                    format!(
                        "classification {:?} is not in spec.classifications",
                        r.classification
                    ),
                );
            }
            if r.mode == ApprovalMode::Manual && r.deferral_days.is_some_and(|d| d > 0) {
                errs.push(
                    format!("{path}.deferralDays"),
                    "deferralDays only applies to Automatic approval",
                );
            }
        }
        for (list, name) in [
            (&self.approval.approve, "approve"),
            (&self.approval.deny, "deny"),
        ] {
            for (i, p) in list.iter().enumerate() {
                if let Err(e) = regex::Regex::new(p) {
                    errs.push(
                        format!("spec.approval.{name}[{i}]"),
                        format!("invalid regular expression: {e}"),
                    );
                }
            }
        }
        check_unique(
            &mut errs,
            "spec.rings",
            "ring name",
            self.rings.iter().map(|r| r.name.as_str()),
        );
        let mut catch_all: Option<usize> = None;
        for (i, r) in self.rings.iter().enumerate() {
            let path = format!("spec.rings[{i}]");
            if !is_dns1123_label(&r.name) {
                errs.push(
                    format!("{path}.name"),
                    format!("{} is not an RFC 1123 label", excerpt(&r.name)),
                );
            }
            if let Some(j) = catch_all {
                errs.push(
                    path.clone(),
                    format!(
                        "unreachable: ring {j} has no selector and takes every remaining device"
                    ),
                );
            }
            match &r.selector {
                Some(s) => validate_selector(s, &format!("{path}.selector"), &mut errs),
                None => catch_all = catch_all.or(Some(i)),
            }
            check_duration_into(&mut errs, format!("{path}.delay"), &r.delay, false);
            check_duration_into(&mut errs, format!("{path}.soak"), &r.soak, false);
        }
        check_duration_into(&mut errs, "spec.rebootDelay", &self.reboot_delay, false);
        if self.reboot_message.trim().is_empty() || self.reboot_message.len() > 256 {
            errs.push(
                "spec.rebootMessage",
                "the reboot message must have 1 to 256 characters",
            );
        }
        if let Some(w) = &self.install_window {
            w.validate_into("spec.installWindow", &mut errs);
        }
        errs.into_vec()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::test_support::{doc, err_at, ok};

    fn base() -> Value {
        doc(
            "PatchPolicy",
            json!({
                "selector": {"matchLabels": {"role": "server"}},
                "classifications": ["security", "critical"],
                "approval": {
                    "rules": [{"classification": "security", "mode": "Automatic", "deferralDays": 3}],
                    "approve": ["^KB50"],
                    "deny": ["^KB5034439$"],
                },
                "rings": [
                    {"name": "pilot", "selector": {"matchLabels": {"ring": "pilot"}}},
                    {"name": "rest", "delay": "2d"},
                ],
                "installWindow": {"days": ["Tue"], "start": "22:00", "duration": "4h", "timeZone": "Europe/London"},
            }),
        )
    }

    #[test]
    fn base_is_valid_with_defaults() {
        ok(&base(), json!({}));
        let crate::manifest::Document::Resource(o) =
            crate::manifest::validate_document(&doc("PatchPolicy", json!({}))).expect("valid")
        else {
            panic!("not a resource")
        };
        assert_eq!(o.spec["classifications"], json!(["security", "critical"]));
        assert_eq!(o.spec["reboot"], "IfRequired");
        assert_eq!(o.spec["auditOnly"], false);
    }

    #[test]
    fn schema_level() {
        err_at(
            &base(),
            json!({"spec": {"classifications": ["drivers"]}}),
            "spec.classifications[0]",
        );
        err_at(
            &base(),
            json!({"spec": {"classifications": []}}),
            "spec.classifications",
        );
        err_at(
            &base(),
            json!({"spec": {"reboot": "Sometimes"}}),
            "spec.reboot",
        );
        err_at(
            &base(),
            json!({"spec": {"approval": {"rules": [{"classification": "security", "mode": "Automatic", "deferralDays": 400}]}}}),
            "spec.approval.rules[0].deferralDays",
        );
        err_at(
            &base(),
            json!({"spec": {"rings": [{"name": "a", "maxFailurePercent": 101}]}}),
            "spec.rings[0].maxFailurePercent",
        );
        err_at(
            &base(),
            json!({"spec": {"installWindow": {"start": "9pm"}}}),
            "spec.installWindow.start",
        );
    }

    #[test]
    fn deferral_only_with_automatic() {
        err_at(
            &base(),
            json!({"spec": {"approval": {"rules": [{"classification": "security", "mode": "Manual", "deferralDays": 3}]}}}),
            "spec.approval.rules[0].deferralDays",
        );
        ok(
            &base(),
            json!({"spec": {"approval": {"rules": [{"classification": "security", "mode": "Manual"}]}}}),
        );
    }

    #[test]
    fn classification_rules() {
        err_at(
            &base(),
            json!({"spec": {"classifications": ["security", "security"]}}),
            "spec.classifications[1]",
        );
        err_at(
            &base(),
            json!({"spec": {"approval": {"rules": [{"classification": "feature", "mode": "Automatic"}]}}}),
            "spec.approval.rules[0].classification",
        );
        err_at(
            &base(),
            json!({"spec": {"approval": {"rules": [{"classification": "security"}, {"classification": "security"}]}}}),
            "spec.approval.rules[1].classification",
        );
    }

    #[test]
    fn patterns_compile() {
        err_at(
            &base(),
            json!({"spec": {"approval": {"approve": ["KB(5"]}}}),
            "spec.approval.approve[0]",
        );
        err_at(
            &base(),
            json!({"spec": {"approval": {"deny": ["[z-a]"]}}}),
            "spec.approval.deny[0]",
        );
    }

    #[test]
    fn rings() {
        err_at(
            &base(),
            json!({"spec": {"rings": [{"name": "a"}, {"name": "a", "selector": {}}]}}),
            "spec.rings[1]",
        );
        err_at(
            &base(),
            json!({"spec": {"rings": [{"name": "Pilot_1", "selector": {}}]}}),
            "spec.rings[0].name",
        );
        err_at(
            &base(),
            json!({"spec": {"rings": [{"name": "all"}, {"name": "late", "selector": {"matchLabels": {"a": "b"}}}]}}),
            "spec.rings[1]",
        );
        err_at(
            &base(),
            json!({"spec": {"rings": [{"name": "a", "delay": "soon"}]}}),
            "spec.rings[0].delay",
        );
        err_at(
            &base(),
            json!({"spec": {"rings": [{"name": "a", "selector": {"matchExpressions": [{"key": "k", "operator": "Exists", "values": ["v"]}]}}]}}),
            "spec.rings[0].selector.matchExpressions[0].values",
        );
    }

    #[test]
    fn install_window() {
        err_at(
            &base(),
            json!({"spec": {"installWindow": {"timeZone": "Europe/Atlantis"}}}),
            "spec.installWindow.timeZone",
        );
        ok(
            &base(),
            json!({"spec": {"installWindow": {"timeZone": "Asia/Kolkata", "days": null}}}),
        );
    }
}
