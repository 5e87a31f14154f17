//! Which collectors may run a scan, and which one does: the Collector Devices the scan
//! selects (`spec.collector` name and selector, else those of its site), of which only the
//! Ready ones (reporting, heartbeats included) are given runs, the least busy first.
use std::collections::BTreeMap;

use cdot_crds::{
    SITE_LABEL,
    common::selector_matches,
    device::{DeviceClass, DeviceSpec, DeviceStatus},
    discovery_scan::DiscoveryScanSpec,
};
use uuid::Uuid;

use crate::{reconcile::device, store::StoredObject};

/// A Collector Device and whether it reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collector {
    pub namespace: String,
    pub name: String,
    pub uid: Uuid,
    pub site: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub ready: bool,
}

impl Collector {
    /// A stored Device of class Collector, with its readiness as of `now` (RFC 3339).
    pub fn of(object: &StoredObject, now: &str) -> Option<Self> {
        let spec: DeviceSpec = serde_json::from_value(object.spec.clone()).ok()?;
        if spec.class != DeviceClass::Collector {
            return None;
        }
        let status: DeviceStatus =
            serde_json::from_value(object.status.clone()).unwrap_or_default();
        let paused = spec.maintenance.as_ref().is_some_and(|m| m.paused);
        let agent = status.agent.as_ref();
        let interval = device::liveness_interval(
            device::agent_config(&spec).metrics_interval_secs,
            agent.and_then(|a| a.report_interval_seconds),
        );
        let ready = device::is_ready(
            paused,
            agent.and_then(|a| a.last_seen.as_deref()),
            now,
            interval,
        );
        Some(Self {
            namespace: object.namespace.clone(),
            name: object.name.clone(),
            uid: object.uid,
            site: spec
                .site
                .clone()
                .or_else(|| object.labels.get(SITE_LABEL).cloned()),
            labels: object.labels.clone(),
            ready,
        })
    }
}

/// The site a scan covers: `spec.site`, else its site label.
pub fn scan_site<'a>(
    spec: &'a DiscoveryScanSpec,
    labels: &'a BTreeMap<String, String>,
) -> Option<&'a str> {
    spec.site
        .as_deref()
        .or_else(|| labels.get(SITE_LABEL).map(String::as_str))
}

/// Whether `collector` is one the scan selects (ready or not).
pub fn selects(
    spec: &DiscoveryScanSpec,
    site: Option<&str>,
    namespace: &str,
    collector: &Collector,
) -> bool {
    collector.namespace == namespace
        && selects_device(
            spec,
            site,
            &collector.name,
            collector.site.as_deref(),
            &collector.labels,
        )
}

/// Whether a Collector Device (`name`, its site, its labels) of the scan's namespace is one
/// the scan selects: by `spec.collector` name and selector, else by the scan's site.
pub fn selects_device(
    spec: &DiscoveryScanSpec,
    site: Option<&str>,
    name: &str,
    device_site: Option<&str>,
    labels: &BTreeMap<String, String>,
) -> bool {
    match &spec.collector {
        Some(selection) if selection.name.is_some() || selection.selector.is_some() => {
            selection.name.as_ref().is_none_or(|n| n == name)
                && selection
                    .selector
                    .as_ref()
                    .is_none_or(|s| selector_matches(s, labels))
        }
        _ => site.is_none_or(|site| device_site == Some(site)),
    }
}

/// The Ready collector to give a run to: the one with the fewest unfinished runs (`load`),
/// then by name, so a pass decides the same way every time.
pub fn choose<'a>(
    candidates: impl Iterator<Item = &'a Collector>,
    load: impl Fn(Uuid) -> usize,
) -> Option<&'a Collector> {
    candidates
        .filter(|c| c.ready)
        .min_by(|a, b| load(a.uid).cmp(&load(b.uid)).then(a.name.cmp(&b.name)))
}

#[cfg(test)]
mod tests {
    use cdot_crds::{common::LabelSelector, discovery_scan::CollectorSelection};

    use super::*;

    fn collector(name: &str, site: Option<&str>, ready: bool) -> Collector {
        Collector {
            namespace: "acme".into(),
            name: name.into(),
            uid: Uuid::new_v4(),
            site: site.map(str::to_owned),
            labels: [("role".to_owned(), "collector".to_owned())].into(),
            ready,
        }
    }

    #[test]
    fn a_scan_runs_on_a_ready_collector_of_its_site_the_least_busy_first() {
        let spec = DiscoveryScanSpec::default();
        let all = [
            collector("a", Some("london"), false),
            collector("b", Some("london"), true),
            collector("c", Some("london"), true),
            collector("d", Some("leeds"), true),
        ];
        let mine: Vec<&Collector> = all
            .iter()
            .filter(|c| selects(&spec, Some("london"), "acme", c))
            .collect();
        assert_eq!(mine.len(), 3);
        let busy_b = all[1].uid;
        let chosen = choose(mine.iter().copied(), |uid| usize::from(uid == busy_b)).expect("one");
        assert_eq!(chosen.name, "c");
        assert!(
            choose(mine[..1].iter().copied(), |_| 0).is_none(),
            "only a collector that is not Ready"
        );

        let named = DiscoveryScanSpec {
            collector: Some(CollectorSelection {
                name: Some("d".into()),
                selector: Some(LabelSelector {
                    match_labels: Some([("role".to_owned(), "collector".to_owned())].into()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let picked: Vec<&str> = all
            .iter()
            .filter(|c| selects(&named, Some("london"), "acme", c))
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(picked, ["d"], "an explicit selection overrides the site");
    }
}
