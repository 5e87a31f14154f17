//! The patching engine: one task that, every pass (a few seconds, or when a scan or a work
//! report arrives), for each PatchPolicy
//!
//! 1. lifts the halts a newer generation (a commit) makes obsolete;
//! 2. moves each approved update's rollout on: opens its first ring, opens the next ring
//!    once the previous one finished and soaked, or halts it ([`super::rings::step`]);
//! 3. writes the policy's status (compliant devices, per-ring progress, rollout state),
//!    from which Events follow (`RolloutHalted`, `PatchFailed`).
//!
//! Everything it decides from is in PostgreSQL or the index, so a restarted operator goes
//! on where the last one stopped. A ring it opens wakes the namespace's waiting agents.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use cdot_crds::{
    common::selector_matches,
    device::PatchSummary,
    kind::Kind,
    patch_policy::{RingStatus, RolloutState, RolloutStatus, UpdateRollout},
    wire::patch::{Decision, PatchState},
};
use jiff::Timestamp;
use serde_json::Value;
use tokio::{
    sync::{Notify, watch},
    task::JoinHandle,
};
use uuid::Uuid;

use super::{
    rings::{self, RingFacts, Step},
    store::{Halt, NamespaceState},
    work::{self, Policy},
};
use crate::{
    changes::Changes,
    index::{Index, Snapshot},
    metrics::PatchingMetrics,
    store::{StatusPatch, Store, StoreError},
    work::Work,
};

/// Updates listed in a policy's `status.rollout.updates` (the plan lists all).
const STATUS_UPDATES: usize = 20;

/// How long a work report's id is remembered, so that a retry is not applied twice: an
/// agent's spool holds reports until they are delivered, and an agent cut off for longer
/// than this is re-scanned anyway.
pub const REPORT_DEDUPE: jiff::SignedDuration = jiff::SignedDuration::from_hours(30 * 24);
/// How often old report ids are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// How often the engine looks even when nothing woke it (rings open with time).
pub const PASS_INTERVAL: Duration = Duration::from_secs(5);

/// Wakes the engine from the API; cheap to clone.
#[derive(Clone, Default)]
pub struct Patching {
    wake: Arc<Notify>,
}

impl Patching {
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Starts the engine once `ready`; it ends when `shutdown` turns true.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        &self,
        store: Store,
        index: Index,
        work: Work,
        changes: Changes,
        metrics: PatchingMetrics,
        ready: Arc<AtomicBool>,
        mut shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let wake = self.wake.clone();
        let mut engine = Engine {
            store,
            index,
            work,
            changes,
            metrics,
            summaries: HashMap::new(),
        };
        tokio::spawn(async move {
            let mut desired = engine.index.subscribe();
            let mut pruned: Option<std::time::Instant> = None;
            loop {
                if ready.load(Ordering::Acquire)
                    && pruned.is_none_or(|t| t.elapsed() >= PRUNE_EVERY)
                {
                    pruned = Some(std::time::Instant::now());
                    let before = Timestamp::now()
                        .checked_sub(REPORT_DEDUPE)
                        .unwrap_or(Timestamp::UNIX_EPOCH);
                    match engine.store.prune_work(before).await {
                        Ok(n) if n > 0 => {
                            tracing::info!(pruned = n, "old work report ids forgotten")
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "pruning work reports failed"),
                    }
                }
                if ready.load(Ordering::Acquire) {
                    let pass = tracing::info_span!("patching_pass");
                    if let Err(e) =
                        tracing::Instrument::instrument(engine.pass(Timestamp::now()), pass).await
                    {
                        engine.metrics.pass_errors.inc();
                        tracing::warn!(error = %e, "patching pass failed; retrying");
                    }
                }
                tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => break,
                    () = wake.notified() => {}
                    _ = desired.changed() => {}
                    () = tokio::time::sleep(PASS_INTERVAL) => {}
                }
            }
        })
    }
}

struct Engine {
    store: Store,
    index: Index,
    work: Work,
    changes: Changes,
    metrics: PatchingMetrics,
    /// Device patch summaries written, so an unchanged one is not written again.
    summaries: HashMap<Uuid, PatchSummary>,
}

#[derive(serde::Serialize)]
struct DeviceSummary<'a> {
    patches: &'a PatchSummary,
}

