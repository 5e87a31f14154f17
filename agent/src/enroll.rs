//! Enrollment and certificate renewal.
//!
//! The agent makes its own key pair (the private key never leaves the host): ECDSA P-256
//! and a CSR whose subject CN is the device name for mutual TLS, or an Ed25519 key whose
//! public half is sent for JWT authentication. The enrollment request is trusted by a CA
//! file, or by a pin (`sha256:HEX` of the DER of a certificate in the server's chain).
//! An operator that is busy or rate-limits enrollment per source address (many agents
//! behind one NAT) answers 429 or 503 with `Retry-After`: the request is made again after
//! that wait (at most a minute, five requests in all); any other refusal is final.
use std::{path::PathBuf, sync::Arc, time::Duration};

use cdot_crds::{
    device::DeviceClass,
    wire::{EnrollRequest, EnrollResponse, RenewRequest},
};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use reqwest::StatusCode;
use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use sha2::{Digest, Sha256};

use crate::{
    AGENT_VERSION,
    client::{self, AgentClient, ClientAuth, ClientError, RequestError},
    jwt::{self, JwtSigner},
    state::{AuthMode, Credentials, Identity, StateError, StatePaths},
};

/// How the enrollment request trusts the server.
#[derive(Clone, Debug)]
pub enum TrustAnchor {
    /// CA certificate(s), PEM.
    CaPem(String),
    /// SHA-256 of the DER of one certificate of the presented chain.
    Fingerprint([u8; 32]),
}

/// What `enroll` needs. `Debug` leaves the token out.
#[derive(Clone)]
pub struct EnrollOptions {
    /// Base URL of the operator (`https://...`).
    pub server: String,
    /// The one-time enrollment token.
    pub token: String,
    /// Device name; default: the host name, made a valid RFC 1123 name.
    pub device_name: Option<String>,
    /// Namespace (client) expected; the operator refuses a token of another namespace.
    pub namespace: Option<String>,
    /// Trust for the enrollment connection.
    pub trust: TrustAnchor,
    /// Authentication mode after enrollment.
    pub auth: AuthMode,
    /// Where key, certificate and identity are stored.
    pub state_dir: PathBuf,
    /// Request timeout.
    pub timeout: Duration,
    /// Class of the Device the operator creates (`None`: its default; collectors: Collector).
    pub device_class: Option<DeviceClass>,
}

impl std::fmt::Debug for EnrollOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollOptions")
            .field("server", &self.server)
            .field("device_name", &self.device_name)
            .field("namespace", &self.namespace)
            .field("auth", &self.auth)
            .field("state_dir", &self.state_dir)
            .field("device_class", &self.device_class)
            .finish_non_exhaustive()
    }
}

/// Failure to enroll or renew.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The fingerprint is not `sha256:` and 64 hex digits.
    #[error("invalid CA fingerprint {input:?}: expected sha256:<64 hex digits>")]
    Fingerprint {
        /// What was given.
        input: String,
    },
    /// Key or CSR generation failed.
    #[error("failed to generate a key pair or CSR: {0}")]
    Key(String),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The operator refused or could not be reached.
    #[error("enrollment with {server} failed: {source}")]
    Request {
        /// The server.
        server: String,
        /// The cause.
        #[source]
        source: Box<RequestError>,
    },
    /// The operator's answer is not usable.
    #[error("enrollment with {server}: {message}")]
    Response {
        /// The server.
        server: String,
        /// What is wrong.
        message: String,
    },
    /// The state directory could not be written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The certificate could not be parsed.
    #[error("cannot read certificate validity: {0}")]
    Certificate(String),
    /// The state directory already holds an identity and enrolling again was not forced.
    #[error("already enrolled ({} exists); use --force to enroll again", .identity.display())]
    AlreadyEnrolled {
        /// The identity file found.
        identity: PathBuf,
    },
}

/// Parses `sha256:HEX` (colons between bytes allowed, case-insensitive).
pub fn parse_fingerprint(input: &str) -> Result<[u8; 32], EnrollError> {
    let err = || EnrollError::Fingerprint {
        input: input.to_owned(),
    };
    let hex_part = input
        .strip_prefix("sha256:")
        .or_else(|| input.strip_prefix("SHA256:"))
        .ok_or_else(err)?;
    let clean: String = hex_part.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(clean).map_err(|_| err())?;
    bytes.try_into().map_err(|_| err())
}

