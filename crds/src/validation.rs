//! Field errors and the per-kind validation of what a schema cannot say.

use std::{borrow::Cow, collections::BTreeMap, fmt};

use serde::Serialize;

use crate::excerpt::{MAX_MESSAGE_CHARS, MAX_PATH_CHARS, clip, excerpt};

/// One problem with one field of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Dotted path relative to the document, e.g. `spec.targets[2]`.
    pub path: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl FieldError {
    /// A new error at `path`. Both parts may carry input (a map key, a parser's message that
    /// quotes a value), so both are bounded here: a log line or a stored load error stays short
    /// whatever the document holds. Messages should still quote values with
    /// [`excerpt`](crate::excerpt::excerpt), so that the part after the value is kept.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: bounded(path.into(), MAX_PATH_CHARS),
            message: bounded(message.into(), MAX_MESSAGE_CHARS),
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

fn bounded(text: String, max_chars: usize) -> String {
    match clip(&text, max_chars) {
        Cow::Borrowed(_) => text,
        Cow::Owned(clipped) => clipped,
    }
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
            "label key {}: prefix must be a lowercase RFC 1123 DNS subdomain",
            excerpt(key)
        ));
    }
    if !is_qualified_name_part(name) {
        return Err(format!(
            "label key {}: name must be 1-63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric",
            excerpt(key)
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
            "label value {} must be empty or 1-63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric",
            excerpt(value)
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
    fn field_errors_stay_short_whatever_the_input() {
        let huge = "k".repeat(3 << 20);
        let e = FieldError::new(
            format!("metadata.labels.{huge}"),
            check_label_value(&huge).expect_err("too long"),
        );
        assert!(e.to_string().len() < 1024, "{} bytes", e.to_string().len());
        assert!(
            e.path
                .contains(&format!("… ({} bytes in all) …", huge.len() + 16)),
            "{}",
            e.path
        );
        assert!(
            e.message.contains("(3145728 bytes) must be empty or 1-63"),
            "{}",
            e.message
        );
    }

    #[test]
    fn display() {
        assert_eq!(
            FieldError::new("spec.targets[2]", "bad").to_string(),
            "spec.targets[2]: bad"
        );
    }
}
