//! Delivery of spooled batches, shared by the agent and the collector: the oldest first,
//! removed from the spool only once the operator acknowledged it (after its commit), dropped
//! only when the operator refuses it for good, kept for a retry on anything else.
//!
//! Delivery runs in a task of its own ([`DeliveryLoop`]) so that a slow or frozen operator
//! holds up nothing but delivery: collection goes on spooling on its own schedule. The
//! spool is locked only to pick, read and remove a batch, never while a request waits, so
//! the bound may drop the batch in flight; its answer is then harmless and counted.
use std::{sync::Arc, time::Duration};

use cdot_crds::wire::BatchAck;
use tokio::sync::{Notify, watch};

use crate::{client::AgentClient, service::unless_stopped, spool::SharedSpool};

/// What one delivery attempt did.
#[derive(Debug)]
pub enum Delivery {
    /// The spool is empty.
    Empty,
    /// The oldest batch was acknowledged and removed.
    Sent {
        /// The operator's answer.
        ack: BatchAck,
        /// The spool was full while the batch was in flight and had already dropped it
        /// (counted as dropped then; the operator has it all the same).
        already_dropped: bool,
    },
    /// The oldest batch was refused permanently (4xx) or unreadable, and dropped.
    Refused,
    /// Not delivered; the batch stays, try again after a pause.
    Retry,
}

/// Sends the oldest spooled batch (gzip JSON) to the agent route `route` (e.g. `metrics`).
pub async fn send_oldest(spool: &SharedSpool, client: &AgentClient, route: &str) -> Delivery {
    let (entry, body) = {
        let mut spool = spool.lock();
        let Some(entry) = spool.oldest().cloned() else {
            return Delivery::Empty;
        };
        match spool.read(&entry) {
            Ok(body) => (entry, body),
            Err(e) => {
                tracing::error!(batch_id = %entry.batch_id, error = %e, "unreadable spooled batch dropped");
                if let Err(e) = spool.reject(&entry) {
                    tracing::error!(error = %e, "failed to remove spooled batch");
                    return Delivery::Retry;
                }
                return Delivery::Refused;
            }
        }
    };
    match client.post_batch_gz(route, body).await {
        Ok(ack) => {
            if ack.batch_id != entry.batch_id {
                tracing::warn!(sent = %entry.batch_id, acked = %ack.batch_id, "acknowledgement names another batch");
            }
            tracing::debug!(batch_id = %entry.batch_id, stored = ack.stored, duplicate = ack.duplicate, "batch acknowledged");
            match spool.lock().remove(&entry) {
                Ok(present) => {
                    if !present {
                        tracing::warn!(batch_id = %entry.batch_id, "batch acknowledged after the full spool had dropped it");
                    }
                    Delivery::Sent {
                        ack,
                        already_dropped: !present,
                    }
                }
                Err(e) => {
                    tracing::error!(batch_id = %entry.batch_id, error = %e, "failed to remove acknowledged batch");
                    Delivery::Retry
                }
            }
        }
        Err(e) if e.is_permanent() => {
            let mut spool = spool.lock();
            tracing::error!(
                batch_id = %entry.batch_id,
                route,
                status = ?e.status(),
                error = %e,
                dropped_total = spool.counters().dropped_rejected + 1,
                "operator refused batch; dropped"
            );
            if let Err(e) = spool.reject(&entry) {
                tracing::error!(batch_id = %entry.batch_id, error = %e, "failed to remove refused batch");
                return Delivery::Retry;
            }
            Delivery::Refused
        }
        Err(e) => {
            tracing::warn!(
                batch_id = %entry.batch_id,
                route,
                kind = e.label(),
                error = %e,
                spooled = spool.lock().len(),
                "sending batch failed; will retry"
            );
            Delivery::Retry
        }
    }
}

/// The delivery task: drains the spool oldest first, waits for [`DeliveryLoop::wake`]
/// when it is empty, and backs off (doubling, up to a bound) after a failed attempt.
#[derive(Debug)]
pub struct DeliveryLoop {
    /// The spool to drain.
    pub spool: SharedSpool,
    /// The client to send with; certificate renewal replaces it.
    pub client: watch::Receiver<AgentClient>,
    /// The agent route batches go to.
    pub route: &'static str,
    /// First pause after a failed attempt.
    pub backoff_min: Duration,
    /// Longest pause.
    pub backoff_max: Duration,
    /// Notified by whoever spools a batch.
    pub wake: Arc<Notify>,
}

impl DeliveryLoop {
    /// Runs until `stop` turns true (or its sender is gone), telling `on_outcome` what each
    /// attempt did. A send in flight then is abandoned: its batch stays in the spool.
    pub async fn run(self, mut stop: watch::Receiver<bool>, mut on_outcome: impl FnMut(&Delivery)) {
        let mut backoff = self.backoff_min;
        loop {
            // Cloned per attempt, so that a renewed certificate is used from the next one.
            let client = self.client.borrow().clone();
            let send = send_oldest(&self.spool, &client, self.route);
            let Some(outcome) = unless_stopped(&mut stop, send).await else {
                return;
            };
            on_outcome(&outcome);
            let pause = match outcome {
                Delivery::Empty => {
                    // A batch spooled since the spool was found empty left a permit.
                    if unless_stopped(&mut stop, self.wake.notified())
                        .await
                        .is_none()
                    {
                        return;
                    }
                    continue;
                }
                Delivery::Sent { .. } | Delivery::Refused => {
                    backoff = self.backoff_min;
                    continue;
                }
                Delivery::Retry => {
                    let pause = backoff;
                    backoff = (backoff * 2).min(self.backoff_max);
                    pause
                }
            };
            if unless_stopped(&mut stop, tokio::time::sleep(pause))
                .await
                .is_none()
            {
                return;
            }
        }
    }
}
