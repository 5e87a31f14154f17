//! A device's patch work: the install item of each policy that selects it (approved
//! updates of its latest scan whose rollout has reached its ring), and a scan item while
//! the device has never reported a scan.
//!
//! An item's id hashes what it would do (device, policy, targets with their attempt
//! counts, window, reboot), so the same work is the same id however often it is computed,
//! and an agent that finished an id never runs it again. A package that failed or was
//! skipped counts one more attempt, so its retry is a new item: in the next opening of the
//! window (or, without a window, [`RETRY_WITHOUT_WINDOW`] after the failure).
use std::collections::{BTreeMap, HashMap, HashSet};

use cdot_crds::{
    patch_policy::PatchPolicySpec,
    wire::{
        patch::{Decision, PackageTarget, PatchInstall, PatchState, RebootAfter},
        work::{WorkItem, WorkKind},
    },
};
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use cdot_crds::{common::selector_matches, kind::Kind, validation::Validate};

use crate::{
    index::Snapshot,
    ingest::DeviceIdentity,
    store::{Store, StoreError},
};

use super::{
    approve::Approver,
    rings,
    store::{InstallRow, NamespaceState, UpdateRow},
};

/// Without an install window, a failed package is tried again this long after it failed.
pub const RETRY_WITHOUT_WINDOW: jiff::SignedDuration = jiff::SignedDuration::from_hours(6);

/// One policy, compiled, as work and the engine read it.
#[derive(Debug)]
pub struct Policy {
    pub name: String,
    pub generation: i64,
    pub spec: PatchPolicySpec,
    pub approver: Approver,
}

impl Policy {
    pub fn new(name: &str, generation: i64, spec: PatchPolicySpec) -> Self {
        Self {
            name: name.to_owned(),
            generation,
            approver: Approver::new(&spec),
            spec,
        }
    }

    /// The reboot settings as the agent applies them.
    pub fn reboot(&self) -> RebootAfter {
        RebootAfter {
            policy: self.spec.reboot,
            delay_secs: cdot_crds::common::parse_duration(&self.spec.reboot_delay)
                .map_or(300, |d| d.as_secs()),
            message: self.spec.reboot_message.clone(),
        }
    }
}

/// A device as patching sees it.
#[derive(Debug, Clone, Copy)]
pub struct Device<'a> {
    pub uid: Uuid,
    pub labels: &'a BTreeMap<String, String>,
}

/// Why an approved update of a device is or is not in its install item now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// In the item.
    Ready,
    /// Installed at this version.
    Installed,
    /// Its rollout has not reached the device's ring.
    RingNotOpen,
    /// Failed in the current opening (or recently, without a window): retried later.
    RetryLater,
}

/// The installs of one namespace by (device, name, version).
pub fn installs_by_key(installs: &[InstallRow]) -> HashMap<(Uuid, &str, &str), &InstallRow> {
    installs
        .iter()
        .map(|i| ((i.device, i.name.as_str(), i.version.as_str()), i))
        .collect()
}

/// Whether `update`, approved for `device` in ring `ring` of `policy`, goes in its item.
pub fn readiness(
    policy: &Policy,
    ring: usize,
    update: &UpdateRow,
    install: Option<&InstallRow>,
    state: &NamespaceState,
    now: Timestamp,
) -> Readiness {
    if let Some(i) = install {
        match i.state {
            PatchState::Installed => return Readiness::Installed,
            PatchState::Failed => {
                let retry = match &policy.spec.install_window {
                    Some(w) => {
                        w.opening_at(now).map(|(start, _)| start) != i.opening
                            || i.opening.is_none()
                    }
                    None => i
                        .finished_at
                        .and_then(|f| f.checked_add(RETRY_WITHOUT_WINDOW).ok())
                        .is_none_or(|at| now >= at),
                };
                if !retry {
                    return Readiness::RetryLater;
                }
            }
            _ => {}
        }
    }
    let key = (policy.name.clone(), update.name.clone(), update.to.clone());
    let open = state
        .rollouts
        .get(&key)
        .and_then(|opened| opened.get(ring))
        .is_some_and(|at| *at <= now);
    if open {
        Readiness::Ready
    } else {
        Readiness::RingNotOpen
    }
}

