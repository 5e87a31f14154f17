//! The service loop: collect metrics every interval into the spool, drain the spool in
//! order, keep the configuration fresh, send the inventory when it changed (and every
//! inventory interval), renew the certificate, and stop cleanly on the shutdown signal.
//!
//! Shutdown is checked between steps, never inside one: a send in progress finishes (or
//! times out), and a batch collected is already in the spool, so nothing is lost.
use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use cdot_crds::wire::{AgentConfig, MetricsBatch};
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, MissedTickBehavior, sleep_until};
use uuid::Uuid;

use crate::{
    AGENT_VERSION,
    client::{AgentClient, ClientError, gzip_json},
    config::AgentSettings,
    delivery::{self, Delivery},
    enroll::{self, Renewal},
    jwt::unix_now,
    sources::{
        host_metrics::{CollectError, HostMetrics},
        inventory,
    },
    spool::{Spool, SpoolError},
    state::{self, AuthMode, Credentials, StateError, StatePaths},
};

/// Failure to start the agent.
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
}

/// Counters of a running agent (shared; read them from a test while it runs).
#[derive(Debug, Default)]
pub struct AgentStats {
    /// Batches collected and spooled.
    pub batches_collected: AtomicU64,
    /// Batches acknowledged by the operator.
    pub batches_sent: AtomicU64,
    /// Batches refused permanently and dropped.
    pub batches_rejected: AtomicU64,
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
}

/// What was last sent as inventory (persisted).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InventoryState {
    hash: String,
    sent_at: i64,
}

enum SendOutcome {
    Done,
    Retry,
}

/// The running agent.
pub struct Agent {
    settings: AgentSettings,
    paths: StatePaths,
    creds: Credentials,
    client: AgentClient,
    spool: Spool,
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
    /// Loads the identity from the state directory and opens the spool.
    pub fn new(settings: AgentSettings) -> Result<Self, RunError> {
        let paths = StatePaths::new(&settings.state_dir);
        let creds = paths.load()?;
        let client = AgentClient::from_credentials(&creds, settings.request_timeout)?;
        let spool = Spool::open(paths.spool(), settings.spool_max_bytes)?;
        let config = paths.load_config().unwrap_or_default();
        Ok(Self {
            paths,
            creds,
            client,
            spool,
            config,
            metrics: HostMetrics::new()?,
            settings,
            stats: Arc::default(),
        })
    }

    /// Counters, shared with the running loop.
    pub fn stats(&self) -> Arc<AgentStats> {
        self.stats.clone()
    }

