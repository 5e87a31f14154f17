//! `Silence` (`sil`): holds back notifications of matching alerts for a time range,
//! committed to git beside the rules (a planned change window, a known-broken link). The
//! alerts are still recorded. Silences made through the API live in the database; both
//! kinds apply alike.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    common::Condition,
    excerpt::excerpt,
    validation::{Errors, FieldError, Validate},
    wire::alert::Matcher,
};

/// Most matchers a silence has.
pub const MAX_MATCHERS: usize = 16;

/// Desired state of a silence.
#[derive(CustomResource, KubeSchema, Clone, Debug, Serialize, Deserialize, PartialEq)]
#[kube(
    group = "rmm.cdot.io",
    version = "v1alpha1",
    kind = "Silence",
    namespaced,
    status = "SilenceStatus",
    shortname = "sil",
    category = "rmm",
    doc = "Holds back notifications of the alerts its matchers select between startsAt and endsAt; the alerts are still recorded.",
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Starts", type_ = "string", json_path = ".spec.startsAt"),
    printcolumn(name = "Ends", type_ = "string", json_path = ".spec.endsAt"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SilenceSpec {
    /// All must match an alert's labels: `device`, `rule`, `metric`, `severity`, `site`, a
    /// series label (`mount`, `interface`, ...) or a label of the rule; values are exact or
    /// `*` globs. At least one (an empty list would silence the whole namespace).
    #[schemars(length(min = 1, max = 16))]
    pub matchers: Vec<Matcher>,
    /// Start (RFC 3339).
    pub starts_at: String,
    /// End (RFC 3339), after `startsAt`. An ended silence may stay in git as a record.
    pub ends_at: String,
    /// Why (a change ticket, a known outage), shown with the alerts it holds back.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 2048))]
    pub comment: String,
}

/// Observed state of a silence.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SilenceStatus {
    /// The `metadata.generation` last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions: `Ready` (see below), `Reconciling` (`False` with reason `Reconciled` once
    /// `observedGeneration` is reconciled), `Degraded` (`True` with reason `ValidationFailed`
    /// when the spec is invalid, the message naming each field; `False` otherwise).
    /// `Ready` is `True` once the spec is valid, with reason `Scheduled`, `Active` or
    /// `Expired` as of the last reconcile.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// `Scheduled`, `Active` or `Expired` as of the last reconcile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// Checks silence matchers (shared with the silences API), errors under `path`.
pub fn validate_matchers(matchers: &[Matcher], path: &str) -> Vec<FieldError> {
    let mut errs = Errors::default();
    if matchers.is_empty() {
        errs.push(
            path,
            "at least one matcher is needed (an empty list would silence the whole namespace)",
        );
    }
    if matchers.len() > MAX_MATCHERS {
        errs.push(path, format!("at most {MAX_MATCHERS} matchers"));
    }
    for (i, m) in matchers.iter().enumerate() {
        if m.label.is_empty() || m.label.len() > 317 {
            errs.push(
                format!("{path}[{i}].label"),
                format!("label must be 1 to 317 bytes, not {}", excerpt(&m.label)),
            );
        }
        if m.value.is_empty() || m.value.len() > 256 {
            errs.push(
                format!("{path}[{i}].value"),
                format!("value must be 1 to 256 bytes, not {}", excerpt(&m.value)),
            );
        }
    }
    errs.into_vec()
}

/// An RFC 3339 time as Unix milliseconds.
pub fn parse_time(value: &str) -> Result<i64, String> {
    value
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| format!("{} is not an RFC 3339 time: {e}", excerpt(value)))
}

impl SilenceSpec {
    /// `[start, end)` in Unix ms; `None` when a time does not parse (validation says which).
    pub fn range(&self) -> Option<(i64, i64)> {
        Some((
            parse_time(&self.starts_at).ok()?,
            parse_time(&self.ends_at).ok()?,
        ))
    }
}

impl Validate for SilenceSpec {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Errors(validate_matchers(&self.matchers, "spec.matchers"));
        let starts = errs.check("spec.startsAt", parse_time(&self.starts_at));
        let ends = errs.check("spec.endsAt", parse_time(&self.ends_at));
        if let (Some(starts), Some(ends)) = (starts, ends)
            && ends <= starts
        {
            errs.push("spec.endsAt", "endsAt must be after startsAt");
        }
        if self.comment.len() > 2048 {
            errs.push("spec.comment", "comment is longer than 2048 bytes");
        }
        errs.into_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(value: serde_json::Value) -> SilenceSpec {
        serde_json::from_value(value).expect("decodes")
    }

    #[test]
    fn a_silence_needs_matchers_and_an_end_after_its_start() {
        let ok = spec(serde_json::json!({
            "matchers": [{"label": "site", "value": "hq"}],
            "startsAt": "2026-12-10T22:00:00Z", "endsAt": "2026-12-11T02:00:00Z",
            "comment": "core switch upgrade",
        }));
        assert!(ok.validate().is_empty());
        assert_eq!(ok.range(), Some((1_796_940_000_000, 1_796_954_400_000)));
        let bad = spec(serde_json::json!({
            "matchers": [], "startsAt": "2026-12-11T02:00:00Z", "endsAt": "2026-12-10T22:00:00Z",
        }));
        let paths: Vec<String> = bad.validate().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["spec.matchers", "spec.endsAt"]);
        let bad = spec(serde_json::json!({
            "matchers": [{"label": "", "value": "x"}], "startsAt": "2026-12-10T22:00:00Z", "endsAt": "tomorrow",
        }));
        let paths: Vec<String> = bad.validate().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["spec.matchers[0].label", "spec.endsAt"]);
    }
}