/// A device's `status.patches` under the first policy that selects it.
fn summary(policy: &Policy, state: &NamespaceState, device: Uuid, now: Timestamp) -> PatchSummary {
    let installs = work::installs_by_key(&state.installs);
    let scan = state.scans.get(&device);
    let mut s = PatchSummary {
        installed: scan.map_or(0, |s| s.installed_packages),
        reboot_required: scan.is_some_and(|s| s.reboot_required),
        last_scan: scan.map(|s| s.scanned_at.to_string()),
        ..PatchSummary::default()
    };
    for u in state.updates.iter().filter(|u| u.device == device) {
        let Some(decided) = policy
            .approver
            .decide(&u.name, u.classification, u.first_seen, now)
        else {
            continue;
        };
        if decided.decision != Decision::Install {
            s.not_approved += 1;
            continue;
        }
        match installs.get(&(device, u.name.as_str(), u.to.as_str())) {
            Some(i) if i.state == PatchState::Installed => {}
            Some(i) if i.state == PatchState::Failed => s.failed += 1,
            _ => s.pending += 1,
        }
    }
    s
}

/// A device of the namespace as the engine reads it.
struct DeviceView<'a> {
    uid: Uuid,
    name: &'a str,
    labels: &'a BTreeMap<String, String>,
}

impl Engine {
    async fn pass(&mut self, now: Timestamp) -> Result<(), StoreError> {
        let snapshot = self.index.snapshot();
        let namespaces: BTreeSet<String> = snapshot
            .of_kind(Kind::PatchPolicy)
            .map(|o| o.namespace.clone())
            .collect();
        for namespace in namespaces {
            self.namespace(&snapshot, &namespace, now).await?;
        }
        Ok(())
    }

