//! Alerting: AlertRules evaluated on ingest from the index (`rules`, `engine`), alerts and
//! their history in PostgreSQL (`store`, `writer`), what holds notifications back
//! (`suppress`), the outbox dispatcher (`dispatch`), periodic work (`periodic`) and the
//! API (`routes`).
//!
//! The ingest writers call [`Alerting::observe`] after their commit; transitions go to
//! one writer task that stores them with their notifications in one transaction; the
//! dispatcher delivers the outbox.
use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use cdot_crds::wire::alert::Silence;
use tokio::{
    sync::{Notify, mpsc, watch},
    task::JoinHandle,
};
use uuid::Uuid;

use crate::{
    index::Index,
    metrics::{AlertingMetrics, Metrics, StateLabels},
    store::Store,
};

pub mod backtest;
pub mod dispatch;
pub mod engine;
pub mod network;
pub mod periodic;
pub mod routes;
pub mod rules;
pub mod store;
pub mod suppress;
pub mod writer;

use engine::{Engine, Sample, Transition};
use rules::RuleSet;

/// Tuning of alerting (flags of `standalone` and `kubernetes`).
#[derive(Debug, Clone, clap::Args)]
pub struct AlertingArgs {
    /// How long a new notification waits for others of its group before it is sent.
    #[arg(long, env = "CDOT_NOTIFY_GROUP_WAIT", value_parser = crate::cli::parse_duration, default_value = "200ms")]
    pub notify_group_wait: Duration,
    /// A notification still undelivered after this long is given up (and counted failed).
    #[arg(long, env = "CDOT_NOTIFY_GIVE_UP_AFTER", value_parser = crate::cli::parse_duration, default_value = "3d")]
    pub notify_give_up_after: Duration,
    /// Longest wait between two delivery attempts of one notification.
    #[arg(long, env = "CDOT_NOTIFY_MAX_BACKOFF", value_parser = crate::cli::parse_duration, default_value = "5m")]
    pub notify_max_backoff: Duration,
    /// PEM file of extra CA certificates trusted for notification receivers (an internal
    /// ticket system, a webhook behind a private CA), besides the system's roots.
    #[arg(long, env = "CDOT_NOTIFY_CA_FILE")]
    pub notify_ca_file: Option<std::path::PathBuf>,
    /// How long resolved alerts (with their history) and finished deliveries are kept.
    #[arg(long, env = "CDOT_ALERT_RETENTION", value_parser = crate::cli::parse_duration, default_value = "90d")]
    pub alert_retention: Duration,
}

impl Default for AlertingArgs {
    fn default() -> Self {
        Self {
            notify_group_wait: Duration::from_millis(200),
            notify_give_up_after: Duration::from_secs(3 * 86_400),
            notify_max_backoff: Duration::from_secs(300),
            notify_ca_file: None,
            alert_retention: Duration::from_secs(90 * 86_400),
        }
    }
}

/// Handle to alerting; cheap to clone.
#[derive(Clone)]
pub struct Alerting {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    index: Index,
    metrics: AlertingMetrics,
    silences: ArcSwap<Vec<Silence>>,
    transitions: mpsc::UnboundedSender<Vec<Transition>>,
    pending: Mutex<Option<mpsc::UnboundedReceiver<Vec<Transition>>>>,
    /// Wakes the dispatcher when notifications were queued.
    outbox: Notify,
    /// Wakes the periodic task when silences changed.
    silences_changed: Notify,
    /// Told of every stored firing and resolved transition (Kubernetes mode: Events;
    /// automation: workflow triggers).
    on_transition: std::sync::RwLock<Vec<TransitionHook>>,
    /// The index version the installed rules were compiled from (0: none yet).
    rules_version: std::sync::atomic::AtomicU64,
}

/// Called with each stored transition to firing or resolved.
pub type TransitionHook = Box<dyn Fn(&Transition) + Send + Sync>;

