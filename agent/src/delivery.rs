//! Delivery of spooled batches, shared by the agent and the collector: the oldest first,
//! removed from the spool only once the operator acknowledged it (after its commit), dropped
//! only when the operator refuses it for good, kept for a retry on anything else.
use cdot_crds::wire::BatchAck;

use crate::{client::AgentClient, spool::Spool};

/// What one delivery attempt did.
#[derive(Debug)]
pub enum Delivery {
    /// The spool is empty.
    Empty,
    /// The oldest batch was acknowledged and removed.
    Sent(BatchAck),
    /// The oldest batch was refused permanently (4xx) or unreadable, and dropped.
    Refused,
    /// Not delivered; the batch stays, try again after a pause.
    Retry,
}

/// Sends the oldest spooled batch (gzip JSON) to the agent route `route` (e.g. `metrics`).
pub async fn send_oldest(spool: &mut Spool, client: &AgentClient, route: &str) -> Delivery {
    let Some(entry) = spool.oldest().cloned() else {
        return Delivery::Empty;
    };
    let body = match spool.read(&entry) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(batch_id = %entry.batch_id, error = %e, "unreadable spooled batch dropped");
            if let Err(e) = spool.reject(&entry) {
                tracing::error!(error = %e, "failed to remove spooled batch");
                return Delivery::Retry;
            }
            return Delivery::Refused;
        }
    };
    match client.post_batch_gz(route, body).await {
        Ok(ack) => {
            if ack.batch_id != entry.batch_id {
                tracing::warn!(sent = %entry.batch_id, acked = %ack.batch_id, "acknowledgement names another batch");
            }
            tracing::debug!(batch_id = %entry.batch_id, stored = ack.stored, duplicate = ack.duplicate, "batch acknowledged");
            if let Err(e) = spool.remove(&entry) {
                tracing::error!(batch_id = %entry.batch_id, error = %e, "failed to remove acknowledged batch");
                return Delivery::Retry;
            }
            Delivery::Sent(ack)
        }
        Err(e) if e.is_permanent() => {
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
                spooled = spool.len(),
                "sending batch failed; will retry"
            );
            Delivery::Retry
        }
    }
}
