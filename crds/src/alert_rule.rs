//! `AlertRule` (`ar`): a threshold on a catalogue metric over the devices a selector picks.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::metrics_catalog::Metric;
use crate::{
    common::{
        Condition, DURATION_PATTERN, LabelSelector, check_duration_into, check_unique,
        validate_selector,
    },
    excerpt::{excerpt, inline},
    validation::{
        Errors, FieldError, Validate, check_label_key, check_label_value, is_dns1123_subdomain,
    },
};

/// CEL: the resolve threshold sits on the safe side of the firing threshold.
pub const RESOLVE_THRESHOLD_RULE: &str = "!has(self.resolve) || !has(self.resolve.threshold) || \
(self.condition.op in ['>', '>='] && self.resolve.threshold <= self.condition.threshold) || \
(self.condition.op in ['<', '<='] && self.resolve.threshold >= self.condition.threshold)";

/// Desired state of an alert rule.
#[derive(CustomResource, KubeSchema, Clone, Debug, Serialize, Deserialize, PartialEq)]
#[kube(
    group = "rmm.cdot.io",
    version = "v1alpha1",
    kind = "AlertRule",
    namespaced,
    status = "AlertRuleStatus",
    shortname = "ar",
    category = "rmm",
    doc = "Fires an alert when a catalogue metric of selected devices crosses a threshold.",
    printcolumn(name = "Metric", type_ = "string", json_path = ".spec.metric"),
    printcolumn(
        name = "Op",
        type_ = "string",
        json_path = ".spec.condition.op",
        priority = 1
    ),
    printcolumn(
        name = "Threshold",
        type_ = "number",
        json_path = ".spec.condition.threshold",
        priority = 1
    ),
    printcolumn(name = "Severity", type_ = "string", json_path = ".spec.severity"),
    printcolumn(
        name = "Devices",
        type_ = "integer",
        json_path = ".status.matchedDevices"
    ),
    printcolumn(name = "Firing", type_ = "integer", json_path = ".status.firing"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new(RESOLVE_THRESHOLD_RULE).message("resolve.threshold must be on the safe side of condition.threshold (<= for > and >=, >= for < and <=) and is not allowed with == or !=").field_path(".resolve.threshold"))]
pub struct AlertRuleSpec {
    /// Description template, rendered into each alert and notification (minijinja, the
    /// variables of `summary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,
    /// Devices (in this namespace) the rule applies to, by label; empty selects all devices.
    #[serde(default)]
    pub selector: LabelSelector,
    /// Metric from the catalogue: cpu, memory, disk, networkIn, networkOut, deviceOffline,
    /// interfaceUtilisation, interfaceErrors, interfaceDiscards, interfaceDown, probeLatency, probeJitter, probeLoss, serviceFailed, patchFailed.
    pub metric: Metric,
    /// Series label match: only series whose labels match (values are exact or `*` globs),
    /// e.g. `{mount: "/"}` for disk, `{interface: "ge-0/0/*"}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub series: BTreeMap<String, String>,
    /// How samples in the evaluation window are reduced to one value per series.
    #[serde(default)]
    pub reduce: Reduce,
    /// The firing condition on the reduced value.
    pub condition: Threshold,
    /// How long the condition must hold before the alert fires (pending time), e.g. `5m`.
    #[serde(rename = "for", default = "default_for")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub for_: String,
    /// Hysteresis: when the alert resolves. Defaults to the negated condition, immediately.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve: Option<Resolve>,
    /// Severity of the alert.
    #[serde(default)]
    pub severity: Severity,
    /// Summary template (minijinja): `{{ device }}`, `{{ namespace }}`, `{{ site }}`,
    /// `{{ rule }}`, `{{ metric }}`, `{{ unit }}`, `{{ value }}`, `{{ peak }}`,
    /// `{{ threshold }}`, `{{ op }}`, `{{ severity }}`, `{{ state }}`, `{{ series.NAME }}`,
    /// `{{ labels.NAME }}`, `{{ device_labels.NAME }}`; an unknown variable is refused.
    #[serde(default = "default_summary")]
    #[schemars(length(min = 1, max = 1024))]
    pub summary: String,
    /// Names of NotificationChannels (same namespace) that receive the alert.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 253)))]
    pub channels: Vec<String>,
    /// Re-notify while still firing after this long, e.g. `4h`; `0s` never repeats.
    #[serde(default = "default_repeat_interval")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub repeat_interval: String,
    /// Labels whose values group alerts into one notification (e.g. `rmm.cdot.io/site`);
    /// empty notifies per device and series.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(min = 1, max = 317)))]
    pub group_by: Vec<String>,
    /// Extra labels attached to alerts from this rule (routing, ticket fields).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Stop evaluating without deleting the rule.
    #[serde(default)]
    pub paused: bool,
}

