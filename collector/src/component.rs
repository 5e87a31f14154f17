//! Supervision of the components that run one task per assigned target (the SNMP poller,
//! the probes): a task starts for each new target, restarts when its target changes, and
//! stops when the target goes away or on shutdown.
use std::{collections::HashMap, future::Future, hash::Hash};

use prometheus_client::metrics::gauge::Gauge;
use tokio::{
    sync::{mpsc, watch},
    task::{AbortHandle, JoinHandle, JoinSet},
};

/// A component that serves each of its targets with a task of its own. Its logs stay in
/// its module (so that their target does not change), hence the hooks.
pub(crate) trait Component: Send + 'static {
    /// What the operator assigns.
    type Target: Clone + PartialEq + Send + Sync + 'static;
    /// A target's identity: a changed target with the same key replaces the old one.
    type Key: Eq + Hash + Send + 'static;
    /// What the tasks send to the sink.
    type Output: Send + 'static;

    fn key(target: &Self::Target) -> Self::Key;
    /// The task serving `target`, or `None` to keep the target without one (it is then
    /// not started again until it changes).
    fn start(
        &self,
        target: &Self::Target,
        sink: &mpsc::Sender<Self::Output>,
    ) -> Option<impl Future<Output = ()> + Send + 'static>;
    /// The gauge of targets with a running task.
    fn running(&self) -> &Gauge;
    /// Logs a target ignored because an earlier one has the same key.
    fn duplicate(&self, target: &Self::Target);
    /// Logs a target no longer assigned.
    fn removed(&self, target: &Self::Target);
    /// Logs the end of the component.
    fn stopped(&self);
}

/// Starts `component` on the latest value of `targets`, following its changes. It ends
/// when `shutdown` becomes true (or its sender is dropped), or when `sink` is closed.
pub(crate) fn spawn<C: Component>(
    component: C,
    mut targets: watch::Receiver<Vec<C::Target>>,
    sink: mpsc::Sender<C::Output>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tasks = JoinSet::new();
        let mut running = HashMap::new();
        let mut targets_open = true;
        loop {
            if targets_open {
                let wanted = targets.borrow_and_update().clone();
                reconcile(&component, &mut running, &mut tasks, wanted, &sink);
            }
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => break,
                _ = sink.closed() => break,
                changed = targets.changed(), if targets_open => {
                    // Without a sender the last targets are kept until shutdown.
                    targets_open = changed.is_ok();
                }
                Some(_) = tasks.join_next() => {}
            }
        }
        tasks.shutdown().await;
        component.running().set(0);
        component.stopped();
    })
}

/// Starts, restarts and stops per-target tasks so that exactly `wanted` are served.
fn reconcile<C: Component>(
    component: &C,
    running: &mut HashMap<C::Key, (C::Target, Option<AbortHandle>)>,
    tasks: &mut JoinSet<()>,
    wanted: Vec<C::Target>,
    sink: &mpsc::Sender<C::Output>,
) {
    let mut next = HashMap::with_capacity(wanted.len());
    for target in wanted {
        let key = C::key(&target);
        if next.contains_key(&key) {
            component.duplicate(&target);
            continue;
        }
        match running.remove(&key) {
            Some((current, handle)) if current == target => {
                next.insert(key, (current, handle));
            }
            previous => {
                if let Some((_, Some(handle))) = previous {
                    handle.abort();
                }
                let handle = component.start(&target, sink).map(|task| tasks.spawn(task));
                next.insert(key, (target, handle));
            }
        }
    }
    for (_, (target, handle)) in running.drain() {
        component.removed(&target);
        if let Some(handle) = handle {
            handle.abort();
        }
    }
    let active = next.values().filter(|(_, handle)| handle.is_some()).count();
    component
        .running()
        .set(i64::try_from(active).unwrap_or(i64::MAX));
    *running = next;
}
