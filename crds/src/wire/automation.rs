//! Workflow runs as the API shows them: the event that started a run, its devices and
//! steps, the dry-run plan, approvals and the audit log.
//!
//! Routes (people's API, bearer tokens):
//! - `POST /v1/namespaces/{ns}/workflows/{name}:run` ([`StartRun`], operator role) starts a
//!   run by hand; `:plan` (viewer role) answers the [`RunPlan`] of the same request with no
//!   side effect anywhere.
//! - `GET /v1/namespaces/{ns}/workflowruns?workflow=&state=&limit=` lists [`RunSummary`]s;
//!   `GET .../workflowruns/{id}` is one [`RunView`] with every step attempt.
//! - `POST .../workflowruns/{id}:approve` and `:cancel` ([`RunDecision`], operator role).
//! - `GET /v1/namespaces/{ns}/audit?run=&after=&limit=` lists [`AuditEntry`]s.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::work::StepResult;
use crate::workflow::{StepType, TriggerType};

/// `as_str` and `parse` of a state enum: its variants' names, as stored and as serde
/// writes them.
macro_rules! names {
    ($t:ident { $($v:ident),+ $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$v => stringify!($v)),+
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                [$(Self::$v),+].into_iter().find(|x| x.as_str() == s)
            }
        }
    };
}

/// What happened, as a workflow's condition and steps see it (`event` in rhai).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Event {
    /// Trigger type the event matches.
    #[serde(rename = "type")]
    pub type_: Option<TriggerType>,
    /// Device the event is about (absent for schedules and manual runs of several devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// AlertRule of an alert event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_rule: Option<String>,
    /// Alert id of an alert event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<Uuid>,
    /// Metric of an alert event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// Value that triggered (alert value, failure count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Service of a ServiceFailed event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Package of a PatchFailed event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Labels (alert group labels, series labels).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// When it happened (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

/// `POST .../workflows/{name}:run` and `:plan`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartRun {
    /// Devices to run on (names; each must be selected by the workflow). Empty: the event's
    /// device, or every selected device.
    #[serde(default)]
    pub devices: Vec<String>,
    /// The event, for a plan or a manual run that imitates a trigger.
    #[serde(default)]
    pub event: Event,
}

/// State of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum RunState {
    /// Steps are running or waiting.
    Running,
    /// Stopped until a person approves (an Approval step, or a blast-radius limit).
    AwaitingApproval,
    /// Every device finished every step.
    Succeeded,
    /// A step failed and its policy went on (Continue, RunStep).
    PartiallyFailed,
    /// A step failed and stopped its device.
    Failed,
    /// Cancelled by a person, or replaced by a newer run (concurrency Replace).
    Cancelled,
}

names!(RunState {
    Running,
    AwaitingApproval,
    Succeeded,
    PartiallyFailed,
    Failed,
    Cancelled
});

impl RunState {
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Running | Self::AwaitingApproval)
    }
}

/// State of one device's way through the steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum LaneState {
    /// Past a blast-radius limit: waits for the run's approval.
    Held,
    /// Working on `step`.
    Running,
    /// At an Approval step.
    AwaitingApproval,
    /// Every step done.
    Succeeded,
    /// Done, with a failed step its policy let pass.
    PartiallyFailed,
    /// Stopped by a failed step.
    Failed,
    /// Stopped by a person or a newer run.
    Cancelled,
}

names!(LaneState {
    Held,
    Running,
    AwaitingApproval,
    Succeeded,
    PartiallyFailed,
    Failed,
    Cancelled
});

impl LaneState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::PartiallyFailed | Self::Failed | Self::Cancelled
        )
    }
}

/// State of one attempt of one step on one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum AttemptState {
    /// Handed to the agent; not started there yet.
    Dispatched,
    /// Started.
    Running,
    /// Succeeded.
    Succeeded,
    /// Failed (exit code, error).
    Failed,
    /// Hit its time limit.
    TimedOut,
    /// Ended by a cancelled run.
    Cancelled,
}

names!(AttemptState {
    Dispatched,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled
});

