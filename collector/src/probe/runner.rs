//! The probe component: one task per probe running a round every interval, restarted when
//! the probe changes, stopped when it goes away or on shutdown.
use std::{collections::HashMap, time::Duration};

use cdot_crds::{
    device::ProbeType,
    wire::collector::{ProbeResult, ProbeTarget},
};
use tokio::{
    sync::{mpsc, watch},
    task::{AbortHandle, JoinHandle, JoinSet},
    time::MissedTickBehavior,
};
use tracing::{debug, info, warn};

use super::{
    icmp::{Prober, RoundPlan},
    metrics::ProbeMetrics,
};

/// A probe's identity: a changed probe with the same key replaces the old one.
type Key = (String, String);
/// A probe and its task (`None` for a skipped type).
type Running = (ProbeTarget, Option<AbortHandle>);

/// Starts the probe component. It runs every ICMP probe of `targets` (the latest value)
/// each interval and sends each round's result to `sink`; other probe types are skipped
/// (counted in `cdot_collector_probe_skipped_total` and logged once). It ends when
/// `shutdown` becomes true (or its sender is dropped), or when `sink` is closed.
pub fn spawn(
    mut targets: watch::Receiver<Vec<ProbeTarget>>,
    sink: mpsc::Sender<Vec<ProbeResult>>,
    metrics: ProbeMetrics,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let prober = Prober::new(metrics.clone());
        let mut tasks = JoinSet::new();
        let mut running: HashMap<Key, Running> = HashMap::new();
        let mut targets_open = true;
        loop {
            if targets_open {
                let wanted = targets.borrow_and_update().clone();
                reconcile(&mut running, &mut tasks, wanted, &prober, &sink, &metrics);
            }
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => break,
                _ = sink.closed() => break,
                changed = targets.changed(), if targets_open => {
                    // Without a sender the last probes are kept until shutdown.
                    targets_open = changed.is_ok();
                }
                Some(_) = tasks.join_next() => {}
            }
        }
        tasks.shutdown().await;
        metrics.targets.set(0);
        debug!("probes stopped");
    })
}

/// Starts, restarts and stops per-probe tasks so that exactly the ICMP probes of
/// `wanted` run.
fn reconcile(
    running: &mut HashMap<Key, Running>,
    tasks: &mut JoinSet<()>,
    wanted: Vec<ProbeTarget>,
    prober: &Prober,
    sink: &mpsc::Sender<Vec<ProbeResult>>,
    metrics: &ProbeMetrics,
) {
    let mut next = HashMap::with_capacity(wanted.len());
    for target in wanted {
        let key = (target.device.clone(), target.name.clone());
        if next.contains_key(&key) {
            warn!(device = %target.device, probe = %target.name, "duplicate probe ignored");
            continue;
        }
        match running.remove(&key) {
            Some((current, handle)) if current == target => {
                next.insert(key, (current, handle));
            }
            previous => {
                if let Some((_, Some(handle))) = previous {
                    handle.abort();
                }
                let handle = match unsupported(target.type_) {
                    None => {
                        let task = run_probe(target.clone(), prober.clone(), sink.clone());
                        Some(tasks.spawn(task))
                    }
                    Some(type_name) => {
                        // Remembered without a task, so that it is logged once, not per update.
                        metrics.skip(type_name).inc();
                        info!(device = %target.device, probe = %target.name, probe_type = type_name,
                            "probe type not supported by this collector yet: skipped");
                        None
                    }
                };
                next.insert(key, (target, handle));
            }
        }
    }
    for (_, (target, handle)) in running.drain() {
        debug!(device = %target.device, probe = %target.name, "probe removed");
        if let Some(handle) = handle {
            handle.abort();
        }
    }
    let active = next.values().filter(|(_, handle)| handle.is_some()).count();
    metrics
        .targets
        .set(i64::try_from(active).unwrap_or(i64::MAX));
    *running = next;
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
