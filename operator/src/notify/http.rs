//! One HTTP call and what its answer means for a retry, shared by webhooks, SMS and tickets.
use std::{error::Error as _, time::Duration};

use reqwest::{StatusCode, header::HeaderMap};

use super::DeliveryError;

/// Kept of an answer: enough for error messages and ticket ids, bounded whatever is sent.
const MAX_BODY: usize = 256 * 1024;
/// Of the receiver's body, error messages quote this many bytes.
const QUOTED_BODY: usize = 200;

/// A receiver's answer.
pub(super) struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

/// Sends `request` and reads (up to [`MAX_BODY`] of) the answer, whatever its status.
/// `what` says what it was for errors, e.g. `channel acme/ops: POST to hooks.example.net`;
/// it must hold no secret, and the request's URL is kept out of the error.
pub(super) async fn send(
    what: &str,
    request: reqwest::RequestBuilder,
) -> Result<Answer, DeliveryError> {
    let mut response = request.send().await.map_err(|e| transport_error(what, e))?;
    let status = response.status();
    let mut body = Vec::new();
    // A body cut short or unreadable still leaves the status to decide on.
    while body.len() < MAX_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(MAX_BODY);
    let retry_after = retry_after(response.headers());
    match classify(status, retry_after) {
        Ok(()) => Ok(Answer { status, body }),
        Err(Class::Retryable(retry_after)) => Err(DeliveryError::retryable(
            format!("{what} answered HTTP {status}{}", quote(&body)),
            retry_after,
        )),
        Err(Class::Permanent) => Err(DeliveryError::permanent(format!(
            "{what} answered HTTP {status}{}",
            quote(&body)
        ))),
    }
}

/// Whether a non-2xx status is worth retrying.
#[derive(Debug, PartialEq)]
pub(super) enum Class {
    Retryable(Option<Duration>),
    Permanent,
}

/// 2xx is success; 408, 429 and 5xx are worth retrying (after `Retry-After` when given);
/// the rest (redirects are not followed, other 4xx) are not.
pub(super) fn classify(status: StatusCode, retry_after: Option<Duration>) -> Result<(), Class> {
    if status.is_success() {
        Ok(())
    } else if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        Err(Class::Retryable(retry_after))
    } else {
        Err(Class::Permanent)
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let wait = at.duration_since(jiff::Timestamp::now());
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// `: <first 200 bytes of body>`, or nothing for an empty body.
pub(super) fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(QUOTED_BODY)]);
    let text: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// A request that got no answer: retryable, except a request that could not be built.
fn transport_error(what: &str, e: reqwest::Error) -> DeliveryError {
    let builder = e.is_builder();
    // The URL may come from a Secret (a Slack webhook's path is its token).
    let e = e.without_url();
    let mut message = format!("{what} failed: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    if builder {
        DeliveryError::permanent(message)
    } else {
        DeliveryError::retryable(message, None)
    }
}

/// `host` or `host:port` of `url`, for messages.
pub(super) fn host(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => "(no host)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderValue, RETRY_AFTER};

    use super::*;

    #[test]
    fn statuses_are_classified() {
        let ok = |s: u16| classify(StatusCode::from_u16(s).expect("status"), None);
        for s in [200, 201, 202, 204] {
            assert_eq!(ok(s), Ok(()), "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504] {
            assert_eq!(ok(s), Err(Class::Retryable(None)), "{s}");
        }
        for s in [301, 302, 400, 401, 403, 404, 410, 422] {
            assert_eq!(ok(s), Err(Class::Permanent), "{s}");
        }
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(120)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "a date past");
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn quotes_are_short_and_on_one_line() {
        assert_eq!(quote(b""), "");
        assert_eq!(quote(b" oops\n"), ": oops");
        let long = vec![b'x'; 1000];
        assert_eq!(quote(&long).len(), 2 + QUOTED_BODY);
        assert_eq!(quote(b"a\nb\x00c"), ": a b c");
    }
}