impl AttemptState {
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Dispatched | Self::Running)
    }
}

/// One run in a list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub id: Uuid,
    pub workflow: String,
    pub state: RunState,
    /// Trigger type, or `Manual`.
    pub trigger: TriggerType,
    /// Who started it: `trigger` or the token's name.
    pub started_by: String,
    /// RFC 3339.
    pub started: String,
    /// RFC 3339, once final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// Devices of the run.
    pub devices: u32,
    /// Why it waits, while `AwaitingApproval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
}

/// `GET .../workflowruns`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunList {
    pub runs: Vec<RunSummary>,
}

/// One run with everything it did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    #[serde(flatten)]
    pub summary: RunSummary,
    /// The event that started it.
    pub event: Event,
    /// Workflow generation whose steps it runs.
    pub generation: i64,
    /// Approvals given (an Approval step, a blast-radius limit).
    pub approvals: Vec<Approval>,
    /// One entry per device.
    pub lanes: Vec<LaneView>,
}

/// An approval given to a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// What was approved (`step approve-restart`, `blast radius: 40 more devices`).
    pub what: String,
    pub by: String,
    /// RFC 3339.
    pub at: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
}

/// One device's progress through a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LaneView {
    pub device: String,
    pub state: LaneState,
    /// Step it is at (absent once final).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Variables set by rhai steps (`set("name", value)`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, serde_json::Value>,
    /// Every attempt of every step, in order.
    pub attempts: Vec<AttemptView>,
}

/// One attempt of one step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub step: String,
    #[serde(rename = "type")]
    pub type_: StepType,
    pub attempt: u32,
    pub state: AttemptState,
    /// Work item id sent to the agent: the step's idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_id: Option<Uuid>,
    /// RFC 3339.
    pub started: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// What the agent reported (agent steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<StepResult>,
    /// What the step did or why it failed (operator steps; agent steps' summary).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// `:approve` and `:cancel` bodies.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunDecision {
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub comment: String,
}

/// `:plan`: what a run of this request would do, computed with no side effect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunPlan {
    pub workflow: String,
    /// Whether a trigger like this starts a run at all.
    pub would_start: bool,
    /// Why it would not (paused, no device selected, condition false), on which devices
    /// it would not run, and how many would wait past the blast-radius limits.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Devices that would start at once.
    pub devices: Vec<DevicePlan>,
    /// Devices past the blast-radius limits, held for an approval.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<String>,
}

/// The steps one device would go through.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DevicePlan {
    pub device: String,
    pub steps: Vec<PlannedStep>,
}

/// One step's concrete effect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedStep {
    pub step: String,
    #[serde(rename = "type")]
    pub type_: StepType,
    /// Runs on the device's agent (else in the operator).
    pub on_agent: bool,
    /// The effect in one line (`restart nginx.service with systemctl on web-01`).
    pub effect: String,
    /// The exact command, script, rules or message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    /// Whether the effect can be undone, and how.
    pub undo: Undo,
}

/// Whether a step's effect can be undone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Undo {
    pub possible: bool,
    /// How (`a ReleaseIsolation step`), or why not (`a sent message cannot be recalled`).
    pub how: String,
}

/// One entry of the audit log. `hash` is SHA-256 over `prevHash` and this entry's canonical
/// JSON without `hash`, so an edited, inserted or deleted entry breaks the chain
/// (`cdot-operator audit verify`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// RFC 3339 with microseconds.
    pub at: String,
    pub namespace: String,
    /// Who: `trigger`, `engine`, an agent (`device/web-01`) or a token name.
    pub actor: String,
    /// What: `run.started`, `step.started`, `step.finished`, `run.approved`, ...
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<Uuid>,
    /// Inputs and outputs of the action.
    pub detail: serde_json::Value,
    /// Hex SHA-256 of the previous entry (64 zeros for the first).
    pub prev_hash: String,
    /// Hex SHA-256 of this entry.
    pub hash: String,
}

/// `GET .../audit`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditList {
    pub entries: Vec<AuditEntry>,
}
