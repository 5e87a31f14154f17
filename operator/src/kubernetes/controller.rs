//! One kube-rs `Controller` per kind, all running the same pipeline:
//!
//! finalizer (kinds that own something outside the API) → mirror the object into the store
//! → [`reconcile::reconcile`] (the function standalone mode runs) → status subresource patch
//! when it changed → Events for the transitions → requeue at the resync interval.
//!
//! Watches pass only changes a reconcile can act on (generation, labels, finalizers,
//! deletion): the operator's own status patches do not wake it again. What changes outside
//! the API (an enrollment, a device going silent) arrives through [`Changes`].
use std::{
    collections::{HashMap, HashSet},
    hash::{Hash, Hasher},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use cdot_crds::kind::Kind;
use futures::{StreamExt, future::BoxFuture};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DynamicObject, Patch, PatchParams},
    runtime::{
        Controller, PredicateConfig, WatchStreamExt,
        controller::{self, Action},
        events::{Event, EventType, Recorder, Reporter},
        finalizer::{self, finalizer},
        reflector::{self, ObjectRef, Store as Cache},
        watcher,
    },
};
use rand::Rng;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::{
    changes::{Changes, ObjectKey},
    config_maps::ConfigMaps,
    index::Index,
    metrics::{Metrics, ReconcileErrorLabels},
    reconcile::{self, World, events::Severity},
    store::{StatusPatch, Store, StoreError, cluster::ClusterObject},
};

use super::{LAST_APPLIED, api_resource};

/// The finalizer of kinds whose deletion must clean up outside the API server.
pub const FINALIZER: &str = "rmm.cdot.io/cleanup";

/// Dependents are reconciled once their peers were quiet this long...
const DEPENDENTS_QUIET: Duration = Duration::from_secs(3);
/// ... or, while peers keep changing, this long after the first change.
const DEPENDENTS_MAX_DELAY: Duration = Duration::from_secs(30);

/// The Events' reporting controller.
pub const CONTROLLER_NAME: &str = "cdot-operator";

/// Whether deleting an object of `kind` must wait for the operator: a Device has an agent
/// identity and inventory in the store, a scan may be running on a collector, a workflow
/// may have steps pending.
pub fn has_finalizer(kind: Kind) -> bool {
    matches!(kind, Kind::Device | Kind::DiscoveryScan | Kind::Workflow)
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("failed to write the status of {kind} {namespace}/{name}: {source}")]
    Status {
        kind: Kind,
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error(
        "{kind} {name} has no namespace or uid; only namespaced objects from the API server are reconciled"
    )]
    Malformed { kind: Kind, name: String },
    #[error("finalizer {FINALIZER}: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
}

impl Error {
    /// A short, low-cardinality label for metrics.
    fn metric_label(&self) -> &'static str {
        match self {
            Error::Store(_) => "store",
            Error::Status { .. } => "status",
            Error::Malformed { .. } => "malformed",
            Error::Finalizer(_) => "finalizer",
        }
    }
}

/// What every kind's controller shares.
pub struct Shared {
    pub client: Client,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub resync: Duration,
    /// The watch caches of the kinds reconcilers read (see [`reconcile::depends_on`]).
    caches: HashMap<Kind, Cache<DynamicObject>>,
    /// Consecutive failures per object, for the error backoff; cleared on success.
    failures: Mutex<HashMap<ObjectRef<DynamicObject>, u32>>,
    /// (kind, namespace) whose objects changed since dependents were last told: when first
    /// and when last.
    changed_peers: Mutex<HashMap<(Kind, String), (Instant, Instant)>>,
    /// Desired state in memory: every mirrored object goes in, every forgotten one out.
    index: Index,
    /// The ConfigMaps Workflows refer to (kept current by their own watch).
    config_maps: Arc<ConfigMaps>,
}