/// A fresh ECDSA P-256 key and a CSR with subject CN `common_name`: `(key_pem, csr_pem)`.
pub fn make_csr(common_name: &str) -> Result<(String, String), EnrollError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| EnrollError::Key(e.to_string()))?;
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|e| EnrollError::Key(e.to_string()))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .map_err(|e| EnrollError::Key(e.to_string()))?;
    Ok((key.serialize_pem(), csr))
}

/// The default device name: the host name as an RFC 1123 subdomain (lowercase; other
/// characters become `-`).
pub fn default_device_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| sysinfo::System::host_name().ok())
        .unwrap_or_default();
    let name = dns_name(&host);
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// Lowercases and replaces what an RFC 1123 subdomain cannot hold by `-`.
pub fn dns_name(input: &str) -> String {
    let mapped: String = input
        .trim()
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '.' | '-') => c,
            _ => '-',
        })
        .collect();
    let labels: Vec<&str> = mapped
        .split('.')
        .map(|l| l.trim_matches('-'))
        .filter(|l| !l.is_empty())
        .collect();
    let mut name = labels.join(".");
    name.truncate(253);
    name.trim_end_matches(['-', '.']).to_owned()
}

/// Enrolls: makes a key pair, sends the [`EnrollRequest`], stores what the operator
/// returned in the state directory, and returns the identity.
pub async fn enroll(opts: EnrollOptions) -> Result<Identity, EnrollError> {
    let device_name = opts.device_name.clone().unwrap_or_else(default_device_name);
    let (key_pem, request) = match opts.auth {
        AuthMode::Mtls => {
            let (key_pem, csr_pem) = make_csr(&device_name)?;
            (
                key_pem,
                EnrollRequest {
                    token: opts.token.clone(),
                    device_name: device_name.clone(),
                    namespace: opts.namespace.clone(),
                    csr_pem: Some(csr_pem),
                    jwt_public_key: None,
                    agent_version: AGENT_VERSION.to_owned(),
                    device_class: opts.device_class,
                },
            )
        }
        AuthMode::Jwt => {
            let der = jwt::generate_pkcs8().map_err(|e| EnrollError::Key(e.to_string()))?;
            let signer =
                JwtSigner::from_pkcs8(&der, "").map_err(|e| EnrollError::Key(e.to_string()))?;
            (
                crate::state::pem_encode(jwt::PEM_LABEL, &der),
                EnrollRequest {
                    token: opts.token.clone(),
                    device_name: device_name.clone(),
                    namespace: opts.namespace.clone(),
                    csr_pem: None,
                    jwt_public_key: Some(signer.public_key_b64()),
                    agent_version: AGENT_VERSION.to_owned(),
                    device_class: opts.device_class,
                },
            )
        }
    };

    let client = match &opts.trust {
        TrustAnchor::CaPem(pem) => {
            AgentClient::new(&opts.server, pem, ClientAuth::None, opts.timeout)?
        }
        TrustAnchor::Fingerprint(pin) => {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| EnrollError::Key(e.to_string()))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                    pin: *pin,
                    provider,
                }))
                .with_no_client_auth();
            let http = client::base_builder(opts.timeout)
                .use_preconfigured_tls(tls)
                .build()
                .map_err(ClientError::Build)?;
            AgentClient::with_http(&opts.server, http, None)?
        }
    };
    let url = client.url("enroll");
    let response = post_enroll(&client, &url, &request)
        .await
        .map_err(|source| EnrollError::Request {
            server: opts.server.clone(),
            source: Box::new(source),
        })?;

    let bad = |message: String| EnrollError::Response {
        server: opts.server.clone(),
        message,
    };
    if crate::state::pem_decode_all("CERTIFICATE", &response.ca_pem).is_empty() {
        return Err(bad("caPem holds no certificate".into()));
    }
    let cert_pem = match opts.auth {
        AuthMode::Mtls => Some(
            response
                .certificate_pem
                .clone()
                .ok_or_else(|| bad("no certificatePem in the answer to a CSR".into()))?,
        ),
        AuthMode::Jwt => None,
    };
    let identity = Identity {
        namespace: response.namespace,
        device_name: response.device_name,
        device_uid: response.device_uid,
        server: opts.server.trim_end_matches('/').to_owned(),
        auth: opts.auth,
    };
    let creds = Credentials {
        identity: identity.clone(),
        key_pem,
        cert_pem,
        ca_pem: response.ca_pem,
    };
    // The stored credentials must make a working client.
    AgentClient::from_credentials(&creds, opts.timeout)?;
    StatePaths::new(&opts.state_dir).save_enrollment(&creds, &response.config)?;
    tracing::info!(
        namespace = %identity.namespace,
        device = %identity.device_name,
        uid = %identity.device_uid,
        auth = %identity.auth,
        state_dir = %opts.state_dir.display(),
        "enrolled"
    );
    Ok(identity)
}

