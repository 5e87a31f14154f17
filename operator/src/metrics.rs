//! Every Prometheus metric of the operator, registered in one place.
//!
//! Names follow `cdot_<subsystem>_<name>_<unit>`; durations are recorded by timers that
//! observe on drop so an early return still counts.
use std::time::Instant;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::{Family, MetricConstructor},
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub kind: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: String,
}

#[derive(Clone)]
pub struct DurationBuckets;

impl MetricConstructor<Histogram> for DurationBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.0005, 2.0, 16))
    }
}

pub struct Metrics {
    registry: Registry,
    pub api_requests: Family<RequestLabels, Counter>,
    pub api_request_duration: Family<RouteLabels, Histogram, DurationBuckets>,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_duration: Family<KindLabels, Histogram, DurationBuckets>,
    pub manifest_loads: Family<ResultLabels, Counter>,
    pub manifest_errors: Gauge,
    pub objects: Family<KindLabels, Gauge>,
    pub store_errors: Family<OperationLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cdot");
        let api_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "api_requests",
            "HTTP API requests served",
            api_requests.clone(),
        );
        let api_request_duration = Family::new_with_constructor(DurationBuckets);
        registry.register(
            "api_request_duration_seconds",
            "HTTP API request duration by route",
            api_request_duration.clone(),
        );
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconcile",
            "Reconciliations by kind and result",
            reconciles.clone(),
        );
        let reconcile_duration = Family::new_with_constructor(DurationBuckets);
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile pass over a kind",
            reconcile_duration.clone(),
        );
        let manifest_loads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "manifest_loads",
            "Manifest directory loads by result (applied, unchanged, refused, failed)",
            manifest_loads.clone(),
        );
        let manifest_errors = Gauge::default();
        registry.register(
            "manifest_errors",
            "Errors in the newest manifest load (0 when it was applied)",
            manifest_errors.clone(),
        );
        let objects = Family::<KindLabels, Gauge>::default();
        registry.register("objects", "Stored objects by kind", objects.clone());
        let store_errors = Family::<OperationLabels, Counter>::default();
        registry.register(
            "store_errors",
            "Failed store operations",
            store_errors.clone(),
        );
        Self {
            registry,
            api_requests,
            api_request_duration,
            reconciles,
            reconcile_duration,
            manifest_loads,
            manifest_errors,
            objects,
            store_errors,
        }
    }
}

impl Metrics {
    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    pub fn reconcile_timer(&self, kind: &str) -> Timer {
        Timer {
            histogram: self.reconcile_duration.get_or_create_owned(&KindLabels {
                kind: kind.to_owned(),
            }),
            start: Instant::now(),
        }
    }

    pub fn request_timer(&self, route: &str) -> Timer {
        Timer {
            histogram: self.api_request_duration.get_or_create_owned(&RouteLabels {
                route: route.to_owned(),
            }),
            start: Instant::now(),
        }
    }
}

/// Observes the time since its creation when dropped.
pub struct Timer {
    histogram: Histogram,
    start: Instant,
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_prefix() {
        let m = Metrics::default();
        m.reconciles
            .get_or_create(&ReconcileLabels {
                kind: "Device".into(),
                result: "ok".into(),
            })
            .inc();
        drop(m.reconcile_timer("Device"));
        let text = m.render();
        assert!(
            text.contains("cdot_reconcile_total{kind=\"Device\",result=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("cdot_reconcile_duration_seconds_count{kind=\"Device\"} 1"),
            "{text}"
        );
    }
}
