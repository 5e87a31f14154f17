//! A PatchPolicy's plan: per device in scope, every update of its latest scan that the
//! policy's classifications cover, with the decision and its reason, so a reviewer sees
//! what an approval commit would do before merging it. Read with the policy as committed;
//! `POST`ing a changed policy is the backtest's job for alert rules, not done here.
use cdot_crds::wire::patch::{Decision, DevicePlan, PatchPlan, PatchState, PlannedChange};
use jiff::Timestamp;
use std::collections::BTreeSet;

use super::{
    compliance::ReportDevice,
    rings,
    store::NamespaceState,
    work::{Policy, installs_by_key},
};
use cdot_crds::patch_policy::RebootPolicy;

/// The plan of `policy` over `devices` (those it does not select are left out).
pub fn plan(
    policy: &Policy,
    devices: &[ReportDevice<'_>],
    state: &NamespaceState,
    now: Timestamp,
) -> PatchPlan {
    let installs = installs_by_key(&state.installs);
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for d in devices {
        if !cdot_crds::common::selector_matches(&policy.spec.selector, d.labels) {
            continue;
        }
        let Some(ring) = rings::ring_of(&policy.spec, d.labels) else {
            continue;
        };
        let scan = state.scans.get(&d.uid);
        let mut changes = Vec::new();
        for u in state.updates.iter().filter(|u| u.device == d.uid) {
            let Some(decided) =
                policy
                    .approver
                    .decide(&u.name, u.classification, u.first_seen, now)
            else {
                continue;
            };
            let installed = installs
                .get(&(d.uid, u.name.as_str(), u.to.as_str()))
                .is_some_and(|i| i.state == PatchState::Installed);
            if installed {
                continue;
            }
            names.insert(u.name.clone());
            // Audit only: the decision as it would be; `auditOnly` on the plan says that
            // nothing is installed.
            let decision = decided.decision;
            let reason = if policy.spec.audit_only && decision == Decision::Install {
                format!("{} (audit only: reported, not installed)", decided.reason)
            } else {
                decided.reason
            };
            changes.push(PlannedChange {
                name: u.name.clone(),
                from: u.from.clone(),
                to: u.to.clone(),
                classification: u.classification,
                decision,
                reason,
                reboot_required: u.reboot_required,
            });
        }
        changes.sort_by(|a, b| (a.classification, &a.name).cmp(&(b.classification, &b.name)));
        let installing = changes
            .iter()
            .filter(|c| c.decision == Decision::Install && !policy.spec.audit_only);
        let reboot = match policy.spec.reboot {
            RebootPolicy::Never => false,
            RebootPolicy::Always => installing.clone().next().is_some(),
            RebootPolicy::IfRequired => installing.clone().any(|c| c.reboot_required),
        };
        out.push(DevicePlan {
            device: d.name.to_owned(),
            ring: rings::ring_name(&policy.spec, ring).to_owned(),
            scanned_at: scan.map(|s| s.scanned_at.to_string()),
            problem: scan.and_then(|s| s.problem.clone()),
            changes,
            reboot,
        });
    }
    out.sort_by(|a, b| a.device.cmp(&b.device));
    PatchPlan {
        policy: policy.name.clone(),
        generation: policy.generation,
        generated_at: now.to_string(),
        audit_only: policy.spec.audit_only,
        warnings: policy.approver.overlaps(names.iter().map(String::as_str)),
        devices: out,
    }
}
