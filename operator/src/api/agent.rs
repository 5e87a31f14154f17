//! Agent enrollment and certificate renewal.
use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{FromRequestParts, State, rejection::JsonRejection},
    http::{StatusCode, request::Parts},
    routing::{get, post},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use cdot_crds::{
    api_token::hash_token,
    device::DeviceSpec,
    validation::{is_dns1123_label, is_dns1123_subdomain},
    wire::{AgentConfig, EnrollRequest, EnrollResponse, RenewRequest, RenewResponse},
};

use super::{ApiError, AppState, agent_auth::DeviceIdentity};
use crate::{
    kubernetes::devices::{ClusterDevices, NewDevice},
    metrics::ResultLabels,
    pki::{Authority, PkiError},
    store::agents::{AgentCredentials, EnrollmentError, EnrollmentRefusal, EnrollmentRequest},
};

/// The CA and how long the certificates it issues live.
#[derive(Debug)]
pub struct AgentPki {
    pub authority: Authority,
    pub certificate_validity: std::time::Duration,
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/enroll", post(enroll))
        .route("/renew", post(renew))
        .route("/ca.pem", get(ca_pem))
}

fn pki(state: &AppState) -> Result<&Arc<AgentPki>, ApiError> {
    state.pki.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "agent enrollment is not configured",
        )
    })
}

/// The CA certificate, for agents that pin its fingerprint instead of being given the file.
async fn ca_pem(State(state): State<AppState>) -> Result<String, ApiError> {
    Ok(pki(&state)?.authority.ca_pem().to_owned())
}

pub(crate) fn json_error(rejection: JsonRejection) -> ApiError {
    ApiError::new(rejection.status(), "BadRequest", rejection.body_text())
}

fn check_request(request: &EnrollRequest) -> Result<Option<Vec<u8>>, ApiError> {
    if request.token.trim().is_empty() {
        return Err(ApiError::bad_request(
            "the enrollment token is empty",
            "token",
        ));
    }
    if !is_dns1123_subdomain(&request.device_name) {
        return Err(ApiError::bad_request(
            format!(
                "{:?} is not a valid device name (lowercase RFC 1123 subdomain, at most 253 characters)",
                request.device_name
            ),
            "deviceName",
        ));
    }
    if let Some(namespace) = &request.namespace
        && !is_dns1123_label(namespace)
    {
        return Err(ApiError::bad_request(
            format!("{namespace:?} is not a valid namespace name"),
            "namespace",
        ));
    }
    if request.agent_version.is_empty() || request.agent_version.len() > 64 {
        return Err(ApiError::bad_request(
            "agentVersion must have 1 to 64 characters",
            "agentVersion",
        ));
    }
    match (&request.csr_pem, &request.jwt_public_key) {
        (Some(_), None) => Ok(None),
        (None, Some(key)) => match URL_SAFE_NO_PAD.decode(key) {
            Ok(key) if key.len() == 32 => Ok(Some(key)),
            _ => Err(ApiError::bad_request(
                "jwtPublicKey must be a 32-byte Ed25519 key in base64url without padding",
                "jwtPublicKey",
            )),
        },
        _ => Err(ApiError::bad_request(
            "set exactly one of csrPem (mutual TLS) and jwtPublicKey (JWT)",
            "csrPem",
        )),
    }
}

/// `POST /v1/agent/enroll`: a one-time token buys a device identity and credentials.
async fn enroll(
    State(state): State<AppState>,
    body: Result<Json<EnrollRequest>, JsonRejection>,
) -> Result<Json<EnrollResponse>, ApiError> {
    let Json(request) = body.map_err(json_error)?;
    let result = enroll_checked(&state, &request).await;
    let label = match &result {
        Ok(_) => "enrolled",
        Err(e) if e.status.is_client_error() => "refused",
        Err(_) => "failed",
    };
    state
        .metrics
        .enrollments
        .get_or_create(&ResultLabels {
            result: label.into(),
        })
        .inc();
    result.map(Json)
}

