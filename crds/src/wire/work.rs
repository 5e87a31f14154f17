//! The agent work channel: what the operator wants an agent to do now, and what the agent
//! reports back about it.
//!
//! `GET /v1/agent/work?wait=SECONDS&seen=REVISION` answers the device's pending work at
//! once when its revision differs from `seen`, and otherwise holds the request (long-poll,
//! on the agent's mutual TLS or JWT connection) until the work changes or `wait` passes. So
//! an approval commit reaches the agent within a second of the operator applying it, not at
//! the agent's next interval.
//!
//! Every item has a stable `id`, the idempotency key of its effect: the operator derives it
//! from what the item does, so the same work fetched twice (after a reconnect or an agent
//! restart) is the same id, and an agent that has finished an id never runs it again.
//! Progress goes back in [`WorkReport`]s, spooled by the agent before it sends them (so a
//! report is never lost while the operator is away) and deduplicated by `reportId`.
//!
//! The channel is shared: patch installs and the agent steps of workflow runs (scripts,
//! service restarts, isolation) travel on it as [`WorkKind`] variants. A step's item id is
//! its idempotency key (run, device, step, attempt): an operator that restarts between two
//! steps hands out the same id again, and the agent, which remembers finished ids, does
//! not run the step twice.
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::patch::{PatchInstall, PatchProgress};
use crate::workflow::Shell;

/// Path of the work route under [`super::AGENT_API_PREFIX`].
pub const WORK_ROUTE: &str = "/work";
/// Path of the report route under [`super::AGENT_API_PREFIX`].
pub const WORK_REPORT_ROUTE: &str = "/work/reports";
/// Longest a work request is held (`wait`), in seconds.
pub const MAX_WORK_WAIT_SECS: u64 = 60;
/// Most progress entries one report may carry.
pub const MAX_PROGRESS_PER_REPORT: usize = 1_000;
/// Longest log tail kept of one failed step, in bytes (the end of the log is kept).
pub const MAX_LOG_TAIL_BYTES: usize = 8 * 1024;

/// Answer to `GET /v1/agent/work`: everything the device should be doing now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkList {
    /// Opaque; changes whenever `items` change. Sent back as `seen` to wait for a change.
    pub revision: String,
    /// Pending items, oldest first.
    pub items: Vec<WorkItem>,
    /// Seconds between the agent's patch scans (from its PatchPolicies; 0 when no policy
    /// selects the device, and the agent then does not scan).
    pub patch_scan_interval_secs: u64,
}

/// One unit of work for the agent. (Not `deny_unknown_fields`: serde cannot combine it with
/// the flattened, tagged kind; the kinds' own fields are still checked.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkItem {
    /// Stable id of this work, its idempotency key (see the module docs).
    pub id: Uuid,
    /// What to do.
    #[serde(flatten)]
    pub kind: WorkKind,
}

/// The kinds of work.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
// A list holds a handful of items: boxing the install would only cost an allocation.
#[allow(clippy::large_enum_variant)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum WorkKind {
    /// Scan for available updates now and report them (`PUT /v1/agent/patches`), e.g.
    /// after a PatchPolicy first selects the device.
    PatchScan,
    /// Install approved updates.
    PatchInstall(PatchInstall),
    /// A workflow step: run a script.
    RunScript(RunScript),
    /// A workflow step: restart a service.
    RestartService(RestartService),
    /// A workflow step: cut the device off the network except for `allow`.
    Isolate(Isolate),
    /// A workflow step: undo [`WorkKind::Isolate`].
    Release(StepOrigin),
}

impl WorkKind {
    /// The workflow step this item carries, if it is one.
    pub fn step(&self) -> Option<&StepOrigin> {
        match self {
            Self::PatchScan | Self::PatchInstall(_) => None,
            Self::RunScript(s) => Some(&s.origin),
            Self::RestartService(s) => Some(&s.origin),
            Self::Isolate(s) => Some(&s.origin),
            Self::Release(origin) => Some(origin),
        }
    }
}

