//! Prometheus metrics of discovery (`cdot_collector_discovery_*`). Labels are states,
//! methods and reasons only: never a scan, run or address.
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::metrics::ReasonLabels;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub method: &'static str,
}

/// Counters of discovery; clones share the same series.
#[derive(Clone, Debug, Default)]
pub struct DiscoveryMetrics {
    /// Runs started (a run restarted after a collector restart counts again).
    pub runs_started: Counter,
    /// Runs that sent their final report, by state (`succeeded`, `failed`).
    pub runs_finished: Family<StateLabels, Counter>,
    /// Runs probing now.
    pub runs_running: Gauge,
    /// Runs assigned (running or finished, until the operator removes them).
    pub runs_assigned: Gauge,
    /// Addresses done.
    pub addresses: Counter,
    /// Addresses that answered, by method (`icmp`, `snmp`).
    pub answers: Family<MethodLabels, Counter>,
    /// Probe packets sent: ICMP echoes and SNMP requests, retries included.
    pub packets: Counter,
    /// Failures by reason: a credential failing on an address (`timeout`,
    /// `authentication`, `malformed`, `unreachable`, `error`), an optional table that
    /// could not be read (`table`), an echo the kernel refused to send (`icmp_send`).
    pub errors: Family<ReasonLabels, Counter>,
}

impl DiscoveryMetrics {
    /// Creates the metrics and registers them in `registry` (which should have no prefix).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "cdot_collector_discovery_runs_started",
            "Discovery runs started",
            metrics.runs_started.clone(),
        );
        registry.register(
            "cdot_collector_discovery_runs_finished",
            "Discovery runs finished, by state",
            metrics.runs_finished.clone(),
        );
        registry.register(
            "cdot_collector_discovery_runs_running",
            "Discovery runs probing now",
            metrics.runs_running.clone(),
        );
        registry.register(
            "cdot_collector_discovery_runs_assigned",
            "Discovery runs assigned to this collector",
            metrics.runs_assigned.clone(),
        );
        registry.register(
            "cdot_collector_discovery_addresses",
            "Addresses probed by discovery runs",
            metrics.addresses.clone(),
        );
        registry.register(
            "cdot_collector_discovery_answers",
            "Addresses that answered a discovery probe, by method",
            metrics.answers.clone(),
        );
        registry.register(
            "cdot_collector_discovery_packets",
            "Discovery probe packets sent (ICMP echoes and SNMP requests)",
            metrics.packets.clone(),
        );
        registry.register(
            "cdot_collector_discovery_errors",
            "Discovery failures, by reason",
            metrics.errors.clone(),
        );
        metrics
    }

    pub(crate) fn finished(&self, state: &'static str) -> Counter {
        self.runs_finished
            .get_or_create(&StateLabels { state })
            .clone()
    }

    pub(crate) fn answer(&self, method: &'static str) -> Counter {
        self.answers.get_or_create(&MethodLabels { method }).clone()
    }

    pub(crate) fn error(&self, reason: &'static str) -> Counter {
        self.errors.get_or_create(&ReasonLabels { reason }).clone()
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn registered_names_and_labels() {
        let mut registry = Registry::default();
        let metrics = DiscoveryMetrics::register(&mut registry);
        metrics.runs_started.inc();
        metrics.finished("succeeded").inc();
        metrics.answer("icmp").inc_by(6);
        metrics.error("malformed").inc();
        metrics.packets.inc_by(500);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encode");
        for line in [
            "cdot_collector_discovery_runs_started_total 1",
            r#"cdot_collector_discovery_runs_finished_total{state="succeeded"} 1"#,
            r#"cdot_collector_discovery_answers_total{method="icmp"} 6"#,
            r#"cdot_collector_discovery_errors_total{reason="malformed"} 1"#,
            "cdot_collector_discovery_packets_total 500",
            "cdot_collector_discovery_runs_running 0",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