    /// The spool (batches waiting).
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Runs until `shutdown` completes.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
        let mut shutdown = std::pin::pin!(shutdown);
        tracing::info!(
            namespace = %self.creds.identity.namespace,
            device = %self.creds.identity.device_name,
            server = %self.creds.identity.server,
            spooled = self.spool.len(),
            "agent started"
        );
        self.refresh_config().await;
        let mut metrics_every = self.metrics_interval();
        let mut metrics_tick = tokio::time::interval(metrics_every);
        metrics_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let now = Instant::now();
        let mut next_config = now + self.settings.config_refresh_interval;
        let mut next_inventory = now;
        let mut next_renew = now;
        let mut next_drain = now;
        let mut backoff = self.settings.retry_backoff_min;
        let mut backing_off = false;
        let renews = self.creds.identity.auth == AuthMode::Mtls;

        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                _ = metrics_tick.tick() => {
                    self.collect_and_spool().await;
                    if !backing_off {
                        next_drain = Instant::now();
                    }
                }
                () = sleep_until(next_drain), if !self.spool.is_empty() => {
                    match self.send_oldest().await {
                        SendOutcome::Done => {
                            backoff = self.settings.retry_backoff_min;
                            backing_off = false;
                            next_drain = Instant::now();
                        }
                        SendOutcome::Retry => {
                            next_drain = Instant::now() + backoff;
                            backoff = (backoff * 2).min(self.settings.retry_backoff_max);
                            backing_off = true;
                        }
                    }
                }
                () = sleep_until(next_config) => {
                    self.refresh_config().await;
                    next_config = Instant::now() + self.settings.config_refresh_interval;
                    let every = self.metrics_interval();
                    if every != metrics_every {
                        tracing::info!(seconds = every.as_secs_f64(), "metrics interval changed");
                        metrics_every = every;
                        metrics_tick = tokio::time::interval_at(Instant::now() + every, every);
                        metrics_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    }
                }
                () = sleep_until(next_inventory) => {
                    next_inventory = Instant::now() + self.inventory_step().await;
                }
                () = sleep_until(next_renew), if renews => {
                    next_renew = Instant::now() + self.renew_step().await;
                }
            }
        }
        tracing::info!(
            spooled = self.spool.len(),
            "shutting down; unsent batches stay in the spool"
        );
        Ok(())
    }

    fn metrics_interval(&self) -> Duration {
        self.settings
            .metrics_interval_override
            .unwrap_or(Duration::from_secs(
                self.config.metrics_interval_secs.max(1),
            ))
    }

    fn inventory_interval(&self) -> Duration {
        self.settings
            .inventory_interval_override
            .unwrap_or(Duration::from_secs(
                self.config.inventory_interval_secs.max(60),
            ))
    }

    async fn refresh_config(&mut self) {
        match self.client.config().await {
            Ok(config) => {
                if config != self.config {
                    tracing::info!(?config, "configuration updated");
                    if let Err(e) = self.paths.save_config(&config) {
                        tracing::warn!(error = %e, "failed to cache the configuration");
                    }
                    self.config = config;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "failed to fetch the configuration; keeping the last one")
            }
        }
    }

    async fn collect_and_spool(&mut self) {
        let batch = MetricsBatch {
            batch_id: Uuid::new_v4(),
            agent_version: AGENT_VERSION.to_owned(),
            samples: self.metrics.collect(&self.config.monitored_services),
        };
        let body = match gzip_json(&batch) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(batch_id = %batch.batch_id, error = %e, "failed to encode metrics batch");
                return;
            }
        };
        AgentStats::inc(&self.stats.batches_collected);
        if let Err(e) = self.spool.push(batch.batch_id, &body) {
            // Cannot persist (disk full, read-only): still try to deliver this one.
            tracing::error!(batch_id = %batch.batch_id, error = %e, "failed to spool metrics batch; sending it directly");
            match self.client.send_metrics_gz(body).await {
                Ok(_) => AgentStats::inc(&self.stats.batches_sent),
                Err(e) => {
                    tracing::error!(batch_id = %batch.batch_id, error = %e, "metrics batch lost")
                }
            }
        }
    }

    async fn send_oldest(&mut self) -> SendOutcome {
        match delivery::send_oldest(&mut self.spool, &self.client, "metrics").await {
            Delivery::Empty => SendOutcome::Done,
            Delivery::Sent(_) => {
                AgentStats::inc(&self.stats.batches_sent);
                SendOutcome::Done
            }
            Delivery::Refused => {
                AgentStats::inc(&self.stats.batches_rejected);
                SendOutcome::Done
            }
            Delivery::Retry => {
                AgentStats::inc(&self.stats.send_retries);
                SendOutcome::Retry
            }
        }
    }

    /// Sends the inventory if it changed or is due; returns when to check again.
    async fn inventory_step(&mut self) -> Duration {
        let check = self.settings.inventory_check_interval;
        let report = inventory::collect();
        let hash = inventory::report_hash(&report);
        let path = self.paths.inventory_state();
        let last: InventoryState = state::read_json(&path).unwrap_or_default();
        let interval = self.inventory_interval();
        let age = Duration::from_secs(u64::try_from(unix_now() - last.sent_at).unwrap_or(0));
        if last.hash == hash && age < interval {
            return check.min(interval - age);
        }
        match self.client.put_inventory(&report).await {
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
                check.min(Duration::from_secs(60))
            }
        }
    }

    /// Renews the certificate when due; returns when to check again.
    async fn renew_step(&mut self) -> Duration {
        let timeout = self.settings.request_timeout;
        let renewal =
            enroll::renew_if_due(&self.paths, &mut self.creds, &mut self.client, timeout).await;
        if renewal == Renewal::Renewed {
            AgentStats::inc(&self.stats.renewals);
        }
        renewal.next_check(self.settings.renew_check_interval)
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
