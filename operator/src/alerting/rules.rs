//! AlertRules compiled for evaluation: durations parsed, series patterns split, and for
//! each Device the rules whose selector picks it, so a sample costs a lookup, not a scan.
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, atomic::AtomicI64},
};

use cdot_crds::{
    alert_rule::{AlertRuleSpec, Op},
    common::{parse_duration, selector_matches},
    kind::Kind,
    validation::Validate,
};
use uuid::Uuid;

use crate::index::{IndexedObject, Snapshot};

/// A series label value to match: exact, or a glob where `*` matches any run of characters.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    Any,
    Exact(String),
    Glob(Vec<String>),
}

impl Pattern {
    pub fn new(source: &str) -> Self {
        if source == "*" {
            Self::Any
        } else if source.contains('*') {
            Self::Glob(source.split('*').map(str::to_owned).collect())
        } else {
            Self::Exact(source.to_owned())
        }
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(s) => s == value,
            Self::Glob(parts) => glob_matches(parts, value),
        }
    }
}

/// `parts` are the pieces between `*`s: the first anchors the start, the last the end,
/// the middle ones are found left to right (leftmost is always safe for `*` globs).
fn glob_matches(parts: &[String], value: &str) -> bool {
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
        return true;
    };
    if parts.len() == 1 {
        return first == value;
    }
    let Some(mut rest) = value.strip_prefix(first.as_str()) else {
        return false;
    };
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle.as_str()) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last.as_str())
}

fn millis(s: &str) -> i64 {
    parse_duration(s)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// One valid, unpaused AlertRule, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Rule {
    pub namespace: String,
    pub name: String,
    pub uid: Uuid,
    pub generation: i64,
    pub spec: AlertRuleSpec,
    pub metric: &'static str,
    series: Vec<(String, Pattern)>,
    pub window_ms: i64,
    pub for_ms: i64,
    pub resolve_for_ms: i64,
    pub repeat_ms: i64,
    /// Time of the newest sample evaluated (Unix ms), kept across recompiles.
    pub last_evaluated_ms: Arc<AtomicI64>,
}

impl Rule {
    /// `None` for a spec that does not decode or validate (its reconciler says why) and
    /// for a paused rule.
    pub fn compile(object: &IndexedObject) -> Option<Self> {
        let spec: AlertRuleSpec = serde_json::from_value(object.spec.clone()).ok()?;
        if spec.paused || !spec.validate().is_empty() {
            return None;
        }
        Some(Self {
            namespace: object.namespace.clone(),
            name: object.name.clone(),
            uid: object.uid,
            generation: object.generation,
            metric: spec.metric.name(),
            series: spec
                .series
                .iter()
                .map(|(k, v)| (k.clone(), Pattern::new(v)))
                .collect(),
            window_ms: millis(&spec.reduce.window).max(1),
            for_ms: millis(&spec.for_),
            resolve_for_ms: spec
                .resolve
                .as_ref()
                .and_then(|r| r.for_.as_deref())
                .map_or(0, millis),
            repeat_ms: millis(&spec.repeat_interval),
            last_evaluated_ms: Arc::default(),
            spec,
        })
    }

    /// Whether a series of the rule's metric is one the rule watches.
    pub fn selects_series(&self, labels: &BTreeMap<String, String>) -> bool {
        self.series
            .iter()
            .all(|(k, p)| labels.get(k).is_some_and(|v| p.matches(v)))
    }

    pub fn breached(&self, value: f64) -> bool {
        self.spec
            .condition
            .op
            .compare(value, self.spec.condition.threshold)
    }

    /// Back on the safe side of the resolve threshold (the firing threshold when none is
    /// set): the negation of the condition against it.
    pub fn recovered(&self, value: f64) -> bool {
        let threshold = self
            .spec
            .resolve
            .as_ref()
            .and_then(|r| r.threshold)
            .unwrap_or(self.spec.condition.threshold);
        !self.spec.condition.op.compare(value, threshold)
    }

    /// The worse of two values for this rule (higher for `>`, lower for `<`).
    pub fn worse(&self, a: f64, b: f64) -> f64 {
        match self.spec.condition.op {
            Op::Lt | Op::Le => a.min(b),
            _ => a.max(b),
        }
    }
}

