//! HTTP client of the agent API (`/v1/agent/*`): mutual TLS or JWT, gzip request bodies,
//! and errors classified as permanent (the request itself is wrong) or transient (retry).
use std::{io::Write, sync::Arc, time::Duration};

use cdot_crds::wire::{
    AGENT_API_PREFIX, BatchAck, ErrorBody, InventoryReport, MetricsBatch, RenewRequest,
    RenewResponse,
};
use flate2::{Compression, write::GzEncoder};
use reqwest::{StatusCode, header};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    jwt::JwtSigner,
    state::{AuthMode, Credentials},
};

/// Default timeout of one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Failure building a client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CA certificate is not usable.
    #[error("invalid CA certificate: {0}")]
    Ca(String),
    /// Client certificate or key is not usable.
    #[error("invalid client certificate or key: {0}")]
    Identity(String),
    /// The JWT key is not usable.
    #[error(transparent)]
    Jwt(#[from] crate::jwt::JwtError),
    /// The server URL is not usable.
    #[error("invalid server URL {url:?}: {message}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// reqwest refused the configuration.
    #[error("failed to build the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

/// Failure of one request.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The operator answered with an error status.
    #[error("{method} {url} failed with HTTP {status}: {message}")]
    Status {
        /// Method.
        method: &'static str,
        /// URL.
        url: String,
        /// The status.
        status: StatusCode,
        /// The server's `ErrorBody` message (or the raw body).
        message: String,
        /// The parsed error body, when there was one.
        body: Option<ErrorBody>,
        /// The `Retry-After` of the answer, when it gave one in seconds.
        retry_after: Option<Duration>,
    },
    /// The request did not complete (connect, TLS, timeout, reset).
    #[error("{method} {url} failed: {}", error_chain(source))]
    Network {
        /// Method.
        method: &'static str,
        /// URL.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// A 2xx answer whose body is not what the protocol says.
    #[error("{method} {url}: unexpected response body: {message}")]
    Decode {
        /// Method.
        method: &'static str,
        /// URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// The request body could not be encoded.
    #[error("failed to encode the request body: {0}")]
    Encode(String),
}

impl RequestError {
    /// Whether retrying the same request cannot help: 4xx other than 408 (timeout), 429
    /// (rate limited), 401 and 403. Authentication failures are not the request's fault
    /// (an expired certificate, a clock off): treating them as permanent would throw data
    /// away, so they are retried with backoff.
    pub fn is_permanent(&self) -> bool {
        match self {
            RequestError::Status { status, .. } => {
                status.is_client_error()
                    && !matches!(
                        *status,
                        StatusCode::REQUEST_TIMEOUT
                            | StatusCode::TOO_MANY_REQUESTS
                            | StatusCode::UNAUTHORIZED
                            | StatusCode::FORBIDDEN
                    )
            }
            RequestError::Encode(_) => true,
            RequestError::Network { .. } | RequestError::Decode { .. } => false,
        }
    }

    /// Low-cardinality label for logs and counters.
    pub fn label(&self) -> &'static str {
        match self {
            RequestError::Status { status, .. } if status.is_server_error() => "server_error",
            RequestError::Status { .. } if self.is_permanent() => "rejected",
            RequestError::Status { .. } => "retryable_status",
            RequestError::Network { .. } => "network",
            RequestError::Decode { .. } => "decode",
            RequestError::Encode(_) => "encode",
        }
    }

    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            RequestError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// How long the server asked to wait before trying again (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RequestError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// An error and its causes, `: `-separated (reqwest hides the cause, e.g. "connection
/// refused", behind "error sending request").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// How requests authenticate.
pub enum ClientAuth {
    /// Mutual TLS: PEM certificate (chain) and PKCS#8 PEM key.
    Mtls {
        /// Client certificate PEM.
        cert_pem: String,
        /// Private key PEM.
        key_pem: String,
    },
    /// A fresh JWT in every request.
    Jwt(JwtSigner),
    /// No client authentication (enrollment).
    None,
}

/// Client of the agent API of one operator.
#[derive(Clone, Debug)]
pub struct AgentClient {
    http: reqwest::Client,
    base: String,
    jwt: Option<Arc<JwtSigner>>,
}

impl AgentClient {
    /// A client for `server` (base URL) trusting only `ca_pem`.
    pub fn new(
        server: &str,
        ca_pem: &str,
        auth: ClientAuth,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let mut builder = base_builder(timeout).tls_built_in_root_certs(false);
        let cas = reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes())
            .map_err(|e| ClientError::Ca(e.to_string()))?;
        if cas.is_empty() {
            return Err(ClientError::Ca("no certificate in PEM".into()));
        }
        for ca in cas {
            builder = builder.add_root_certificate(ca);
        }
        let mut jwt = None;
        match auth {
            ClientAuth::Mtls { cert_pem, key_pem } => {
                let mut pem = cert_pem.into_bytes();
                pem.push(b'\n');
                pem.extend_from_slice(key_pem.as_bytes());
                let identity = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| ClientError::Identity(e.to_string()))?;
                builder = builder.identity(identity);
            }
            ClientAuth::Jwt(signer) => jwt = Some(Arc::new(signer)),
            ClientAuth::None => {}
        }
        Self::with_http(server, builder.build().map_err(ClientError::Build)?, jwt)
    }

    /// A client over a prepared reqwest client (e.g. with a custom TLS configuration).
    pub fn with_http(
        server: &str,
        http: reqwest::Client,
        jwt: Option<Arc<JwtSigner>>,
    ) -> Result<Self, ClientError> {
        let url = reqwest::Url::parse(server).map_err(|e| ClientError::Url {
            url: server.to_owned(),
            message: e.to_string(),
        })?;
        if url.scheme() != "https" {
            return Err(ClientError::Url {
                url: server.to_owned(),
                message: "the agent talks HTTPS only".into(),
            });
        }
        Ok(Self {
            http,
            base: server.trim_end_matches('/').to_owned(),
            jwt,
        })
    }

    /// A client from stored credentials.
    pub fn from_credentials(creds: &Credentials, timeout: Duration) -> Result<Self, ClientError> {
        let auth = match creds.identity.auth {
            AuthMode::Mtls => ClientAuth::Mtls {
                cert_pem: creds.cert_pem.clone().unwrap_or_default(),
                key_pem: creds.key_pem.clone(),
            },
            AuthMode::Jwt => ClientAuth::Jwt(JwtSigner::from_pem(
                &creds.key_pem,
                creds.identity.device_uid.to_string(),
            )?),
        };
        Self::new(&creds.identity.server, &creds.ca_pem, auth, timeout)
    }

    /// Full URL of an agent route, e.g. `url("metrics")`.
    pub fn url(&self, route: &str) -> String {
        format!("{}{AGENT_API_PREFIX}/{route}", self.base)
    }

    /// `POST /v1/agent/metrics` with an already gzip-compressed [`MetricsBatch`].
    pub async fn send_metrics_gz(&self, body_gz: Vec<u8>) -> Result<BatchAck, RequestError> {
        self.post_batch_gz("metrics", body_gz).await
    }

    /// `POST /v1/agent/{route}` of an already gzip-compressed batch, answered by a [`BatchAck`].
    pub async fn post_batch_gz(
        &self,
        route: &str,
        body_gz: Vec<u8>,
    ) -> Result<BatchAck, RequestError> {
        let url = self.url(route);
        let req = self.gzip_request(self.http.post(&url), body_gz);
        self.send("POST", url, req).await
    }

    /// `GET /v1/agent/{route}`, JSON answer.
    pub async fn get_json<T: DeserializeOwned>(&self, route: &str) -> Result<T, RequestError> {
        let url = self.url(route);
        let req = self.http.get(&url);
        self.send("GET", url, req).await
    }

    /// `POST /v1/agent/metrics`.
    pub async fn send_metrics(&self, batch: &MetricsBatch) -> Result<BatchAck, RequestError> {
        self.send_metrics_gz(gzip_json(batch).map_err(|e| RequestError::Encode(e.to_string()))?)
            .await
    }

    /// `PUT /v1/agent/inventory` (gzip).
    pub async fn put_inventory(&self, report: &InventoryReport) -> Result<(), RequestError> {
        let url = self.url("inventory");
        let body = gzip_json(report).map_err(|e| RequestError::Encode(e.to_string()))?;
        let req = self.gzip_request(self.http.put(&url), body);
        let resp = self.execute("PUT", &url, req).await?;
        drop(resp);
        Ok(())
    }

    /// `PUT /v1/agent/{route}` of a JSON body (gzip), answered without a body.
    pub async fn put_json<B: Serialize>(&self, route: &str, body: &B) -> Result<(), RequestError> {
        let url = self.url(route);
        let body = gzip_json(body).map_err(|e| RequestError::Encode(e.to_string()))?;
        let req = self.gzip_request(self.http.put(&url), body);
        let resp = self.execute("PUT", &url, req).await?;
        drop(resp);
        Ok(())
    }

    /// `POST /v1/agent/renew`.
    pub async fn renew(&self, request: &RenewRequest) -> Result<RenewResponse, RequestError> {
        let url = self.url("renew");
        let req = self.http.post(&url).json(request);
        self.send("POST", url, req).await
    }

    /// `POST` of a JSON body to a full URL, JSON answer (used for enrollment).
    pub async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        url: &str,
        body: &B,
    ) -> Result<T, RequestError> {
        let req = self.http.post(url).json(body);
        self.send("POST", url.to_owned(), req).await
    }

    fn gzip_request(&self, req: reqwest::RequestBuilder, body: Vec<u8>) -> reqwest::RequestBuilder {
        req.header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_ENCODING, "gzip")
            .body(body)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: &'static str,
        url: String,
        req: reqwest::RequestBuilder,
    ) -> Result<T, RequestError> {
        let resp = self.execute(method, &url, req).await?;
        let bytes = resp.bytes().await.map_err(|source| RequestError::Network {
            method,
            url: url.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| RequestError::Decode {
            method,
            url,
            message: e.to_string(),
        })
    }

    async fn execute(
        &self,
        method: &'static str,
        url: &str,
        mut req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RequestError> {
        if let Some(jwt) = &self.jwt {
            req = req.bearer_auth(jwt.token());
        }
        let resp = req.send().await.map_err(|source| RequestError::Network {
            method,
            url: url.to_owned(),
            source,
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        // Seconds only: the operator never sends the HTTP-date form.
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.text().await.unwrap_or_default();
        let body: Option<ErrorBody> = serde_json::from_str(&text).ok();
        let message = match &body {
            Some(b) => match &b.field {
                Some(field) => format!("{} ({}; field {field})", b.message, b.reason),
                None => format!("{} ({})", b.message, b.reason),
            },
            None => text.chars().take(300).collect(),
        };
        Err(RequestError::Status {
            method,
            url: url.to_owned(),
            status,
            message,
            body,
            retry_after,
        })
    }
}

/// The reqwest builder every agent client starts from: rustls, no proxies from the
/// environment surprises beyond reqwest's defaults, timeouts set.
pub fn base_builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_max_idle_per_host(1)
        .user_agent(concat!("cdot-agent/", env!("CARGO_PKG_VERSION")))
}

/// Serializes `value` as JSON straight into a gzip stream.
pub fn gzip_json<T: Serialize>(value: &T) -> std::io::Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::with_capacity(4096), Compression::default());
    serde_json::to_writer(&mut enc, value)?;
    enc.flush()?;
    enc.finish()
}

