//! Kubernetes condition bookkeeping: a transition time moves only when the status changes.
use cdot_crds::common::Condition;

/// Returns `wanted`, each stamped with `generation`, keeping the previous
/// `lastTransitionTime` of conditions whose status did not change. Conditions of types that
/// this reconciler does not produce are kept as they were (another writer owns them).
pub fn merge_conditions(
    previous: &[Condition],
    wanted: Vec<Condition>,
    generation: i64,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = wanted
        .into_iter()
        .map(|mut condition| {
            if let Some(old) = previous.iter().find(|p| p.type_ == condition.type_)
                && old.status == condition.status
                && !old.last_transition_time.is_empty()
            {
                condition
                    .last_transition_time
                    .clone_from(&old.last_transition_time);
            }
            condition.observed_generation = Some(generation);
            condition
        })
        .collect();
    for old in previous {
        if !out.iter().any(|c| c.type_ == old.type_) {
            out.push(old.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use cdot_crds::common::ConditionStatus;

    use super::*;

    fn ready(status: ConditionStatus, at: &str) -> Condition {
        Condition::new("Ready", status, "R", "m", at)
    }

    #[test]
    fn unchanged_status_keeps_transition_time() {
        let merged = merge_conditions(
            &[ready(ConditionStatus::True, "t1")],
            vec![ready(ConditionStatus::True, "t2")],
            3,
        );
        assert_eq!(merged[0].last_transition_time, "t1");
        assert_eq!(merged[0].observed_generation, Some(3));
    }

    #[test]
    fn changed_status_takes_new_time() {
        let merged = merge_conditions(
            &[ready(ConditionStatus::True, "t1")],
            vec![ready(ConditionStatus::False, "t2")],
            1,
        );
        assert_eq!(merged[0].last_transition_time, "t2");
    }

    #[test]
    fn conditions_of_other_writers_are_kept() {
        let enrolled = Condition::new("Enrolled", ConditionStatus::True, "E", "m", "t0");
        let merged = merge_conditions(
            std::slice::from_ref(&enrolled),
            vec![ready(ConditionStatus::True, "t2")],
            1,
        );
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[1], enrolled);
    }
}