fn default_for() -> String {
    "0s".into()
}
fn default_summary() -> String {
    "{{metric}} on {{device}} is {{value}} (threshold {{threshold}})".into()
}
fn default_repeat_interval() -> String {
    "4h".into()
}
fn default_window() -> String {
    "5m".into()
}

/// Reduction of the window's samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Reduce {
    /// Reduction function.
    #[serde(default)]
    pub function: ReduceFunction,
    /// Window of samples, e.g. `5m` (at most 1d).
    #[serde(default = "default_window")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub window: String,
}

impl Default for Reduce {
    fn default() -> Self {
        Self {
            function: ReduceFunction::default(),
            window: default_window(),
        }
    }
}

/// Reduction function.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ReduceFunction {
    /// Mean.
    #[default]
    Avg,
    /// Maximum.
    Max,
    /// Minimum.
    Min,
    /// Latest sample.
    Last,
}

/// Comparison operator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Op {
    /// Greater than.
    #[default]
    #[serde(rename = ">")]
    Gt,
    /// Greater than or equal.
    #[serde(rename = ">=")]
    Ge,
    /// Less than.
    #[serde(rename = "<")]
    Lt,
    /// Less than or equal.
    #[serde(rename = "<=")]
    Le,
    /// Equal.
    #[serde(rename = "==")]
    Eq,
    /// Not equal.
    #[serde(rename = "!=")]
    Ne,
}

impl Op {
    /// Applies the operator.
    pub fn compare(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
            Op::Eq => value == threshold,
            Op::Ne => value != threshold,
        }
    }
}

/// Firing condition: `value <op> threshold`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Threshold {
    /// Comparison operator.
    #[serde(default)]
    pub op: Op,
    /// Threshold in the metric's unit (percent metrics: 0-100).
    pub threshold: f64,
}

/// Hysteresis settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resolve {
    /// The alert resolves once the value is back past this threshold (must be on the safe
    /// side: <= the threshold for `>`/`>=`, >= it for `<`/`<=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// How long the value must stay resolved before the alert resolves, e.g. `10m`.
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub for_: Option<String>,
}

/// Alert severity.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
pub enum Severity {
    /// Informational.
    Info,
    /// Needs attention.
    #[default]
    Warning,
    /// Needs action now.
    Critical,
}

/// Observed state of an alert rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertRuleStatus {
    /// The `metadata.generation` last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions: `Ready` (see below), `Reconciling` (`False` with reason `Reconciled` once
    /// `observedGeneration` is reconciled), `Degraded` (`True` with reason `ValidationFailed`
    /// when the spec is invalid, the message naming each field; `False` otherwise).
    /// `Ready` is `True` once the spec is valid and every channel in `spec.channels` exists
    /// (reason `Accepted`: evaluated on ingest; `Paused` while `spec.paused`).
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Devices of the namespace the selector currently matches; not updated while the spec
    /// is invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_devices: Option<u32>,
    /// Alerts of this rule firing now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firing: Option<u32>,
    /// Time of the newest sample evaluated (RFC 3339, to the minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_evaluation: Option<String>,
}

/// Whether the resolve threshold is on the safe side of the firing threshold.
pub fn resolve_threshold_ok(op: Op, threshold: f64, resolve: f64) -> bool {
    match op {
        Op::Gt | Op::Ge => resolve <= threshold,
        Op::Lt | Op::Le => resolve >= threshold,
        Op::Eq | Op::Ne => false,
    }
}

