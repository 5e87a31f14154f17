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
pub struct ReconcileErrorLabels {
    pub kind: String,
    pub error: String,
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
    pub reconcile_errors: Family<ReconcileErrorLabels, Counter>,
    /// 1 while this replica holds the controllers' Lease (Kubernetes mode).
    pub leader: Gauge,
    pub manifest_loads: Family<ResultLabels, Counter>,
    pub manifest_errors: Gauge,
    pub objects: Family<KindLabels, Gauge>,
    pub store_errors: Family<OperationLabels, Counter>,
    pub enrollments: Family<ResultLabels, Counter>,
    /// Enrollment requests refused by the per-address rate limit.
    pub enroll_rate_limited: Counter,
    pub ingest: IngestMetrics,
    pub network: NetworkMetrics,
    pub database: DatabaseMetrics,
    pub alerting: AlertingMetrics,
    pub patching: PatchingMetrics,
    pub automation: AutomationMetrics,
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
            "Duration of one reconcile pass over a kind (standalone) or of one object (Kubernetes)",
            reconcile_duration.clone(),
        );
        let reconcile_errors = Family::<ReconcileErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles by kind and what failed; each is retried with backoff",
            reconcile_errors.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the controllers' Lease (Kubernetes mode)",
            leader.clone(),
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
        let enrollments = Family::<ResultLabels, Counter>::default();
        registry.register(
            "agent_enrollments",
            "Agent enrollments by result (enrolled, refused, failed)",
            enrollments.clone(),
        );
        let enroll_rate_limited = Counter::default();
        registry.register(
            "agent_enroll_rate_limited",
            "Enrollment requests refused with 429 by the per-source-address rate limit",
            enroll_rate_limited.clone(),
        );
        let ingest = IngestMetrics::register(&mut registry);
        let network = NetworkMetrics::register(&mut registry);
        let database = DatabaseMetrics::register(&mut registry);
        let alerting = AlertingMetrics::register(&mut registry);
        let patching = PatchingMetrics::register(&mut registry);
        let automation = AutomationMetrics::register(&mut registry);
        Self {
            registry,
            api_requests,
            api_request_duration,
            reconciles,
            reconcile_duration,
            reconcile_errors,
            leader,
            manifest_loads,
            manifest_errors,
            objects,
            store_errors,
            enrollments,
            enroll_rate_limited,
            ingest,
            network,
            database,
            alerting,
            patching,
            automation,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub namespace: String,
    pub channel: String,
    pub result: String,
}

/// Alert evaluation and notification (`cdot_alerting_*`, `cdot_notification_*`).
#[derive(Clone, Debug)]
pub struct AlertingMetrics {
    /// Time to evaluate one ingested batch (or collector batch) against the rules.
    pub evaluation_duration: Histogram,
    /// Samples evaluated.
    pub samples_evaluated: Counter,
    /// Alert transitions, by the state entered.
    pub transitions: Family<StateLabels, Counter>,
    /// Open alerts by state (`pending`, `firing`), as the evaluator holds them.
    pub alerts: Family<StateLabels, Gauge>,
    /// Compiled, active AlertRules.
    pub rules: Gauge,
    /// Transition batches that failed to be stored (they are kept and retried).
    pub write_errors: Counter,
    /// Transitions waiting to be stored.
    pub writer_backlog: Gauge,
    /// Notifications not yet delivered (grouped or not).
    pub outbox_depth: Gauge,
    /// Age in seconds of the oldest undelivered notification.
    pub outbox_oldest_seconds: Gauge,
    /// Delivery attempts by channel and result (`delivered`, `retry`, `failed`, `rate_limited`).
    pub deliveries: Family<DeliveryLabels, Counter>,
    /// Duration of one delivery attempt.
    pub delivery_duration: Histogram,
}

