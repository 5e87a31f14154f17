//! Reconcilers: plain functions from (spec, observed state) to status, shared by every
//! desired-state source. One module per kind; this module holds the pipeline they share:
//!
//! decode the spec → validate → observe (kind-specific, pure) → conditions → status patch.
//!
//! A reconciler owns the status fields it returns (counts, `conditions`,
//! `observedGeneration`); other writers (agent reports, discovery) own the rest, and
//! patches are merged key by key so neither overwrites the other.
use cdot_crds::{
    common::{Condition, ConditionStatus},
    kind::Kind,
    validation::{FieldError, Validate},
};
use std::collections::BTreeMap;

use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use crate::{
    metrics::Metrics,
    store::{StatusPatch, Store, StoreError, StoredObject},
};

pub mod alert_rule;
pub mod conditions;
pub mod device;
pub mod discovery_scan;
pub mod events;
pub mod notification_channel;
pub mod patch_policy;
pub mod workflow;

pub use conditions::merge_conditions;

/// What a reconciler may know of another object: enough to match selectors and references.
#[derive(Debug, Clone, Copy)]
pub struct Peer<'a> {
    pub kind: Kind,
    pub namespace: &'a str,
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub spec: &'a Value,
}

impl<'a> From<&'a StoredObject> for Peer<'a> {
    fn from(o: &'a StoredObject) -> Self {
        Self {
            kind: o.kind,
            namespace: &o.namespace,
            name: &o.name,
            labels: &o.labels,
            spec: &o.spec,
        }
    }
}

/// Everything a reconciler may look at besides its own object. Borrowed, so each desired-
/// state source builds it from what it already holds (stored rows, a watch cache).
pub struct World<'a> {
    objects: Vec<Peer<'a>>,
}

impl<'a> World<'a> {
    pub fn new(objects: &'a [StoredObject]) -> Self {
        Self::from_peers(objects.iter().map(Peer::from).collect())
    }

    pub fn from_peers(objects: Vec<Peer<'a>>) -> Self {
        Self { objects }
    }

    pub fn of_kind(&self, namespace: &str, kind: Kind) -> impl Iterator<Item = Peer<'a>> + '_ {
        let namespace = namespace.to_owned();
        self.objects
            .iter()
            .filter(move |o| o.kind == kind && o.namespace == namespace)
            .copied()
    }

    pub fn exists(&self, namespace: &str, kind: Kind, name: &str) -> bool {
        self.objects
            .iter()
            .any(|o| o.kind == kind && o.namespace == namespace && o.name == name)
    }
}

/// The kinds a kind's reconciler reads from the [`World`]; a Device needs none.
pub fn depends_on(kind: Kind) -> &'static [Kind] {
    match kind {
        Kind::Device | Kind::NotificationChannel => &[],
        Kind::AlertRule => &[Kind::Device, Kind::NotificationChannel],
        Kind::Workflow => &[Kind::Device, Kind::AlertRule, Kind::NotificationChannel],
        Kind::PatchPolicy | Kind::DiscoveryScan => &[Kind::Device],
    }
}

/// What a kind's observe step found.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Status fields this reconciler owns, already in their JSON form.
    pub fields: Map<String, Value>,
    /// The `Ready` condition: status, reason, message.
    pub ready: (ConditionStatus, &'static str, String),
    /// Further conditions of the kind (e.g. a Device's `Enrolled`); an empty transition time
    /// is stamped with the pass's `now`.
    pub extra: Vec<Condition>,
}

impl Observation {
    pub fn ready(fields: impl Serialize, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            fields: to_map(fields),
            ready: (ConditionStatus::True, reason, message.into()),
            extra: Vec::new(),
        }
    }

    pub fn not_ready(
        fields: impl Serialize,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            fields: to_map(fields),
            ready: (ConditionStatus::False, reason, message.into()),
            extra: Vec::new(),
        }
    }
}

