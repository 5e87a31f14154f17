//! The discovery component: one task per assigned run, started when the run appears,
//! stopped (without a final report) when it disappears or on shutdown. A finished run
//! stays assigned, without a task, until the operator removes it.
use std::future::Future;

use cdot_crds::wire::discovery::{ScanAssignment, ScanReport};
use prometheus_client::metrics::gauge::Gauge;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::{metrics::DiscoveryMetrics, run};
use crate::component::{self, Component};

/// Starts the discovery component. It runs every run of `runs` (the latest value) and
/// sends their reports to `sink`. It ends when `shutdown` becomes true (or its sender is
/// dropped), or when `sink` is closed.
pub fn spawn(
    runs: watch::Receiver<Vec<ScanAssignment>>,
    sink: mpsc::Sender<ScanReport>,
    metrics: DiscoveryMetrics,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    component::spawn(Runs { metrics }, runs, sink, shutdown)
}

/// One task per run, keyed by the operator's run id.
struct Runs {
    metrics: DiscoveryMetrics,
}

impl Component for Runs {
    type Target = ScanAssignment;
    type Key = Uuid;
    type Output = ScanReport;

    fn key(target: &ScanAssignment) -> Uuid {
        target.run
    }

    fn start(
        &self,
        target: &ScanAssignment,
        sink: &mpsc::Sender<ScanReport>,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        Some(run::run(target.clone(), sink.clone(), self.metrics.clone()))
    }

    fn running(&self) -> &Gauge {
        &self.metrics.runs_assigned
    }

    fn duplicate(&self, target: &ScanAssignment) {
        warn!(run = %target.run, scan = %target.scan, "duplicate discovery run ignored");
    }

    fn removed(&self, target: &ScanAssignment) {
        info!(run = %target.run, scan = %target.scan, "discovery run no longer assigned: stopped");
    }

    fn stopped(&self) {
        debug!("discovery stopped");
    }
}