impl AlertingMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self {
            evaluation_duration: Histogram::new(exponential_buckets(0.000_005, 2.0, 16)),
            samples_evaluated: Counter::default(),
            transitions: Family::default(),
            alerts: Family::default(),
            rules: Gauge::default(),
            write_errors: Counter::default(),
            writer_backlog: Gauge::default(),
            outbox_depth: Gauge::default(),
            outbox_oldest_seconds: Gauge::default(),
            deliveries: Family::default(),
            delivery_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        };
        let r = m.clone();
        registry.register(
            "alerting_evaluation_duration_seconds",
            "Time to evaluate one batch against the alert rules",
            r.evaluation_duration,
        );
        registry.register(
            "alerting_samples_evaluated",
            "Samples evaluated against alert rules",
            r.samples_evaluated,
        );
        registry.register(
            "alerting_transitions",
            "Alert state transitions by the state entered",
            r.transitions,
        );
        registry.register("alerting_alerts", "Open alerts by state", r.alerts);
        registry.register(
            "alerting_rules",
            "Active (valid, unpaused) alert rules",
            r.rules,
        );
        registry.register(
            "alerting_write_errors",
            "Alert transition batches that failed to be stored and are retried",
            r.write_errors,
        );
        registry.register(
            "alerting_writer_backlog",
            "Alert transitions waiting to be stored",
            r.writer_backlog,
        );
        registry.register(
            "notification_outbox_depth",
            "Notifications not yet delivered",
            r.outbox_depth,
        );
        registry.register(
            "notification_outbox_oldest_seconds",
            "Age of the oldest undelivered notification",
            r.outbox_oldest_seconds,
        );
        registry.register(
            "notification_deliveries",
            "Notification delivery attempts by channel and result",
            r.deliveries,
        );
        registry.register(
            "notification_delivery_duration_seconds",
            "Duration of one notification delivery attempt",
            r.delivery_duration,
        );
        m
    }
}

/// The work channel and patching (`cdot_work_*`, `cdot_patch_*`).
#[derive(Clone, Debug, Default)]
pub struct PatchingMetrics {
    /// Agents holding a work request now.
    pub work_waiting: Gauge,
    /// Work reports by result (`applied`, `duplicate`).
    pub work_reports: Family<ResultLabels, Counter>,
    /// Patch scans stored, by result (`ok`, `problem`).
    pub scans: Family<ResultLabels, Counter>,
    /// Package progress reported, by state entered.
    pub progress: Family<StateLabels, Counter>,
    /// Rollout rings opened.
    pub rings_opened: Counter,
    /// Rollouts halted.
    pub rollouts_halted: Counter,
    /// Engine passes that failed (retried at the next pass).
    pub pass_errors: Counter,
}

impl PatchingMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = m.clone();
        registry.register(
            "work_waiting",
            "Agents holding a work request (long-poll) now",
            r.work_waiting,
        );
        registry.register("work_reports", "Work reports by result", r.work_reports);
        registry.register("patch_scans", "Patch scans stored, by result", r.scans);
        registry.register(
            "patch_progress",
            "Package progress reported by agents, by state entered",
            r.progress,
        );
        registry.register("patch_rings_opened", "Rollout rings opened", r.rings_opened);
        registry.register(
            "patch_rollouts_halted",
            "Rollouts halted by failures or alerts",
            r.rollouts_halted,
        );
        registry.register(
            "patch_pass_errors",
            "Patching engine passes that failed",
            r.pass_errors,
        );
        m
    }
}

/// Workflow runs (`cdot_workflow_*`).
#[derive(Clone, Debug)]
pub struct AutomationMetrics {
    /// Runs started.
    pub runs_started: Counter,
    /// Runs finished, by final state.
    pub runs_finished: Family<StateLabels, Counter>,
    /// Step attempts started (agent steps dispatched, operator steps run).
    pub steps_started: Counter,
    /// Step attempts that failed or timed out.
    pub steps_failed: Counter,
    /// Event to first agent step dispatched, seconds.
    pub dispatch_latency: Histogram,
    /// Engine passes and starts that failed (retried).
    pub errors: Counter,
}

