//! Silence: where it stands in time. The alerting side reads Silences from the index and
//! holds back notifications of the alerts they match (`crate::alerting::suppress`).
use cdot_crds::silence::{SilenceSpec, SilenceStatus};

use super::{Observation, World};
use crate::store::StoredObject;

pub fn observe(
    spec: &SilenceSpec,
    _object: &StoredObject,
    _world: &World<'_>,
    now: &str,
) -> Observation<SilenceStatus> {
    let now_ms = cdot_crds::silence::parse_time(now).unwrap_or_default();
    let Some((starts, ends)) = spec.range() else {
        // Validation refuses such a spec before observe runs.
        return Observation::not_ready(SilenceStatus::default(), "Invalid", "times do not parse");
    };
    let (state, message) = if now_ms < starts {
        (
            "Scheduled",
            format!(
                "will hold back notifications of matching alerts from {} to {}",
                spec.starts_at, spec.ends_at
            ),
        )
    } else if now_ms < ends {
        (
            "Active",
            format!(
                "holds back notifications of matching alerts until {}",
                spec.ends_at
            ),
        )
    } else {
        (
            "Expired",
            format!("ended at {}; holds nothing back", spec.ends_at),
        )
    };
    Observation::ready(
        SilenceStatus {
            state: Some(state.to_owned()),
            ..SilenceStatus::default()
        },
        state,
        message,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::reconcile::tests::stored;

    #[test]
    fn a_silence_is_scheduled_then_active_then_expired() {
        let object = stored(
            "Silence",
            "acme",
            "switch-upgrade",
            json!({"matchers": [{"label": "site", "value": "hq"}],
                   "startsAt": "2026-12-10T22:00:00Z", "endsAt": "2026-12-11T02:00:00Z"}),
            json!({}),
        );
        let spec: SilenceSpec = serde_json::from_value(object.spec.clone()).expect("spec");
        let world = World::new(&[]);
        for (now, state) in [
            ("2026-12-10T21:59:59Z", "Scheduled"),
            ("2026-12-10T22:00:00Z", "Active"),
            ("2026-12-11T02:00:00Z", "Expired"),
        ] {
            let o = observe(&spec, &object, &world, now);
            assert_eq!(o.status.state.as_deref(), Some(state), "{now}");
            assert_eq!(o.ready.1, state);
        }
    }
}
