//! Counters of the flow receivers, registered in one place.
//!
//! Receiving threads count into a private [`Tally`] and publish it about once a second,
//! so that the hot path never takes the lock of a metric family. Exporter labels are
//! bounded: past [`MAX_EXPORTER_LABELS`] distinct exporters (spoofed sources, say), the
//! rest are counted under `exporter="other"`.
use std::{collections::HashMap, collections::HashSet, net::IpAddr};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

/// Distinct exporter label values the flow metrics carry.
pub const MAX_EXPORTER_LABELS: usize = 1024;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExporterVersionLabels {
    pub exporter: String,
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExporterReasonLabels {
    pub exporter: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// The flow receivers' metrics; cheap to clone (every clone shares the counters).
#[derive(Clone, Debug, Default)]
pub struct FlowMetrics {
    /// Datagrams received, by the exporter's UDP source address and protocol version.
    pub datagrams: Family<ExporterVersionLabels, Counter>,
    /// Flow records (sFlow flow samples) decoded and aggregated.
    pub records: Family<ExporterVersionLabels, Counter>,
    /// Datagrams refused whole, by reason.
    pub dropped: Family<ExporterReasonLabels, Counter>,
    /// Flow records not aggregated, by reason.
    pub dropped_records: Family<ExporterReasonLabels, Counter>,
    /// Flow records counted only in their group's `other` total (their hosts are lost), by
    /// the bound that was full.
    pub unkeyed_records: Family<ExporterReasonLabels, Counter>,
    /// NetFlow v9/IPFIX data sets dropped for want of their template: `version` is the
    /// datagram's, or `pending` for sets the parser held and dropped when their wait
    /// expired.
    pub missing_template: Family<ExporterVersionLabels, Counter>,
    /// sFlow interface counter samples decoded.
    pub counter_samples: Family<ExporterVersionLabels, Counter>,
    /// sFlow counter samples that became no interface sample, by reason.
    pub counter_samples_unused: Family<ReasonLabels, Counter>,
    /// Interface samples made of sFlow counter samples.
    pub interface_samples: Counter,
    /// Flow groups handed to the sink.
    pub groups: Counter,
    /// Flow groups or counter samples lost because the sink was full or closed.
    pub sink_dropped: Family<ReasonLabels, Counter>,
    /// Socket receive errors.
    pub receive_errors: Counter,
}

impl FlowMetrics {
    /// Creates the metrics and registers them as `cdot_collector_flow_*` in `registry`
    /// (a registry without a prefix of its own).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let flow = registry.sub_registry_with_prefix("cdot_collector_flow");
        flow.register(
            "datagrams",
            "Flow export datagrams received, by exporter (UDP source) and version",
            metrics.datagrams.clone(),
        );
        flow.register(
            "records",
            "Flow records and sFlow flow samples aggregated, by exporter and version",
            metrics.records.clone(),
        );
        flow.register(
            "dropped",
            "Flow export datagrams refused whole, by exporter and reason",
            metrics.dropped.clone(),
        );
        flow.register(
            "dropped_records",
            "Flow records not aggregated, by exporter and reason",
            metrics.dropped_records.clone(),
        );
        flow.register(
            "unkeyed_records",
            "Flow records counted without their hosts (in `other`) because a bound was full, by exporter and bound",
            metrics.unkeyed_records.clone(),
        );
        flow.register(
            "missing_template",
            "NetFlow v9/IPFIX data sets dropped because their template never arrived, by exporter",
            metrics.missing_template.clone(),
        );
        flow.register(
            "counter_samples",
            "sFlow generic interface counter samples decoded, by exporter",
            metrics.counter_samples.clone(),
        );
        flow.register(
            "counter_samples_unused",
            "sFlow counter samples that became no interface sample, by reason (unknown_agent, snmp_polled, baseline, stale, agent_restarted, counter_reset, ...)",
            metrics.counter_samples_unused.clone(),
        );
        flow.register(
            "interface_samples",
            "Interface samples made of sFlow counter samples",
            metrics.interface_samples.clone(),
        );
        flow.register(
            "groups",
            "Per-minute flow groups handed to the shipper",
            metrics.groups.clone(),
        );
        flow.register(
            "sink_dropped",
            "Flow groups and counter samples lost because the shipper's queue was full or closed",
            metrics.sink_dropped.clone(),
        );
        flow.register(
            "receive_errors",
            "Errors receiving from a flow socket",
            metrics.receive_errors.clone(),
        );
        metrics
    }

    /// The counter of sFlow counter samples unused for `reason`.
    pub fn counter_sample_unused(&self, reason: &'static str) -> Counter {
        self.counter_samples_unused
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .clone()
    }
}

/// Counts of one receiving thread since its last publish.
#[derive(Debug)]
pub(crate) struct Tally {
    metrics: FlowMetrics,
    datagrams: HashMap<(IpAddr, &'static str), u64>,
    records: HashMap<(IpAddr, &'static str), u64>,
    counter_samples: HashMap<(IpAddr, &'static str), u64>,
    missing_template: HashMap<(IpAddr, &'static str), u64>,
    dropped: HashMap<(IpAddr, &'static str), u64>,
    dropped_records: HashMap<(IpAddr, &'static str), u64>,
    unkeyed_records: HashMap<(IpAddr, &'static str), u64>,
    labelled: HashSet<IpAddr>,
}

impl Tally {
    pub(crate) fn new(metrics: FlowMetrics) -> Self {
        Self {
            metrics,
            datagrams: HashMap::new(),
            records: HashMap::new(),
            counter_samples: HashMap::new(),
            missing_template: HashMap::new(),
            dropped: HashMap::new(),
            dropped_records: HashMap::new(),
            unkeyed_records: HashMap::new(),
            labelled: HashSet::new(),
        }
    }

    pub(crate) fn metrics(&self) -> &FlowMetrics {
        &self.metrics
    }

    pub(crate) fn datagram(&mut self, exporter: IpAddr, version: &'static str) {
        *self.datagrams.entry((exporter, version)).or_default() += 1;
    }

    pub(crate) fn records(&mut self, exporter: IpAddr, version: &'static str, n: u64) {
        if n > 0 {
            *self.records.entry((exporter, version)).or_default() += n;
        }
    }

    pub(crate) fn counter_samples(&mut self, exporter: IpAddr, n: u64) {
        if n > 0 {
            *self
                .counter_samples
                .entry((exporter, "sflow5"))
                .or_default() += n;
        }
    }

    pub(crate) fn missing_template(&mut self, exporter: IpAddr, version: &'static str, sets: u64) {
        if sets > 0 {
            *self
                .missing_template
                .entry((exporter, version))
                .or_default() += sets;
        }
    }

    pub(crate) fn dropped(&mut self, exporter: IpAddr, reason: &'static str) {
        *self.dropped.entry((exporter, reason)).or_default() += 1;
    }

    pub(crate) fn dropped_records(&mut self, exporter: IpAddr, reason: &'static str, n: u64) {
        if n > 0 {
            *self.dropped_records.entry((exporter, reason)).or_default() += n;
        }
    }

    pub(crate) fn unkeyed_records(&mut self, exporter: IpAddr, reason: &'static str, n: u64) {
        if n > 0 {
            *self.unkeyed_records.entry((exporter, reason)).or_default() += n;
        }
    }

    /// Adds everything counted so far to the shared metrics.
    pub(crate) fn publish(&mut self) {
        let mut label = |ip: IpAddr| -> String {
            if self.labelled.contains(&ip) {
                ip.to_string()
            } else if self.labelled.len() < MAX_EXPORTER_LABELS {
                self.labelled.insert(ip);
                ip.to_string()
            } else {
                "other".to_owned()
            }
        };
        let version_families = [
            (&mut self.datagrams, &self.metrics.datagrams),
            (&mut self.records, &self.metrics.records),
            (&mut self.counter_samples, &self.metrics.counter_samples),
            (&mut self.missing_template, &self.metrics.missing_template),
        ];
        for (counts, family) in version_families {
            for ((ip, version), n) in counts.drain() {
                let labels = ExporterVersionLabels {
                    exporter: label(ip),
                    version: version.to_owned(),
                };
                family.get_or_create(&labels).inc_by(n);
            }
        }
        let reason_families = [
            (&mut self.dropped, &self.metrics.dropped),
            (&mut self.dropped_records, &self.metrics.dropped_records),
            (&mut self.unkeyed_records, &self.metrics.unkeyed_records),
        ];
        for (counts, family) in reason_families {
            for ((ip, reason), n) in counts.drain() {
                let labels = ExporterReasonLabels {
                    exporter: label(ip),
                    reason: reason.to_owned(),
                };
                family.get_or_create(&labels).inc_by(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    #[test]
    fn tallies_publish_under_cdot_collector_flow_names() {
        let mut registry = Registry::default();
        let metrics = FlowMetrics::register(&mut registry);
        let mut tally = Tally::new(metrics);
        let exporter = IpAddr::from([192, 0, 2, 1]);
        tally.datagram(exporter, "v9");
        tally.datagram(exporter, "v9");
        tally.records(exporter, "v9", 30);
        tally.dropped(exporter, "truncated");
        tally.dropped_records(exporter, "no_template", 4);
        tally.publish();
        tally.publish();
        let mut text = String::new();
        encode(&mut text, &registry).expect("encode");
        for line in [
            r#"cdot_collector_flow_datagrams_total{exporter="192.0.2.1",version="v9"} 2"#,
            r#"cdot_collector_flow_records_total{exporter="192.0.2.1",version="v9"} 30"#,
            r#"cdot_collector_flow_dropped_total{exporter="192.0.2.1",reason="truncated"} 1"#,
            r#"cdot_collector_flow_dropped_records_total{exporter="192.0.2.1",reason="no_template"} 4"#,
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn exporter_labels_are_bounded() {
        let mut tally = Tally::new(FlowMetrics::default());
        for n in 0..(MAX_EXPORTER_LABELS as u32 + 10) {
            tally.dropped(IpAddr::from(n.to_be_bytes()), "truncated");
        }
        tally.publish();
        let other = ExporterReasonLabels {
            exporter: "other".into(),
            reason: "truncated".into(),
        };
        assert_eq!(tally.metrics().dropped.get_or_create(&other).get(), 10);
    }
}
