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
//! The channel is shared: patch installs use it now, workflow steps will travel on it too
//! as further [`WorkKind`] variants.
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::patch::{PatchInstall, PatchProgress};

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
