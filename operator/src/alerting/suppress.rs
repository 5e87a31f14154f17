//! What holds a notification back while the alert is still recorded: the Device paused or
//! in a maintenance window, a silence, or the Device being offline (inhibition).
use std::collections::BTreeMap;

use cdot_crds::{kind::Kind, silence::SilenceSpec, validation::Validate, wire::alert::Silence};

use super::rules::{Pattern, Rule};
use crate::index::{DeviceEntry, Snapshot};

/// The labels silences match against: `namespace`, `device`, `rule`, `metric`,
/// `severity`, `site`, the series labels and the rule's labels.
pub fn alert_labels(
    rule: &Rule,
    device: &str,
    site: Option<&str>,
    series: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels = rule.spec.labels.clone();
    labels.extend(series.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels.insert("namespace".into(), rule.namespace.clone());
    labels.insert("device".into(), device.into());
    labels.insert("rule".into(), rule.name.clone());
    labels.insert("metric".into(), rule.metric.into());
    labels.insert("severity".into(), super::writer::severity_str(rule).into());
    if let Some(site) = site {
        labels.insert("site".into(), site.into());
    }
    labels
}

/// The first silence of `namespace` active at `at` whose matchers all match.
pub fn silenced_by<'a>(
    silences: &'a [Silence],
    namespace: &str,
    labels: &BTreeMap<String, String>,
    at: jiff::Timestamp,
) -> Option<&'a Silence> {
    silences.iter().find(|s| {
        s.namespace == namespace
            && s.starts_at
                .parse::<jiff::Timestamp>()
                .is_ok_and(|t| t <= at)
            && s.ends_at.parse::<jiff::Timestamp>().is_ok_and(|t| at < t)
            && s.matchers.iter().all(|m| {
                labels
                    .get(&m.label)
                    .is_some_and(|v| Pattern::new(&m.value).matches(v))
            })
    })
}

/// The Silence documents of the desired state, as silences (invalid ones are left out:
/// their reconciler says why).
pub fn manifest_silences(snapshot: &Snapshot) -> Vec<Silence> {
    snapshot
        .of_kind(Kind::Silence)
        .filter_map(|o| {
            let spec: SilenceSpec = serde_json::from_value(o.spec.clone()).ok()?;
            spec.validate().is_empty().then(|| Silence {
                id: o.uid,
                namespace: o.namespace.clone(),
                matchers: spec.matchers,
                starts_at: spec.starts_at,
                ends_at: spec.ends_at,
                created_by: "manifests".into(),
                comment: spec.comment,
                name: Some(o.name.clone()),
            })
        })
        .collect()
}

/// Why the Device's own spec holds notifications back at `at`, if it does.
pub fn device_maintenance(device: &DeviceEntry, at: jiff::Timestamp) -> Option<&'static str> {
    let maintenance = device.spec.as_ref()?.maintenance.as_ref()?;
    if maintenance.paused {
        return Some("device paused (spec.maintenance.paused)");
    }
    maintenance
        .windows
        .iter()
        .any(|w| w.contains(at))
        .then_some("device in a maintenance window")
}

#[cfg(test)]
mod tests {
    use cdot_crds::wire::alert::Matcher;
    use uuid::Uuid;

    use super::*;

    fn rule(metric: &str) -> Rule {
        let object = crate::index::IndexedObject::from(&crate::reconcile::tests::stored(
            "AlertRule",
            "acme",
            metric,
            serde_json::json!({"metric": metric, "condition": {"threshold": 1}}),
            serde_json::json!({}),
        ));
        Rule::compile(&object).expect("valid rule")
    }

    #[test]
    fn a_silence_matches_all_its_matchers_within_its_time() {
        let s = Silence {
            id: Uuid::nil(),
            namespace: "acme".into(),
            matchers: vec![
                Matcher {
                    label: "device".into(),
                    value: "web-*".into(),
                },
                Matcher {
                    label: "mount".into(),
                    value: "/".into(),
                },
            ],
            starts_at: "2026-12-01T00:00:00Z".into(),
            ends_at: "2026-12-02T00:00:00Z".into(),
            created_by: "ops".into(),
            comment: String::new(),
            name: None,
        };
        let series = [("mount".to_owned(), "/".to_owned())].into();
        let labels = alert_labels(&rule("disk"), "web-01", None, &series);
        let inside: jiff::Timestamp = "2026-12-01T12:00:00Z".parse().expect("ts");
        let after: jiff::Timestamp = "2026-12-02T00:00:00Z".parse().expect("ts");
        let silences = [s];
        assert!(silenced_by(&silences, "acme", &labels, inside).is_some());
        assert!(silenced_by(&silences, "acme", &labels, after).is_none());
        assert!(silenced_by(&silences, "globex", &labels, inside).is_none());
        let other = alert_labels(&rule("disk"), "db-01", None, &series);
        assert!(silenced_by(&silences, "acme", &other, inside).is_none());
        let no_mount = alert_labels(&rule("cpu"), "web-01", None, &BTreeMap::new());
        assert!(silenced_by(&silences, "acme", &no_mount, inside).is_none());
    }
}