/// The install item of `policy` for `device` now, if anything is ready.
pub fn install_item(
    policy: &Policy,
    device: Device<'_>,
    state: &NamespaceState,
    installs: &HashMap<(Uuid, &str, &str), &InstallRow>,
    now: Timestamp,
) -> Option<WorkItem> {
    if policy.spec.audit_only {
        return None;
    }
    let ring = rings::ring_of(&policy.spec, device.labels)?;
    let mut targets: Vec<(PackageTarget, i32)> = Vec::new();
    for update in state.updates.iter().filter(|u| u.device == device.uid) {
        let Some(decided) =
            policy
                .approver
                .decide(&update.name, update.classification, update.first_seen, now)
        else {
            continue;
        };
        if decided.decision != Decision::Install {
            continue;
        }
        let install = installs
            .get(&(device.uid, update.name.as_str(), update.to.as_str()))
            .copied();
        if readiness(policy, ring, update, install, state, now) == Readiness::Ready {
            targets.push((
                PackageTarget {
                    name: update.name.clone(),
                    version: update.to.clone(),
                    classification: update.classification,
                },
                install.map_or(0, |i| i.attempts),
            ));
        }
    }
    if targets.is_empty() {
        return None;
    }
    // Security first, then by name: the order the agent installs in.
    targets.sort_by(|a, b| (a.0.classification, &a.0.name).cmp(&(b.0.classification, &b.0.name)));
    let install = PatchInstall {
        policy: policy.name.clone(),
        ring: rings::ring_name(&policy.spec, ring).to_owned(),
        packages: targets.iter().map(|(t, _)| t.clone()).collect(),
        deny: policy.spec.approval.deny.clone(),
        window: policy.spec.install_window.clone(),
        reboot: policy.reboot(),
    };
    let attempts: Vec<i32> = targets.iter().map(|(_, a)| *a).collect();
    let id = item_id(device.uid, &install, &attempts);
    Some(WorkItem {
        id,
        kind: WorkKind::PatchInstall(install),
    })
}

/// The scan item a device gets until its first scan arrives.
pub fn scan_item(device: Uuid) -> WorkItem {
    WorkItem {
        id: hashed_id(&[device.as_bytes(), b"patch-scan"]),
        kind: WorkKind::PatchScan,
    }
}

fn item_id(device: Uuid, install: &PatchInstall, attempts: &[i32]) -> Uuid {
    let body = serde_json::to_vec(&(install, attempts)).unwrap_or_default();
    hashed_id(&[device.as_bytes(), b"patch-install", &body])
}

