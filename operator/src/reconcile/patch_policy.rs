//! PatchPolicy: the devices in scope and how they fall into rings.
//!
//! A device belongs to the first ring whose selector matches it (a ring without a selector
//! takes every device left). Progress counts per ring are written by the patch coordinator
//! and kept here as they are.
use cdot_crds::{
    common::selector_matches,
    kind::Kind,
    patch_policy::{PatchPolicySpec, PatchPolicyStatus, RingStatus},
};
use serde_json::json;

use super::{Observation, World};
use crate::store::StoredObject;

pub fn observe(spec: &PatchPolicySpec, object: &StoredObject, world: &World<'_>) -> Observation {
    let previous: PatchPolicyStatus =
        serde_json::from_value(object.status.clone()).unwrap_or_default();
    let in_scope: Vec<super::Peer<'_>> = world
        .of_kind(&object.namespace, Kind::Device)
        .filter(|device| selector_matches(&spec.selector, device.labels))
        .collect();
    let mut rings: Vec<RingStatus> = spec
        .rings
        .iter()
        .map(|ring| {
            let old = previous.rings.iter().find(|r| r.name == ring.name);
            RingStatus {
                name: ring.name.clone(),
                devices: 0,
                completed: old.map_or(0, |r| r.completed),
                failed: old.map_or(0, |r| r.failed),
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
    let fields = json!({ "devicesInScope": in_scope.len(), "rings": rings });
    let mode = if spec.audit_only {
        "audit only"
    } else {
        "installing"
    };
    if unassigned > 0 && !spec.rings.is_empty() {
        return Observation::ready(
            fields,
            "DevicesOutsideRings",
            format!(
                "{mode}; {unassigned} device(s) in scope match no ring and will not be patched"
            ),
        );
    }
    Observation::ready(
        fields,
        "Accepted",
        format!("{mode}; {} device(s) in scope", in_scope.len()),
    )
}

#[cfg(test)]
mod tests {
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
        assert_eq!(observation.fields["devicesInScope"], 3);
        assert_eq!(
            observation.fields["rings"][0],
            json!({ "name": "pilot", "devices": 1, "completed": 1, "failed": 0 })
        );
        assert_eq!(observation.fields["rings"][1]["devices"], 2);
        assert_eq!(observation.ready.1, "Accepted");
    }
}
