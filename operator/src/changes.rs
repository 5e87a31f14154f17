//! "Something an object's status depends on changed outside its desired state": an agent
//! enrolled, a device went silent. Standalone mode answers with a reconcile pass soon;
//! Kubernetes mode reconciles exactly the named objects.
use std::sync::Arc;

use cdot_crds::kind::Kind;
use tokio::sync::{Notify, broadcast};

/// Names sent and not yet taken beyond this are dropped; the periodic resync catches up.
const BACKLOG: usize = 16_384;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

#[derive(Clone)]
pub struct Changes {
    soon: Arc<Notify>,
    objects: broadcast::Sender<ObjectKey>,
}

impl Default for Changes {
    fn default() -> Self {
        Self {
            soon: Arc::default(),
            objects: broadcast::channel(BACKLOG).0,
        }
    }
}

impl Changes {
    pub fn changed(&self, kind: Kind, namespace: &str, name: &str) {
        self.soon.notify_one();
        // No receiver (standalone mode, or a replica that is not the leader) is fine.
        let _ = self.objects.send(ObjectKey {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        });
    }

    /// Only a status field another writer owns changed (alert counts, deliveries): the
    /// store already holds it, so standalone mode has nothing to do; Kubernetes mode
    /// reconciles the object to copy it to the API server.
    pub fn status_changed(&self, kind: Kind, namespace: &str, name: &str) {
        let _ = self.objects.send(ObjectKey {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        });
    }

    /// Resolves after the next change (one wake-up for any number of changes).
    pub async fn notified(&self) {
        self.soon.notified().await;
    }

    /// The names of changed objects from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ObjectKey> {
        self.objects.subscribe()
    }
}