fn hashed_id(parts: &[&[u8]]) -> Uuid {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Seconds between an agent's own patch scans while some policy selects its device.
pub const SCAN_INTERVAL_SECS: u64 = 6 * 3600;

/// The valid PatchPolicies of `namespace`, compiled, by name.
pub fn policies(snapshot: &Snapshot, namespace: &str) -> Vec<Policy> {
    snapshot
        .in_namespace(Kind::PatchPolicy, namespace)
        .filter_map(|o| {
            let spec: PatchPolicySpec = serde_json::from_value(o.spec.clone()).ok()?;
            spec.validate()
                .is_empty()
                .then(|| Policy::new(&o.name, o.generation, spec))
        })
        .collect()
}

/// Everything `device` should do now, and how often it should scan.
pub async fn device_work(
    store: &Store,
    snapshot: &Snapshot,
    identity: &DeviceIdentity,
    now: Timestamp,
) -> Result<(Vec<WorkItem>, u64), StoreError> {
    let Some(entry) = snapshot.device_by_uid(&identity.uid) else {
        return Ok((Vec::new(), 0));
    };
    let labels = &entry.object.labels;
    let selecting: Vec<Policy> = policies(snapshot, &identity.namespace)
        .into_iter()
        .filter(|p| selector_matches(&p.spec.selector, labels))
        .collect();
    if selecting.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let state = store
        .patch_namespace(&identity.namespace, Some(identity.uid))
        .await?;
    let done: HashSet<Uuid> = store.work_done(identity.uid).await?.into_iter().collect();
    let installs = installs_by_key(&state.installs);
    let device = Device {
        uid: identity.uid,
        labels,
    };
    let mut items = Vec::new();
    if state.scans.is_empty() {
        items.push(scan_item(identity.uid));
    }
    let mut taken: HashSet<String> = HashSet::new();
    for policy in &selecting {
        if let Some(mut item) = install_item(policy, device, &state, &installs, now) {
            // A package two policies approve is installed under the first (by name).
            if let WorkKind::PatchInstall(install) = &mut item.kind {
                install.packages.retain(|p| taken.insert(p.name.clone()));
                if install.packages.is_empty() {
                    continue;
                }
            }
            items.push(item);
        }
    }
    items.retain(|i| !done.contains(&i.id));
    Ok((items, SCAN_INTERVAL_SECS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdot_crds::patch_policy::Classification;
    use serde_json::json;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn policy(spec: serde_json::Value) -> Policy {
        Policy::new("linux", 1, serde_json::from_value(spec).expect("spec"))
    }

    fn update(device: Uuid, name: &str, class: Classification) -> UpdateRow {
        UpdateRow {
            device,
            name: name.into(),
            from: "1.0".into(),
            to: "2.0".into(),
            classification: class,
            reboot_required: false,
            first_seen: t("2026-12-01T00:00:00Z"),
        }
    }

    #[test]
    fn only_approved_updates_whose_ring_is_open_are_handed_out() {
        let device = Uuid::from_u128(7);
        let labels = BTreeMap::new();
        let p = policy(json!({
            "classifications": ["security", "bugfix"],
            "approval": {"approve": ["^cdot-"], "deny": ["^cdot-db"]},
        }));
        let mut state = NamespaceState {
            updates: vec![
                update(device, "cdot-tls", Classification::Security),
                update(device, "cdot-db", Classification::Security),
                update(device, "bash", Classification::Bugfix),
            ],
            ..NamespaceState::default()
        };
        let now = t("2026-12-07T10:00:00Z");
        let d = Device {
            uid: device,
            labels: &labels,
        };
        let none = HashMap::new();
        assert_eq!(
            install_item(&p, d, &state, &none, now),
            None,
            "no ring open yet"
        );
        state
            .rollouts
            .insert(("linux".into(), "cdot-tls".into(), "2.0".into()), vec![now]);
        let item = install_item(&p, d, &state, &none, now).expect("item");
        let WorkKind::PatchInstall(install) = &item.kind else {
            panic!("an install item");
        };
        assert_eq!(install.packages.len(), 1);
        assert_eq!(install.packages[0].name, "cdot-tls");
        assert_eq!(install.deny, vec!["^cdot-db".to_owned()]);
        assert_eq!(
            install_item(&p, d, &state, &none, now).map(|i| i.id),
            Some(item.id),
            "the same work has the same id"
        );
        // Failed once: not again in the same (always open) window for six hours, then a
        // new item.
        let failed = InstallRow {
            device,
            name: "cdot-tls".into(),
            version: "2.0".into(),
            policy: "linux".into(),
            state: PatchState::Failed,
            opening: None,
            attempts: 1,
            updated_at: now,
            finished_at: Some(now),
        };
        let installs = installs_by_key(std::slice::from_ref(&failed));
        assert_eq!(install_item(&p, d, &state, &installs, now), None);
        let later = t("2026-12-07T16:00:00Z");
        let retry = install_item(&p, d, &state, &installs, later).expect("retry");
        assert_ne!(retry.id, item.id);
    }

    /// A window that opens at 01:30 London on the night the clocks go back: 01:30 happens
    /// twice, the window opens once. A package that failed in it is not handed out again
    /// at the second 01:30 (the same opening), only in the next week's.
    #[test]
    fn a_window_across_a_dst_change_runs_once() {
        let device = Uuid::from_u128(9);
        let labels = BTreeMap::new();
        let p = policy(json!({
            "classifications": ["security"],
            "approval": {"approve": ["^cdot-"]},
            "installWindow": {"days": ["Sun"], "start": "01:30", "duration": "2h", "timeZone": "Europe/London"},
        }));
        let mut state = NamespaceState {
            updates: vec![update(device, "cdot-tls", Classification::Security)],
            ..NamespaceState::default()
        };
        let first = t("2026-10-25T00:30:00Z"); // 01:30 BST
        state.rollouts.insert(
            ("linux".into(), "cdot-tls".into(), "2.0".into()),
            vec![first],
        );
        let failed = InstallRow {
            device,
            name: "cdot-tls".into(),
            version: "2.0".into(),
            policy: "linux".into(),
            state: PatchState::Failed,
            opening: Some(first),
            attempts: 1,
            updated_at: t("2026-10-25T00:40:00Z"),
            finished_at: Some(t("2026-10-25T00:40:00Z")),
        };
        let installs = installs_by_key(std::slice::from_ref(&failed));
        let d = Device {
            uid: device,
            labels: &labels,
        };
        let second = t("2026-10-25T01:30:00Z"); // 01:30 GMT, the same opening
        assert_eq!(install_item(&p, d, &state, &installs, second), None);
        // After the opening it is handed out again (the agent waits for next Sunday's).
        let after = t("2026-10-25T03:00:00Z");
        assert!(install_item(&p, d, &state, &installs, after).is_some());
    }
}
