//! The reporter: gathers what the components produce, cuts it into batches every ship
//! interval and writes each batch to the on-disk spool. Delivery (the spool drained in
//! order), the assignments (the components' targets kept fresh from the operator) and
//! certificate renewal run in tasks of their own, so a slow or frozen operator stops none
//! of the gathering and spooling: the components' queues keep flowing.
//!
//! A collector with nothing to ship and nothing spooled spools an empty batch at its ship
//! tick, so that its Device reports (and its liveness follows `interval_secs`) before any
//! flow arrives. A batch waiting in the spool proves the collector alive once delivered,
//! so empty batches never pile up while the operator is away.
//!
//! On shutdown it stops the components, waits for their last output (flows of the current
//! minute included), stops the other tasks (a send in flight is abandoned; its batch stays
//! in the spool), spools the last output and makes one last delivery attempt.
use std::{future::Future, sync::Arc, time::Duration};

use cdot_agent::{
    client::{AgentClient, gzip_json},
    delivery::{self, Delivery, DeliveryLoop},
    refresh::{self, Renewer},
    spool::{SharedSpool, Spool, SpoolError},
    state::{Credentials, StateError, StatePaths},
};
use cdot_crds::wire::{
    collector::{
        CollectorAssignments, FlowGroup, InterfaceSample, ProbeResult, ProbeTarget, SiteDevice,
        SnmpTarget,
    },
    discovery::{ScanAssignment, ScanReport},
};
use tokio::{
    sync::{Notify, mpsc, watch},
    task::JoinHandle,
    time::{Instant, MissedTickBehavior},
};

use crate::{
    metrics::ReporterMetrics,
    ship::{self, Pending},
};

/// Route of collector batches under `/v1/agent`.
pub const BATCH_ROUTE: &str = "collector/batches";
/// Route of the assignments under `/v1/agent`.
pub const ASSIGNMENTS_ROUTE: &str = "collector/assignments";

/// Failure to start the reporter.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Client(#[from] cdot_agent::client::ClientError),
}

/// Intervals of the reporter; tests shorten them.
#[derive(Debug, Clone)]
pub struct ReporterSettings {
    pub ship_interval: Duration,
    pub assignments_refresh: Duration,
    pub renew_check_interval: Duration,
    pub retry_backoff_min: Duration,
    pub retry_backoff_max: Duration,
    pub request_timeout: Duration,
    pub spool_max_bytes: u64,
    /// How long the last delivery attempt on shutdown may take.
    pub final_drain: Duration,
}

impl Default for ReporterSettings {
    fn default() -> Self {
        Self {
            ship_interval: Duration::from_secs(10),
            assignments_refresh: Duration::from_secs(60),
            renew_check_interval: Duration::from_secs(3600),
            retry_backoff_min: Duration::from_secs(1),
            retry_backoff_max: Duration::from_secs(60),
            request_timeout: cdot_agent::client::DEFAULT_TIMEOUT,
            spool_max_bytes: cdot_agent::spool::DEFAULT_MAX_BYTES,
            final_drain: Duration::from_secs(5),
        }
    }
}

/// What the components produce.
pub struct Inputs {
    pub flows: mpsc::Receiver<Vec<FlowGroup>>,
    pub interfaces: mpsc::Receiver<Vec<InterfaceSample>>,
    pub probes: mpsc::Receiver<Vec<ProbeResult>>,
    pub scans: mpsc::Receiver<ScanReport>,
}

/// What the components are told.
pub struct Outputs {
    pub snmp_targets: watch::Sender<Vec<SnmpTarget>>,
    pub probe_targets: watch::Sender<Vec<ProbeTarget>>,
    /// Discovery runs to run.
    pub scan_targets: watch::Sender<Vec<ScanAssignment>>,
    /// Devices and their addresses, to attribute sFlow counters.
    pub devices: watch::Sender<Vec<SiteDevice>>,
    /// Set to true to stop the components.
    pub stop_components: watch::Sender<bool>,
}

/// The reporter, ready to run.
pub struct Reporter {
    settings: ReporterSettings,
    paths: StatePaths,
    creds: Credentials,
    client: AgentClient,
    spool: SharedSpool,
    metrics: ReporterMetrics,
    pending: Pending,
}

impl Reporter {
    /// Loads the identity from `state_dir`, closes the directory to others (0700: a
    /// release before this one left it open) and opens the spool.
    pub fn new(
        state_dir: &std::path::Path,
        settings: ReporterSettings,
        metrics: ReporterMetrics,
    ) -> Result<Self, ReportError> {
        let paths = StatePaths::new(state_dir);
        let creds = paths.load()?;
        paths.create_dir()?;
        let client = AgentClient::from_credentials(&creds, settings.request_timeout)?;
        let spool = Spool::open(paths.spool(), settings.spool_max_bytes)?;
        Ok(Self {
            settings,
            paths,
            creds,
            client,
            spool: SharedSpool::new(spool),
            metrics,
            pending: Pending::default(),
        })
    }

