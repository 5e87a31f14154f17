//! The probe component: one task per probe running a round every interval, restarted when
//! the probe changes, stopped when it goes away or on shutdown.
use std::{future::Future, time::Duration};

use cdot_crds::{
    device::ProbeType,
    wire::collector::{ProbeResult, ProbeTarget},
};
use prometheus_client::metrics::gauge::Gauge;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
    time::MissedTickBehavior,
};
use tracing::{debug, info, warn};

use super::{
    icmp::{Prober, RoundPlan},
    metrics::ProbeMetrics,
};
use crate::component::{self, Component};

/// Starts the probe component. It runs every ICMP probe of `targets` (the latest value)
/// each interval and sends each round's result to `sink`; other probe types are skipped
/// (counted in `cdot_collector_probe_skipped_total` and logged once). It ends when
/// `shutdown` becomes true (or its sender is dropped), or when `sink` is closed.
pub fn spawn(
    targets: watch::Receiver<Vec<ProbeTarget>>,
    sink: mpsc::Sender<Vec<ProbeResult>>,
    metrics: ProbeMetrics,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let prober = Prober::new(metrics.clone());
    component::spawn(Probes { prober, metrics }, targets, sink, shutdown)
}

/// One task per ICMP probe; probes of other types are kept without a task.
struct Probes {
    prober: Prober,
    metrics: ProbeMetrics,
}

impl Component for Probes {
    type Target = ProbeTarget;
    type Key = (String, String);
    type Output = Vec<ProbeResult>;

    fn key(target: &ProbeTarget) -> Self::Key {
        (target.device.clone(), target.name.clone())
    }

    fn start(
        &self,
        target: &ProbeTarget,
        sink: &mpsc::Sender<Vec<ProbeResult>>,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        match unsupported(target.type_) {
            None => Some(run_probe(target.clone(), self.prober.clone(), sink.clone())),
            Some(type_name) => {
                // Kept without a task, so that it is logged once, not per update.
                self.metrics.skip(type_name).inc();
                info!(device = %target.device, probe = %target.name, probe_type = type_name,
                    "probe type not supported by this collector yet: skipped");
                None
            }
        }
    }

    fn running(&self) -> &Gauge {
        &self.metrics.targets
    }

    fn duplicate(&self, target: &ProbeTarget) {
        warn!(device = %target.device, probe = %target.name, "duplicate probe ignored");
    }

    fn removed(&self, target: &ProbeTarget) {
        debug!(device = %target.device, probe = %target.name, "probe removed");
    }

    fn stopped(&self) {
        debug!("probes stopped");
    }
}

/// The name of a probe type this collector cannot run, `None` for ICMP.
fn unsupported(probe_type: ProbeType) -> Option<&'static str> {
    match probe_type {
        ProbeType::Icmp => None,
        ProbeType::Tcp => Some("tcp"),
        ProbeType::Http => Some("http"),
        ProbeType::Dns => Some("dns"),
    }
}

/// Runs rounds for one probe until aborted or until `sink` closes.
async fn run_probe(target: ProbeTarget, prober: Prober, sink: mpsc::Sender<Vec<ProbeResult>>) {
    let interval = Duration::from_secs(target.interval_secs.max(1));
    let plan = RoundPlan::for_interval(interval);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticker.tick().await;
        match prober.round(&target, plan).await {
            Ok(result) => {
                failing = false;
                if sink.send(vec![result]).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                // Once per outage at warn; the repeats at debug.
                if failing {
                    debug!(%error, "probe round failed");
                } else {
                    warn!(%error, "probe round failed");
                    failing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_icmp_is_supported() {
        assert_eq!(unsupported(ProbeType::Icmp), None);
        assert_eq!(unsupported(ProbeType::Tcp), Some("tcp"));
        assert_eq!(unsupported(ProbeType::Http), Some("http"));
        assert_eq!(unsupported(ProbeType::Dns), Some("dns"));
    }
}
