//! The running agent: tasks that never wait on each other.
//!
//! * **Sampling** collects metrics every interval and writes each batch to the spool,
//!   whatever delivery is doing: nothing is lost only if it is collected, and an operator
//!   that hangs (a frozen process, a stuck database) must not stop collection.
//! * **Delivery** drains the spool oldest first, with backoff
//!   ([`DeliveryLoop`](crate::delivery::DeliveryLoop)).
//! * **Configuration**, **inventory** and **certificate renewal** each run on their own
//!   schedule; a stuck request holds up only its own task. Renewal hands the new client to
//!   the others through a watch channel; the configuration reaches sampling the same way.
//!   Renewal and the configuration's refresh are the collector's too ([`crate::refresh`]).
//!
//! On the shutdown signal every task stops at once: a request in flight is abandoned, and
//! its batch, like every batch collected, is already in the spool.
use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use cdot_crds::wire::{AgentConfig, MetricsBatch, work::StepState};
use serde::{Deserialize, Serialize};
use tokio::{
    sync::{Notify, Semaphore, watch},
    task::{Id, JoinSet},
    time::MissedTickBehavior,
};
use uuid::Uuid;

use crate::{
    AGENT_VERSION,
    actions::{Actions, isolate::Isolation, service::ServiceManager},
    client::{AgentClient, ClientError, gzip_json},
    config::AgentSettings,
    delivery::{Delivery, DeliveryLoop},
    jwt::unix_now,
    refresh::{self, Renewer},
    service::{stopped, unless_stopped},
    sources::{
        host_metrics::{CollectError, HostMetrics},
        inventory,
    },
    spool::{SharedSpool, Spool, SpoolError},
    state::{self, AuthMode, Credentials, StateError, StatePaths},
};

/// Batches that could not be spooled and are being sent directly, at most.
const DIRECT_SENDS: usize = 4;
/// Bound of the work report spool (reports are small; this is thousands of them).
const WORK_SPOOL_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Pause before trying again after a failed inventory.
const INVENTORY_RETRY: Duration = Duration::from_secs(60);

/// Failure to start the agent, or of one of its tasks.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Identity files are missing or broken.
    #[error(transparent)]
    State(#[from] StateError),
    /// The spool cannot be opened.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The HTTP client cannot be built from the stored credentials.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The collector cannot start.
    #[error(transparent)]
    Collect(#[from] CollectError),
    /// A task ended before the shutdown signal (it panicked).
    #[error("agent task {task} stopped unexpectedly: {message}")]
    Task {
        /// The task.
        task: &'static str,
        /// What it ended with.
        message: String,
    },
}

/// Counters of a running agent (shared; read them from a test while it runs).
#[derive(Debug, Default)]
pub struct AgentStats {
    /// Batches collected (samples taken).
    pub batches_collected: AtomicU64,
    /// Batches written to the spool.
    pub batches_spooled: AtomicU64,
    /// Batches acknowledged by the operator.
    pub batches_sent: AtomicU64,
    /// Batches refused permanently and dropped.
    pub batches_rejected: AtomicU64,
    /// Batches neither spooled nor delivered (spool unwritable and direct send failed).
    pub batches_lost: AtomicU64,
    /// Acknowledgements of batches the full spool had dropped while they were in flight.
    pub acks_after_drop: AtomicU64,
    /// Failed attempts that will be retried.
    pub send_retries: AtomicU64,
    /// Inventory reports accepted.
    pub inventories_sent: AtomicU64,
    /// Certificates renewed.
    pub renewals: AtomicU64,
}

impl AgentStats {
    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
    fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn delivered(&self, outcome: &Delivery) {
        match outcome {
            Delivery::Empty => {}
            Delivery::Sent {
                already_dropped, ..
            } => {
                Self::inc(&self.batches_sent);
                if *already_dropped {
                    Self::inc(&self.acks_after_drop);
                }
            }
            Delivery::Refused => Self::inc(&self.batches_rejected),
            Delivery::Retry => Self::inc(&self.send_retries),
        }
    }
}

/// What was last sent as inventory (persisted).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InventoryState {
    hash: String,
    sent_at: i64,
}

