//! The in-memory index of desired state: every object's identity, labels and spec, kept
//! current from the changes each desired-state source applies (standalone: each reconcile
//! pass over the stored objects; Kubernetes: each mirrored or forgotten object). The
//! reconcile [`World`](crate::reconcile::World), the ingest path and the alert evaluator
//! read it instead of querying PostgreSQL per batch, as linkerd2's policy-controller reads
//! its index.
//!
//! Readers take an immutable [`Snapshot`] (one atomic load, no lock held while they work);
//! writers build the next snapshot and swap it in, and bump a version that dependants
//! (the alert rule compiler) watch.
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use arc_swap::ArcSwap;
use cdot_crds::{device::DeviceSpec, kind::Kind};
use serde_json::Value;
use tokio::sync::watch;
use uuid::Uuid;

use crate::{reconcile::Peer, store::StoredObject};

/// What the index keeps of one object: what selectors, references and evaluation need.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedObject {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub uid: Uuid,
    pub generation: i64,
    pub labels: BTreeMap<String, String>,
    pub spec: Value,
}

impl From<&StoredObject> for IndexedObject {
    fn from(o: &StoredObject) -> Self {
        Self {
            kind: o.kind,
            namespace: o.namespace.clone(),
            name: o.name.clone(),
            uid: o.uid,
            generation: o.generation,
            labels: o.labels.clone(),
            spec: o.spec.clone(),
        }
    }
}

impl<'a> From<&'a IndexedObject> for Peer<'a> {
    fn from(o: &'a IndexedObject) -> Self {
        Peer {
            kind: o.kind,
            namespace: &o.namespace,
            name: &o.name,
            labels: &o.labels,
            spec: &o.spec,
        }
    }
}

/// A Device as alerting sees it: decoded once per change, not per sample.
#[derive(Debug, Clone)]
pub struct DeviceEntry {
    pub object: Arc<IndexedObject>,
    /// `None` when the stored spec does not decode (the reconciler reports why).
    pub spec: Option<DeviceSpec>,
}

impl DeviceEntry {
    pub fn site(&self) -> Option<&str> {
        self.spec.as_ref().and_then(|s| s.site.as_deref())
    }
}

type Key = (String, String);

/// One consistent view of desired state.
#[derive(Debug, Default)]
pub struct Snapshot {
    objects: HashMap<Kind, BTreeMap<Key, Arc<IndexedObject>>>,
    devices_by_uid: HashMap<Uuid, Arc<DeviceEntry>>,
    devices_by_name: HashMap<Key, Arc<DeviceEntry>>,
}

impl Snapshot {
    fn from_objects(objects: impl IntoIterator<Item = Arc<IndexedObject>>) -> Self {
        let mut snapshot = Self::default();
        for object in objects {
            snapshot.insert(object);
        }
        snapshot
    }

    fn insert(&mut self, object: Arc<IndexedObject>) {
        let key = (object.namespace.clone(), object.name.clone());
        if object.kind == Kind::Device {
            let entry = Arc::new(DeviceEntry {
                spec: serde_json::from_value(object.spec.clone()).ok(),
                object: object.clone(),
            });
            if let Some(old) = self.devices_by_name.insert(key.clone(), entry.clone()) {
                self.devices_by_uid.remove(&old.object.uid);
            }
            self.devices_by_uid.insert(object.uid, entry);
        }
        self.objects
            .entry(object.kind)
            .or_default()
            .insert(key, object);
    }

    fn remove(&mut self, kind: Kind, namespace: &str, name: &str) -> bool {
        let key = (namespace.to_owned(), name.to_owned());
        if kind == Kind::Device
            && let Some(old) = self.devices_by_name.remove(&key)
        {
            self.devices_by_uid.remove(&old.object.uid);
        }
        self.objects
            .get_mut(&kind)
            .and_then(|m| m.remove(&key))
            .is_some()
    }

    /// Every object of `kind`, by namespace then name.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Arc<IndexedObject>> {
        self.objects.get(&kind).into_iter().flat_map(|m| m.values())
    }

    /// The objects of `kind` in `namespace`.
    pub fn in_namespace(
        &self,
        kind: Kind,
        namespace: &str,
    ) -> impl Iterator<Item = &Arc<IndexedObject>> {
        let start = (namespace.to_owned(), String::new());
        self.objects
            .get(&kind)
            .into_iter()
            .flat_map(move |m| m.range(start.clone()..))
            .take_while(move |((ns, _), _)| ns == namespace)
            .map(|(_, o)| o)
    }

    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Arc<IndexedObject>> {
        self.objects
            .get(&kind)?
            .get(&(namespace.to_owned(), name.to_owned()))
    }

    pub fn device_by_uid(&self, uid: &Uuid) -> Option<&Arc<DeviceEntry>> {
        self.devices_by_uid.get(uid)
    }

    pub fn device(&self, namespace: &str, name: &str) -> Option<&Arc<DeviceEntry>> {
        self.devices_by_name
            .get(&(namespace.to_owned(), name.to_owned()))
    }

    pub fn devices(&self) -> impl Iterator<Item = &Arc<DeviceEntry>> {
        self.devices_by_name.values()
    }

    /// Every object, as reconcilers see peers.
    pub fn peers(&self) -> impl Iterator<Item = Peer<'_>> {
        self.objects
            .values()
            .flat_map(|m| m.values())
            .map(|o| Peer::from(o.as_ref()))
    }

    pub fn len(&self) -> usize {
        self.objects.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The index; cheap to clone (all clones see the same snapshots).
#[derive(Clone)]
pub struct Index {
    current: Arc<ArcSwap<Snapshot>>,
    version: Arc<watch::Sender<u64>>,
}

impl Default for Index {
    fn default() -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(Snapshot::default())),
            version: Arc::new(watch::channel(0).0),
        }
    }
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("objects", &self.snapshot().len())
            .field("version", &*self.version.borrow())
            .finish()
    }
}