impl Shared {
    pub fn new(
        client: Client,
        store: Store,
        metrics: Arc<Metrics>,
        identity: &str,
        resync: Duration,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: CONTROLLER_NAME.into(),
                instance: Some(identity.to_owned()),
            },
        );
        Self {
            client,
            store,
            metrics,
            recorder,
            resync,
            caches: HashMap::new(),
            failures: Mutex::default(),
            changed_peers: Mutex::default(),
            index: Index::default(),
            config_maps: Arc::default(),
        }
    }

    /// Keeps `index` current (the server's, which ingest and alerting read).
    pub fn with_index(mut self, index: Index) -> Self {
        self.index = index;
        self
    }

    /// Checks references to `config_maps` (the server's, which the engine reads).
    pub fn with_config_maps(mut self, config_maps: Arc<ConfigMaps>) -> Self {
        self.config_maps = config_maps;
        self
    }

    /// Notes that objects of `kind` in `namespace` changed, for [`tell_dependents`].
    fn changed_peers(&self, kind: Kind, namespace: &str) {
        let now = Instant::now();
        if let Ok(mut changed) = self.changed_peers.lock() {
            changed
                .entry((kind, namespace.to_owned()))
                .and_modify(|(_, last)| *last = now)
                .or_insert((now, now));
        }
    }
}

/// Asks for a reconcile of each object whose reconciler reads a kind that changed in its
/// namespace (an AlertRule's matched Devices, its channels). Changes are gathered until the
/// peers are quiet for [`DEPENDENTS_QUIET`] (at most [`DEPENDENTS_MAX_DELAY`]), so 10,000
/// Devices applied at once cost one or two passes over the rules, not one per Device.
async fn tell_dependents(
    shared: Arc<Shared>,
    changes: Changes,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    let mut config_maps_seen = shared.config_maps.version();
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = every.tick() => {}
        }
        // Workflows' RunScript steps read ConfigMaps, which have a watch of their own.
        let config_maps_now = shared.config_maps.version();
        if config_maps_now != config_maps_seen {
            config_maps_seen = config_maps_now;
            for workflow in shared.index.snapshot().of_kind(Kind::Workflow) {
                changes.changed(Kind::Workflow, &workflow.namespace, &workflow.name);
            }
        }
        let now = Instant::now();
        let changed: HashSet<(Kind, String)> = match shared.changed_peers.lock() {
            Ok(mut pending) => {
                let due: Vec<(Kind, String)> = pending
                    .iter()
                    .filter(|(_, (first, last))| {
                        now - *last >= DEPENDENTS_QUIET || now - *first >= DEPENDENTS_MAX_DELAY
                    })
                    .map(|(key, _)| key.clone())
                    .collect();
                due.into_iter()
                    .filter(|key| pending.remove(key).is_some())
                    .collect()
            }
            Err(_) => continue,
        };
        if changed.is_empty() {
            continue;
        }
        for kind in Kind::ALL {
            let Some(cache) = shared.caches.get(&kind) else {
                continue;
            };
            let reads = reconcile::depends_on(kind);
            let namespaces: HashSet<&str> = changed
                .iter()
                .filter(|(k, _)| reads.contains(k))
                .map(|(_, ns)| ns.as_str())
                .collect();
            if namespaces.is_empty() {
                continue;
            }
            for object in cache.state() {
                if let (Some(ns), Some(name)) = (&object.metadata.namespace, &object.metadata.name)
                    && namespaces.contains(ns.as_str())
                {
                    changes.changed(kind, ns, name);
                }
            }
        }
    }
}

/// The context one kind's controller passes to its reconciles.
pub struct KindContext {
    pub kind: Kind,
    pub api: Api<DynamicObject>,
    pub shared: Arc<Shared>,
}

/// Runs a controller per kind until `stop` resolves; reconciles of every kind use `shared`.
/// `namespace` limits the watches to one namespace.
pub async fn run(
    mut shared: Shared,
    namespace: Option<&str>,
    concurrency: u16,
    changes: &Changes,
    stop: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let mut streams = Vec::new();
    let mut controllers = Vec::new();
    for kind in Kind::ALL {
        let resource = api_resource(kind);
        let api = match namespace {
            Some(ns) => Api::namespaced_with(shared.client.clone(), ns, &resource),
            None => Api::all_with(shared.client.clone(), &resource),
        };
        let writer = reflector::store::Writer::new(resource.clone());
        let cache = writer.as_reader();
        // Only what a reconcile acts on passes: not the operator's own status writes.
        let objects = watcher(api.clone(), watcher::Config::default().any_semantic())
            .default_backoff()
            .reflect(writer)
            .applied_objects()
            .predicate_filter(wakes_reconcile, PredicateConfig::default());
        shared.caches.insert(kind, cache.clone());
        controllers.push((kind, api, objects, cache));
    }
    let shared = Arc::new(shared);
    let dependents = tokio::spawn(tell_dependents(
        shared.clone(),
        changes.clone(),
        stop.clone(),
    ));
    for (kind, api, objects, cache) in controllers {
        let context = Arc::new(KindContext {
            kind,
            api,
            shared: shared.clone(),
        });
        let triggers = requests_for(kind, changes.subscribe());
        let stream = Controller::for_stream_with(objects, cache, api_resource(kind))
            .with_config(controller::Config::default().concurrency(concurrency))
            .reconcile_on(triggers)
            .graceful_shutdown_on(stop.clone())
            .run(reconcile_object, error_policy, context)
            .for_each(|_| futures::future::ready(()));
        streams.push(stream);
    }
    futures::future::join_all(streams).await;
    let _ = dependents.await;
}

