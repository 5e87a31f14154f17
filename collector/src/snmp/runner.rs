//! The SNMP component: one task per target polling at the target's interval, restarted
//! when the target changes, stopped when it goes away or on shutdown.
use std::{
    future::Future,
    hash::{DefaultHasher, Hash, Hasher},
    time::Duration,
};

use cdot_crds::wire::collector::{InterfaceSample, SnmpTarget};
use prometheus_client::metrics::gauge::Gauge;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
    time::{Instant, MissedTickBehavior},
};
use tracing::{debug, info, warn};

use super::{SnmpError, metrics::SnmpMetrics, poller::Poller};
use crate::component::{self, Component};

/// Polls of different devices with the same interval are spread over at most this much.
const MAX_SPREAD: Duration = Duration::from_secs(15);

/// Starts the SNMP component. It polls every target of `targets` (the latest value) at its
/// interval and sends each poll's samples to `sink`; a changed target restarts its poller,
/// a removed one stops. It ends when `shutdown` becomes true (or its sender is dropped), or
/// when `sink` is closed.
pub fn spawn(
    targets: watch::Receiver<Vec<SnmpTarget>>,
    sink: mpsc::Sender<Vec<InterfaceSample>>,
    metrics: SnmpMetrics,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    component::spawn(Targets { metrics }, targets, sink, shutdown)
}

/// One polling task per SNMP target.
struct Targets {
    metrics: SnmpMetrics,
}

impl Component for Targets {
    type Target = SnmpTarget;
    type Key = (String, String, u16);
    type Output = Vec<InterfaceSample>;

    fn key(target: &SnmpTarget) -> Self::Key {
        (target.device.clone(), target.address.clone(), target.port)
    }

    fn start(
        &self,
        target: &SnmpTarget,
        sink: &mpsc::Sender<Vec<InterfaceSample>>,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        Some(poll_target(
            target.clone(),
            sink.clone(),
            self.metrics.clone(),
        ))
    }

    fn running(&self) -> &Gauge {
        &self.metrics.targets
    }

    fn duplicate(&self, target: &SnmpTarget) {
        warn!(device = %target.device, address = %target.address, "duplicate SNMP target ignored");
    }

    fn removed(&self, target: &SnmpTarget) {
        debug!(device = %target.device, "SNMP target removed");
    }

    fn stopped(&self) {
        debug!("SNMP polling stopped");
    }
}

/// Polls one target until aborted or until `sink` closes.
async fn poll_target(
    target: SnmpTarget,
    sink: mpsc::Sender<Vec<InterfaceSample>>,
    metrics: SnmpMetrics,
) {
    let device = target.device.clone();
    let interval = Duration::from_secs(target.poll_interval_secs.max(1));
    let mut poller = match Poller::new(target, metrics.clone()) {
        Ok(poller) => poller,
        Err(error) => {
            metrics.error(error.reason()).inc();
            warn!(%error, "SNMP target not polled");
            return;
        }
    };
    let mut ticker = tokio::time::interval_at(Instant::now() + spread(&device, interval), interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticker.tick().await;
        let started = Instant::now();
        let result = poller.poll().await;
        metrics
            .poll_duration
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(samples) => {
                metrics.poll_result("ok").inc();
                if failing {
                    info!(%device, "SNMP polling recovered");
                    failing = false;
                }
                if !samples.is_empty() && sink.send(samples).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                let result = match error {
                    SnmpError::Timeout { .. } => "timeout",
                    _ => "error",
                };
                metrics.poll_result(result).inc();
                metrics.error(error.reason()).inc();
                // Once per outage at warn; the repeats at debug.
                if failing {
                    debug!(%error, "SNMP poll failed");
                } else {
                    warn!(%error, "SNMP poll failed");
                    failing = true;
                }
            }
        }
    }
}

/// Where in the first interval a device's polls fall: fixed per device, so that many
/// devices do not all poll at the same instant.
fn spread(device: &str, interval: Duration) -> Duration {
    let window = u64::try_from(interval.min(MAX_SPREAD).as_millis())
        .unwrap_or(1)
        .max(1);
    let mut hasher = DefaultHasher::new();
    device.hash(&mut hasher);
    Duration::from_millis(hasher.finish() % window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_stays_within_the_interval_and_the_cap() {
        for device in ["a", "core-sw-1", "fw"] {
            assert!(spread(device, Duration::from_secs(1)) < Duration::from_secs(1));
            assert!(spread(device, Duration::from_secs(300)) < MAX_SPREAD);
            assert_eq!(
                spread(device, Duration::from_secs(60)),
                spread(device, Duration::from_secs(60))
            );
        }
    }
}
