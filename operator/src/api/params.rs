//! Checks of what a request names before any handler runs a query: path parameters must be
//! names that can exist, and query parameters must be ones the route knows.
//!
//! A NUL byte or a 300-character "name" can never match a stored object (PostgreSQL even
//! refuses the NUL byte outright), so such requests are a 400 naming `path.<param>` or
//! `query.<param>`, never a query and never a 500. Every route refuses unknown query
//! parameters: a misspelt filter that is silently ignored returns the wrong answer.
use std::collections::BTreeMap;

use axum::{
    extract::{Query, RawPathParams, Request, rejection::RawPathParamsRejection},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::ApiError;

/// Longest value of a free-text query parameter (an interface name, a label value).
const MAX_VALUE_LEN: usize = 1024;

/// Checks every path parameter of the matched route by its name (see [`check_path_param`]).
/// Applied to every route, so no handler can forget it.
pub async fn check_path(
    params: Result<RawPathParams, RawPathParamsRejection>,
    request: Request,
    next: Next,
) -> Response {
    let params = match params {
        Ok(params) => params,
        Err(RawPathParamsRejection::InvalidUtf8InPathParam(e)) => {
            return ApiError::bad_request(format!("{e}"), "path").into_response();
        }
        // Routes without parameters (and the fallback) have nothing to check.
        Err(_) => return next.run(request).await,
    };
    for (key, value) in &params {
        if let Err(e) = check_path_param(key, value) {
            return e.into_response();
        }
    }
    next.run(request).await
}

/// Whether `value` can be the path parameter `key` of some object.
pub fn check_path_param(key: &str, value: &str) -> Result<(), ApiError> {
    let (valid, what) = match key {
        "namespace" => (
            cdot_crds::validation::is_dns1123_label(value),
            "a namespace name (RFC 1123 label)",
        ),
        "name" => (
            cdot_crds::validation::is_dns1123_subdomain(value),
            "an object name (RFC 1123 subdomain)",
        ),
        // Resource types are plural kind names: lower-case words.
        "resource" => (
            cdot_crds::validation::is_dns1123_label(value),
            "a resource type (e.g. devices)",
        ),
        "metric" => (is_identifier(value), "a metric name (e.g. networkIn)"),
        // A parameter added to a route without a rule here gets the rule of free text.
        _ => (is_text(value), "a value without control characters"),
    };
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            format!("{value:?} is not {what}"),
            format!("path.{key}"),
        ))
    }
}

/// A letter, then letters, digits and `_`; at most 63 characters (metric names).
fn is_identifier(s: &str) -> bool {
    s.len() <= 63
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Non-empty, at most [`MAX_VALUE_LEN`] bytes, without control characters (NUL included).
fn is_text(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_VALUE_LEN && !s.chars().any(char::is_control)
}

/// For routes that take no query parameters: any parameter is refused, like an unknown one
/// on a route that takes some.
pub async fn refuse_query(request: Request, next: Next) -> Response {
    let checked = Query::<Vec<(String, String)>>::try_from_uri(request.uri())
        .map_err(|e| ApiError::bad_request(e.body_text(), "query"))
        .and_then(|Query(pairs)| Params::parse(pairs, &[]));
    match checked {
        Ok(_) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// The query parameters of one request, each taken once; unknown ones are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    values: BTreeMap<String, String>,
}

impl Params {
    /// Refuses parameters outside `allowed`, repeated ones, and values that no stored
    /// name or label can have (control characters, longer than [`MAX_VALUE_LEN`]).
    pub fn parse(pairs: Vec<(String, String)>, allowed: &[&str]) -> Result<Self, ApiError> {
        let mut values = BTreeMap::new();
        for (key, value) in pairs {
            let field = format!("query.{key}");
            if !allowed.contains(&key.as_str()) {
                let message = if allowed.is_empty() {
                    format!("unknown parameter {key:?}; the route takes no query parameters")
                } else {
                    format!("unknown parameter {key:?}; expected one of {allowed:?}")
                };
                return Err(ApiError::bad_request(message, field));
            }
            if !value.is_empty() && !is_text(&value) {
                return Err(ApiError::bad_request(
                    format!(
                        "{value:?} has control characters or is longer than {MAX_VALUE_LEN} bytes"
                    ),
                    field,
                ));
            }
            if values.insert(key, value).is_some() {
                return Err(ApiError::bad_request("the parameter is repeated", field));
            }
        }
        Ok(Self { values })
    }

    /// The value of `key`; an empty value counts as absent.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The parameters, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(e: ApiError) -> String {
        e.field.unwrap_or_default()
    }

    #[test]
    fn impossible_names_are_refused_by_parameter() {
        for (key, value) in [
            ("namespace", "acme"),
            ("name", "web-01.example"),
            ("resource", "devices"),
            ("metric", "networkIn"),
            ("interface", "GigabitEthernet0/1"),
        ] {
            assert!(check_path_param(key, value).is_ok(), "{key}={value}");
        }
        for (key, value) in [
            ("namespace", "a\0b"),
            ("namespace", "Acme"),
            ("name", "a\0b"),
            ("name", &"a".repeat(254)),
            ("resource", "dev\0ices"),
            ("metric", "cpu\0"),
            ("metric", "1cpu"),
            ("interface", "eth\0"),
        ] {
            assert_eq!(
                field(check_path_param(key, value).expect_err("refused")),
                format!("path.{key}"),
                "{value:?}"
            );
        }
    }

    fn pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn unknown_repeated_and_impossible_query_values_name_their_field() {
        assert_eq!(
            field(Params::parse(pairs(&[("bogus", "1")]), &["site"]).expect_err("refused")),
            "query.bogus"
        );
        assert_eq!(
            field(Params::parse(pairs(&[("bogus", "1")]), &[]).expect_err("refused")),
            "query.bogus"
        );
        assert_eq!(
            field(
                Params::parse(pairs(&[("site", "a"), ("site", "b")]), &["site"])
                    .expect_err("refused")
            ),
            "query.site"
        );
        assert_eq!(
            field(Params::parse(pairs(&[("device", "a\0b")]), &["device"]).expect_err("refused")),
            "query.device"
        );
        let p = Params::parse(
            pairs(&[("site", ""), ("device", "web")]),
            &["site", "device"],
        )
        .expect("params");
        assert_eq!((p.get("site"), p.get("device")), (None, Some("web")));
    }
}