impl Validate for AlertRuleSpec {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Errors::default();
        validate_selector(&self.selector, "spec.selector", &mut errs);
        let info = self.metric.info();
        for (k, v) in &self.series {
            if !info.labels.contains(&k.as_str()) {
                errs.push(
                    format!("spec.series.{}", inline(k)),
                    if info.labels.is_empty() {
                        format!("metric {} has no series labels", info.name)
                    } else {
                        format!(
                            "metric {} has series labels {}; not {}",
                            info.name,
                            info.labels.join(", "),
                            excerpt(k)
                        )
                    },
                );
            }
            if v.is_empty() {
                errs.push(
                    format!("spec.series.{}", inline(k)),
                    "value must not be empty (use \"*\" for any)",
                );
            }
        }
        if let Some(w) =
            check_duration_into(&mut errs, "spec.reduce.window", &self.reduce.window, true)
            && w > std::time::Duration::from_secs(86_400)
        {
            errs.push("spec.reduce.window", "window must be at most 1d");
        }
        let t = self.condition.threshold;
        if !t.is_finite() {
            errs.push(
                "spec.condition.threshold",
                "threshold must be a finite number",
            );
        } else if self.metric.is_percent() && !(0.0..=100.0).contains(&t) {
            errs.push(
                "spec.condition.threshold",
                format!(
                    "metric {} is a percentage: threshold must be within 0-100",
                    info.name
                ),
            );
        }
        check_duration_into(&mut errs, "spec.for", &self.for_, false);
        if let Some(r) = &self.resolve {
            if let Some(rt) = r.threshold
                && !resolve_threshold_ok(self.condition.op, t, rt)
            {
                let msg = match self.condition.op {
                    Op::Gt | Op::Ge => format!(
                        "must be <= condition.threshold ({t}) for op {}",
                        op_str(self.condition.op)
                    ),
                    Op::Lt | Op::Le => format!(
                        "must be >= condition.threshold ({t}) for op {}",
                        op_str(self.condition.op)
                    ),
                    Op::Eq | Op::Ne => "not allowed with op == or !=".to_owned(),
                };
                errs.push("spec.resolve.threshold", msg);
            }
            if let Some(f) = &r.for_ {
                check_duration_into(&mut errs, "spec.resolve.for", f, false);
            }
        }
        errs.check(
            "spec.summary",
            crate::template::check(&self.summary, crate::template::ALERT_VARIABLES),
        );
        if let Some(d) = &self.description {
            errs.check(
                "spec.description",
                crate::template::check(d, crate::template::ALERT_VARIABLES),
            );
        }
        for (i, c) in self.channels.iter().enumerate() {
            if !is_dns1123_subdomain(c) {
                errs.push(
                    format!("spec.channels[{i}]"),
                    format!("{} is not a valid NotificationChannel name", excerpt(c)),
                );
            }
        }
        check_unique(
            &mut errs,
            "spec.channels",
            "channel",
            self.channels.iter().map(String::as_str),
        );
        check_duration_into(
            &mut errs,
            "spec.repeatInterval",
            &self.repeat_interval,
            false,
        );
        for (i, g) in self.group_by.iter().enumerate() {
            if g != "device" && g != "metric" && !info.labels.contains(&g.as_str()) {
                errs.check(format!("spec.groupBy[{i}]"), check_label_key(g));
            }
        }
        check_unique(
            &mut errs,
            "spec.groupBy",
            "label",
            self.group_by.iter().map(String::as_str),
        );
        for (k, v) in &self.labels {
            errs.check(format!("spec.labels.{k}"), check_label_key(k));
            errs.check(format!("spec.labels.{k}"), check_label_value(v));
        }
        errs.into_vec()
    }
}

