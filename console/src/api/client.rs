//! The one HTTP client: bearer token, timeouts, and the operator's errors mapped to
//! [`ApiError`].
use std::time::Duration;

use cdot_crds::wire::ErrorBody;
use serde::de::DeserializeOwned;

use super::{ApiError, Call, Method};

/// A connection attempt that takes longer than this is "operator down", whatever the
/// request timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    token: Option<String>,
    timeout: Duration,
    http: reqwest::Client,
}

impl ApiClient {
    /// `ca_pem`: certificates of a private CA to trust besides the public roots (checked
    /// when the settings were read).
    pub fn new(
        base: &str,
        token: Option<String>,
        timeout: Duration,
        ca_pem: Option<&[u8]>,
    ) -> Self {
        let mut builder = reqwest::Client::builder();
        for cert in ca_pem
            .and_then(|pem| reqwest::Certificate::from_pem_bundle(pem).ok())
            .unwrap_or_default()
        {
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .timeout(timeout)
            .user_agent(concat!("cdot-console/", env!("CARGO_PKG_VERSION")))
            .build()
            // Only a broken TLS backend fails here; the default client has the same one.
            .unwrap_or_default();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            timeout,
            http,
        }
    }

    /// The base URL, as shown on the connect screen.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `base` + `path` with the `query` pairs percent-encoded.
    pub fn url(&self, path: &str, query: &[(&str, String)]) -> String {
        let mut url = format!("{}{path}", self.base);
        for (i, (key, value)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&encode(key));
            url.push('=');
            url.push_str(&encode(value));
        }
        url
    }

    pub async fn send<T: DeserializeOwned>(&self, call: &Call<T>) -> Result<T, ApiError> {
        let url = &call.url;
        let mut request = match call.method {
            Method::Get => self.http.get(url),
            Method::Post => self.http.post(url),
            Method::Delete => self.http.delete(url),
        };
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = &call.body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let response = request.send().await.map_err(|e| self.transport(url, &e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport(url, &e))?;
        if !status.is_success() {
            let body: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
            let (reason, mut message) = body.as_ref().map_or_else(
                || {
                    let text = String::from_utf8_lossy(&bytes).trim().to_owned();
                    (
                        status.canonical_reason().unwrap_or_default().to_owned(),
                        text,
                    )
                },
                |b| (b.reason.clone(), b.message.clone()),
            );
            if let Some(field) = body.and_then(|b| b.field) {
                message = format!("{message} ({field})");
            }
            if status == reqwest::StatusCode::UNAUTHORIZED {
                return Err(ApiError::Unauthorized {
                    url: url.clone(),
                    message,
                });
            }
            return Err(ApiError::Status {
                url: url.clone(),
                status: status.as_u16(),
                reason,
                message,
            });
        }
        // 204 No Content answers `()`, which reads from `null`.
        let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(bytes).map_err(|e| ApiError::Decode {
            url: url.clone(),
            detail: e.to_string(),
        })
    }

    fn transport(&self, url: &str, error: &reqwest::Error) -> ApiError {
        if error.is_timeout() {
            return ApiError::Timeout {
                url: url.to_owned(),
                after: self.timeout,
            };
        }
        // reqwest's own message is "error sending request"; the cause says what happened.
        let mut detail = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            detail = format!("{detail}: {cause}");
            source = cause.source();
        }
        ApiError::Unreachable {
            url: url.to_owned(),
            detail,
        }
    }
}

/// Percent-encoding of a query component (RFC 3986 unreserved characters pass).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char);
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        let client = ApiClient::new("http://h:1/", None, Duration::from_secs(1), None);
        assert_eq!(
            client.url(
                "/v1/alerts",
                &[
                    ("state", "firing,resolved".into()),
                    ("from", "2026-12-06T19:00:00+00:00".into())
                ]
            ),
            "http://h:1/v1/alerts?state=firing%2Cresolved&from=2026-12-06T19%3A00%3A00%2B00%3A00"
        );
    }
}
