//! Reconcilers: plain functions from (spec, observed state) to status, shared by every
//! desired-state source. One module per kind; this module holds the pipeline they share:
//!
//! decode the spec → validate → observe (kind-specific, pure) → conditions → status patch.
//!
//! A reconciler returns the kind's status type of `cdot-crds` ([`Status`]) holding only the
//! fields it owns (counts, `conditions`, `observedGeneration`); the fields other writers own
//! (agent reports, discovery) are left `None`, so they are absent from the JSON. The status
//! is serialized once, where it is stored or patched, and patches are merged key by key so
//! neither writer overwrites the other.
use cdot_crds::{
    alert_rule::AlertRuleStatus,
    common::{Condition, ConditionStatus},
    device::DeviceStatus,
    discovery_scan::DiscoveryScanStatus,
    kind::Kind,
    notification_channel::NotificationChannelStatus,
    patch_policy::PatchPolicyStatus,
    silence::SilenceStatus,
    validation::{FieldError, Validate},
    workflow::WorkflowStatus,
};
use std::collections::BTreeMap;

use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use crate::{
    config_maps::ConfigMaps,
    index::{Index, Snapshot},
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
pub mod silence;
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
    /// The ConfigMaps steps refer to; `None` where the caller holds none (unit tests of
    /// reconcilers that do not read them), and then references to them are not checked.
    config_maps: Option<&'a ConfigMaps>,
}

impl<'a> World<'a> {
    pub fn new(objects: &'a [StoredObject]) -> Self {
        Self::from_peers(objects.iter().map(Peer::from).collect())
    }

    pub fn from_peers(objects: Vec<Peer<'a>>) -> Self {
        Self {
            objects,
            config_maps: None,
        }
    }

    /// Lets reconcilers check references to `config_maps`.
    pub fn with_config_maps(mut self, config_maps: &'a ConfigMaps) -> Self {
        self.config_maps = Some(config_maps);
        self
    }

    /// Whether ConfigMap `name` of `namespace` holds `key`: `None` when this world does not
    /// know ConfigMaps, else `Some(Err)` naming what is missing.
    pub fn config_map_key(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Option<Result<(), String>> {
        let maps = self.config_maps?;
        Some(match maps.get(namespace, name) {
            None => Err(format!("ConfigMap {name}")),
            Some(data) if !data.contains_key(key) => Err(format!("key {key} of ConfigMap {name}")),
            Some(_) => Ok(()),
        })
    }

    /// Every object of the index's snapshot.
    pub fn from_snapshot(snapshot: &'a Snapshot) -> Self {
        Self::from_peers(snapshot.peers().collect())
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
        Kind::Device | Kind::NotificationChannel | Kind::Silence => &[],
        Kind::AlertRule => &[Kind::Device, Kind::NotificationChannel],
        Kind::Workflow => &[Kind::Device, Kind::AlertRule, Kind::NotificationChannel],
        Kind::PatchPolicy | Kind::DiscoveryScan => &[Kind::Device],
    }
}

/// How many `items` there are, as a status count (saturating: a count is never wrapped).
pub fn count<T>(items: impl Iterator<Item = T>) -> u32 {
    u32::try_from(items.count()).unwrap_or(u32::MAX)
}

/// What a kind's observe step found.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation<S> {
    /// The status fields this reconciler owns; the pipeline adds `observedGeneration` and
    /// `conditions`.
    pub status: S,
    /// The `Ready` condition: status, reason, message.
    pub ready: (ConditionStatus, &'static str, String),
    /// Further conditions of the kind (e.g. a Device's `Enrolled`); an empty transition time
    /// is stamped with the pass's `now`.
    pub extra: Vec<Condition>,
}

impl<S> Observation<S> {
    pub fn ready(status: S, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            ready: (ConditionStatus::True, reason, message.into()),
            extra: Vec::new(),
        }
    }

    pub fn not_ready(status: S, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            ready: (ConditionStatus::False, reason, message.into()),
            extra: Vec::new(),
        }
    }
}

/// A kind's status type as the pipeline completes it.
pub trait KindStatus: Default {
    fn set_reconciled(&mut self, generation: i64, conditions: Vec<Condition>);
}

macro_rules! kind_status {
    ($($status:ty),*) => {$(
        impl KindStatus for $status {
            fn set_reconciled(&mut self, generation: i64, conditions: Vec<Condition>) {
                self.observed_generation = Some(generation);
                self.conditions = conditions;
            }
        }
    )*};
}

kind_status!(
    DeviceStatus,
    AlertRuleStatus,
    NotificationChannelStatus,
    PatchPolicyStatus,
    WorkflowStatus,
    DiscoveryScanStatus,
    SilenceStatus
);

/// The status a reconciler decided for one object: its kind's status type, with only the
/// fields the reconciler owns set.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Status {
    /// Boxed: a Device's and a DiscoveryScan's status types (inventory, runs) are several
    /// times the others'.
    Device(Box<DeviceStatus>),
    AlertRule(AlertRuleStatus),
    NotificationChannel(NotificationChannelStatus),
    PatchPolicy(PatchPolicyStatus),
    Workflow(WorkflowStatus),
    DiscoveryScan(Box<DiscoveryScanStatus>),
    Silence(SilenceStatus),
}

