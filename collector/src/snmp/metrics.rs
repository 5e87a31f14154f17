//! Prometheus metrics of SNMP polling (`cdot_collector_snmp_*`). Labels are results and
//! reasons only: never a device, address, community or user.
use prometheus_client::{
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::metrics::{ReasonLabels, ResultLabels};

/// Counters of the SNMP poller; clones share the same series.
#[derive(Clone, Debug)]
pub struct SnmpMetrics {
    /// Polls by result (`ok`, `timeout`, `error`).
    pub polls: Family<ResultLabels, Counter>,
    /// Requests not answered within the target's timeout (each attempt).
    pub timeouts: Counter,
    /// Failed polls by reason ([`super::SnmpError::reason`]).
    pub errors: Family<ReasonLabels, Counter>,
    /// Interface intervals without rates, by reason ([`super::NoRate::label`]).
    pub intervals_skipped: Family<ReasonLabels, Counter>,
    /// Interface samples produced.
    pub samples: Counter,
    /// Duration of one poll of one device.
    pub poll_duration: Histogram,
    /// Devices being polled.
    pub targets: Gauge,
}

impl Default for SnmpMetrics {
    /// Metrics registered nowhere (for tests and tools).
    fn default() -> Self {
        Self {
            polls: Family::default(),
            timeouts: Counter::default(),
            errors: Family::default(),
            intervals_skipped: Family::default(),
            samples: Counter::default(),
            poll_duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            targets: Gauge::default(),
        }
    }
}

impl SnmpMetrics {
    /// Creates the metrics and registers them in `registry` (which should have no prefix).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "cdot_collector_snmp_polls",
            "SNMP polls of a device, by result",
            metrics.polls.clone(),
        );
        registry.register(
            "cdot_collector_snmp_timeouts",
            "SNMP requests not answered in time (each attempt)",
            metrics.timeouts.clone(),
        );
        registry.register(
            "cdot_collector_snmp_errors",
            "Failed SNMP polls, by reason",
            metrics.errors.clone(),
        );
        registry.register(
            "cdot_collector_snmp_intervals_skipped",
            "Interface intervals without rates (agent restart, counter reset), by reason",
            metrics.intervals_skipped.clone(),
        );
        registry.register(
            "cdot_collector_snmp_samples",
            "Interface samples produced",
            metrics.samples.clone(),
        );
        registry.register(
            "cdot_collector_snmp_poll_duration_seconds",
            "Duration of one SNMP poll of one device",
            metrics.poll_duration.clone(),
        );
        registry.register(
            "cdot_collector_snmp_targets",
            "Devices being polled over SNMP",
            metrics.targets.clone(),
        );
        metrics
    }

    pub(crate) fn poll_result(&self, result: &'static str) -> Counter {
        self.polls.get_or_create(&ResultLabels { result }).clone()
    }

    pub(crate) fn error(&self, reason: &'static str) -> Counter {
        self.errors.get_or_create(&ReasonLabels { reason }).clone()
    }

    pub(crate) fn skipped(&self, reason: &'static str) -> Counter {
        self.intervals_skipped
            .get_or_create(&ReasonLabels { reason })
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
        let metrics = SnmpMetrics::register(&mut registry);
        metrics.poll_result("ok").inc();
        metrics.error("timeout").inc();
        metrics.skipped("agent_restarted").inc();
        metrics.timeouts.inc();
        let mut text = String::new();
        encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains(r#"cdot_collector_snmp_polls_total{result="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"cdot_collector_snmp_errors_total{reason="timeout"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("cdot_collector_snmp_timeouts_total 1"),
            "{text}"
        );
        assert!(
            text.contains(
                r#"cdot_collector_snmp_intervals_skipped_total{reason="agent_restarted"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("cdot_collector_snmp_poll_duration_seconds_bucket"),
            "{text}"
        );
    }
}
