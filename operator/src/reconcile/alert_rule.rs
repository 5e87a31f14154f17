//! AlertRule: which devices it covers and whether the channels it notifies exist.
//!
//! `Ready` says the rule is accepted and what it selects; `crate::alerting` evaluates it
//! on ingest from the index and writes `firing` and `lastEvaluation`.
use cdot_crds::{
    alert_rule::{AlertRuleSpec, AlertRuleStatus},
    common::selector_matches,
    kind::Kind,
};

use super::{Observation, World, count};
use crate::store::StoredObject;

pub fn observe(
    spec: &AlertRuleSpec,
    object: &StoredObject,
    world: &World<'_>,
) -> Observation<AlertRuleStatus> {
    let matched = count(
        world
            .of_kind(&object.namespace, Kind::Device)
            .filter(|device| selector_matches(&spec.selector, device.labels)),
    );
    let status = AlertRuleStatus {
        matched_devices: Some(matched),
        ..AlertRuleStatus::default()
    };
    let missing: Vec<&str> = spec
        .channels
        .iter()
        .map(String::as_str)
        .filter(|name| !world.exists(&object.namespace, Kind::NotificationChannel, name))
        .collect();
    if !missing.is_empty() {
        return Observation::not_ready(
            status,
            "ChannelNotFound",
            format!(
                "notification channel(s) not found in namespace {}: {}",
                object.namespace,
                missing.join(", ")
            ),
        );
    }
    if spec.paused {
        return Observation::ready(
            status,
            "Paused",
            format!("paused by spec.paused; selects {matched} device(s)"),
        );
    }
    Observation::ready(
        status,
        "Accepted",
        format!("valid; evaluated on ingest for the {matched} device(s) it selects"),
    )
}

#[cfg(test)]
mod tests {
    use cdot_crds::common::ConditionStatus;
    use serde_json::json;

    use super::*;
    use crate::reconcile::tests::stored;

    fn rule(channels: &[&str]) -> StoredObject {
        stored(
            "AlertRule",
            "acme",
            "cpu-high",
            json!({
                "selector": { "matchLabels": { "role": "web" } },
                "metric": "cpu",
                "condition": { "op": ">", "threshold": 90.0 },
                "channels": channels,
            }),
            json!({}),
        )
    }

    fn world_objects() -> Vec<StoredObject> {
        let mut web = stored(
            "Device",
            "acme",
            "web-01",
            json!({ "class": "Server" }),
            json!({}),
        );
        web.labels.insert("role".into(), "web".into());
        let mut other_tenant = web.clone();
        other_tenant.namespace = "globex".into();
        let db = stored(
            "Device",
            "acme",
            "db-01",
            json!({ "class": "Server" }),
            json!({}),
        );
        let slack = stored("NotificationChannel", "acme", "slack", json!({}), json!({}));
        vec![web, other_tenant, db, slack]
    }

    #[test]
    fn counts_matching_devices_of_its_own_namespace() {
        let objects = world_objects();
        let rule = rule(&["slack"]);
        let spec: AlertRuleSpec = match serde_json::from_value(rule.spec.clone()) {
            Ok(spec) => spec,
            Err(e) => panic!("fixture does not match the AlertRule schema: {e}"),
        };
        let observation = observe(&spec, &rule, &World::new(&objects));
        assert_eq!(observation.status.matched_devices, Some(1));
        assert_eq!(observation.ready.0, ConditionStatus::True);
    }

    /// `Ready` says what the alerting engine does for the rule, no more.
    #[test]
    fn ready_says_the_rule_is_evaluated_for_the_devices_it_selects() {
        let objects = world_objects();
        let rule = rule(&["slack"]);
        let spec: AlertRuleSpec = serde_json::from_value(rule.spec.clone()).expect("spec");
        let observation = observe(&spec, &rule, &World::new(&objects));
        assert_eq!(
            observation.ready.2,
            "valid; evaluated on ingest for the 1 device(s) it selects"
        );
    }

    #[test]
    fn a_missing_channel_is_not_ready() {
        let objects = world_objects();
        let rule = rule(&["slack", "pager"]);
        let spec: AlertRuleSpec = serde_json::from_value(rule.spec.clone()).expect("spec");
        let observation = observe(&spec, &rule, &World::new(&objects));
        assert_eq!(observation.ready.1, "ChannelNotFound");
        assert!(observation.ready.2.contains("pager"));
    }
}