    async fn namespace(
        &mut self,
        snapshot: &Snapshot,
        namespace: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let policies = work::policies(snapshot, namespace);
        let devices: Vec<DeviceView<'_>> = snapshot
            .in_namespace(Kind::Device, namespace)
            .map(|o| DeviceView {
                uid: o.uid,
                name: &o.name,
                labels: &o.labels,
            })
            .collect();
        let mut state = self.store.patch_namespace(namespace, None).await?;
        for policy in &policies {
            if state
                .halts
                .iter()
                .any(|((p, _, _), h)| p == &policy.name && h.generation < policy.generation)
            {
                let lifted = self
                    .store
                    .lift_halts(namespace, &policy.name, policy.generation)
                    .await?;
                tracing::info!(namespace, policy = %policy.name, lifted, "a commit lifted halted rollouts");
                state
                    .halts
                    .retain(|(p, _, _), h| p != &policy.name || h.generation >= policy.generation);
            }
        }
        let since = state.rollouts.values().flatten().min().copied();
        let alerts = match since {
            Some(since) => self.store.alerts_fired_since(namespace, since).await?,
            None => Vec::new(),
        };
        let mut opened_any = false;
        let mut patches = Vec::new();
        let mut summaries: Vec<StatusPatch> = Vec::new();
        let mut summarised: HashSet<Uuid> = HashSet::new();
        for policy in &policies {
            let in_scope: Vec<(&DeviceView<'_>, usize)> = devices
                .iter()
                .filter(|d| selector_matches(&policy.spec.selector, d.labels))
                .filter_map(|d| rings::ring_of(&policy.spec, d.labels).map(|r| (d, r)))
                .collect();
            let ring_by_device: HashMap<Uuid, usize> =
                in_scope.iter().map(|(d, r)| (d.uid, *r)).collect();
            let versions = approved_versions(policy, &state, &ring_by_device, now);
            // Audit only: decisions and compliance, no rollout.
            let rolling = if policy.spec.audit_only {
                &[][..]
            } else {
                &versions[..]
            };
            for (name, version, approved) in rolling {
                let key = (policy.name.clone(), name.clone(), version.clone());
                if state.halts.contains_key(&key) {
                    continue;
                }
                let opened = state.rollouts.get(&key).cloned().unwrap_or_default();
                let facts = ring_facts(
                    policy,
                    &state,
                    &ring_by_device,
                    &alerts,
                    name,
                    version,
                    &opened,
                );
                match rings::step(&policy.spec, name, *approved, &opened, &facts, now) {
                    Step::Wait => {}
                    Step::Open { ring, at } => {
                        self.store
                            .open_ring(namespace, &policy.name, name, version, ring, at)
                            .await?;
                        tracing::info!(namespace, policy = %policy.name, package = %name, %version,
                            ring = rings::ring_name(&policy.spec, ring), "rollout ring opened");
                        state.rollouts.entry(key).or_default().push(at);
                        self.metrics.rings_opened.inc();
                        opened_any = true;
                    }
                    Step::Halt { ring, reason } => {
                        let reason = format!("{name} {version}: {reason}");
                        self.store
                            .halt_rollout(
                                namespace,
                                &policy.name,
                                name,
                                version,
                                ring,
                                policy.generation,
                                &reason,
                                now,
                            )
                            .await?;
                        tracing::warn!(namespace, policy = %policy.name, %reason, "rollout halted");
                        self.metrics.rollouts_halted.inc();
                        state.halts.insert(
                            key,
                            Halt {
                                ring,
                                generation: policy.generation,
                                reason,
                                since: now,
                            },
                        );
                    }
                }
            }
            for (device, _) in &in_scope {
                if !summarised.insert(device.uid) {
                    continue;
                }
                let summary = summary(policy, &state, device.uid, now);
                if self.summaries.get(&device.uid) != Some(&summary) {
                    summaries.push(StatusPatch {
                        kind: Kind::Device,
                        namespace: namespace.to_owned(),
                        name: device.name.to_owned(),
                        status: serde_json::to_value(DeviceSummary { patches: &summary })
                            .unwrap_or_default(),
                    });
                    self.summaries.insert(device.uid, summary);
                }
            }
            patches.push(StatusPatch {
                kind: Kind::PatchPolicy,
                namespace: namespace.to_owned(),
                name: policy.name.clone(),
                status: status(policy, &state, &in_scope, &versions, &alerts, now),
            });
        }
        if opened_any {
            self.work.wake_namespace(namespace);
        }
        if !summaries.is_empty() {
            self.store.patch_statuses(&summaries).await?;
            for p in &summaries {
                self.changes.status_changed(p.kind, &p.namespace, &p.name);
            }
        }
        // One at a time: the store only rewrites a status that changes, and says so, and
        // only a change is worth a Kubernetes status write.
        for p in patches {
            if self.store.patch_statuses(std::slice::from_ref(&p)).await? > 0 {
                self.changes.status_changed(p.kind, &p.namespace, &p.name);
            }
        }
        Ok(())
    }
}

/// The versions `policy` approves for some device in scope (offered by a scan, or carried
/// by an install under this policy), each with when it was first seen.
fn approved_versions(
    policy: &Policy,
    state: &NamespaceState,
    ring_by_device: &HashMap<Uuid, usize>,
    now: Timestamp,
) -> Vec<(String, String, Timestamp)> {
    let mut out: BTreeMap<(String, String), Timestamp> = BTreeMap::new();
    for u in &state.updates {
        if !ring_by_device.contains_key(&u.device) {
            continue;
        }
        let approved = policy
            .approver
            .decide(&u.name, u.classification, u.first_seen, now)
            .is_some_and(|d| d.decision == Decision::Install);
        if approved {
            let seen = out
                .entry((u.name.clone(), u.to.clone()))
                .or_insert(u.first_seen);
            *seen = (*seen).min(u.first_seen);
        }
    }
    for i in &state.installs {
        if i.policy == policy.name && ring_by_device.contains_key(&i.device) {
            out.entry((i.name.clone(), i.version.clone()))
                .or_insert(i.updated_at);
        }
    }
    out.into_iter().map(|((n, v), t)| (n, v, t)).collect()
}

fn ring_facts(
    policy: &Policy,
    state: &NamespaceState,
    ring_by_device: &HashMap<Uuid, usize>,
    alerts: &[super::store::FiredAlert],
    name: &str,
    version: &str,
    opened: &[Timestamp],
) -> Vec<RingFacts> {
    let mut facts = vec![RingFacts::default(); rings::ring_count(&policy.spec)];
    let mut needing: HashSet<Uuid> = state
        .updates
        .iter()
        .filter(|u| u.name == name && u.to == version)
        .map(|u| u.device)
        .collect();
    for i in &state.installs {
        if i.name == name && i.version == version {
            needing.insert(i.device);
        }
    }
    let install_of: HashMap<Uuid, &super::store::InstallRow> = state
        .installs
        .iter()
        .filter(|i| i.name == name && i.version == version)
        .map(|i| (i.device, i))
        .collect();
    for device in needing {
        let Some(ring) = ring_by_device.get(&device) else {
            continue;
        };
        let f = &mut facts[*ring];
        f.devices += 1;
        if let Some(i) = install_of.get(&device) {
            match i.state {
                PatchState::Installed => f.installed += 1,
                PatchState::Failed => f.failed += 1,
                _ => {}
            }
            if matches!(i.state, PatchState::Installed | PatchState::Failed) {
                f.last_finished = f.last_finished.max(i.finished_at);
            }
        }
    }
    for a in alerts {
        if let Some(ring) = ring_by_device.get(&a.device)
            && let Some(opened) = opened.get(*ring)
            && a.fired_at >= *opened
        {
            facts[*ring]
                .alerts_since_open
                .push(format!("{} on {}", a.rule, a.device_name));
        }
    }
    facts
}

/// The policy's status fields the engine owns: `compliant`, `rings`, `rollout`.
fn status(
    policy: &Policy,
    state: &NamespaceState,
    in_scope: &[(&DeviceView<'_>, usize)],
    versions: &[(String, String, Timestamp)],
    alerts: &[super::store::FiredAlert],
    now: Timestamp,
) -> Value {
    let installs = work::installs_by_key(&state.installs);
    let mut rings: Vec<RingStatus> = (0..rings::ring_count(&policy.spec))
        .map(|i| RingStatus {
            name: rings::ring_name(&policy.spec, i).to_owned(),
            ..RingStatus::default()
        })
        .collect();
    let mut compliant = 0;
    for (device, ring) in in_scope {
        let r = &mut rings[*ring];
        r.devices += 1;
        let scanned = state
            .scans
            .get(&device.uid)
            .is_some_and(|s| s.problem.is_none());
        let mut missing = false;
        let mut failed = false;
        for u in state.updates.iter().filter(|u| u.device == device.uid) {
            let approved = policy
                .approver
                .decide(&u.name, u.classification, u.first_seen, now)
                .is_some_and(|d| d.decision == Decision::Install);
            if !approved {
                continue;
            }
            match installs.get(&(device.uid, u.name.as_str(), u.to.as_str())) {
                Some(i) if i.state == PatchState::Installed => {}
                Some(i) if i.state == PatchState::Failed => failed = true,
                _ => missing = true,
            }
        }
        if failed {
            r.failed += 1;
        } else if missing {
            r.pending += 1;
        } else if scanned {
            r.completed += 1;
            compliant += 1;
        }
    }
    let halted: Vec<String> = state
        .halts
        .iter()
        .filter(|((p, _, _), _)| p == &policy.name)
        .map(|(_, h)| h.reason.clone())
        .collect();
    let mut updates = Vec::new();
    let ring_by_device: HashMap<Uuid, usize> = in_scope.iter().map(|(d, r)| (d.uid, *r)).collect();
    for (name, version, approved) in versions {
        let key = (policy.name.clone(), name.clone(), version.clone());
        let opened = state.rollouts.get(&key).cloned().unwrap_or_default();
        let Some(last) = opened.len().checked_sub(1) else {
            continue;
        };
        let facts = ring_facts(
            policy,
            state,
            &ring_by_device,
            alerts,
            name,
            version,
            &opened,
        );
        updates.push(UpdateRollout {
            name: name.clone(),
            version: version.clone(),
            ring: rings::ring_name(&policy.spec, last).to_owned(),
            next_ring_at: if state.halts.contains_key(&key) {
                None
            } else {
                rings::next_opening(&policy.spec, *approved, &opened, &facts)
                    .filter(|at| *at > now)
                    .map(|at| at.to_string())
            },
        });
    }
    let pending: u32 = rings.iter().map(|r| r.pending + r.failed).sum();
    let rolling = updates.len();
    updates.truncate(if policy.spec.audit_only {
        0
    } else {
        STATUS_UPDATES
    });
    let (state_, message) = if policy.spec.audit_only {
        (
            RolloutState::Idle,
            format!(
                "audit only: {pending} device(s) miss approved updates; nothing is installed (see the plan)"
            ),
        )
    } else if !halted.is_empty() {
        (
            RolloutState::Halted,
            format!(
                "halted: {}; a commit to this policy resumes it",
                halted.join("; ")
            ),
        )
    } else if pending > 0 || updates.iter().any(|u| u.next_ring_at.is_some()) {
        (
            RolloutState::Progressing,
            format!(
                "{pending} device(s) wait for approved updates; {rolling} update(s) rolling out"
            ),
        )
    } else {
        (
            RolloutState::Idle,
            "every device in scope has its approved updates".to_owned(),
        )
    };
    let status = EngineStatus {
        compliant,
        rings,
        rollout: RolloutStatus {
            state: state_,
            message,
            halted,
            updates,
        },
    };
    serde_json::to_value(status).unwrap_or_default()
}

/// The part of `PatchPolicyStatus` the engine owns, merged over the stored status.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct EngineStatus {
    compliant: u32,
    rings: Vec<RingStatus>,
    rollout: RolloutStatus,
}