/// Where a step item comes from, and its limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepOrigin {
    /// Workflow (same namespace as the device).
    pub workflow: String,
    /// Run id.
    pub run: Uuid,
    /// Step name.
    pub step: String,
    /// Attempt, from 1.
    pub attempt: u32,
    /// The agent stops the step (and reports `timedOut`) after this many seconds.
    pub timeout_secs: u64,
}

/// Run a script on the device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunScript {
    #[serde(flatten)]
    pub origin: StepOrigin,
    /// Interpreter.
    pub shell: Shell,
    /// Script text (given to the interpreter as a file).
    pub body: String,
    /// Arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Run as this user instead of the agent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<String>,
}

/// Restart a service (systemd unit, or a program of the supervisor the agent uses).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestartService {
    #[serde(flatten)]
    pub origin: StepOrigin,
    /// Service name.
    pub service: String,
}

/// Isolate the device: only `allow` stays reachable (both ways), loopback included.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Isolate {
    #[serde(flatten)]
    pub origin: StepOrigin,
    /// Addresses or CIDRs that stay reachable: the operator's, the site collector's, and
    /// the step's extra `allow`.
    pub allow: Vec<String>,
}

/// Most bytes of a step's output kept (stdout and stderr each; the end is kept).
pub const MAX_STEP_OUTPUT_BYTES: usize = 16 * 1024;

/// State of a workflow step on the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StepState {
    /// Started.
    Running,
    /// Finished with success.
    Succeeded,
    /// Finished with a failure (`exitCode`, `message`).
    Failed,
    /// Stopped at its time limit.
    TimedOut,
}

impl StepState {
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Running)
    }
}

/// What the agent reports of a workflow step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepResult {
    /// State.
    pub state: StepState,
    /// Exit code of the script or command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// End of standard output (at most [`MAX_STEP_OUTPUT_BYTES`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stdout: String,
    /// End of standard error (at most [`MAX_STEP_OUTPUT_BYTES`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr: String,
    /// Output was cut to fit.
    #[serde(default)]
    pub truncated: bool,
    /// What happened, for people (the command run, the rules applied, why it failed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// `POST /v1/agent/work/reports`: progress of one work item, gzip JSON like a metrics
/// batch, acknowledged with a [`super::BatchAck`] whose `batchId` is the `reportId`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkReport {
    /// Chosen by the agent when the report is made: a retry of a stored report is
    /// acknowledged again and not applied twice.
    pub report_id: Uuid,
    /// The work item reported on.
    pub item: Uuid,
    /// Agent time of the report, Unix milliseconds.
    pub at_ms: i64,
    /// Per-package progress of a patch install (empty for other kinds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<PatchProgress>,
    /// State of a workflow step (absent for other kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepResult>,
    /// The item is finished on the agent: it will not run it again.
    #[serde(default)]
    pub done: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::patch::{PackageTarget, RebootAfter};
    use crate::{common::TimeWindow, patch_policy::Classification};

    #[test]
    fn work_list_round_trips_with_a_type_tag() {
        let list = WorkList {
            revision: "7".into(),
            patch_scan_interval_secs: 3600,
            items: vec![
                WorkItem {
                    id: Uuid::from_u128(1),
                    kind: WorkKind::PatchScan,
                },
                WorkItem {
                    id: Uuid::from_u128(2),
                    kind: WorkKind::PatchInstall(PatchInstall {
                        policy: "linux".into(),
                        ring: "pilot".into(),
                        packages: vec![PackageTarget {
                            name: "openssl".into(),
                            version: "3.0.15-1~deb12u1".into(),
                            classification: Classification::Security,
                        }],
                        deny: vec!["postgresql-15".into()],
                        window: Some(TimeWindow {
                            days: vec![],
                            start: "22:00".into(),
                            duration: "4h".into(),
                            time_zone: "Europe/London".into(),
                        }),
                        reboot: RebootAfter::default(),
                    }),
                },
            ],
        };
        let json = serde_json::to_value(&list).expect("serialise");
        assert_eq!(json["items"][0]["type"], "patchScan");
        assert_eq!(json["items"][1]["type"], "patchInstall");
        assert_eq!(json["items"][1]["packages"][0]["name"], "openssl");
        let back: WorkList = serde_json::from_value(json).expect("parse");
        assert_eq!(back, list);
    }
}