impl AutomationMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self {
            runs_started: Counter::default(),
            runs_finished: Family::default(),
            steps_started: Counter::default(),
            steps_failed: Counter::default(),
            dispatch_latency: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            errors: Counter::default(),
        };
        let r = m.clone();
        registry.register(
            "workflow_runs_started",
            "Workflow runs started",
            r.runs_started,
        );
        registry.register(
            "workflow_runs_finished",
            "Workflow runs finished, by final state",
            r.runs_finished,
        );
        registry.register(
            "workflow_steps_started",
            "Workflow step attempts started",
            r.steps_started,
        );
        registry.register(
            "workflow_steps_failed",
            "Workflow step attempts that failed or timed out",
            r.steps_failed,
        );
        registry.register(
            "workflow_dispatch_latency_seconds",
            "Time from a run's start to its first agent step handed out",
            r.dispatch_latency,
        );
        registry.register(
            "workflow_errors",
            "Automation engine passes and run starts that failed (retried)",
            r.errors,
        );
        m
    }
}

/// The database's availability (`cdot_database_*`, `cdot_embedded_postgres_*`).
#[derive(Clone, Debug, Default)]
pub struct DatabaseMetrics {
    /// 1 while the database answers, 0 while requests that need it are refused.
    pub up: Gauge,
    /// Times the database stopped answering.
    pub outages: Counter,
    /// Times the embedded PostgreSQL was found dead and started again.
    pub embedded_restarts: Counter,
}

impl DatabaseMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "database_up",
            "1 while PostgreSQL answers; 0 while requests that need it are refused with 503",
            metrics.up.clone(),
        );
        registry.register(
            "database_outages",
            "Times PostgreSQL stopped answering",
            metrics.outages.clone(),
        );
        registry.register(
            "embedded_postgres_restarts",
            "Times the embedded PostgreSQL was found dead and restarted (crash recovery)",
            metrics.embedded_restarts.clone(),
        );
        metrics
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobResultLabels {
    pub job: String,
    pub result: String,
}

#[derive(Clone)]
pub struct GroupBuckets;

impl MetricConstructor<Histogram> for GroupBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(1.0, 2.0, 12))
    }
}

/// Agent report ingestion and the time-series jobs (`cdot_ingest_*`, `cdot_timeseries_*`).
#[derive(Clone)]
pub struct IngestMetrics {
    /// Metrics batches waiting for a writer.
    pub queue_depth: Gauge,
    /// Batches acknowledged, by result (`stored`, `duplicate`).
    pub batches: Family<ResultLabels, Counter>,
    /// Samples committed.
    pub samples: Counter,
    /// Requests refused, by reason (`unknown_metric`, `labels`, `non_finite`, `timestamp`, ...).
    pub rejected: Family<ReasonLabels, Counter>,
    /// Duration of one group commit (series lookup, insert, commit).
    pub commit_duration: Histogram,
    /// Batches written by one group commit.
    pub group_batches: Histogram,
    /// Group commits that failed (each batch is then retried alone).
    pub write_errors: Counter,
    /// Device status rows written by the report flusher.
    pub status_flushed: Counter,
    /// Runs of the time-series jobs by job and result.
    pub job_runs: Family<JobResultLabels, Counter>,
    /// Duration of one run of a time-series job.
    pub job_duration: Family<JobLabels, Histogram, DurationBuckets>,
    /// Seconds between now and the rollup watermark.
    pub rollup_lag: Gauge,
    /// Partitions created and dropped, by result (`created`, `dropped`).
    pub partitions: Family<ResultLabels, Counter>,
}