/// Every rule of the index, and which rules each Device is selected by.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<Arc<Rule>>,
    by_namespace: HashMap<String, Vec<u32>>,
    by_device: HashMap<Uuid, Vec<u32>>,
}

impl RuleSet {
    pub fn compile(snapshot: &Snapshot) -> Self {
        let rules: Vec<Arc<Rule>> = snapshot
            .of_kind(Kind::AlertRule)
            .filter_map(|o| Rule::compile(o).map(Arc::new))
            .collect();
        let mut by_namespace: HashMap<String, Vec<u32>> = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            by_namespace
                .entry(rule.namespace.clone())
                .or_default()
                .push(u32::try_from(i).unwrap_or(u32::MAX));
        }
        let mut by_device: HashMap<Uuid, Vec<u32>> = HashMap::new();
        for device in snapshot.devices() {
            let object = &device.object;
            let Some(candidates) = by_namespace.get(object.namespace.as_str()) else {
                continue;
            };
            let selected: Vec<u32> = candidates
                .iter()
                .copied()
                .filter(|i| selector_matches(&rules[*i as usize].spec.selector, &object.labels))
                .collect();
            if !selected.is_empty() {
                by_device.insert(object.uid, selected);
            }
        }
        Self {
            rules,
            by_namespace,
            by_device,
        }
    }

    /// The rules selecting `device`: as compiled, or, for a Device newer than this rule
    /// set (enrolled a moment ago), matched now from its namespace and labels.
    pub fn selected(
        &self,
        device: &Uuid,
        known: Option<(&str, &BTreeMap<String, String>)>,
    ) -> std::borrow::Cow<'_, [u32]> {
        if let Some(selected) = self.by_device.get(device) {
            return std::borrow::Cow::Borrowed(selected);
        }
        let Some((namespace, labels)) = known else {
            return std::borrow::Cow::Borrowed(&[]);
        };
        std::borrow::Cow::Owned(
            self.by_namespace
                .get(namespace)
                .into_iter()
                .flatten()
                .copied()
                .filter(|i| selector_matches(&self.rules[*i as usize].spec.selector, labels))
                .collect(),
        )
    }

    /// Keeps what the running rules learnt (last evaluation) for the same rules here.
    pub fn carry_over(&mut self, previous: &RuleSet) {
        for rule in &mut self.rules {
            if let Some(old) = previous.rule(&rule.uid)
                && let Some(rule) = Arc::get_mut(rule)
            {
                rule.last_evaluated_ms = old.last_evaluated_ms.clone();
            }
        }
    }

    pub fn get(&self, i: u32) -> &Arc<Rule> {
        &self.rules[i as usize]
    }

    /// Devices each rule selects, as (rule, device) pairs.
    pub fn selections(&self) -> impl Iterator<Item = (&Arc<Rule>, Uuid)> {
        self.by_device
            .iter()
            .flat_map(|(d, rules)| rules.iter().map(|i| (&self.rules[*i as usize], *d)))
    }

    /// Whether `rule` (by uid) still selects `device`.
    pub fn selects(&self, rule: &Uuid, device: &Uuid) -> bool {
        self.by_device
            .get(device)
            .is_some_and(|rules| rules.iter().any(|i| self.rules[*i as usize].uid == *rule))
    }

    pub fn rule(&self, uid: &Uuid) -> Option<&Arc<Rule>> {
        self.rules.iter().find(|r| r.uid == *uid)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_shells_do_for_star() {
        let p = Pattern::new("ge-0/0/*");
        assert!(p.matches("ge-0/0/1"));
        assert!(p.matches("ge-0/0/"));
        assert!(!p.matches("ge-0/1/1"));
        let p = Pattern::new("*eth*0");
        assert!(p.matches("veth10"));
        assert!(p.matches("eth0"));
        assert!(!p.matches("eth01"));
        let p = Pattern::new("a*a");
        assert!(!p.matches("a"), "the two ends may not share a character");
        assert!(p.matches("aa"));
        assert!(Pattern::new("*").matches(""));
        assert!(Pattern::new("/").matches("/"));
        assert!(!Pattern::new("/").matches("/boot"));
    }
}
