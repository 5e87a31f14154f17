//! Message templates (AlertRule `summary` and `description`, email subjects): minijinja,
//! checked when the resource is validated, so that a template naming a variable that does
//! not exist is refused with its field path instead of rendering blanks at 3 a.m.
use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior};

/// Variables an AlertRule's `summary` and `description` may use.
pub const ALERT_VARIABLES: &[&str] = &[
    "device",
    "namespace",
    "site",
    "rule",
    "metric",
    "unit",
    "value",
    "peak",
    "threshold",
    "op",
    "severity",
    "state",
    "series",
    "labels",
    "device_labels",
];

/// Variables an email `subject` may use: an alert's, of the first alert of the
/// notification, and the notification's own.
pub const NOTIFICATION_VARIABLES: &[&str] = &[
    "device",
    "namespace",
    "site",
    "rule",
    "metric",
    "unit",
    "value",
    "peak",
    "threshold",
    "op",
    "severity",
    "state",
    "series",
    "labels",
    "device_labels",
    "title",
    "kind",
    "count",
    "channel",
];

/// Variables a Workflow's Notify and OpenTicket `message` may use.
pub const WORKFLOW_VARIABLES: &[&str] = &[
    "device",
    "namespace",
    "site",
    "device_labels",
    "workflow",
    "run",
    "step",
    "event",
    "vars",
    "steps",
];

/// Longest accepted template source.
pub const MAX_TEMPLATE_LEN: usize = 4096;

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // A variable that is not there is an error when rendered, never an empty string.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_recursion_limit(16);
    env
}

/// Checks `source` parses and uses only `allowed` variables; the error says which.
pub fn check(source: &str, allowed: &[&str]) -> Result<(), String> {
    if source.len() > MAX_TEMPLATE_LEN {
        return Err(format!(
            "template is {} bytes; at most {MAX_TEMPLATE_LEN} are allowed",
            source.len()
        ));
    }
    let env = environment();
    let template = env
        .template_from_str(source)
        .map_err(|e| format!("template does not parse: {}", describe(&e)))?;
    let unknown: BTreeSet<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !allowed.contains(&v.as_str()))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "template uses unknown variable{} {}; known: {}",
            if unknown.len() == 1 { "" } else { "s" },
            unknown.into_iter().collect::<Vec<_>>().join(", "),
            allowed.join(", ")
        ))
    }
}

/// Renders `source` with `context` (anything serializable to a map).
pub fn render(source: &str, context: impl serde::Serialize) -> Result<String, String> {
    let env = environment();
    let template = env
        .template_from_str(source)
        .map_err(|e| format!("template does not parse: {}", describe(&e)))?;
    template
        .render(minijinja::value::Serde(context))
        .map_err(|e| format!("template failed to render: {}", describe(&e)))
}

fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(detail) => format!("{} ({detail})", e.kind()),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_variables_pass_and_unknown_ones_are_named() {
        assert!(
            check(
                "{{ metric }} on {{ device }} is {{ value }}",
                ALERT_VARIABLES
            )
            .is_ok()
        );
        assert!(check("{{ labels.team }} {{ series.mount }}", ALERT_VARIABLES).is_ok());
        assert!(check("{% if value > 90 %}bad{% endif %}", ALERT_VARIABLES).is_ok());
        let e = check("{{ devise }} is {{ value }}", ALERT_VARIABLES).expect_err("unknown");
        assert!(e.contains("devise"), "{e}");
        let e = check("{{ value ", ALERT_VARIABLES).expect_err("syntax");
        assert!(e.contains("does not parse"), "{e}");
    }

    #[test]
    fn renders_strictly() {
        let out = render(
            "{{ device }} at {{ value | round(1) }}",
            serde_json::json!({"device": "web-01", "value": 93.456}),
        )
        .expect("render");
        assert_eq!(out, "web-01 at 93.5");
        assert!(render("{{ nope }}", serde_json::json!({})).is_err());
    }
}