/// The agent, ready to run.
pub struct Agent {
    settings: AgentSettings,
    paths: StatePaths,
    creds: Credentials,
    client: AgentClient,
    spool: SharedSpool,
    /// Work reports waiting for delivery.
    work_spool: SharedSpool,
    config: AgentConfig,
    metrics: HostMetrics,
    stats: Arc<AgentStats>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("identity", &self.creds.identity)
            .field("spool", &self.spool)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Loads the identity from the state directory, closes the directory to others (0700:
    /// a release before this one left it open) and opens the spool.
    pub fn new(settings: AgentSettings) -> Result<Self, RunError> {
        let paths = StatePaths::new(&settings.state_dir);
        let creds = paths.load()?;
        paths.create_dir()?;
        let client = AgentClient::from_credentials(&creds, settings.request_timeout)?;
        let spool = Spool::open(paths.spool(), settings.spool_max_bytes)?;
        let work_spool = Spool::open(paths.dir().join("work-spool"), WORK_SPOOL_MAX_BYTES)?;
        let config = paths.load_config().unwrap_or_default();
        Ok(Self {
            paths,
            creds,
            client,
            spool: SharedSpool::new(spool),
            work_spool: SharedSpool::new(work_spool),
            config,
            metrics: HostMetrics::new()?,
            settings,
            stats: Arc::default(),
        })
    }

    /// Counters, shared with the running tasks.
    pub fn stats(&self) -> Arc<AgentStats> {
        self.stats.clone()
    }

    /// The spool (batches waiting), shared with the running tasks.
    pub fn spool(&self) -> SharedSpool {
        self.spool.clone()
    }

    /// Runs until `shutdown` completes, or fails when a task ends early.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
        let Self {
            settings,
            paths,
            creds,
            client,
            spool,
            work_spool,
            config,
            metrics,
            stats,
        } = self;
        tracing::info!(
            namespace = %creds.identity.namespace,
            device = %creds.identity.device_name,
            server = %creds.identity.server,
            spooled = spool.lock().len(),
            "agent started"
        );
        let actions = Arc::new(Actions {
            scripts_dir: paths.dir().join("scripts"),
            services: ServiceManager::choose(
                settings.service_manager,
                settings.supervisor_config.clone(),
            )
            .install(),
            isolation: Isolation::new(paths.dir(), &creds.identity.server),
        });
        // Before anything talks to the network: an isolated device stays isolated across
        // agent restarts and reboots.
        if let Some(result) = actions.isolation.reapply().await {
            match result.state {
                StepState::Succeeded => {
                    tracing::warn!("the recorded network isolation is applied again")
                }
                _ => {
                    tracing::error!(message = %result.message, "applying the recorded network isolation failed")
                }
            }
        }
        let (stop_tx, stop) = watch::channel(false);
        let (client_tx, client_rx) = watch::channel(client);
        let (config_tx, config_rx) = watch::channel(config);
        let wake = Arc::new(Notify::new());
        let mut tasks = Tasks::default();

        let sampler = Sampler {
            metrics,
            spool: spool.clone(),
            wake: wake.clone(),
            stats: stats.clone(),
            config: config_rx.clone(),
            interval_override: settings.metrics_interval_override,
            direct: Arc::new(Semaphore::new(DIRECT_SENDS)),
            client: client_rx.clone(),
        };
        tasks.spawn("sampling", sampler.run(stop.clone()));
        let delivery = DeliveryLoop {
            spool: spool.clone(),
            client: client_rx.clone(),
            route: "metrics",
            backoff_min: settings.retry_backoff_min,
            backoff_max: settings.retry_backoff_max,
            wake,
        };
        let delivery_stats = stats.clone();
        tasks.spawn(
            "delivery",
            delivery.run(stop.clone(), move |outcome| {
                delivery_stats.delivered(outcome)
            }),
        );
        let config_paths = paths.clone();
        tasks.spawn(
            "configuration",
            refresh::fetch_every(
                client_rx.clone(),
                "config",
                "the configuration",
                settings.config_refresh_interval,
                stop.clone(),
                move |new| config_fetched(&config_tx, &config_paths, new),
            ),
        );
        let work_wake = Arc::new(Notify::new());
        let work_delivery = DeliveryLoop {
            spool: work_spool.clone(),
            client: client_rx.clone(),
            route: crate::work::report_route(),
            backoff_min: settings.retry_backoff_min,
            backoff_max: settings.retry_backoff_max,
            wake: work_wake.clone(),
        };
        tasks.spawn("work-delivery", work_delivery.run(stop.clone(), |_| {}));
        let work = crate::work::WorkLoop {
            client: client_rx.clone(),
            system: Arc::new(crate::patches::PatchSystem::detect(
                settings.patch_root.clone(),
            )),
            reporter: crate::work::Reporter::new(paths.dir(), work_spool, work_wake),
            actions,
            wait: settings.work_wait.min(
                settings
                    .request_timeout
                    .saturating_sub(Duration::from_secs(5)),
            ),
            backoff_max: settings.retry_backoff_max,
            reboot_command: settings.reboot_command.clone(),
        };
        tasks.spawn("work", work.run(stop.clone()));
        let inventory = Inventory {
            client: client_rx,
            config: config_rx,
            paths: paths.clone(),
            settings: settings.clone(),
            stats: stats.clone(),
        };
        tasks.spawn("inventory", inventory.run(stop.clone()));
        if creds.identity.auth == AuthMode::Mtls {
            let renewer = Renewer {
                paths,
                creds,
                client: client_tx,
                request_timeout: settings.request_timeout,
                check_interval: settings.renew_check_interval,
            };
            tasks.spawn(
                "renewal",
                renewer.run(stop.clone(), move || AgentStats::inc(&stats.renewals)),
            );
        }

        let failed = tokio::select! {
            () = shutdown => None,
            Some((task, message)) = tasks.next_ended() => {
                tracing::error!(task, error = %message, "agent task stopped unexpectedly; stopping the agent");
                Some(RunError::Task { task, message })
            }
        };
        stop_tx.send_replace(true);
        while let Some((task, message)) = tasks.next_ended().await {
            tracing::error!(task, error = %message, "agent task failed while stopping");
        }
        tracing::info!(
            spooled = spool.lock().len(),
            "stopped; unsent batches stay in the spool"
        );
        failed.map_or(Ok(()), Err)
    }
}