impl Status {
    pub fn conditions(&self) -> &[Condition] {
        match self {
            Self::Device(s) => &s.conditions,
            Self::AlertRule(s) => &s.conditions,
            Self::NotificationChannel(s) => &s.conditions,
            Self::PatchPolicy(s) => &s.conditions,
            Self::Workflow(s) => &s.conditions,
            Self::DiscoveryScan(s) => &s.conditions,
            Self::Silence(s) => &s.conditions,
        }
    }

    /// Whether this status refuses the spec.
    pub fn is_invalid(&self) -> bool {
        self.conditions()
            .iter()
            .any(|c| c.type_ == DEGRADED && c.status == ConditionStatus::True)
    }

    /// The reconcile metric's result.
    pub fn outcome(&self) -> &'static str {
        if self.is_invalid() { "invalid" } else { "ok" }
    }

    /// The JSON merge patch of the status: the fields the reconciler owns, nothing else.
    pub fn to_patch(&self) -> Map<String, Value> {
        // Plain structs with string keys and finite numbers: serializing cannot fail.
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }
}

/// Computes the status of one object. Pure: `now` is the timestamp to stamp on conditions
/// that change.
pub fn reconcile(object: &StoredObject, world: &World<'_>, now: &str) -> Status {
    match object.kind {
        Kind::Device => Status::Device(Box::new(pipeline(
            object,
            world,
            now,
            |spec, object, world| device::observe(spec, object, world, now),
        ))),
        Kind::AlertRule => Status::AlertRule(pipeline(object, world, now, alert_rule::observe)),
        Kind::NotificationChannel => {
            Status::NotificationChannel(pipeline(object, world, now, notification_channel::observe))
        }
        Kind::PatchPolicy => {
            Status::PatchPolicy(pipeline(object, world, now, patch_policy::observe))
        }
        Kind::Workflow => Status::Workflow(checked_pipeline(
            object,
            world,
            now,
            crate::automation::sandbox::script_errors,
            workflow::observe,
        )),
        Kind::DiscoveryScan => Status::DiscoveryScan(Box::new(pipeline(
            object,
            world,
            now,
            discovery_scan::observe,
        ))),
        Kind::Silence => Status::Silence(pipeline(object, world, now, |spec, object, world| {
            silence::observe(spec, object, world, now)
        })),
    }
}

