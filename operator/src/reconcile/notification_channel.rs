//! NotificationChannel: accepted once valid. Delivery (`crate::alerting::dispatch`) counts
//! what it delivers in the status fields it owns; the Secrets a channel names are read at
//! delivery, so a missing one shows in `lastError`, not here.
use cdot_crds::notification_channel::{NotificationChannelSpec, NotificationChannelStatus};

use super::{Observation, World};
use crate::store::StoredObject;

/// Ends the `Ready` message: where delivery results show.
pub const DELIVERY: &str =
    "delivered through the outbox; delivered, failed and lastError report the results";

pub fn observe(
    spec: &NotificationChannelSpec,
    _object: &StoredObject,
    _world: &World<'_>,
) -> Observation<NotificationChannelStatus> {
    let kind = serde_json::to_value(spec.type_)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    Observation::ready(
        NotificationChannelStatus::default(),
        "Accepted",
        format!("valid {kind} channel; {DELIVERY}"),
    )
}

#[cfg(test)]
mod tests {
    use cdot_crds::common::ConditionStatus;
    use serde_json::json;

    use super::*;
    use crate::reconcile::tests::stored;

    /// It said "ready to deliver" while nothing delivers.
    #[test]
    fn ready_does_not_claim_delivery() {
        let channel = stored(
            "NotificationChannel",
            "acme",
            "ops",
            json!({ "type": "Webhook", "webhook": { "urlSecretRef": { "name": "slack", "key": "url" } } }),
            json!({}),
        );
        let spec: NotificationChannelSpec =
            serde_json::from_value(channel.spec.clone()).expect("spec");
        let observation = observe(&spec, &channel, &World::new(&[]));
        assert_eq!(observation.ready.0, ConditionStatus::True);
        assert_eq!(
            observation.ready.2,
            "valid Webhook channel; delivered through the outbox; delivered, failed and lastError report the results"
        );
        assert_eq!(observation.status, NotificationChannelStatus::default());
    }
}