/// The agent's tasks, by name.
#[derive(Default)]
struct Tasks {
    set: JoinSet<()>,
    names: HashMap<Id, &'static str>,
}

impl Tasks {
    fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let handle = self.set.spawn(task);
        self.names.insert(handle.id(), name);
    }

    /// The next task to end, and how; None when all have ended.
    async fn next_ended(&mut self) -> Option<(&'static str, String)> {
        let (id, message) = match self.set.join_next_with_id().await? {
            Ok((id, ())) => (id, "returned".to_owned()),
            Err(e) => (e.id(), e.to_string()),
        };
        Some((self.names.get(&id).copied().unwrap_or("unknown"), message))
    }
}

fn metrics_interval(config: &AgentConfig, override_: Option<Duration>) -> Duration {
    override_.unwrap_or(Duration::from_secs(config.metrics_interval_secs.max(1)))
}

/// Collects a batch every metrics interval and spools it.
struct Sampler {
    metrics: HostMetrics,
    spool: SharedSpool,
    /// Tells delivery that a batch is waiting.
    wake: Arc<Notify>,
    stats: Arc<AgentStats>,
    config: watch::Receiver<AgentConfig>,
    interval_override: Option<Duration>,
    /// Room for direct sends of batches the spool could not take.
    direct: Arc<Semaphore>,
    client: watch::Receiver<AgentClient>,
}

impl Sampler {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut every = metrics_interval(&self.config.borrow(), self.interval_override);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut config_open = true;
        loop {
            tokio::select! {
                biased;
                () = stopped(&mut stop) => return,
                _ = tick.tick() => self.sample(every),
                changed = self.config.changed(), if config_open => {
                    if changed.is_err() {
                        config_open = false;
                        continue;
                    }
                    let new = metrics_interval(&self.config.borrow_and_update(), self.interval_override);
                    if new != every {
                        tracing::info!(seconds = new.as_secs_f64(), "metrics interval changed");
                        every = new;
                        tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    }
                }
            }
        }
    }

    /// `every`: the interval really used, told to the operator for liveness.
    fn sample(&mut self, every: Duration) {
        let services = self.config.borrow().monitored_services.clone();
        let batch = MetricsBatch {
            batch_id: Uuid::new_v4(),
            agent_version: AGENT_VERSION.to_owned(),
            samples: self.metrics.collect(&services),
            interval_secs: Some(u32::try_from(every.as_secs().max(1)).unwrap_or(u32::MAX)),
        };
        let body = match gzip_json(&batch) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(batch_id = %batch.batch_id, error = %e, "failed to encode metrics batch; lost");
                AgentStats::inc(&self.stats.batches_lost);
                return;
            }
        };
        AgentStats::inc(&self.stats.batches_collected);
        let pushed = self.spool.lock().push(batch.batch_id, &body);
        match pushed {
            Ok(_) => {
                AgentStats::inc(&self.stats.batches_spooled);
                self.wake.notify_one();
            }
            Err(e) => {
                tracing::error!(batch_id = %batch.batch_id, error = %e, "failed to spool metrics batch; sending it directly");
                self.send_directly(batch.batch_id, body);
            }
        }
    }

    /// Cannot persist (disk full, read-only): still try to deliver this one, once, in a
    /// task of its own so that sampling goes on.
    fn send_directly(&self, batch_id: Uuid, body: Vec<u8>) {
        let Ok(permit) = self.direct.clone().try_acquire_owned() else {
            tracing::error!(%batch_id, in_flight = DIRECT_SENDS, "metrics batch lost: too many direct sends waiting");
            AgentStats::inc(&self.stats.batches_lost);
            return;
        };
        let client = self.client.borrow().clone();
        let stats = self.stats.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match client.send_metrics_gz(body).await {
                Ok(_) => AgentStats::inc(&stats.batches_sent),
                Err(e) => {
                    tracing::error!(%batch_id, error = %e, "metrics batch lost");
                    AgentStats::inc(&stats.batches_lost);
                }
            }
        });
    }
}

