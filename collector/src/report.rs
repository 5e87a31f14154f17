//! The reporter: gathers what the components produce, cuts it into batches every ship
//! interval, writes each batch to the on-disk spool before sending it, drains the spool in
//! order, keeps the components' targets fresh from the operator, and renews the client
//! certificate. On shutdown it stops the components, waits for their last output (flows of
//! the current minute included), spools it and makes one last delivery attempt.
use std::{future::Future, time::Duration};

use cdot_agent::{
    client::{AgentClient, gzip_json},
    delivery::{self, Delivery},
    enroll::{self, Renewal},
    spool::{Spool, SpoolError},
    state::{Credentials, StateError, StatePaths},
};
use cdot_crds::wire::collector::{
    CollectorAssignments, FlowGroup, InterfaceSample, ProbeResult, ProbeTarget, SiteDevice,
    SnmpTarget,
};
use tokio::{
    sync::{mpsc, watch},
    time::{Instant, MissedTickBehavior, sleep_until},
};

use crate::{metrics::ReporterMetrics, ship::Pending};

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
}

/// What the components are told.
pub struct Outputs {
    pub snmp_targets: watch::Sender<Vec<SnmpTarget>>,
    pub probe_targets: watch::Sender<Vec<ProbeTarget>>,
    /// Devices and their addresses, to attribute sFlow counters.
    pub devices: watch::Sender<Vec<SiteDevice>>,
    /// Set to true to stop the components.
    pub stop_components: watch::Sender<bool>,
}

/// The running reporter.
pub struct Reporter {
    settings: ReporterSettings,
    paths: StatePaths,
    creds: Credentials,
    client: AgentClient,
    spool: Spool,
    metrics: ReporterMetrics,
    pending: Pending,
}

impl Reporter {
    /// Loads the identity from `state_dir` and opens the spool.
    pub fn new(
        state_dir: &std::path::Path,
        settings: ReporterSettings,
        metrics: ReporterMetrics,
    ) -> Result<Self, ReportError> {
        let paths = StatePaths::new(state_dir);
        let creds = paths.load()?;
        let client = AgentClient::from_credentials(&creds, settings.request_timeout)?;
        let spool = Spool::open(paths.spool(), settings.spool_max_bytes)?;
        Ok(Self {
            settings,
            paths,
            creds,
            client,
            spool,
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
            spooled = self.spool.len(),
            "collector reporting"
        );
        let mut ship_tick = tokio::time::interval(self.settings.ship_interval);
        ship_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let now = Instant::now();
        let mut next_assignments = now;
        let mut next_renew = now;
        let mut next_drain = now;
        let mut backoff = self.settings.retry_backoff_min;
        let mut stopping = false;
        let (mut flows_open, mut interfaces_open, mut probes_open) = (true, true, true);

        loop {
            if stopping && !flows_open && !interfaces_open && !probes_open {
                break;
            }
            tokio::select! {
                biased;
                () = &mut shutdown, if !stopping => {
                    stopping = true;
                    let _ = outputs.stop_components.send(true);
                }
                groups = inputs.flows.recv(), if flows_open => match groups {
                    Some(groups) => self.pending.flows.extend(groups),
                    None => flows_open = false,
                },
                samples = inputs.interfaces.recv(), if interfaces_open => match samples {
                    Some(samples) => self.pending.interfaces.extend(samples),
                    None => interfaces_open = false,
                },
                results = inputs.probes.recv(), if probes_open => match results {
                    Some(results) => self.pending.probes.extend(results),
                    None => probes_open = false,
                },
                _ = ship_tick.tick(), if !stopping => {
                    self.spool_pending();
                    next_drain = next_drain.min(Instant::now());
                }
                () = sleep_until(next_drain), if !stopping && !self.spool.is_empty() => {
                    if self.deliver_one().await {
                        backoff = self.settings.retry_backoff_min;
                        next_drain = Instant::now();
                    } else {
                        next_drain = Instant::now() + backoff;
                        backoff = (backoff * 2).min(self.settings.retry_backoff_max);
                    }
                }
                () = sleep_until(next_assignments), if !stopping => {
                    self.refresh_assignments(&outputs).await;
                    next_assignments = Instant::now() + self.settings.assignments_refresh;
                }
                () = sleep_until(next_renew), if !stopping => {
                    next_renew = Instant::now() + self.renew_step().await;
                }
            }
        }
        self.spool_pending();
        let deadline = Instant::now() + self.settings.final_drain;
        while !self.spool.is_empty() && Instant::now() < deadline {
            let delivered = tokio::time::timeout_at(deadline, self.deliver_one()).await;
            if !matches!(delivered, Ok(true)) {
                break;
            }
        }
        tracing::info!(
            spooled = self.spool.len(),
            "collector stopped; unsent batches stay in the spool"
        );
    }

    /// Writes everything pending to the spool, one file per batch.
    fn spool_pending(&mut self) {
        for batch in self.pending.take_batches() {
            let body = match gzip_json(&batch) {
                Ok(body) => body,
                Err(e) => {
                    tracing::error!(batch_id = %batch.batch_id, error = %e, "failed to encode collector batch; dropped");
                    self.metrics.batch("encode_failed");
                    continue;
                }
            };
            match self.spool.push(batch.batch_id, &body) {
                Ok(_) => self.metrics.batch("spooled"),
                Err(e) => {
                    // Nothing else can hold it: the loss is logged and counted.
                    tracing::error!(batch_id = %batch.batch_id, error = %e, "failed to spool collector batch; dropped");
                    self.metrics.batch("spool_failed");
                }
            }
        }
        self.metrics.set_spool(&self.spool);
    }

    /// One delivery attempt; true when the spool moved (sent or refused).
    async fn deliver_one(&mut self) -> bool {
        let outcome = delivery::send_oldest(&mut self.spool, &self.client, BATCH_ROUTE).await;
        let moved = match outcome {
            Delivery::Empty => true,
            Delivery::Sent(_) => {
                self.metrics.batch("sent");
                true
            }
            Delivery::Refused => {
                self.metrics.batch("refused");
                true
            }
            Delivery::Retry => {
                self.metrics.batch("retry");
                false
            }
        };
        self.metrics.set_spool(&self.spool);
        moved
    }

    async fn refresh_assignments(&mut self, outputs: &Outputs) {
        match self
            .client
            .get_json::<CollectorAssignments>(ASSIGNMENTS_ROUTE)
            .await
        {
            Ok(assignments) => {
                tracing::debug!(
                    snmp = assignments.snmp.len(),
                    probes = assignments.probes.len(),
                    devices = assignments.devices.len(),
                    "assignments fetched"
                );
                publish(&outputs.devices, assignments.devices);
                publish(&outputs.snmp_targets, assignments.snmp);
                publish(&outputs.probe_targets, assignments.probes);
            }
            Err(e) => {
                tracing::warn!(error = %e, "failed to fetch assignments; keeping the last ones")
            }
        }
    }

    async fn renew_step(&mut self) -> Duration {
        let timeout = self.settings.request_timeout;
        let renewal =
            enroll::renew_if_due(&self.paths, &mut self.creds, &mut self.client, timeout).await;
        if renewal == Renewal::Renewed {
            tracing::info!("client certificate renewed");
        }
        renewal.next_check(self.settings.renew_check_interval)
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