/// Hashes what should wake a reconcile: spec (through generation), labels, finalizers and
/// the start of a deletion.
fn wakes_reconcile(object: &DynamicObject) -> Option<u64> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    object.metadata.generation.hash(&mut hasher);
    object.metadata.labels.hash(&mut hasher);
    object.metadata.finalizers.hash(&mut hasher);
    object
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .hash(&mut hasher);
    object.metadata.uid.hash(&mut hasher);
    Some(hasher.finish())
}

/// The changed objects of `kind` named on `changes`, as reconcile requests.
fn requests_for(
    kind: Kind,
    changes: broadcast::Receiver<ObjectKey>,
) -> impl futures::Stream<Item = ObjectRef<DynamicObject>> + Send + 'static {
    futures::stream::unfold(changes, move |mut changes| async move {
        loop {
            match changes.recv().await {
                Ok(key) if key.kind == kind => {
                    let object =
                        ObjectRef::new_with(&key.name, api_resource(kind)).within(&key.namespace);
                    return Some((object, changes));
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// The controller's reconcile: through the finalizer where the kind has one.
pub fn reconcile_object(
    object: Arc<DynamicObject>,
    context: Arc<KindContext>,
) -> BoxFuture<'static, Result<Action, Error>> {
    Box::pin(async move {
        let kind = context.kind;
        let span = tracing::info_span!("reconcile", kind = kind.as_str(), namespace = object.namespace().unwrap_or_default(), name = %object.name_any());
        let _timer = context.shared.metrics.reconcile_timer(kind.as_str());
        tracing::Instrument::instrument(
            async {
                if has_finalizer(kind) {
                    let api = context.api_for(&object);
                    finalizer(&api, FINALIZER, object, |event| async {
                        match event {
                            finalizer::Event::Apply(object) => apply(&object, &context).await,
                            finalizer::Event::Cleanup(object) => cleanup(&object, &context).await,
                        }
                    })
                    .await
                    .map_err(|e| Error::Finalizer(Box::new(e)))
                } else {
                    apply(&object, &context).await
                }
            },
            span,
        )
        .await
    })
}

impl KindContext {
    /// The API of the object's own namespace: writes go there even when watching all.
    fn api_for(&self, object: &DynamicObject) -> Api<DynamicObject> {
        match object.namespace() {
            Some(ns) => {
                Api::namespaced_with(self.shared.client.clone(), &ns, &api_resource(self.kind))
            }
            None => self.api.clone(),
        }
    }

    fn count(&self, result: &str) {
        self.shared
            .metrics
            .count_reconcile(self.kind.as_str(), result);
    }
}

/// Mirror, reconcile, write status, tell transitions.
async fn apply(object: &DynamicObject, context: &KindContext) -> Result<Action, Error> {
    let kind = context.kind;
    let shared = &context.shared;
    let mirrored = cluster_object(kind, object)?;
    let (stored, changed) = shared.store.mirror_object(&mirrored).await?;
    shared.index.upsert(&stored);
    if changed {
        shared.changed_peers(kind, &mirrored.namespace);
    }

    let snapshot = shared.index.snapshot();
    let world = World::from_snapshot(&snapshot).with_config_maps(&shared.config_maps);
    let now = reconcile::now_rfc3339();
    let decided = reconcile::reconcile(&stored, &world, &now);
    drop(world);
    context.count(decided.outcome());
    let status = decided.to_patch();

    if changes_status(&stored.status, &status) {
        shared
            .store
            .patch_statuses(&[StatusPatch {
                kind,
                namespace: mirrored.namespace.clone(),
                name: mirrored.name.clone(),
                status: Value::Object(status.clone()),
            }])
            .await?;
    }

    let patch = cluster_status(kind, &status, &stored.status);
    let current = &mirrored.status;
    if changes_status(current, &patch) {
        let api = context.api_for(object);
        api.patch_status(
            &mirrored.name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": patch })),
        )
        .await
        .map_err(|source| Error::Status {
            kind,
            namespace: mirrored.namespace.clone(),
            name: mirrored.name.clone(),
            source,
        })?;
        let after = merged(current, &patch);
        for told in reconcile::events::transitions(kind, current, &after) {
            let event = Event {
                type_: match told.severity {
                    Severity::Normal => EventType::Normal,
                    Severity::Warning => EventType::Warning,
                },
                reason: told.reason.into(),
                note: Some(told.note),
                action: told.action.into(),
                secondary: None,
            };
            let reference = object.object_ref(&api_resource(kind));
            if let Err(e) = shared.recorder.publish(&event, &reference).await {
                // An Event is a courtesy; the status already says it.
                tracing::warn!(error = %e, reason = told.reason, "failed to publish an event");
            }
        }
    }
    if let Ok(mut failures) = shared.failures.lock() {
        failures.remove(&ObjectRef::from_obj_with(object, api_resource(kind)));
    }
    Ok(Action::requeue(jitter(shared.resync)))
}

/// The object is going: forget what the store holds for it, then let it go.
async fn cleanup(object: &DynamicObject, context: &KindContext) -> Result<Action, Error> {
    let mirrored = cluster_object(context.kind, object)?;
    let removed = context
        .shared
        .store
        .forget_object(
            context.kind,
            &mirrored.namespace,
            &mirrored.name,
            mirrored.uid,
        )
        .await?;
    context
        .shared
        .index
        .remove(context.kind, &mirrored.namespace, &mirrored.name);
    context
        .shared
        .changed_peers(context.kind, &mirrored.namespace);
    context.count("cleanup");
    tracing::info!(removed, "deleted; its stored state is gone");
    Ok(Action::await_change())
}

/// Exponential backoff with jitter per object: 1 s, 2 s, 4 s … up to 5 minutes.
pub fn error_policy(
    object: Arc<DynamicObject>,
    error: &Error,
    context: Arc<KindContext>,
) -> Action {
    let kind = context.kind;
    context.count("error");
    context
        .shared
        .metrics
        .reconcile_errors
        .get_or_create(&ReconcileErrorLabels {
            kind: kind.as_str().into(),
            error: error.metric_label().into(),
        })
        .inc();
    let failures = match context.shared.failures.lock() {
        Ok(mut failures) => {
            let n = failures
                .entry(ObjectRef::from_obj_with(&*object, api_resource(kind)))
                .or_insert(0);
            *n = n.saturating_add(1);
            *n
        }
        Err(_) => 1,
    };
    let delay = backoff(failures);
    tracing::warn!(kind = kind.as_str(), namespace = object.namespace().unwrap_or_default(), name = %object.name_any(), failures, retry_in = ?delay, "reconcile failed: {error}");
    Action::requeue(delay)
}

/// The delay after `failures` consecutive failures: doubling from 1 s, capped at 5 min,
/// then jittered.
pub fn backoff(failures: u32) -> Duration {
    let base = Duration::from_secs(1).saturating_mul(1 << failures.saturating_sub(1).min(9));
    jitter(base.min(Duration::from_secs(300)))
}

/// ±10 %, so that objects created together do not retry or resync together.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.9..1.1))
}

fn cluster_object(kind: Kind, object: &DynamicObject) -> Result<ClusterObject, Error> {
    let malformed = || Error::Malformed {
        kind,
        name: object.name_any(),
    };
    let uid = object
        .metadata
        .uid
        .as_deref()
        .and_then(|u| u.parse().ok())
        .ok_or_else(malformed)?;
    let mut annotations = object.annotations().clone();
    annotations.remove(LAST_APPLIED);
    Ok(ClusterObject {
        kind,
        namespace: object.namespace().ok_or_else(malformed)?,
        name: object.name_any(),
        uid,
        generation: object.metadata.generation.unwrap_or(1),
        labels: object.labels().clone(),
        annotations,
        spec: object
            .data
            .get("spec")
            .cloned()
            .unwrap_or_else(|| json!({})),
        status: object
            .data
            .get("status")
            .cloned()
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({})),
    })
}

/// The status written to the API server: what the reconciler decided, what other writers
/// own in the store (alerting, delivery, discovery), and for a Device its agent identity and
/// SNMP poller (not the last-seen times, which move with every report and poll and would
/// turn each into a write to the API server).
pub fn cluster_status(
    kind: Kind,
    decided: &Map<String, Value>,
    stored: &Value,
) -> Map<String, Value> {
    let mut patch = decided.clone();
    // Fields alerting, delivery and discovery write into the store, copied as they stand.
    let owned_elsewhere: &[&str] = match kind {
        Kind::Device => &["firingAlerts", "discovery", "patches"],
        Kind::AlertRule => &["firing", "lastEvaluation"],
        Kind::NotificationChannel => &["lastDelivery", "lastError", "delivered", "failed"],
        Kind::DiscoveryScan => &[
            "phase", "progress", "lastRun", "nextRun", "problems", "hosts",
        ],
        Kind::PatchPolicy => &["compliant", "rings", "rollout"],
        Kind::Workflow => &["runs", "failures", "lastRun"],
        _ => &[],
    };
    for field in owned_elsewhere {
        if let Some(v) = stored.get(*field) {
            patch.insert((*field).into(), v.clone());
        }
    }
    if kind == Kind::Device {
        // Without the times that move with every report or poll.
        for field in ["agent", "polling"] {
            if let Some(object) = stored.get(field).and_then(Value::as_object) {
                let mut object = object.clone();
                object.remove("lastSeen");
                patch.insert(field.into(), Value::Object(object));
            }
        }
    }
    patch
}

/// Whether merging `patch` into `current` changes anything.
fn changes_status(current: &Value, patch: &Map<String, Value>) -> bool {
    patch.iter().any(|(k, v)| current.get(k) != Some(v))
}

fn merged(current: &Value, patch: &Map<String, Value>) -> Value {
    let mut out = current.as_object().cloned().unwrap_or_default();
    out.extend(patch.clone());
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_up_to_five_minutes_with_jitter() {
        let within = |d: Duration, secs: f64| {
            let s = d.as_secs_f64();
            (secs * 0.9..=secs * 1.1).contains(&s)
        };
        assert!(within(backoff(1), 1.0));
        assert!(within(backoff(2), 2.0));
        assert!(within(backoff(5), 16.0));
        assert!(within(backoff(9), 256.0));
        assert!(within(backoff(10), 300.0), "capped");
        assert!(within(backoff(u32::MAX), 300.0), "no overflow");
        let spread: HashSet<u128> = (0..20).map(|_| backoff(3).as_millis()).collect();
        assert!(spread.len() > 1, "jittered");
    }

    #[test]
    fn the_status_written_to_the_api_server_leaves_out_the_report_time() {
        let decided = json!({ "observedGeneration": 3, "conditions": [] })
            .as_object()
            .cloned()
            .expect("an object");
        let stored = json!({ "agent": { "id": "a1", "version": "0.1.0", "lastSeen": "2026-11-26T10:00:00Z" }, "lastMetrics": {} });
        let patch = cluster_status(Kind::Device, &decided, &stored);
        assert_eq!(patch["agent"], json!({ "id": "a1", "version": "0.1.0" }));
        assert!(!patch.contains_key("lastMetrics"));
        assert!(!cluster_status(Kind::AlertRule, &decided, &stored).contains_key("agent"));
    }

    #[test]
    fn only_changes_a_reconcile_acts_on_wake_it() {
        let object = |generation: i64, status: &str| -> DynamicObject {
            serde_json::from_value(json!({
                "apiVersion": "rmm.cdot.io/v1alpha1", "kind": "Device",
                "metadata": { "name": "a", "namespace": "acme", "generation": generation, "uid": "u" },
                "status": { "phase": status },
            }))
            .expect("object")
        };
        assert_eq!(
            wakes_reconcile(&object(1, "x")),
            wakes_reconcile(&object(1, "y"))
        );
        assert_ne!(
            wakes_reconcile(&object(1, "x")),
            wakes_reconcile(&object(2, "x"))
        );
    }
}
