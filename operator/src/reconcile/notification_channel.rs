//! NotificationChannel: accepted once valid; delivery counts are written by the sender.
use cdot_crds::notification_channel::NotificationChannelSpec;
use serde_json::json;

use super::{Observation, World};
use crate::store::StoredObject;

pub fn observe(
    spec: &NotificationChannelSpec,
    _object: &StoredObject,
    _world: &World<'_>,
) -> Observation {
    let kind = serde_json::to_value(spec.type_)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    Observation::ready(
        json!({}),
        "Accepted",
        format!("{kind} channel ready to deliver"),
    )
}
