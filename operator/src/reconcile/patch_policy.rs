//! PatchPolicy: the devices in scope and how they fall into rings.
//!
//! A device belongs to the first ring whose selector matches it (a ring without a selector
//! takes every device left). The progress counts per ring, `compliant` and `rollout` belong
//! to the patching engine (`crate::patching::engine`); they are kept here as they stand.
use cdot_crds::{
    common::selector_matches,
    kind::Kind,
    patch_policy::{PatchPolicySpec, PatchPolicyStatus, RingStatus},
};

use super::{Observation, World, count};
use crate::store::StoredObject;

/// Ends the `Ready` message: what the policy's other fields tell.
pub const SEE_PROGRESS: &str = "installs are in status.rings and status.rollout";

pub fn observe(
    spec: &PatchPolicySpec,
    object: &StoredObject,
    world: &World<'_>,
) -> Observation<PatchPolicyStatus> {
    let previous: PatchPolicyStatus =
        serde_json::from_value(object.status.clone()).unwrap_or_default();
    let previous_rings = previous.rings.unwrap_or_default();
    let in_scope: Vec<super::Peer<'_>> = world
        .of_kind(&object.namespace, Kind::Device)
        .filter(|device| selector_matches(&spec.selector, device.labels))
        .collect();
    let mut rings: Vec<RingStatus> = spec
        .rings
        .iter()
        .map(|ring| {
            let old = previous_rings.iter().find(|r| r.name == ring.name);
            RingStatus {
                name: ring.name.clone(),
                devices: 0,
                completed: old.map_or(0, |r| r.completed),
                failed: old.map_or(0, |r| r.failed),
                pending: old.map_or(0, |r| r.pending),
            }
        })
        .collect();
    let mut unassigned = 0;
    for device in &in_scope {
        let ring = spec.rings.iter().position(|ring| {
            ring.selector
                .as_ref()
                .is_none_or(|s| selector_matches(s, device.labels))
        });
        match ring {
            Some(index) => rings[index].devices += 1,
            None => unassigned += 1,
        }
    }
    let in_scope = count(in_scope.iter());
    let status = PatchPolicyStatus {
        devices_in_scope: Some(in_scope),
        rings: Some(rings),
        ..PatchPolicyStatus::default()
    };
    let mode = if spec.audit_only { " (audit only)" } else { "" };
    if unassigned > 0 && !spec.rings.is_empty() {
        return Observation::ready(
            status,
            "DevicesOutsideRings",
            format!(
                "valid{mode}; {unassigned} of {in_scope} device(s) in scope match no ring and would not be patched; {SEE_PROGRESS}"
            ),
        );
    }
    Observation::ready(
        status,
        "Accepted",
        format!("valid{mode}; {in_scope} device(s) in scope; {SEE_PROGRESS}"),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::reconcile::tests::stored;

    #[test]
    fn devices_go_to_the_first_matching_ring() {
        let mut objects = Vec::new();
        for (name, ring) in [("pc-1", "pilot"), ("pc-2", "broad"), ("pc-3", "broad")] {
            let mut device = stored(
                "Device",
                "acme",
                name,
                json!({ "class": "Workstation" }),
                json!({}),
            );
            device.labels.insert("class".into(), "workstation".into());
            device.labels.insert("ring".into(), ring.into());
            objects.push(device);
        }
        let policy = stored(
            "PatchPolicy",
            "acme",
            "workstations",
            json!({
                "selector": { "matchLabels": { "class": "workstation" } },
                "rings": [
                    { "name": "pilot", "selector": { "matchLabels": { "ring": "pilot" } } },
                    { "name": "everyone-else", "delay": "2d" }
                ]
            }),
            json!({ "rings": [{ "name": "pilot", "devices": 9, "completed": 1, "failed": 0 }] }),
        );
        let spec: PatchPolicySpec = match serde_json::from_value(policy.spec.clone()) {
            Ok(spec) => spec,
            Err(e) => panic!("fixture does not match the PatchPolicy schema: {e}"),
        };
        let observation = observe(&spec, &policy, &World::new(&objects));
        assert_eq!(observation.status.devices_in_scope, Some(3));
        let rings = observation.status.rings.expect("rings");
        assert_eq!(
            rings[0],
            RingStatus {
                name: "pilot".into(),
                devices: 1,
                completed: 1,
                failed: 0,
                pending: 0
            }
        );
        assert_eq!(rings[1].devices, 2);
        assert_eq!(observation.ready.1, "Accepted");
        assert_eq!(
            observation.ready.2,
            "valid; 3 device(s) in scope; installs are in status.rings and status.rollout"
        );
    }
}
