//! Prometheus metrics of probing (`cdot_collector_probe_*`). Labels are results, reasons
//! and probe types only: never a device or target.
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::metrics::{ReasonLabels, ResultLabels};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabels {
    pub r#type: &'static str,
}

/// Counters of the prober; clones share the same series.
#[derive(Clone, Debug)]
pub struct ProbeMetrics {
    /// Rounds by result (`ok`, `loss` (some echoes lost), `unreachable` (all lost), `error`).
    pub rounds: Family<ResultLabels, Counter>,
    /// Echo requests sent.
    pub echoes_sent: Counter,
    /// Echo replies received.
    pub echoes_received: Counter,
    /// Round-trip times of replies.
    pub rtt: Histogram,
    /// Failures by reason (`resolve`, `socket`, `send`).
    pub errors: Family<ReasonLabels, Counter>,
    /// Probes not run because their type is not supported, by type.
    pub skipped: Family<TypeLabels, Counter>,
    /// Probes running.
    pub targets: Gauge,
}

impl Default for ProbeMetrics {
    /// Metrics registered nowhere (for tests and tools).
    fn default() -> Self {
        Self {
            rounds: Family::default(),
            echoes_sent: Counter::default(),
            echoes_received: Counter::default(),
            rtt: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
            errors: Family::default(),
            skipped: Family::default(),
            targets: Gauge::default(),
        }
    }
}

impl ProbeMetrics {
    /// Creates the metrics and registers them in `registry` (which should have no prefix).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "cdot_collector_probe_rounds",
            "Probe rounds, by result",
            metrics.rounds.clone(),
        );
        registry.register(
            "cdot_collector_probe_echoes_sent",
            "ICMP echo requests sent",
            metrics.echoes_sent.clone(),
        );
        registry.register(
            "cdot_collector_probe_echoes_received",
            "ICMP echo replies received",
            metrics.echoes_received.clone(),
        );
        registry.register(
            "cdot_collector_probe_rtt_seconds",
            "Round-trip time of ICMP echo replies",
            metrics.rtt.clone(),
        );
        registry.register(
            "cdot_collector_probe_errors",
            "Probe failures, by reason",
            metrics.errors.clone(),
        );
        registry.register(
            "cdot_collector_probe_skipped",
            "Probes not run because their type is not supported, by type",
            metrics.skipped.clone(),
        );
        registry.register(
            "cdot_collector_probe_targets",
            "Probes running",
            metrics.targets.clone(),
        );
        metrics
    }

    pub(crate) fn round(&self, result: &'static str) -> Counter {
        self.rounds.get_or_create(&ResultLabels { result }).clone()
    }

    pub(crate) fn error(&self, reason: &'static str) -> Counter {
        self.errors.get_or_create(&ReasonLabels { reason }).clone()
    }

    pub(crate) fn skip(&self, probe_type: &'static str) -> Counter {
        self.skipped
            .get_or_create(&TypeLabels { r#type: probe_type })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn registered_names_and_labels() {
        let mut registry = Registry::default();
        let metrics = ProbeMetrics::register(&mut registry);
        metrics.round("ok").inc();
        metrics.skip("tcp").inc();
        metrics.echoes_sent.inc_by(5);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains(r#"cdot_collector_probe_rounds_total{result="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"cdot_collector_probe_skipped_total{type="tcp"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("cdot_collector_probe_echoes_sent_total 5"),
            "{text}"
        );
    }
}
