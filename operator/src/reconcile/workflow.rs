//! Workflow: which devices it covers and whether what it refers to exists.
use cdot_crds::{common::selector_matches, kind::Kind, workflow::WorkflowSpec};
use serde_json::json;

use super::{Observation, World};
use crate::store::StoredObject;

pub fn observe(spec: &WorkflowSpec, object: &StoredObject, world: &World<'_>) -> Observation {
    let matched = world
        .of_kind(&object.namespace, Kind::Device)
        .filter(|device| selector_matches(&spec.selector, device.labels))
        .count();
    let fields = json!({ "matchedDevices": matched });
    let namespace = object.namespace.as_str();
    let mut missing = Vec::new();
    if let Some(rule) = &spec.trigger.alert_rule
        && !world.exists(namespace, Kind::AlertRule, rule)
    {
        missing.push(format!("AlertRule {rule} (spec.trigger.alertRule)"));
    }
    for (index, step) in spec.steps.iter().enumerate() {
        if let Some(channel) = &step.channel
            && !world.exists(namespace, Kind::NotificationChannel, channel)
        {
            missing.push(format!(
                "NotificationChannel {channel} (spec.steps[{index}].channel)"
            ));
        }
    }
    if !missing.is_empty() {
        return Observation::not_ready(
            fields,
            "ReferenceNotFound",
            format!("not found in namespace {namespace}: {}", missing.join(", ")),
        );
    }
    if spec.paused {
        return Observation::ready(
            fields,
            "Paused",
            "triggers are ignored while spec.paused is set",
        );
    }
    Observation::ready(fields, "Armed", format!("armed for {matched} device(s)"))
}