/// Decompresses a gzip body.
pub fn gunzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::with_capacity(data.len() * 4);
    flate2::read::GzDecoder::new(data).read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use cdot_crds::wire::AgentConfig;

    use super::*;

    #[test]
    fn gzip_round_trips() {
        let cfg = AgentConfig::default();
        let gz = gzip_json(&cfg).expect("gzip");
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        let back: AgentConfig =
            serde_json::from_slice(&gunzip(&gz).expect("gunzip")).expect("json");
        assert_eq!(back, cfg);
    }

    #[test]
    fn status_classification() {
        let err = |status: u16| RequestError::Status {
            method: "POST",
            url: "u".into(),
            status: StatusCode::from_u16(status).expect("status"),
            message: String::new(),
            body: None,
            retry_after: None,
        };
        for permanent in [400, 404, 413, 422] {
            assert!(err(permanent).is_permanent(), "{permanent}");
        }
        for transient in [401, 403, 408, 429, 500, 502, 503] {
            assert!(!err(transient).is_permanent(), "{transient}");
        }
    }

    #[test]
    fn mtls_client_builds_from_rcgen_pem() {
        let (key_pem, _) = crate::enroll::make_csr("web-1").expect("key");
        let key = rcgen::KeyPair::from_pem(&key_pem).expect("key");
        let params = rcgen::CertificateParams::new(vec!["web-1".to_owned()]).expect("params");
        let cert_pem = params.self_signed(&key).expect("cert").pem();
        let auth = ClientAuth::Mtls {
            cert_pem: cert_pem.clone(),
            key_pem,
        };
        AgentClient::new("https://rmm:8443", &cert_pem, auth, DEFAULT_TIMEOUT).expect("client");
        let err = AgentClient::new(
            "https://rmm:8443",
            "nope",
            ClientAuth::None,
            DEFAULT_TIMEOUT,
        )
        .expect_err("no CA");
        assert!(err.to_string().contains("CA"), "{err}");
    }

    #[test]
    fn plain_http_is_refused() {
        let http = reqwest::Client::new();
        assert!(AgentClient::with_http("http://x", http.clone(), None).is_err());
        let c = AgentClient::with_http("https://x:8443/", http, None).expect("https");
        assert_eq!(c.url("metrics"), "https://x:8443/v1/agent/metrics");
    }
}
