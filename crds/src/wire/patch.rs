//! Patching on the wire: what an agent finds (`PUT /v1/agent/patches`), what it is asked
//! to install (a [`super::work::WorkKind::PatchInstall`] item), what it reports per package
//! (in a [`super::work::WorkReport`]), and what people read: a PatchPolicy's plan and the
//! compliance report.
//!
//! Classification on apt: a version from a `-security` suite (Debian `bookworm-security`,
//! Ubuntu `jammy-security`) is `security`; one from another suite of the operating system's
//! own origin (Debian, Ubuntu, Raspbian…) is `bugfix`; one from any other origin is
//! `thirdParty`. apt has no `critical` or `feature` class: those stay empty there.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{common::TimeWindow, patch_policy::Classification};

/// Most updates one scan may carry.
pub const MAX_UPDATES_PER_SCAN: usize = 20_000;

/// The package manager a scan or an install used.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum PatchBackend {
    /// Debian and Ubuntu (`apt-get`, `dpkg-query`).
    Apt,
    /// Fedora, RHEL and derivatives (`dnf`).
    Dnf,
}

/// `PUT /v1/agent/patches`: the device's update state, replacing the previous scan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchScan {
    /// Version of the agent binary.
    pub agent_version: String,
    /// Agent time the scan finished, Unix milliseconds.
    pub scanned_at_ms: i64,
    /// The backend that ran; absent when none could.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<PatchBackend>,
    /// Why no backend could scan (no apt or dnf, a locked database, a broken source list),
    /// with the command's own message. A scan with a problem lists no updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Packages installed (`dpkg-query` state `installed`, or `rpm -qa`).
    pub installed_packages: u32,
    /// Updates available for installed packages.
    pub updates: Vec<AvailableUpdate>,
    /// The system asks for a reboot (`/run/reboot-required` on Debian and Ubuntu,
    /// `needs-restarting -r` on dnf systems).
    pub reboot_required: bool,
}

/// One available update of one installed package.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AvailableUpdate {
    /// Package name (on apt without the architecture suffix unless it is foreign).
    pub name: String,
    /// Installed version.
    pub from: String,
    /// Candidate version.
    pub to: String,
    /// See the module docs.
    pub classification: Classification,
    /// Where the candidate comes from, e.g. `Debian:12.8/bookworm-security`.
    pub source: String,
    /// Download size in bytes, when the backend knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Installing it will ask for a reboot (kernels, the C library, init, microcode).
    #[serde(default)]
    pub reboot_required: bool,
}

/// Work item: install these updates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchInstall {
    /// The PatchPolicy that approved them.
    pub policy: String,
    /// The device's ring in that policy.
    pub ring: String,
    /// Approved updates, each to exactly this version, installed in this order.
    pub packages: Vec<PackageTarget>,
    /// The policy's deny patterns (regular expressions on package names): an approved
    /// package whose install would change or pull in a package they match is not installed
    /// and is reported `failed` with the conflict. Other packages it would upgrade must be
    /// approved too; packages new to the system that it pulls in (the next kernel ABI's
    /// image, a library's new soname) are allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// Install only while this window is open (the agent checks it, DST-safe); absent
    /// means any time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<TimeWindow>,
    /// What to do about a reboot afterwards.
    #[serde(default)]
    pub reboot: RebootAfter,
}

/// One approved update.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PackageTarget {
    /// Package name.
    pub name: String,
    /// Version to install.
    pub version: String,
    /// Its classification.
    pub classification: Classification,
}

/// The reboot policy as the agent applies it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RebootAfter {
    /// `Never`, `IfRequired` or `Always`.
    pub policy: crate::patch_policy::RebootPolicy,
    /// Seconds between the end of the install and the reboot.
    pub delay_secs: u64,
    /// Broadcast to logged-in users when the reboot is scheduled.
    pub message: String,
}

impl Default for RebootAfter {
    fn default() -> Self {
        Self {
            policy: crate::patch_policy::RebootPolicy::IfRequired,
            delay_secs: 300,
            message: crate::patch_policy::DEFAULT_REBOOT_MESSAGE.to_owned(),
        }
    }
}

/// State of one package of a patch install.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum PatchState {
    /// Approved, waiting for the window or its turn.
    Pending,
    /// Being downloaded.
    Downloading,
    /// Being installed.
    Installing,
    /// Installed at the target version.
    Installed,
    /// Not installed: the command failed, or it would have changed a denied or unapproved
    /// package (see `detail`). Tried again in the next window.
    Failed,
    /// Not installed this time: the window closed (or was not open) before its turn.
    Skipped,
}