fn to_map(fields: impl Serialize) -> Map<String, Value> {
    match serde_json::to_value(fields) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// Computes the status patch of one object. Pure: `now` is the timestamp to stamp on
/// conditions that change.
pub fn reconcile(object: &StoredObject, world: &World<'_>, now: &str) -> Value {
    match object.kind {
        Kind::Device => pipeline(object, world, now, |spec, object, world| {
            device::observe(spec, object, world, now)
        }),
        Kind::AlertRule => pipeline(object, world, now, alert_rule::observe),
        Kind::NotificationChannel => pipeline(object, world, now, notification_channel::observe),
        Kind::PatchPolicy => pipeline(object, world, now, patch_policy::observe),
        Kind::Workflow => pipeline(object, world, now, workflow::observe),
        Kind::DiscoveryScan => pipeline(object, world, now, discovery_scan::observe),
    }
}

fn pipeline<S: DeserializeOwned + Validate>(
    object: &StoredObject,
    world: &World<'_>,
    now: &str,
    observe: impl FnOnce(&S, &StoredObject, &World<'_>) -> Observation,
) -> Value {
    let (observation, errors) = match decode::<S>(&object.spec) {
        Ok(spec) => match spec.validate() {
            errors if errors.is_empty() => (Some(observe(&spec, object, world)), errors),
            errors => (None, errors),
        },
        Err(error) => (None, vec![error]),
    };

    let mut wanted = Vec::new();
    let mut patch = Map::new();
    match observation {
        Some(observation) => {
            let (status, reason, message) = observation.ready;
            wanted.push(Condition::new("Ready", status, reason, message, now));
            wanted.push(Condition::new(
                "Degraded",
                ConditionStatus::False,
                "Valid",
                "the spec passed validation",
                now,
            ));
            wanted.extend(observation.extra.into_iter().map(|mut condition| {
                if condition.last_transition_time.is_empty() {
                    condition.last_transition_time = now.to_owned();
                }
                condition
            }));
            patch = observation.fields;
        }
        None => {
            let message = cdot_crds::validation::describe_errors(&errors);
            wanted.push(Condition::new(
                "Ready",
                ConditionStatus::False,
                "Invalid",
                "the spec is invalid; see the Degraded condition",
                now,
            ));
            wanted.push(Condition::new(
                DEGRADED,
                ConditionStatus::True,
                VALIDATION_FAILED,
                message,
                now,
            ));
        }
    }
    // Written together with `observedGeneration`: whoever reads this status sees the
    // outcome for that generation, so nothing is left in progress.
    wanted.push(Condition::new(
        "Reconciling",
        ConditionStatus::False,
        "Reconciled",
        format!("generation {} is reconciled", object.generation),
        now,
    ));
    let previous: Vec<Condition> = object
        .status
        .get("conditions")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    let conditions = merge_conditions(&previous, wanted, object.generation);
    patch.insert("observedGeneration".into(), object.generation.into());
    patch.insert(
        "conditions".into(),
        serde_json::to_value(conditions).unwrap_or_default(),
    );
    Value::Object(patch)
}

fn decode<S: DeserializeOwned>(spec: &Value) -> Result<S, FieldError> {
    serde_path_to_error::deserialize(spec).map_err(|e| FieldError {
        path: format!("spec.{}", e.path()),
        message: e.inner().to_string(),
    })
}

/// Reconciles every stored object and writes the statuses that changed.
pub async fn run_pass(store: &Store, metrics: &Metrics) -> Result<(), StoreError> {
    let objects = store.all_objects().await?;
    let world = World::new(&objects);
    let now = now_rfc3339();
    let mut patches = Vec::with_capacity(objects.len());
    for kind in Kind::ALL {
        let _timer = metrics.reconcile_timer(kind.as_str());
        let mut count = 0;
        for object in objects.iter().filter(|o| o.kind == kind) {
            count += 1;
            let span = tracing::info_span!("reconcile", kind = kind.as_str(), namespace = %object.namespace, name = %object.name);
            let status = span.in_scope(|| reconcile(object, &world, &now));
            for told in events::transitions(kind, &object.status, &status) {
                tracing::info!(kind = kind.as_str(), namespace = %object.namespace, name = %object.name, reason = told.reason, "{}", told.note);
            }
            metrics.count_reconcile(kind.as_str(), outcome(&status));
            patches.push(StatusPatch {
                kind,
                namespace: object.namespace.clone(),
                name: object.name.clone(),
                status,
            });
        }
        metrics
            .objects
            .get_or_create(&crate::metrics::KindLabels {
                kind: kind.as_str().into(),
            })
            .set(count);
    }
    let changed = store.patch_statuses(&patches).await?;
    if changed > 0 {
        tracing::info!(changed, "statuses updated");
    }
    Ok(())
}

/// The condition that says a spec is invalid (status `True`, reason [`VALIDATION_FAILED`]).
pub const DEGRADED: &str = "Degraded";
pub const VALIDATION_FAILED: &str = "ValidationFailed";

/// The reconcile metric's result for a status computed by [`reconcile`].
pub fn outcome(status: &Value) -> &'static str {
    if is_invalid(status) { "invalid" } else { "ok" }
}

/// Whether a status computed by [`reconcile`] refuses the spec.
pub fn is_invalid(status: &Value) -> bool {
    status["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == DEGRADED && c["status"] == "True")
    })
}

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    /// A stored object for reconciler tests.
    pub fn stored(
        kind: &str,
        namespace: &str,
        name: &str,
        spec: Value,
        status: Value,
    ) -> StoredObject {
        StoredObject {
            kind: Kind::from_kind_name(kind).expect("kind"),
            namespace: namespace.into(),
            name: name.into(),
            uid: uuid::Uuid::nil(),
            generation: 1,
            resource_version: 1,
            labels: Default::default(),
            annotations: Default::default(),
            spec,
            status,
            created_at: "2026-11-25T00:00:00Z".into(),
        }
    }

    fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
        status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == type_))
            .expect("condition")
    }

    #[test]
    fn a_valid_object_is_ready_and_records_its_generation() {
        let mut device = stored(
            "Device",
            "acme",
            "web-01",
            json!({ "class": "Server" }),
            json!({}),
        );
        device.generation = 4;
        let status = reconcile(&device, &World::new(&[]), "2026-11-25T10:00:00Z");
        assert_eq!(status["observedGeneration"], 4);
        assert_eq!(condition(&status, "Degraded")["status"], "False");
        assert_eq!(condition(&status, "Reconciling")["status"], "False");
        assert_eq!(condition(&status, "Ready")["observedGeneration"], 4);
    }

    #[test]
    fn an_invalid_spec_gets_an_invalid_condition_with_the_field_path() {
        let device = stored(
            "Device",
            "acme",
            "web-01",
            json!({ "class": "Toaster" }),
            json!({}),
        );
        let status = reconcile(&device, &World::new(&[]), "2026-11-25T10:00:00Z");
        let invalid = condition(&status, "Degraded");
        assert_eq!(invalid["status"], "True");
        assert!(
            invalid["message"]
                .as_str()
                .expect("message")
                .contains("spec.class"),
            "{invalid}"
        );
        assert_eq!(condition(&status, "Ready")["reason"], "Invalid");
    }

    /// Every object of examples/, as stored.
    fn examples() -> Vec<StoredObject> {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
        let mut out = Vec::new();
        for namespace in ["acme", "globex"] {
            let dir = std::path::Path::new(root).join(namespace);
            for file in std::fs::read_dir(&dir).expect("examples").flatten() {
                let text = std::fs::read_to_string(file.path()).expect("read");
                for doc in cdot_crds::manifest::split_documents_indexed(&text).expect("split") {
                    let v = doc.value;
                    let Some(kind) = v["kind"].as_str().and_then(Kind::from_kind_name) else {
                        continue;
                    };
                    let mut object = stored(
                        kind.as_str(),
                        v["metadata"]["namespace"].as_str().expect("namespace"),
                        v["metadata"]["name"].as_str().expect("name"),
                        v["spec"].clone(),
                        json!({}),
                    );
                    object.labels =
                        serde_json::from_value(v["metadata"]["labels"].clone()).unwrap_or_default();
                    out.push(object);
                }
            }
        }
        out
    }

    /// Kubernetes mode gives each reconciler only the kinds [`depends_on`] names; that must
    /// decide exactly what the whole world decides.
    #[test]
    fn depends_on_names_every_kind_a_reconciler_reads() {
        let objects = examples();
        assert!(objects.len() > 10);
        let everything = World::new(&objects);
        for object in &objects {
            let reads = depends_on(object.kind);
            let narrow = World::from_peers(
                objects
                    .iter()
                    .filter(|o| reads.contains(&o.kind))
                    .map(Peer::from)
                    .collect(),
            );
            assert_eq!(
                reconcile(object, &everything, "t"),
                reconcile(object, &narrow, "t"),
                "{} {}/{} reads a kind depends_on does not name",
                object.kind,
                object.namespace,
                object.name
            );
        }
    }

    #[test]
    fn an_unchanged_object_keeps_its_transition_times() {
        let device = stored(
            "Device",
            "acme",
            "web-01",
            json!({ "class": "Server" }),
            json!({}),
        );
        let first = reconcile(&device, &World::new(&[]), "2026-11-25T10:00:00Z");
        let again = StoredObject {
            status: first.clone(),
            ..device
        };
        let second = reconcile(&again, &World::new(&[]), "2026-11-25T11:00:00Z");
        assert_eq!(first, second);
    }
}