    /// Runs until `shutdown` completes and the components have delivered their last output.
    pub async fn run(
        mut self,
        mut inputs: Inputs,
        outputs: Outputs,
        shutdown: impl Future<Output = ()>,
    ) {
        let mut shutdown = std::pin::pin!(shutdown);
        tracing::info!(
            namespace = %self.creds.identity.namespace,
            collector = %self.creds.identity.device_name,
            server = %self.creds.identity.server,
            spooled = self.spool.lock().len(),
            "collector reporting"
        );
        let (stop_tx, stop) = watch::channel(false);
        let (client_tx, client_rx) = watch::channel(self.client.clone());
        let wake = Arc::new(Notify::new());
        let tasks = self.spawn_tasks(
            outputs.targets(),
            client_tx,
            client_rx.clone(),
            wake.clone(),
            stop,
        );

        let mut ship_tick = tokio::time::interval(self.settings.ship_interval);
        ship_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut stopping = false;
        let mut open = Open::default();
        // Nothing in this loop waits on the operator.
        while !stopping || open.any() {
            tokio::select! {
                biased;
                () = &mut shutdown, if !stopping => {
                    stopping = true;
                    let _ = outputs.stop_components.send(true);
                }
                groups = inputs.flows.recv(), if open.flows => match groups {
                    Some(groups) => self.pending.flows.extend(groups),
                    None => open.flows = false,
                },
                samples = inputs.interfaces.recv(), if open.interfaces => match samples {
                    Some(samples) => self.pending.interfaces.extend(samples),
                    None => open.interfaces = false,
                },
                results = inputs.probes.recv(), if open.probes => match results {
                    Some(results) => self.pending.probes.extend(results),
                    None => open.probes = false,
                },
                report = inputs.scans.recv(), if open.scans => match report {
                    Some(report) => self.pending.scans.push(report),
                    None => open.scans = false,
                },
                _ = ship_tick.tick(), if !stopping => {
                    if self.spool_pending(Heartbeat::WhenIdle) {
                        wake.notify_one();
                    }
                }
            }
        }
        stop_tx.send_replace(true);
        for (task, handle) in tasks {
            if let Err(e) = handle.await {
                tracing::error!(task, error = %e, "reporter task failed");
            }
        }
        self.spool_pending(Heartbeat::Never);
        let client = client_rx.borrow().clone();
        self.final_drain(&client).await;
        tracing::info!(
            spooled = self.spool.lock().len(),
            "collector stopped; unsent batches stay in the spool"
        );
    }

    /// Starts delivery, the assignments and renewal, each in a task of its own.
    fn spawn_tasks(
        &self,
        targets: Targets,
        client_tx: watch::Sender<AgentClient>,
        client_rx: watch::Receiver<AgentClient>,
        wake: Arc<Notify>,
        stop: watch::Receiver<bool>,
    ) -> Vec<(&'static str, JoinHandle<()>)> {
        let delivery = DeliveryLoop {
            spool: self.spool.clone(),
            client: client_rx.clone(),
            route: BATCH_ROUTE,
            backoff_min: self.settings.retry_backoff_min,
            backoff_max: self.settings.retry_backoff_max,
            wake,
        };
        let (metrics, spool) = (self.metrics.clone(), self.spool.clone());
        let on_outcome = move |outcome: &Delivery| record(&metrics, &spool, outcome);
        let renewer = Renewer {
            paths: self.paths.clone(),
            creds: self.creds.clone(),
            client: client_tx,
            request_timeout: self.settings.request_timeout,
            check_interval: self.settings.renew_check_interval,
        };
        vec![
            (
                "delivery",
                tokio::spawn(delivery.run(stop.clone(), on_outcome)),
            ),
            (
                "assignments",
                tokio::spawn(refresh::fetch_every(
                    client_rx,
                    ASSIGNMENTS_ROUTE,
                    "assignments",
                    self.settings.assignments_refresh,
                    stop.clone(),
                    move |assignments| targets.assign(assignments),
                )),
            ),
            // The renewal itself is logged (with the new expiry) by the shared renewer.
            ("renewal", tokio::spawn(renewer.run(stop, || {}))),
        ]
    }