impl Alerting {
    /// Whether the installed rules were compiled from index version `version` or later:
    /// a rule applied before that is evaluated on every sample after it.
    pub fn rules_cover(&self, version: u64) -> bool {
        self.inner
            .rules_version
            .load(std::sync::atomic::Ordering::Acquire)
            >= version
    }

    pub fn new(index: Index, metrics: AlertingMetrics) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            inner: Arc::new(Inner {
                engine: Engine::default(),
                index,
                metrics,
                silences: ArcSwap::default(),
                transitions: tx,
                pending: Mutex::new(Some(rx)),
                outbox: Notify::new(),
                silences_changed: Notify::new(),
                on_transition: std::sync::RwLock::default(),
                rules_version: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub fn index(&self) -> &Index {
        &self.inner.index
    }

    /// Evaluates committed samples of one device; what changes state is stored by the
    /// writer task. Nothing is evaluated until the rules are loaded (after the open
    /// alerts are restored), so a restart never opens an alert twice.
    pub fn observe<'a>(&self, device: Uuid, samples: impl IntoIterator<Item = Sample<'a>>) {
        let start = Instant::now();
        let mut n = 0u64;
        let snapshot = self.inner.index.snapshot();
        let known = snapshot
            .device_by_uid(&device)
            .map(|d| (d.object.namespace.as_str(), &d.object.labels));
        let transitions =
            self.inner
                .engine
                .observe(device, known, samples.into_iter().inspect(|_| n += 1));
        let m = &self.inner.metrics;
        m.evaluation_duration.observe(start.elapsed().as_secs_f64());
        m.samples_evaluated.inc_by(n);
        self.send(transitions);
    }

    /// Evaluates the interface and probe metrics of a committed collector batch.
    pub fn observe_network(
        &self,
        batch: &cdot_crds::wire::collector::CollectorBatch,
        uids: &std::collections::HashMap<String, Uuid>,
    ) {
        let mut by_device: std::collections::BTreeMap<Uuid, Vec<network::NetworkSample>> =
            std::collections::BTreeMap::new();
        for s in network::samples(batch, uids) {
            by_device.entry(s.0).or_default().push(s);
        }
        for (device, samples) in by_device {
            self.observe(
                device,
                samples.iter().map(|(_, metric, labels, t, v)| Sample {
                    metric,
                    labels,
                    t_ms: *t,
                    value: *v,
                }),
            );
        }
    }

    fn send(&self, transitions: Vec<Transition>) {
        if transitions.is_empty() {
            return;
        }
        for t in &transitions {
            self.inner
                .metrics
                .transitions
                .get_or_create(&StateLabels {
                    state: t.to.as_str().into(),
                })
                .inc();
        }
        self.inner
            .metrics
            .writer_backlog
            .inc_by(transitions.len() as i64);
        // The receiver lives as long as the writer task; after shutdown nothing is
        // evaluated that could be lost.
        let _ = self.inner.transitions.send(transitions);
    }

    /// Adds a listener of stored firing and resolved transitions.
    pub fn on_transition(&self, hook: TransitionHook) {
        self.inner
            .on_transition
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(hook);
    }

    /// Silences changed through the API: apply them at once, not at the next refresh.
    pub fn silences_changed(&self) {
        self.inner.silences_changed.notify_one();
    }

    fn silences(&self) -> Arc<Vec<Silence>> {
        self.inner.silences.load_full()
    }

    /// Starts the alerting tasks: rules (after restoring open alerts), the transition
    /// writer, the periodic work and the dispatcher.
    pub fn spawn(
        &self,
        store: &Store,
        metrics: &Arc<Metrics>,
        changes: &crate::changes::Changes,
        args: &AlertingArgs,
        outlets: dispatch::Outlets,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        let rx = self
            .inner
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let mut tasks = vec![tokio::spawn(follow_rules(
            self.clone(),
            store.clone(),
            shutdown.clone(),
        ))];
        if let Some(rx) = rx {
            tasks.push(tokio::spawn(write_transitions(
                self.clone(),
                store.clone(),
                rx,
                shutdown.clone(),
            )));
        }
        tasks.push(tokio::spawn(periodic::run(
            self.clone(),
            store.clone(),
            metrics.clone(),
            changes.clone(),
            args.clone(),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(dispatch::run(
            self.clone(),
            store.clone(),
            metrics.clone(),
            outlets,
            args.clone(),
            shutdown,
        )));
        tasks
    }
}

/// Restores open alerts, then keeps the compiled rules in step with the index.
async fn follow_rules(alerting: Alerting, store: Store, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(500);
    loop {
        match store.open_alerts().await {
            Ok(open) => {
                tracing::info!(alerts = open.len(), "restored open alerts");
                alerting.inner.engine.restore(open);
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "failed to read open alerts; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    let mut versions = alerting.inner.index.subscribe();
    loop {
        // Read before the snapshot: the snapshot is at least this new.
        let version = *versions.borrow_and_update();
        let snapshot = alerting.inner.index.snapshot();
        // 1,000 rules over 10,000 devices is selector work of a few milliseconds; keep it
        // off the async workers all the same.
        let compiled = tokio::task::spawn_blocking(move || RuleSet::compile(&snapshot)).await;
        if let Ok(rules) = compiled {
            alerting.inner.metrics.rules.set(rules.len() as i64);
            let ended = alerting
                .inner
                .engine
                .set_rules(rules, jiff::Timestamp::now().as_millisecond());
            alerting.send(ended);
            // Silence documents may have changed with the rest.
            alerting.silences_changed();
            alerting
                .inner
                .rules_version
                .store(version, std::sync::atomic::Ordering::Release);
        }
        tokio::select! {
            changed = versions.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
        // A change set arrives as many swaps: take them as one.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stores transitions in arrival order; a failed batch is kept and retried (the store
/// may be down) so no transition is lost while the process lives.
async fn write_transitions(
    alerting: Alerting,
    store: Store,
    mut rx: mpsc::UnboundedReceiver<Vec<Transition>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut batch: Vec<Transition> = Vec::new();
    let mut backoff = Duration::from_millis(200);
    loop {
        if batch.is_empty() {
            tokio::select! {
                next = rx.recv() => match next {
                    Some(t) => batch.extend(t),
                    None => return,
                },
                _ = shutdown.changed() => {
                    // Take what was evaluated before the stop, then write it below.
                    while let Ok(t) = rx.try_recv() { batch.extend(t); }
                    if batch.is_empty() { return; }
                }
            }
        }
        while let Ok(t) = rx.try_recv() {
            batch.extend(t);
        }
        let snapshot = alerting.inner.index.snapshot();
        let silences = alerting.silences();
        let ctx = writer::Context {
            snapshot: &snapshot,
            silences: &silences,
            now: jiff::Timestamp::now(),
        };
        let span = tracing::info_span!("alert_transitions", count = batch.len());
        let result =
            tracing::Instrument::instrument(writer::persist(&store, &ctx, &batch), span).await;
        match result {
            Ok(queued) => {
                alerting
                    .inner
                    .metrics
                    .writer_backlog
                    .dec_by(batch.len() as i64);
                let hooks = alerting
                    .inner
                    .on_transition
                    .read()
                    .unwrap_or_else(PoisonError::into_inner);
                for t in &batch {
                    if t.to != cdot_crds::wire::alert::AlertState::Pending {
                        for hook in hooks.iter() {
                            hook(t);
                        }
                    }
                    tracing::info!(
                        alert = %t.alert_id,
                        namespace = %t.rule.namespace,
                        rule = %t.rule.name,
                        to = t.to.as_str(),
                        value = t.value,
                        "alert transition"
                    );
                }
                batch.clear();
                backoff = Duration::from_millis(200);
                if queued > 0 {
                    alerting.inner.outbox.notify_one();
                }
            }
            Err(e) => {
                alerting.inner.metrics.write_errors.inc();
                tracing::error!(error = %e, transitions = batch.len(), "failed to store alert transitions; retrying");
                if *shutdown.borrow() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