impl IngestMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            queue_depth: Gauge::default(),
            batches: Family::default(),
            samples: Counter::default(),
            rejected: Family::default(),
            commit_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            group_batches: GroupBuckets.new_metric(),
            write_errors: Counter::default(),
            status_flushed: Counter::default(),
            job_runs: Family::default(),
            job_duration: Family::new_with_constructor(DurationBuckets),
            rollup_lag: Gauge::default(),
            partitions: Family::default(),
        };
        let m = metrics.clone();
        registry.register(
            "ingest_queue_depth",
            "Metrics batches waiting for a writer",
            m.queue_depth,
        );
        registry.register(
            "ingest_batches",
            "Metrics batches acknowledged by result (stored, duplicate)",
            m.batches,
        );
        registry.register("ingest_samples", "Samples committed", m.samples);
        registry.register(
            "ingest_rejected",
            "Agent reports refused by reason",
            m.rejected,
        );
        registry.register(
            "ingest_commit_duration_seconds",
            "Duration of one group commit of metrics batches",
            m.commit_duration,
        );
        registry.register(
            "ingest_group_batches",
            "Metrics batches written by one group commit",
            m.group_batches,
        );
        registry.register(
            "ingest_write_errors",
            "Group commits that failed",
            m.write_errors,
        );
        registry.register(
            "ingest_status_flushed",
            "Device statuses written from agent reports",
            m.status_flushed,
        );
        registry.register(
            "timeseries_job_runs",
            "Runs of the time-series jobs by job and result",
            m.job_runs,
        );
        registry.register(
            "timeseries_job_duration_seconds",
            "Duration of one run of a time-series job",
            m.job_duration,
        );
        registry.register(
            "timeseries_rollup_lag_seconds",
            "Seconds between now and the 1-minute rollup watermark",
            m.rollup_lag,
        );
        registry.register(
            "timeseries_partitions",
            "Partitions created and dropped",
            m.partitions,
        );
        metrics
    }

    pub fn reject(&self, reason: &str) {
        self.rejected
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn job_timer(&self, job: &str) -> Timer {
        Timer {
            histogram: self.job_duration.get_or_create_owned(&JobLabels {
                job: job.to_owned(),
            }),
            start: Instant::now(),
        }
    }

    pub fn job_run(&self, job: &str, ok: bool) {
        self.job_runs
            .get_or_create(&JobResultLabels {
                job: job.to_owned(),
                result: if ok { "ok" } else { "error" }.to_owned(),
            })
            .inc();
    }
}

/// Collector batches and the network rollups (`cdot_network_*`).
#[derive(Clone)]
pub struct NetworkMetrics {
    /// Collector batches acknowledged, by result (`stored`, `duplicate`).
    pub batches: Family<ResultLabels, Counter>,
    /// Rows committed, by kind (`flows`, `interfaces`, `probes`, `expired` for rows past retention).
    pub rows: Family<KindLabels, Counter>,
    /// Collector batches refused, by reason.
    pub rejected: Family<ReasonLabels, Counter>,
    /// Duration of storing one collector batch.
    pub commit_duration: Histogram,
    /// Seconds between now and each rollup's watermark, by fold.
    pub rollup_lag: Family<JobLabels, Gauge>,
}

impl NetworkMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            batches: Family::default(),
            rows: Family::default(),
            rejected: Family::default(),
            commit_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            rollup_lag: Family::default(),
        };
        let m = metrics.clone();
        registry.register(
            "network_batches",
            "Collector batches acknowledged by result (stored, duplicate)",
            m.batches,
        );
        registry.register(
            "network_rows",
            "Network rows committed by kind (flows, interfaces, probes, expired)",
            m.rows,
        );
        registry.register(
            "network_rejected",
            "Collector batches refused by reason",
            m.rejected,
        );
        registry.register(
            "network_commit_duration_seconds",
            "Duration of storing one collector batch",
            m.commit_duration,
        );
        registry.register(
            "network_rollup_lag_seconds",
            "Seconds between now and each network rollup's watermark",
            m.rollup_lag,
        );
        metrics
    }

    pub fn reject(&self, reason: &str) {
        self.rejected
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn commit_timer(&self) -> Timer {
        Timer {
            histogram: self.commit_duration.clone(),
            start: Instant::now(),
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

    /// Counts one reconcile of `kind` with `result` (`ok`, `invalid`, `error`, `cleanup`).
    pub fn count_reconcile(&self, kind: &str, result: &str) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                kind: kind.to_owned(),
                result: result.to_owned(),
            })
            .inc();
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