fn op_str(op: Op) -> &'static str {
    match op {
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Eq => "==",
        Op::Ne => "!=",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::test_support::{doc, err_at, ok};

    fn base() -> Value {
        doc(
            "AlertRule",
            json!({
                "selector": {"matchLabels": {"role": "server"}},
                "metric": "disk",
                "series": {"mount": "/"},
                "condition": {"op": ">", "threshold": 90},
                "resolve": {"threshold": 80, "for": "5m"},
                "channels": ["slack"],
            }),
        )
    }

    #[test]
    fn base_is_valid_with_defaults() {
        ok(&base(), json!({}));
        let crate::manifest::Document::Resource(o) =
            crate::manifest::validate_document(&base()).expect("valid")
        else {
            panic!("not a resource")
        };
        assert_eq!(o.spec["reduce"], json!({"function": "avg", "window": "5m"}));
        assert_eq!(o.spec["severity"], "Warning");
        assert_eq!(o.spec["for"], "0s");
        assert_eq!(o.spec["repeatInterval"], "4h");
    }

    #[test]
    fn schema_level() {
        err_at(
            &base(),
            json!({"spec": {"metric": "temperature"}}),
            "spec.metric",
        );
        err_at(
            &base(),
            json!({"spec": {"condition": {"op": "=>"}}}),
            "spec.condition.op",
        );
        err_at(
            &base(),
            json!({"spec": {"condition": {"threshold": "high"}}}),
            "spec.condition.threshold",
        );
        err_at(
            &base(),
            json!({"spec": {"condition": null}}),
            "spec.condition",
        );
        err_at(
            &base(),
            json!({"spec": {"severity": "Disaster"}}),
            "spec.severity",
        );
        err_at(
            &base(),
            json!({"spec": {"reduce": {"function": "median"}}}),
            "spec.reduce.function",
        );
        err_at(&base(), json!({"spec": {"for": "5 minutes"}}), "spec.for");
        err_at(&base(), json!({"spec": {"summary": ""}}), "spec.summary");
        err_at(
            &base(),
            json!({"spec": {"resolve": {"after": "5m"}}}),
            "spec.resolve.after",
        );
    }

    #[test]
    fn resolve_threshold_on_the_safe_side() {
        err_at(
            &base(),
            json!({"spec": {"resolve": {"threshold": 95}}}),
            "spec.resolve.threshold",
        );
        ok(&base(), json!({"spec": {"resolve": {"threshold": 90}}}));
        err_at(
            &base(),
            json!({"spec": {"condition": {"op": ">="}, "resolve": {"threshold": 91}}}),
            "spec.resolve.threshold",
        );
        let lt = json!({"spec": {"metric": "memory", "series": null, "condition": {"op": "<", "threshold": 10}, "resolve": {"threshold": 5}}});
        err_at(&base(), lt, "spec.resolve.threshold");
        ok(
            &base(),
            json!({"spec": {"metric": "memory", "series": null, "condition": {"op": "<=", "threshold": 10}, "resolve": {"threshold": 15}}}),
        );
        err_at(
            &base(),
            json!({"spec": {"condition": {"op": "=="}, "resolve": {"threshold": 90}}}),
            "spec.resolve.threshold",
        );
        ok(
            &base(),
            json!({"spec": {"condition": {"op": "=="}, "resolve": {"threshold": null}}}),
        );
        assert!(super::resolve_threshold_ok(super::Op::Gt, 90.0, 80.0));
        assert!(!super::resolve_threshold_ok(super::Op::Le, 10.0, 5.0));
    }

    #[test]
    fn series_labels_come_from_the_catalogue() {
        err_at(
            &base(),
            json!({"spec": {"series": {"interface": "eth0"}}}),
            "spec.series.interface",
        );
        err_at(
            &base(),
            json!({"spec": {"metric": "cpu", "series": {"mount": "/"}}}),
            "spec.series.mount",
        );
        err_at(
            &base(),
            json!({"spec": {"series": {"mount": ""}}}),
            "spec.series.mount",
        );
        ok(
            &base(),
            json!({"spec": {"metric": "interfaceErrors", "series": {"mount": null, "interface": "ge-0/0/*", "direction": "in"}, "condition": {"threshold": 5}, "resolve": {"threshold": 1}}}),
        );
    }

    #[test]
    fn percent_thresholds() {
        err_at(
            &base(),
            json!({"spec": {"condition": {"threshold": 150}, "resolve": null}}),
            "spec.condition.threshold",
        );
        ok(
            &base(),
            json!({"spec": {"metric": "probeLatency", "series": null, "condition": {"threshold": 150}, "resolve": null}}),
        );
    }

    #[test]
    fn durations_parse() {
        err_at(
            &base(),
            json!({"spec": {"reduce": {"window": "0s"}}}),
            "spec.reduce.window",
        );
        err_at(
            &base(),
            json!({"spec": {"reduce": {"window": "2d"}}}),
            "spec.reduce.window",
        );
        ok(
            &base(),
            json!({"spec": {"reduce": {"window": "1h"}, "for": "1h30m", "repeatInterval": "0s"}}),
        );
        err_at(
            &base(),
            json!({"spec": {"repeatInterval": "4 hours"}}),
            "spec.repeatInterval",
        );
    }

    #[test]
    fn channels_group_by_labels_selector() {
        err_at(
            &base(),
            json!({"spec": {"channels": ["Slack!"]}}),
            "spec.channels[0]",
        );
        err_at(
            &base(),
            json!({"spec": {"channels": ["a", "a"]}}),
            "spec.channels[1]",
        );
        err_at(
            &base(),
            json!({"spec": {"groupBy": ["bad key!"]}}),
            "spec.groupBy[0]",
        );
        ok(
            &base(),
            json!({"spec": {"groupBy": ["rmm.cdot.io/site", "mount", "device"]}}),
        );
        err_at(
            &base(),
            json!({"spec": {"labels": {"team": "bad value!"}}}),
            "spec.labels.team",
        );
        err_at(
            &base(),
            json!({"spec": {"selector": {"matchExpressions": [{"key": "role", "operator": "In"}]}}}),
            "spec.selector.matchExpressions[0].values",
        );
    }
}