fn pipeline<Spec: DeserializeOwned + Validate, S: KindStatus>(
    object: &StoredObject,
    world: &World<'_>,
    now: &str,
    observe: impl FnOnce(&Spec, &StoredObject, &World<'_>) -> Observation<S>,
) -> S {
    checked_pipeline(object, world, now, |_| Vec::new(), observe)
}

/// [`pipeline`] with checks the spec's own validation cannot make (it would need the
/// operator's parts, like the rhai sandbox): their errors invalidate the spec the same way.
fn checked_pipeline<Spec: DeserializeOwned + Validate, S: KindStatus>(
    object: &StoredObject,
    world: &World<'_>,
    now: &str,
    check: impl FnOnce(&Spec) -> Vec<FieldError>,
    observe: impl FnOnce(&Spec, &StoredObject, &World<'_>) -> Observation<S>,
) -> S {
    let (observation, errors) = match decode::<Spec>(&object.spec) {
        Ok(spec) => match [spec.validate(), check(&spec)].concat() {
            errors if errors.is_empty() => (Some(observe(&spec, object, world)), errors),
            errors => (None, errors),
        },
        Err(error) => (None, vec![error]),
    };

    let mut wanted = Vec::new();
    let mut decided = S::default();
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
            decided = observation.status;
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
    decided.set_reconciled(object.generation, conditions);
    decided
}

fn decode<S: DeserializeOwned>(spec: &Value) -> Result<S, FieldError> {
    serde_path_to_error::deserialize(spec).map_err(|e| FieldError {
        path: format!("spec.{}", e.path()),
        message: e.inner().to_string(),
    })
}

/// Reconciles every stored object and writes the statuses that changed. The stored
/// objects are the desired state standalone mode applied: the index is brought up to date
/// from them first, and reconcilers see their peers through it.
pub async fn run_pass(
    store: &Store,
    metrics: &Metrics,
    index: &Index,
    config_maps: &ConfigMaps,
) -> Result<(), StoreError> {
    let objects = store.all_objects().await?;
    index.replace(&objects);
    let snapshot = index.snapshot();
    let world = World::from_snapshot(&snapshot).with_config_maps(config_maps);
    let now = now_rfc3339();
    let mut patches = Vec::with_capacity(objects.len());
    for kind in Kind::ALL {
        let _timer = metrics.reconcile_timer(kind.as_str());
        let mut count = 0;
        for object in objects.iter().filter(|o| o.kind == kind) {
            count += 1;
            let span = tracing::info_span!("reconcile", kind = kind.as_str(), namespace = %object.namespace, name = %object.name);
            let decided = span.in_scope(|| reconcile(object, &world, &now));
            metrics.count_reconcile(kind.as_str(), decided.outcome());
            let status = Value::Object(decided.to_patch());
            for told in events::transitions(kind, &object.status, &status) {
                tracing::info!(kind = kind.as_str(), namespace = %object.namespace, name = %object.name, reason = told.reason, "{}", told.note);
            }
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

    /// The JSON a status is stored and patched as.
    fn patch(status: Status) -> Value {
        Value::Object(status.to_patch())
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
        let status = patch(reconcile(&device, &World::new(&[]), "2026-11-25T10:00:00Z"));
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
        let decided = reconcile(&device, &World::new(&[]), "2026-11-25T10:00:00Z");
        assert!(decided.is_invalid());
        assert_eq!(decided.outcome(), "invalid");
        let status = patch(decided);
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
            status: patch(first.clone()),
            ..device
        };
        let second = reconcile(&again, &World::new(&[]), "2026-11-25T11:00:00Z");
        assert_eq!(first, second);
    }

    /// The JSON fields each kind's reconciler owns; the typed status must leave every other
    /// field out of the patch, or it would overwrite what another writer stored.
    fn owned(kind: Kind) -> &'static [&'static str] {
        match kind {
            Kind::Device => &["source"],
            Kind::AlertRule | Kind::Workflow => &["matchedDevices"],
            // The discovery engine owns a scan's phase, progress and runs.
            Kind::NotificationChannel | Kind::DiscoveryScan => &[],
            Kind::PatchPolicy => &["devicesInScope", "rings"],
            Kind::Silence => &["state"],
        }
    }

    fn keys(status: &Value) -> std::collections::BTreeSet<&str> {
        status
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// An object of `kind` whose spec does not decode.
    fn invalid(kind: Kind) -> StoredObject {
        stored(
            kind.as_str(),
            "acme",
            "broken",
            json!("not a spec"),
            json!({}),
        )
    }

    #[test]
    fn a_patch_holds_only_the_fields_the_reconciler_owns() {
        let objects = examples();
        let world = World::new(&objects);
        for object in &objects {
            let status = patch(reconcile(object, &world, "t"));
            let mut want: std::collections::BTreeSet<&str> =
                owned(object.kind).iter().copied().collect();
            want.extend(["observedGeneration", "conditions"]);
            assert_eq!(keys(&status), want, "{} {}", object.kind, object.name);
        }
        // An invalid spec leaves the owned fields as they were: only the outcome is written.
        for kind in Kind::ALL {
            let status = patch(reconcile(&invalid(kind), &world, "t"));
            assert_eq!(
                keys(&status),
                ["conditions", "observedGeneration"].into(),
                "{kind}"
            );
        }
    }

    /// The condition types named at the top level of a `conditions` description: the
    /// backticked words of its first sentence outside parentheses.
    fn named_conditions(description: &str) -> std::collections::BTreeSet<String> {
        let mut named = std::collections::BTreeSet::new();
        let (mut depth, mut word, mut in_tick) = (0, String::new(), false);
        for c in description.trim_start_matches("Conditions:").chars() {
            match c {
                '`' if in_tick => {
                    if depth == 0 {
                        named.insert(std::mem::take(&mut word));
                    }
                    word.clear();
                    in_tick = false;
                }
                '`' => in_tick = true,
                _ if in_tick => word.push(c),
                '(' => depth += 1,
                ')' => depth -= 1,
                '.' if depth == 0 => break,
                _ => {}
            }
        }
        named
    }

    /// Issue 12: the docs (so `kubectl explain` and the CRDs) named `Valid`, `Reachable` and
    /// `Halted`, which nothing writes, and not `Degraded` or `Reconciling`, which the
    /// pipeline writes on every kind.
    #[test]
    fn the_conditions_docs_name_exactly_the_conditions_written() {
        let objects = examples();
        let world = World::new(&objects);
        // No example Device was found by a scan: one that was writes `Responding`.
        let discovered = stored(
            "Device",
            "acme",
            "found",
            json!({ "class": "Router" }),
            json!({ "discovery": { "scan": "lan", "responding": true } }),
        );
        for kind in Kind::ALL {
            let mut written = std::collections::BTreeSet::new();
            let of_kind = objects.iter().filter(|o| o.kind == kind);
            let extra = (kind == Kind::Device).then_some(&discovered);
            for object in of_kind.chain([&invalid(kind)]).chain(extra) {
                for condition in reconcile(object, &world, "t").conditions() {
                    written.insert(condition.type_.clone());
                }
            }
            let crd = serde_json::to_value(kind.crd()).expect("crd");
            let description = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
                ["status"]["properties"]["conditions"]["description"]
                .as_str()
                .expect("a description of status.conditions");
            assert_eq!(
                named_conditions(description),
                written,
                "{kind}: {description}"
            );
        }
    }
}
