//! Alert episodes on the charts: each alert of an interface or probe metric is a span from
//! its first breach to its end (or now), on the charts of what it concerns; clicking a span
//! zooms the range to it.
use cdot_crds::{alert_rule::Severity, wire::alert::Alert};

/// One alert as a span of time.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    pub from_ms: i64,
    /// The alert's end, or now while it is open.
    pub to_ms: i64,
    pub label: String,
    pub severity: Severity,
}

/// Which charts an alert belongs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concern<'a> {
    /// Interface metrics (all interfaces of the screen, or one device's one interface).
    Interfaces {
        device: Option<&'a str>,
        interface: Option<&'a str>,
    },
    /// Probe metrics.
    Probes,
}

impl Concern<'_> {
    fn matches(&self, alert: &Alert) -> bool {
        match self {
            Self::Interfaces { device, interface } => {
                alert.metric.starts_with("interface")
                    && device.is_none_or(|d| alert.device == d)
                    && interface.is_none_or(|i| {
                        alert.series.get("interface").map(String::as_str) == Some(i)
                    })
            }
            Self::Probes => alert.metric.starts_with("probe"),
        }
    }
}

/// The episodes of `alerts` that `concern` the chart.
pub fn of(alerts: &[Alert], concern: Concern<'_>, now_ms: i64) -> Vec<Episode> {
    let ms = |t: &str| {
        t.parse::<jiff::Timestamp>()
            .ok()
            .map(|t| t.as_millisecond())
    };
    alerts
        .iter()
        .filter(|a| concern.matches(a))
        .filter_map(|a| {
            Some(Episode {
                from_ms: ms(&a.started_at)?,
                to_ms: a.resolved_at.as_deref().and_then(ms).unwrap_or(now_ms),
                label: a.summary.clone(),
                severity: a.severity,
            })
        })
        .collect()
}

/// The episode under `x_ms` (the shortest, when they overlap).
pub fn at(episodes: &[Episode], x_ms: i64) -> Option<&Episode> {
    episodes
        .iter()
        .filter(|e| e.from_ms <= x_ms && x_ms <= e.to_ms)
        .min_by_key(|e| e.to_ms - e.from_ms)
}

/// The range to zoom to for `episode`: the episode with a tenth of its length (at least a
/// minute) on each side, so that its start and end are visible.
pub fn zoom(episode: &Episode) -> (i64, i64) {
    let margin = ((episode.to_ms - episode.from_ms) / 10).max(60_000);
    (episode.from_ms - margin, episode.to_ms + margin)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cdot_crds::wire::alert::AlertState;

    use super::*;

    fn alert(metric: &str, device: &str, interface: &str, start: &str, end: Option<&str>) -> Alert {
        Alert {
            id: uuid::Uuid::new_v4(),
            namespace: "acme".into(),
            rule: "r".into(),
            device: device.into(),
            site: None,
            metric: metric.into(),
            series: BTreeMap::from([("interface".to_owned(), interface.to_owned())]),
            labels: BTreeMap::new(),
            severity: Severity::Warning,
            state: if end.is_some() {
                AlertState::Resolved
            } else {
                AlertState::Firing
            },
            value: 0.0,
            peak: 0.0,
            threshold: 0.0,
            summary: format!("{device} {interface}"),
            description: String::new(),
            started_at: start.into(),
            fired_at: None,
            resolved_at: end.map(str::to_owned),
            acknowledged: None,
            suppressed: None,
            tickets: BTreeMap::new(),
        }
    }

    #[test]
    fn episodes_go_on_the_charts_they_concern_and_zoom_with_a_margin() {
        let now = "2026-12-06T12:00:00Z"
            .parse::<jiff::Timestamp>()
            .expect("ts")
            .as_millisecond();
        let alerts = [
            alert(
                "interfaceUtilisation",
                "r1",
                "ge-0/0/1",
                "2026-12-06T10:00:00Z",
                Some("2026-12-06T11:00:00Z"),
            ),
            alert("interfaceDown", "r2", "eth1", "2026-12-06T11:30:00Z", None),
            alert("probeLoss", "r1", "", "2026-12-06T11:00:00Z", None),
            alert("cpu", "r1", "", "2026-12-06T11:00:00Z", None),
        ];
        let all = of(
            &alerts,
            Concern::Interfaces {
                device: None,
                interface: None,
            },
            now,
        );
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].to_ms, now, "open: up to now");
        let one = of(
            &alerts,
            Concern::Interfaces {
                device: Some("r1"),
                interface: Some("ge-0/0/1"),
            },
            now,
        );
        assert_eq!(one.len(), 1);
        assert_eq!(of(&alerts, Concern::Probes, now).len(), 1);

        let hour = 3_600_000;
        assert_eq!(
            at(&all, now - 90 * 60_000).map(|e| e.label.as_str()),
            Some("r1 ge-0/0/1")
        );
        assert_eq!(at(&all, now - 80 * 60_000 - hour), None);
        assert_eq!(
            zoom(&one[0]),
            (now - 2 * hour - 6 * 60_000, now - hour + 6 * 60_000)
        );
    }
}