    /// Writes everything pending to the spool, one file per batch (with `heartbeat`, an
    /// empty batch when nothing is pending or spooled); true when a batch was spooled.
    /// Batches are compressed outside the lock, which delivery needs too.
    fn spool_pending(&mut self, heartbeat: Heartbeat) -> bool {
        let mut spooled = false;
        let every = u32::try_from(self.settings.ship_interval.as_secs().max(1)).unwrap_or(u32::MAX);
        let mut batches = self.pending.take_batches();
        if batches.is_empty() && heartbeat == Heartbeat::WhenIdle && self.spool.lock().is_empty() {
            batches.push(ship::heartbeat());
        }
        for mut batch in batches {
            batch.interval_secs = Some(every);
            let body = match gzip_json(&batch) {
                Ok(body) => body,
                Err(e) => {
                    tracing::error!(batch_id = %batch.batch_id, error = %e, "failed to encode collector batch; dropped");
                    self.metrics.batch("encode_failed");
                    continue;
                }
            };
            let pushed = self.spool.lock().push(batch.batch_id, &body);
            match pushed {
                Ok(_) => {
                    self.metrics.batch("spooled");
                    spooled = true;
                }
                Err(e) => {
                    // Nothing else can hold it: the loss is logged and counted.
                    tracing::error!(batch_id = %batch.batch_id, error = %e, "failed to spool collector batch; dropped");
                    self.metrics.batch("spool_failed");
                }
            }
        }
        self.metrics.set_spool(&self.spool.lock());
        spooled
    }

    /// The last delivery attempt on shutdown, bounded by `final_drain`.
    async fn final_drain(&self, client: &AgentClient) {
        let deadline = Instant::now() + self.settings.final_drain;
        while Instant::now() < deadline {
            let attempt = delivery::send_oldest(&self.spool, client, BATCH_ROUTE);
            let Ok(outcome) = tokio::time::timeout_at(deadline, attempt).await else {
                break;
            };
            record(&self.metrics, &self.spool, &outcome);
            if matches!(outcome, Delivery::Empty | Delivery::Retry) {
                break;
            }
        }
    }
}

/// Whether a ship tick with nothing to ship spools an empty batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Heartbeat {
    /// At a ship tick: when nothing is pending and the spool is empty.
    WhenIdle,
    /// On shutdown: the collector stops reporting.
    Never,
}

/// Which component queues are still open.
struct Open {
    flows: bool,
    interfaces: bool,
    probes: bool,
    scans: bool,
}

impl Default for Open {
    fn default() -> Self {
        Self {
            flows: true,
            interfaces: true,
            probes: true,
            scans: true,
        }
    }
}

impl Open {
    fn any(&self) -> bool {
        self.flows || self.interfaces || self.probes || self.scans
    }
}

/// Counts a delivery attempt and updates the spool gauges.
fn record(metrics: &ReporterMetrics, spool: &SharedSpool, outcome: &Delivery) {
    match outcome {
        Delivery::Empty => {}
        Delivery::Sent {
            already_dropped, ..
        } => {
            metrics.batch("sent");
            if *already_dropped {
                // Counted as dropped when the full spool let it go; the operator has it.
                metrics.batch("sent_after_drop");
            }
        }
        Delivery::Refused => metrics.batch("refused"),
        Delivery::Retry => metrics.batch("retry"),
    }
    metrics.set_spool(&spool.lock());
}

/// The senders of what the operator assigns to the components.
struct Targets {
    snmp: watch::Sender<Vec<SnmpTarget>>,
    probes: watch::Sender<Vec<ProbeTarget>>,
    scans: watch::Sender<Vec<ScanAssignment>>,
    devices: watch::Sender<Vec<SiteDevice>>,
}

impl Outputs {
    fn targets(&self) -> Targets {
        Targets {
            snmp: self.snmp_targets.clone(),
            probes: self.probe_targets.clone(),
            scans: self.scan_targets.clone(),
            devices: self.devices.clone(),
        }
    }
}

impl Targets {
    /// Hands fetched assignments to the components.
    fn assign(&self, assignments: CollectorAssignments) {
        tracing::debug!(
            snmp = assignments.snmp.len(),
            probes = assignments.probes.len(),
            devices = assignments.devices.len(),
            scans = assignments.scans.len(),
            "assignments fetched"
        );
        publish(&self.devices, assignments.devices);
        publish(&self.snmp, assignments.snmp);
        publish(&self.probes, assignments.probes);
        publish(&self.scans, assignments.scans);
    }
}

/// Sends `value` unless it equals the current one, so that components restart nothing
/// when the assignments did not change.
fn publish<T: PartialEq>(sender: &watch::Sender<T>, value: T) {
    sender.send_if_modified(|current| {
        let changed = *current != value;
        if changed {
            *current = value;
        }
        changed
    });
}