/// Enrolls like [`enroll`], but refuses when the state directory already holds an
/// identity unless `force` is set (the `--force` of both `enroll` commands).
pub async fn enroll_unless_enrolled(
    opts: EnrollOptions,
    force: bool,
) -> Result<Identity, EnrollError> {
    let paths = StatePaths::new(&opts.state_dir);
    if paths.is_enrolled() && !force {
        return Err(EnrollError::AlreadyEnrolled {
            identity: paths.identity(),
        });
    }
    enroll(opts).await
}

/// Enrollment requests at most, when the operator answers 429 (its per-address rate limit:
/// many agents behind one NAT) or 503 (busy, or its database down).
const ENROLL_ATTEMPTS: u32 = 5;
/// Longest wait between two of them, whatever `Retry-After` asks.
const ENROLL_RETRY_MAX: Duration = Duration::from_secs(60);
/// Wait when a 429 or 503 has no `Retry-After` (the operator's own default).
const ENROLL_RETRY_DEFAULT: Duration = Duration::from_secs(2);

/// Posts the enrollment request, again after the server's `Retry-After` while it answers
/// 429 or 503; any other failure (a 4xx: a used or wrong token) is returned at once.
async fn post_enroll(
    client: &AgentClient,
    url: &str,
    request: &EnrollRequest,
) -> Result<EnrollResponse, RequestError> {
    let mut attempt = 1;
    loop {
        let error = match client.post_json::<_, EnrollResponse>(url, request).await {
            Ok(response) => return Ok(response),
            Err(e) => e,
        };
        let busy = matches!(
            error.status(),
            Some(StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE)
        );
        if !busy || attempt >= ENROLL_ATTEMPTS {
            return Err(error);
        }
        let wait = error
            .retry_after()
            .unwrap_or(ENROLL_RETRY_DEFAULT)
            .min(ENROLL_RETRY_MAX);
        tracing::warn!(
            url,
            attempt,
            of = ENROLL_ATTEMPTS,
            wait_secs = wait.as_secs(),
            error = %error,
            "operator busy; enrolling again after the wait it asked for"
        );
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

/// Seconds of validity: `(not_before, not_after)` of the first certificate in `pem`.
pub fn certificate_validity(pem: &str) -> Result<(i64, i64), EnrollError> {
    let der = crate::state::pem_decode_all("CERTIFICATE", pem)
        .into_iter()
        .next()
        .ok_or_else(|| EnrollError::Certificate("no CERTIFICATE block in PEM".into()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| EnrollError::Certificate(e.to_string()))?;
    let v = cert.validity();
    Ok((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// Whether less than a third of the certificate's lifetime remains at `now` (Unix s).
pub fn renewal_due(cert_pem: &str, now: i64) -> Result<bool, EnrollError> {
    let (not_before, not_after) = certificate_validity(cert_pem)?;
    let lifetime = (not_after - not_before).max(0);
    Ok(not_after - now < lifetime / 3)
}

/// How soon, at the latest, a renewal that was due but failed is tried again.
const RENEW_RETRY: Duration = Duration::from_secs(300);

/// What a renewal check did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// More than a third of the certificate's life is left (or JWT authentication).
    NotDue,
    /// Renewed: the new credentials and client are in place.
    Renewed,
    /// Due but failed (logged); try again soon.
    Failed,
}

impl Renewal {
    /// When to check again: after `check`, but within five minutes after a failure.
    pub fn next_check(self, check: Duration) -> Duration {
        match self {
            Self::NotDue | Self::Renewed => check,
            Self::Failed => check.min(RENEW_RETRY),
        }
    }
}

/// Renews the client certificate when a third of its life is left (an unreadable
/// certificate counts as due) and puts the new credentials and a client built from them
/// in place of `creds` and `client`. The agent and the collector call this periodically.
pub async fn renew_if_due(
    paths: &StatePaths,
    creds: &mut Credentials,
    client: &mut AgentClient,
    timeout: Duration,
) -> Renewal {
    let Some(cert) = &creds.cert_pem else {
        return Renewal::NotDue;
    };
    match renewal_due(cert, crate::jwt::unix_now()) {
        Ok(false) => return Renewal::NotDue,
        Ok(true) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the client certificate; renewing"),
    }
    let renewed = renew(paths, creds, client).await.and_then(|new_creds| {
        let new_client = AgentClient::from_credentials(&new_creds, timeout)?;
        Ok((new_creds, new_client))
    });
    match renewed {
        Ok(pair) => {
            (*creds, *client) = pair;
            Renewal::Renewed
        }
        Err(e) => {
            tracing::warn!(error = %e, "certificate renewal failed; will retry");
            Renewal::Failed
        }
    }
}

/// Renews the client certificate over mutual TLS: a new key and CSR, `POST
/// /v1/agent/renew`, then key and certificate are replaced as a pair. Returns the new
/// credentials (build a new client from them).
pub async fn renew(
    paths: &StatePaths,
    creds: &Credentials,
    client: &AgentClient,
) -> Result<Credentials, EnrollError> {
    let (key_pem, csr_pem) = make_csr(&creds.identity.device_name)?;
    let response = client
        .renew(&RenewRequest { csr_pem })
        .await
        .map_err(|source| EnrollError::Request {
            server: creds.identity.server.clone(),
            source: Box::new(source),
        })?;
    certificate_validity(&response.certificate_pem)?;
    paths.replace_key_and_cert(&key_pem, &response.certificate_pem)?;
    tracing::info!(expiry = %response.certificate_expiry, "client certificate renewed");
    Ok(Credentials {
        key_pem,
        cert_pem: Some(response.certificate_pem),
        ..creds.clone()
    })
}

/// Accepts the server's chain only if one of its certificates has the pinned SHA-256.
/// Handshake signatures are still verified, so the server must hold the pinned key.
#[derive(Debug)]
pub struct PinnedVerifier {
    /// SHA-256 of a certificate's DER.
    pub pin: [u8; 32],
    /// Signature algorithms.
    pub provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let matches = std::iter::once(end_entity)
            .chain(intermediates)
            .any(|c| Sha256::digest(c.as_ref())[..] == self.pin[..]);
        if matches {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "no certificate in the server's chain has the pinned fingerprint sha256:{}",
                hex::encode(self.pin)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::VecDeque,
        sync::{Arc, Mutex},
    };

    use axum::{
        Json, Router,
        extract::State,
        http::{HeaderValue, header::RETRY_AFTER},
        response::{IntoResponse, Response},
        routing::post,
    };
    use cdot_crds::wire::{AgentConfig, ErrorBody};

    use super::*;
    use crate::testing::ScriptedOperator;

    /// An enroll route that refuses with the next of `refusals` (a status and its
    /// `Retry-After`) while there is one, then enrolls.
    #[derive(Default)]
    struct Script {
        ca_pem: String,
        refusals: VecDeque<(StatusCode, Option<&'static str>)>,
        requests: usize,
    }

    async fn enroll_route(
        State(script): State<Arc<Mutex<Script>>>,
        Json(request): Json<EnrollRequest>,
    ) -> Response {
        let mut script = script.lock().expect("lock");
        script.requests += 1;
        if let Some((status, retry_after)) = script.refusals.pop_front() {
            let body = ErrorBody {
                code: status.as_u16(),
                reason: "Refused".into(),
                message: format!("scripted refusal {}", script.requests),
                field: None,
            };
            let mut response = (status, Json(body)).into_response();
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static(seconds));
            }
            return response;
        }
        Json(EnrollResponse {
            namespace: "acme".into(),
            device_name: request.device_name,
            device_uid: uuid::Uuid::new_v4(),
            certificate_pem: None,
            certificate_expiry: None,
            ca_pem: script.ca_pem.clone(),
            config: AgentConfig::default(),
        })
        .into_response()
    }

    /// Enrolls (JWT) against an operator refusing with `refusals` first: the outcome, the
    /// requests the operator saw and how long it took.
    async fn enroll_refused(
        refusals: &[(StatusCode, Option<&'static str>)],
    ) -> (Result<Identity, EnrollError>, usize, Duration) {
        let script = Arc::new(Mutex::new(Script {
            refusals: refusals.iter().copied().collect(),
            ..Script::default()
        }));
        let app = Router::new()
            .route("/v1/agent/enroll", post(enroll_route))
            .with_state(script.clone());
        let operator = ScriptedOperator::start(app).await;
        script.lock().expect("lock").ca_pem = operator.cert.pem.clone();
        let state = tempfile::tempdir().expect("tempdir");
        let opts = EnrollOptions {
            server: operator.url(),
            token: "t0ken".into(),
            device_name: Some("web-1".into()),
            namespace: None,
            trust: TrustAnchor::CaPem(operator.cert.pem.clone()),
            auth: AuthMode::Jwt,
            state_dir: state.path().to_owned(),
            timeout: Duration::from_secs(5),
            device_class: None,
        };
        let started = std::time::Instant::now();
        let outcome = enroll(opts).await;
        let requests = script.lock().expect("lock").requests;
        (outcome, requests, started.elapsed())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_rate_limited_enrollment_waits_for_retry_after_then_enrolls() {
        let (outcome, requests, took) =
            enroll_refused(&[(StatusCode::TOO_MANY_REQUESTS, Some("1"))]).await;
        let identity = outcome.expect("enrolled on the second request");
        assert_eq!(identity.device_name, "web-1");
        assert_eq!(requests, 2);
        assert!(took >= Duration::from_secs(1), "waited only {took:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_refused_enrollment_fails_at_once_with_the_servers_message() {
        let (outcome, requests, _) = enroll_refused(&[(StatusCode::FORBIDDEN, Some("1"))]).await;
        let err = outcome.expect_err("a 403 is final").to_string();
        assert!(err.contains("HTTP 403"), "{err}");
        assert!(err.contains("scripted refusal 1"), "{err}");
        assert_eq!(requests, 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_busy_operator_is_asked_five_times_at_most() {
        let busy = [(StatusCode::SERVICE_UNAVAILABLE, Some("0")); 6];
        let (outcome, requests, _) = enroll_refused(&busy).await;
        let err = outcome.expect_err("still busy").to_string();
        assert!(err.contains("HTTP 503"), "{err}");
        assert!(err.contains("scripted refusal 5"), "{err}");
        assert_eq!(requests, ENROLL_ATTEMPTS as usize);
    }

    #[test]
    fn host_names_become_dns_names() {
        assert_eq!(dns_name("Web_01.Example.COM\n"), "web-01.example.com");
        assert_eq!(dns_name("-x-..y"), "x.y");
        assert!(!default_device_name().is_empty());
    }

    #[test]
    fn fingerprints_parse() {
        let hex64 = "ab".repeat(32);
        assert_eq!(
            parse_fingerprint(&format!("sha256:{hex64}")).expect("ok"),
            [0xab; 32]
        );
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(
            parse_fingerprint(&format!("sha256:{colons}")).expect("ok"),
            [0xab; 32]
        );
        assert!(parse_fingerprint(&hex64).is_err());
        assert!(parse_fingerprint("sha256:abcd").is_err());
        assert!(parse_fingerprint(&format!("sha256:{}", "zz".repeat(32))).is_err());
    }

    #[test]
    fn csr_has_device_name_as_cn_and_key_is_pkcs8() {
        use x509_parser::prelude::FromDer;
        let (key_pem, csr_pem) = make_csr("web-1").expect("csr");
        assert!(key_pem.contains("BEGIN PRIVATE KEY"));
        let der = crate::state::pem_decode_all("CERTIFICATE REQUEST", &csr_pem)
            .pop()
            .expect("csr pem");
        let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
            .expect("parse");
        let cn = csr
            .certification_request_info
            .subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok());
        assert_eq!(cn, Some("web-1"));
        csr.verify_signature().expect("self-signed CSR verifies");
    }

    #[test]
    fn renewal_is_due_in_the_last_third() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::new(vec!["x".to_owned()]).expect("params");
        params.not_before = rcgen::date_time_ymd(2030, 1, 1);
        params.not_after = rcgen::date_time_ymd(2030, 1, 31); // 30 days
        let pem = params.self_signed(&key).expect("cert").pem();
        let (nb, na) = certificate_validity(&pem).expect("validity");
        assert_eq!(na - nb, 30 * 86400);
        assert!(!renewal_due(&pem, nb + 19 * 86400).expect("due"));
        assert!(renewal_due(&pem, nb + 21 * 86400).expect("due"));
        assert!(renewal_due(&pem, na + 1).expect("due"));
    }
}