impl Index {
    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Counts the swaps that changed desired state.
    pub fn version(&self) -> u64 {
        *self.version.borrow()
    }

    /// Changes on every swap that changed desired state.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    fn publish(&self, next: Snapshot) {
        self.current.store(Arc::new(next));
        self.version.send_modify(|v| *v += 1);
    }

    /// Replaces everything with `objects` (a whole desired state, as standalone mode reads
    /// it back after a change set). Returns whether anything an evaluator reads changed;
    /// only then do dependants hear of it, so a status-only pass costs them nothing.
    pub fn replace(&self, objects: &[StoredObject]) -> bool {
        let current = self.snapshot();
        let unchanged = current.len() == objects.len()
            && objects.iter().all(|o| {
                current.get(o.kind, &o.namespace, &o.name).is_some_and(|i| {
                    i.uid == o.uid && i.generation == o.generation && i.labels == o.labels
                })
            });
        if unchanged {
            return false;
        }
        // Keep unchanged entries' allocations; decode only what changed.
        let next = Snapshot::from_objects(objects.iter().map(|o| {
            match current.get(o.kind, &o.namespace, &o.name) {
                Some(i)
                    if i.uid == o.uid && i.generation == o.generation && i.labels == o.labels =>
                {
                    i.clone()
                }
                _ => Arc::new(IndexedObject::from(o)),
            }
        }));
        self.publish(next);
        true
    }

    /// One object was created or changed (Kubernetes mode: a watch event, mirrored).
    pub fn upsert(&self, object: &StoredObject) {
        let current = self.snapshot();
        if current
            .get(object.kind, &object.namespace, &object.name)
            .is_some_and(|i| {
                i.uid == object.uid
                    && i.generation == object.generation
                    && i.labels == object.labels
            })
        {
            return;
        }
        let mut next = clone_snapshot(&current);
        next.insert(Arc::new(IndexedObject::from(object)));
        self.publish(next);
    }

    /// One object is gone.
    pub fn remove(&self, kind: Kind, namespace: &str, name: &str) {
        let current = self.snapshot();
        if current.get(kind, namespace, name).is_none() {
            return;
        }
        let mut next = clone_snapshot(&current);
        next.remove(kind, namespace, name);
        self.publish(next);
    }
}

/// A shallow copy: maps of shared entries.
fn clone_snapshot(s: &Snapshot) -> Snapshot {
    Snapshot {
        objects: s.objects.clone(),
        devices_by_uid: s.devices_by_uid.clone(),
        devices_by_name: s.devices_by_name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::reconcile::tests::stored;

    #[test]
    fn replace_tells_dependants_only_of_desired_state_changes() {
        let index = Index::default();
        let mut rx = index.subscribe();
        let mut device = stored(
            "Device",
            "acme",
            "web-01",
            json!({"class": "Server", "site": "hq"}),
            json!({}),
        );
        let rule = stored("AlertRule", "acme", "disk", json!({}), json!({}));
        assert!(index.replace(&[device.clone(), rule.clone()]));
        assert!(rx.has_changed().expect("open"));
        rx.mark_unchanged();

        // A status change (the only thing a pass changes most of the time) is not news.
        device.status = json!({"phase": "Online"});
        device.resource_version += 1;
        assert!(!index.replace(&[device.clone(), rule.clone()]));
        assert!(!rx.has_changed().expect("open"));

        device.labels.insert("role".into(), "db".into());
        assert!(index.replace(&[device.clone(), rule.clone()]));
        let snapshot = index.snapshot();
        let entry = snapshot.device("acme", "web-01").expect("device");
        assert_eq!(entry.site(), Some("hq"));
        assert_eq!(entry.object.labels["role"], "db");
        assert!(snapshot.device_by_uid(&device.uid).is_some());
        assert_eq!(snapshot.in_namespace(Kind::AlertRule, "acme").count(), 1);
        assert_eq!(snapshot.in_namespace(Kind::AlertRule, "globex").count(), 0);

        assert!(index.replace(&[rule]));
        assert!(index.snapshot().device_by_uid(&device.uid).is_none());
    }

    #[test]
    fn upsert_and_remove_keep_the_device_maps_in_step() {
        let index = Index::default();
        let mut a = stored("Device", "acme", "a", json!({"class": "Server"}), json!({}));
        a.uid = Uuid::new_v4();
        index.upsert(&a);
        // Re-created under the same name: the old uid no longer resolves.
        let mut again = a.clone();
        again.uid = Uuid::new_v4();
        index.upsert(&again);
        let s = index.snapshot();
        assert!(s.device_by_uid(&a.uid).is_none());
        assert!(s.device_by_uid(&again.uid).is_some());
        index.remove(Kind::Device, "acme", "a");
        assert!(index.snapshot().is_empty());
        assert!(index.snapshot().device_by_uid(&again.uid).is_none());
    }
}