async fn enroll_checked(
    state: &AppState,
    request: &EnrollRequest,
) -> Result<EnrollResponse, ApiError> {
    let jwt_key = check_request(request)?;
    let pki = pki(state)?;
    let default_spec = serde_json::to_value(DeviceSpec {
        class: request.device_class.unwrap_or_default(),
        ..DeviceSpec::default()
    })
    .unwrap_or_default();
    if let Some(devices) = &state.devices {
        create_in_cluster(state, devices, request, &default_spec).await?;
    }
    let mut issued = None;
    let enrolled = state
        .store
        .enroll(
            EnrollmentRequest {
                token_sha256: hash_token(request.token.trim()),
                namespace: request.namespace.as_deref(),
                device_name: &request.device_name,
                agent_version: &request.agent_version,
                default_spec,
            },
            |uid, namespace| match (&request.csr_pem, jwt_key) {
                (Some(csr), _) => {
                    let cert = pki.authority.sign_agent_csr(
                        csr,
                        uid,
                        namespace,
                        &request.device_name,
                        pki.certificate_validity,
                    )?;
                    let credentials = AgentCredentials::Certificate {
                        serial: cert.serial.clone(),
                        expiry: cert.expiry,
                    };
                    issued = Some(cert);
                    Ok(credentials)
                }
                (None, Some(public_key)) => Ok(AgentCredentials::Jwt { public_key }),
                (None, None) => Err(PkiError::Create(
                    rcgen::Error::CouldNotParseCertificationRequest,
                )),
            },
        )
        .await
        .map_err(enrollment_error)?;
    state.agents.forget(enrolled.device_uid);
    // Into the index now, so that its first report is evaluated against the rules that
    // select it, not only after the next reconcile pass.
    if let Ok(Some(device)) = state
        .store
        .get_object(
            &enrolled.namespace,
            cdot_crds::Kind::Device,
            &enrolled.device_name,
        )
        .await
    {
        state.index.upsert(&device);
    }
    state.changes.changed(
        cdot_crds::Kind::Device,
        &enrolled.namespace,
        &enrolled.device_name,
    );
    tracing::info!(
        namespace = %enrolled.namespace,
        device = %enrolled.device_name,
        uid = %enrolled.device_uid,
        created = enrolled.created,
        auth = if issued.is_some() { "mtls" } else { "jwt" },
        "agent enrolled"
    );
    let config = match state
        .store
        .get_object(
            &enrolled.namespace,
            cdot_crds::Kind::Device,
            &enrolled.device_name,
        )
        .await?
    {
        Some(device) => serde_json::from_value::<DeviceSpec>(device.spec)
            .map(|spec| crate::reconcile::device::agent_config(&spec))
            .unwrap_or_default(),
        None => AgentConfig::default(),
    };
    Ok(EnrollResponse {
        namespace: enrolled.namespace,
        device_name: enrolled.device_name,
        device_uid: enrolled.device_uid,
        certificate_expiry: issued.as_ref().map(|c| c.expiry.to_string()),
        certificate_pem: issued.map(|c| c.pem),
        ca_pem: pki.authority.ca_pem().to_owned(),
        config,
    })
}

/// Kubernetes mode: a token that will be accepted, for a Device that does not exist yet,
/// first creates the Device through the API server. Refusals are left to the enrollment
/// transaction, so they read the same in both modes.
async fn create_in_cluster(
    state: &AppState,
    devices: &ClusterDevices,
    request: &EnrollRequest,
    spec: &serde_json::Value,
) -> Result<(), ApiError> {
    let hash = hash_token(request.token.trim());
    let token = state
        .store
        .usable_enrollment_token(&hash)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let Some(token) = token else {
        return Ok(());
    };
    let namespace = token.namespace;
    if request
        .namespace
        .as_ref()
        .is_some_and(|ns| *ns != namespace)
        || token
            .device
            .as_ref()
            .is_some_and(|device| *device != request.device_name)
    {
        return Ok(());
    }
    let exists = state
        .store
        .get_object(&namespace, cdot_crds::Kind::Device, &request.device_name)
        .await
        .map_err(|e| ApiError::internal(&e))?
        .is_some();
    if exists {
        return Ok(());
    }
    devices
        .ensure(
            &state.store,
            NewDevice {
                namespace: &namespace,
                name: &request.device_name,
                token_name: &token.name,
                labels: &token.labels,
                spec,
            },
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "enrollment could not create its Device");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                format!("the Device could not be created in the cluster; try again: {e}"),
            )
        })
}