/// Publishes a fetched configuration when it changed, and caches it on disk.
fn config_fetched(config: &watch::Sender<AgentConfig>, paths: &StatePaths, new: AgentConfig) {
    if new != *config.borrow() {
        tracing::info!(config = ?new, "configuration updated");
        if let Err(e) = paths.save_config(&new) {
            tracing::warn!(error = %e, "failed to cache the configuration");
        }
        config.send_replace(new);
    }
}

/// Sends the inventory when it changed, and every inventory interval.
struct Inventory {
    client: watch::Receiver<AgentClient>,
    config: watch::Receiver<AgentConfig>,
    paths: StatePaths,
    settings: AgentSettings,
    stats: Arc<AgentStats>,
}

impl Inventory {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        while let Some(wait) = unless_stopped(&mut stop, self.step()).await {
            if unless_stopped(&mut stop, tokio::time::sleep(wait))
                .await
                .is_none()
            {
                return;
            }
        }
    }

    fn interval(&self) -> Duration {
        self.settings
            .inventory_interval_override
            .unwrap_or(Duration::from_secs(
                self.config.borrow().inventory_interval_secs.max(60),
            ))
    }

    /// Sends the inventory if it changed or is due; returns when to check again.
    async fn step(&self) -> Duration {
        let check = self.settings.inventory_check_interval;
        // Reading the package database takes a while: off the tasks' threads.
        let report = match tokio::task::spawn_blocking(inventory::collect).await {
            Ok(report) => report,
            Err(e) => {
                tracing::error!(error = %e, "collecting the inventory failed; will retry");
                return check.min(INVENTORY_RETRY);
            }
        };
        let hash = inventory::report_hash(&report);
        let path = self.paths.inventory_state();
        let last: InventoryState = state::read_json(&path).unwrap_or_default();
        let interval = self.interval();
        let age = Duration::from_secs(u64::try_from(unix_now() - last.sent_at).unwrap_or(0));
        if last.hash == hash && age < interval {
            return check.min(interval - age);
        }
        let client = self.client.borrow().clone();
        match client.put_inventory(&report).await {
            Ok(()) => {
                tracing::info!(
                    packages = report.software.len(),
                    changed = last.hash != hash,
                    "inventory sent"
                );
                AgentStats::inc(&self.stats.inventories_sent);
                let saved = InventoryState {
                    hash,
                    sent_at: unix_now(),
                };
                if let Err(e) = state::write_json(&path, &saved, 0o644) {
                    tracing::warn!(error = %e, "failed to record the inventory sent");
                }
                check.min(interval)
            }
            Err(e) => {
                tracing::warn!(error = %e, "sending inventory failed; will retry");
                check.min(INVENTORY_RETRY)
            }
        }
    }
}

/// Collects twice, `pause` apart, and returns the second batch (with rates), for
/// `cdot-agent run --once`. Needs no server or state.
pub async fn collect_once(
    pause: Duration,
    services: &[String],
) -> Result<MetricsBatch, CollectError> {
    let mut metrics = HostMetrics::new()?;
    metrics.collect(services);
    tokio::time::sleep(pause).await;
    Ok(MetricsBatch {
        batch_id: Uuid::new_v4(),
        agent_version: AGENT_VERSION.to_owned(),
        samples: metrics.collect(services),
        interval_secs: None,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use cdot_crds::metrics_catalog::CATALOG;

    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn once_batch_is_catalogue_conformant() {
        let batch = collect_once(Duration::from_millis(500), &[])
            .await
            .expect("collect");
        let json = serde_json::to_string(&batch).expect("json");
        let parsed: MetricsBatch = serde_json::from_str(&json).expect("parses as MetricsBatch");
        let names: BTreeSet<&str> = parsed.samples.iter().map(|s| s.n.as_str()).collect();
        for expected in [
            "cpu",
            "cpuCore",
            "load1",
            "memory",
            "swap",
            "disk",
            "uptime",
            "processes",
        ] {
            assert!(
                names.contains(expected),
                "{expected} missing from {names:?}"
            );
        }
        for s in &parsed.samples {
            let info = CATALOG
                .iter()
                .find(|i| i.name == s.n)
                .expect("in catalogue");
            let keys: Vec<&str> = s.l.keys().map(String::as_str).collect();
            assert_eq!(keys, info.labels, "{s:?}");
            assert!(s.v.is_finite(), "{s:?}");
        }
    }

    #[test]
    fn agent_needs_an_identity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Agent::new(AgentSettings::new(dir.path())).expect_err("not enrolled");
        assert!(err.to_string().contains("not enrolled"), "{err}");
    }
}
