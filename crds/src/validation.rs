//! Field errors and the per-kind validation of what a schema cannot say.

use std::{collections::BTreeMap, fmt};

use serde::Serialize;

/// One problem with one field of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Dotted path relative to the document, e.g. `spec.targets[2]`.
    pub path: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl FieldError {
    /// A new error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// `path: message; path: message`, for one line of a log or a condition.
pub fn describe_errors(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for FieldError {}

/// Validation beyond the schema: the one extra function per kind for rules that a
/// JSON schema cannot express (parsing CIDRs, regexes, time zones, cross-field rules).
///
/// Paths in the returned errors are relative to the document (they start with `spec.`).
pub trait Validate {
    /// All problems found; empty when valid.
    fn validate(&self) -> Vec<FieldError>;

    /// Checks that need the object's labels too (e.g. `spec.site` against the
    /// `rmm.cdot.io/site` label). Empty by default.
    fn validate_metadata(&self, labels: &BTreeMap<String, String>) -> Vec<FieldError> {
        let _ = labels;
        Vec::new()
    }
}

/// Collects errors under a path prefix.
#[derive(Debug, Default)]
pub(crate) struct Errors(pub Vec<FieldError>);

impl Errors {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(path, message));
    }

    /// Records `result`'s error (if any) at `path`.
    pub fn check<T>(&mut self, path: impl Into<String>, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(path, e);
                None
            }
        }
    }

    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
}

/// RFC 1123 DNS label: lowercase alphanumerics and `-`, starts and ends alphanumeric, ≤ 63.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 DNS subdomain: dot-separated DNS labels, ≤ 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

fn is_qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// Checks a Kubernetes label (or annotation) key: optional DNS-subdomain prefix and `/`,
/// then a name of ≤ 63 alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && !is_dns1123_subdomain(p)
    {
        return Err(format!(
            "label key {key:?}: prefix must be a lowercase RFC 1123 DNS subdomain"
        ));
    }
    if !is_qualified_name_part(name) {
        return Err(format!(
            "label key {key:?}: name must be 1-63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric"
        ));
    }
    Ok(())
}

/// Checks a Kubernetes label value: empty, or ≤ 63 alphanumerics, `-`, `_`, `.`,
/// starting and ending alphanumeric.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_qualified_name_part(value) {
        Ok(())
    } else {
        Err(format!(
            "label value {value:?} must be empty or 1-63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(is_dns1123_label("web-01"));
        assert!(!is_dns1123_label("Web"));
        assert!(!is_dns1123_label("-a"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(!is_dns1123_subdomain("a..b"));
        assert!(!is_dns1123_subdomain(&"a.".repeat(130)));
    }

    #[test]
    fn label_keys_and_values() {
        assert!(check_label_key("rmm.cdot.io/site").is_ok());
        assert!(check_label_key("role").is_ok());
        assert!(check_label_key("Bad_Prefix/x").is_err());
        assert!(check_label_key("x/").is_err());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("london-1").is_ok());
        assert!(check_label_value("has space").is_err());
    }

    #[test]
    fn display() {
        assert_eq!(
            FieldError::new("spec.targets[2]", "bad").to_string(),
            "spec.targets[2]: bad"
        );
    }
}