fn enrollment_error(error: EnrollmentError<PkiError>) -> ApiError {
    match error {
        EnrollmentError::Refused(refusal) => {
            let message = refusal.to_string();
            match refusal {
                EnrollmentRefusal::UnknownToken | EnrollmentRefusal::Expired { .. } => {
                    ApiError::unauthorized(message).with_field("token")
                }
                EnrollmentRefusal::Exhausted { .. } => {
                    ApiError::new(StatusCode::FORBIDDEN, "Forbidden", message).with_field("token")
                }
                EnrollmentRefusal::WrongNamespace { .. } => {
                    ApiError::new(StatusCode::FORBIDDEN, "Forbidden", message)
                        .with_field("namespace")
                }
                EnrollmentRefusal::WrongDevice { .. } => {
                    ApiError::new(StatusCode::FORBIDDEN, "Forbidden", message)
                        .with_field("deviceName")
                }
                EnrollmentRefusal::AlreadyEnrolled { .. } => {
                    ApiError::new(StatusCode::CONFLICT, "AlreadyEnrolled", message)
                        .with_field("deviceName")
                }
            }
        }
        EnrollmentError::Credentials(PkiError::Csr(e)) => ApiError::bad_request(
            format!("the certificate signing request is invalid: {e}"),
            "csrPem",
        ),
        EnrollmentError::Credentials(e) => ApiError::internal(&e),
        EnrollmentError::Store(e) => ApiError::internal(&e),
    }
}

/// Renewal must present the current certificate: a JWT cannot renew a certificate.
struct ClientCertificate {
    /// Serial (hex) of the presented certificate.
    serial: String,
}

impl FromRequestParts<AppState> for ClientCertificate {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        super::agent_auth::client_certificate_serial(parts)
            .map(|serial| ClientCertificate { serial })
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    "renewal needs the current client certificate (mutual TLS)",
                )
            })
    }
}

/// `POST /v1/agent/renew`: a new certificate for the same identity.
async fn renew(
    State(state): State<AppState>,
    certificate: ClientCertificate,
    identity: DeviceIdentity,
    body: Result<Json<RenewRequest>, JsonRejection>,
) -> Result<Json<RenewResponse>, ApiError> {
    let Json(request) = body.map_err(json_error)?;
    let pki = pki(&state)?;
    let cert = pki
        .authority
        .sign_agent_csr(
            &request.csr_pem,
            identity.uid,
            &identity.namespace,
            &identity.name,
            pki.certificate_validity,
        )
        .map_err(|e| match e {
            PkiError::Csr(e) => ApiError::bad_request(
                format!("the certificate signing request is invalid: {e}"),
                "csrPem",
            ),
            other => ApiError::internal(&other),
        })?;
    state
        .store
        .renew_agent_certificate(identity.uid, &certificate.serial, &cert.serial, cert.expiry)
        .await?;
    state.agents.forget(identity.uid);
    tracing::info!(namespace = %identity.namespace, device = %identity.name, expiry = %cert.expiry, "agent certificate renewed");
    Ok(Json(RenewResponse {
        certificate_expiry: cert.expiry.to_string(),
        certificate_pem: cert.pem,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> EnrollRequest {
        EnrollRequest {
            token: "cdot_x".into(),
            device_name: "web-01".into(),
            namespace: None,
            csr_pem: Some("csr".into()),
            jwt_public_key: None,
            agent_version: "0.1.0".into(),
            device_class: None,
        }
    }

    #[test]
    fn enrollment_requests_are_checked_field_by_field() {
        assert!(check_request(&request()).is_ok());
        let field = |r: EnrollRequest| check_request(&r).expect_err("refused").field;
        assert_eq!(
            field(EnrollRequest {
                device_name: "Web_01".into(),
                ..request()
            })
            .as_deref(),
            Some("deviceName")
        );
        assert_eq!(
            field(EnrollRequest {
                namespace: Some("ACME".into()),
                ..request()
            })
            .as_deref(),
            Some("namespace")
        );
        assert_eq!(
            field(EnrollRequest {
                token: " ".into(),
                ..request()
            })
            .as_deref(),
            Some("token")
        );
        assert_eq!(
            field(EnrollRequest {
                jwt_public_key: Some("AAAA".into()),
                ..request()
            })
            .as_deref(),
            Some("csrPem")
        );
        assert_eq!(
            field(EnrollRequest {
                csr_pem: None,
                jwt_public_key: Some("AAAA".into()),
                ..request()
            })
            .as_deref(),
            Some("jwtPublicKey")
        );
        let key = URL_SAFE_NO_PAD.encode([7u8; 32]);
        assert_eq!(
            check_request(&EnrollRequest {
                csr_pem: None,
                jwt_public_key: Some(key),
                ..request()
            })
            .expect("ok"),
            Some(vec![7u8; 32])
        );
    }
}