impl PatchState {
    /// Lower-case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Downloading => "downloading",
            Self::Installing => "installing",
            Self::Installed => "installed",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    /// The state named `s`, as stored.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "downloading" => Self::Downloading,
            "installing" => Self::Installing,
            "installed" => Self::Installed,
            "failed" => Self::Failed,
            "skipped" => Self::Skipped,
            _ => return None,
        })
    }
}

/// Progress of one package.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchProgress {
    /// Package name.
    pub name: String,
    /// Target version.
    pub version: String,
    /// State entered.
    pub state: PatchState,
    /// Agent time, Unix milliseconds.
    pub at_ms: i64,
    /// Exit code of the failed command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why it failed or was skipped, in one line (e.g. `would also change denied package
    /// libfoo`, `outside the install window; it opens next at 2026-12-08T22:00:00Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The end of the command's output (at most [`super::work::MAX_LOG_TAIL_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_tail: Option<String>,
}

/// What an approval commit would do, per device: `GET .../patchpolicies/{name}/plan`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchPlan {
    /// Policy name.
    pub policy: String,
    /// Generation of the policy the plan is for.
    pub generation: i64,
    /// When the plan was computed (RFC 3339).
    pub generated_at: String,
    /// Whether the policy only reports (`spec.auditOnly`): nothing is installed.
    pub audit_only: bool,
    /// Problems of the policy's patterns (an update matched by both `approve` and `deny`:
    /// denied), one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Devices in scope, by name.
    pub devices: Vec<DevicePlan>,
}

/// The plan for one device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DevicePlan {
    /// Device name.
    pub device: String,
    /// Its ring.
    pub ring: String,
    /// When its latest scan finished (RFC 3339); absent before the first scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scanned_at: Option<String>,
    /// The latest scan's problem, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Every update in scope and what the policy decides about it.
    pub changes: Vec<PlannedChange>,
    /// Some update that will be installed asks for a reboot (or the policy is `Always`).
    pub reboot: bool,
}

/// One update and the decision about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlannedChange {
    /// Package name.
    pub name: String,
    /// Installed version.
    pub from: String,
    /// Version it would change to.
    pub to: String,
    /// Classification.
    pub classification: Classification,
    /// The decision.
    pub decision: Decision,
    /// Why, in one line (the pattern that approved or denied it, the deferral's end).
    pub reason: String,
    /// Installing it asks for a reboot.
    pub reboot_required: bool,
}

/// What the policy does with one update.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Decision {
    /// Approved: it will be installed in the device's ring and window.
    Install,
    /// Approved automatically once its deferral ends.
    Deferred,
    /// Waiting for a manual approval (a commit adding a matching `approve` pattern).
    NotApproved,
    /// Matched by `deny`: never installed.
    Denied,
}

/// `GET /v1/namespaces/{ns}/patches/compliance` (JSON; `?format=csv` and `?format=html`
/// give the same numbers per device).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComplianceReport {
    /// Namespace.
    pub namespace: String,
    /// When the report was made (RFC 3339).
    pub generated_at: String,
    /// The namespace's totals.
    pub totals: ComplianceCounts,
    /// Per site (devices without a site under `""`).
    pub sites: BTreeMap<String, ComplianceCounts>,
    /// Per device, by name.
    pub devices: Vec<DeviceCompliance>,
}

/// Counts for a set of devices.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComplianceCounts {
    /// Devices some PatchPolicy selects.
    pub devices: u32,
    /// Of those, devices with a scan and no update missing in scope (denied ones aside).
    pub compliant: u32,
    /// Devices with no scan yet, or whose latest scan had a problem.
    pub unknown: u32,
    /// Installed packages.
    pub installed: u64,
    /// Missing updates in scope, by classification.
    pub missing: BTreeMap<Classification, u64>,
    /// Packages whose latest install failed.
    pub failed: u64,
    /// Devices waiting for a reboot.
    pub pending_reboot: u32,
}

/// One device's compliance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceCompliance {
    /// Device name.
    pub device: String,
    /// Its site, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The PatchPolicy that selects it (the first by name when several do).
    pub policy: String,
    /// When its latest scan finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scanned_at: Option<String>,
    /// The latest scan's problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Installed packages.
    pub installed: u32,
    /// Missing updates in scope (denied ones aside), by classification.
    pub missing: BTreeMap<Classification, u32>,
    /// Packages whose latest install failed.
    pub failed: u32,
    /// The device waits for a reboot.
    pub pending_reboot: bool,
    /// When an install last finished with nothing failed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<String>,
    /// Whole days since then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_since_success: Option<u32>,
    /// Scanned, no problem, nothing missing.
    pub compliant: bool,
}
