//! The operator's certificate authority: issues agent client certificates from their CSRs
//! and the agent listener's server certificate, and verifies agents' signed JWTs.
//!
//! The CA lives in PostgreSQL (the single store every replica shares), created once by the
//! first operator that starts. A client certificate names its device by a URI SAN
//! `urn:cdot-rmm:device:<uid>`; the subject is informational only.
use std::{sync::Arc, time::Duration};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::store::{Store, StoreError};

pub mod jwt;

const DEVICE_URI_PREFIX: &str = "urn:cdot-rmm:device:";
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Certificates are valid from a little in the past, for clocks that lag behind.
const BACKDATE: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("failed to create the certificate authority: {0}")]
    Create(rcgen::Error),
    #[error("the stored certificate authority is unusable: {0}")]
    Load(rcgen::Error),
    #[error("the certificate signing request is invalid: {0}")]
    Csr(rcgen::Error),
    #[error("failed to sign a certificate for {subject}: {source}")]
    Sign {
        subject: String,
        source: rcgen::Error,
    },
    #[error("failed to build the TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("failed to build the client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A certificate issued to an agent.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    pub pem: String,
    pub serial: String,
    pub expiry: jiff::Timestamp,
}

pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: Vec<u8>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// Loads the CA from the store, creating it on first use. Replicas racing to create it
    /// converge on whichever insert won.
    pub async fn load_or_create(store: &Store) -> Result<Self, PkiError> {
        if let Some((cert, key)) = store.certificate_authority().await? {
            return Self::from_pem(&cert, &key);
        }
        let key = KeyPair::generate().map_err(PkiError::Create)?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "cdot-rmm agent CA");
        name.push(DnType::OrganizationName, "cdot-rmm");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        let cert = params.self_signed(&key).map_err(PkiError::Create)?;
        store
            .insert_certificate_authority(&cert.pem(), &key.serialize_pem())
            .await?;
        let (cert, key) = store
            .certificate_authority()
            .await?
            .ok_or(PkiError::Create(rcgen::Error::CouldNotParseCertificate))?;
        let authority = Self::from_pem(&cert, &key)?;
        tracing::info!(fingerprint = %authority.fingerprint(), "created the agent certificate authority");
        Ok(authority)
    }

    fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(PkiError::Load)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(PkiError::Load)?;
        let cert_der =
            pem_to_der(cert_pem).ok_or(PkiError::Load(rcgen::Error::CouldNotParseCertificate))?;
        Ok(Self {
            issuer,
            cert_pem: cert_pem.to_owned(),
            cert_der,
        })
    }

    pub fn ca_pem(&self) -> &str {
        &self.cert_pem
    }

    /// `sha256:<hex>` of the CA certificate's DER: what agents pin with `--ca-fingerprint`.
    pub fn fingerprint(&self) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(&self.cert_der)))
    }

    /// Signs an agent's CSR. Only the CSR's public key is used: the identity in the
    /// certificate is the one the operator decided.
    pub fn sign_agent_csr(
        &self,
        csr_pem: &str,
        uid: Uuid,
        namespace: &str,
        name: &str,
        validity: Duration,
    ) -> Result<IssuedCertificate, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(PkiError::Csr)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("{name}.{namespace}"));
        dn.push(DnType::OrganizationName, namespace);
        params.distinguished_name = dn;
        let uri = format!("{DEVICE_URI_PREFIX}{uid}");
        params.subject_alt_names = vec![SanType::URI(uri.clone().try_into().map_err(|e| {
            PkiError::Sign {
                subject: uri.clone(),
                source: e,
            }
        })?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let serial: [u8; 16] = rand::random();
        // A positive serial: clear the top bit.
        let mut serial = serial;
        serial[0] &= 0x7f;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + validity;
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(|source| PkiError::Sign {
                subject: format!("{namespace}/{name}"),
                source,
            })?;
        let expiry = jiff::Timestamp::from_second(params.not_after.unix_timestamp())
            .unwrap_or(jiff::Timestamp::MAX);
        Ok(IssuedCertificate {
            pem: cert.pem(),
            serial: hex::encode(serial),
            expiry,
        })
    }

    /// TLS for the agent listener: a fresh server certificate for `hostnames` signed by the CA,
    /// and client certificates verified against the CA but not required (enrollment has none;
    /// the routes that need an identity refuse requests without one).
    pub fn agent_server_config(
        &self,
        hostnames: &[String],
    ) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        let key = KeyPair::generate().map_err(PkiError::Create)?;
        let mut params =
            CertificateParams::new(hostnames.to_vec()).map_err(|source| PkiError::Sign {
                subject: hostnames.join(","),
                source,
            })?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "cdot-rmm operator");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + Duration::from_secs(365 * 24 * 3600);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| PkiError::Sign {
                subject: hostnames.join(","),
                source,
            })?;

        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert_der.clone().into())?;
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .allow_unauthenticated()
            .build()?;
        let chain = vec![cert.der().clone(), self.cert_der.clone().into()];
        let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let mut config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key_der)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The device uid a client certificate (already verified against the CA) names.
pub fn device_uid_from_certificate(der: &[u8]) -> Option<Uuid> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) => {
            uri.strip_prefix(DEVICE_URI_PREFIX)?.parse().ok()
        }
        _ => None,
    })
}

/// The serial (hex, without leading zero bytes) of a DER certificate.
pub fn certificate_serial(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let serial = hex::encode(cert.raw_serial());
    Some(crate::store::agents::normalize_serial(&serial).to_owned())
}

fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority() -> Authority {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("ca");
        Authority::from_pem(&cert.pem(), &key.serialize_pem()).expect("authority")
    }

    #[test]
    fn issued_certificates_name_the_device_the_operator_chose() {
        let ca = authority();
        let agent_key = KeyPair::generate().expect("key");
        // The agent asks for another identity in its CSR; it must be ignored.
        let csr = CertificateParams::new(vec![
            "urn:cdot-rmm:device:00000000-0000-0000-0000-000000000000".into(),
        ])
        .expect("params")
        .serialize_request(&agent_key)
        .expect("csr")
        .pem()
        .expect("pem");
        let uid = Uuid::new_v4();
        let issued = ca
            .sign_agent_csr(&csr, uid, "acme", "web-01", Duration::from_secs(3600))
            .expect("signed");
        let der = pem_to_der(&issued.pem).expect("der");
        assert_eq!(device_uid_from_certificate(&der), Some(uid));
        let lifetime = issued.expiry.as_second() - jiff::Timestamp::now().as_second();
        assert!((3500..=3600).contains(&lifetime), "{lifetime}");
    }

    #[test]
    fn a_broken_csr_is_refused() {
        let ca = authority();
        let err = ca.sign_agent_csr(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            Uuid::nil(),
            "acme",
            "x",
            Duration::from_secs(60),
        );
        assert!(matches!(err, Err(PkiError::Csr(_))), "{err:?}");
    }

    #[test]
    fn the_server_config_builds_and_fingerprints_are_stable() {
        let ca = authority();
        let _ = rustls::crypto::ring::default_provider().install_default();
        ca.agent_server_config(&["localhost".into(), "127.0.0.1".into()])
            .expect("config");
        assert_eq!(ca.fingerprint(), ca.fingerprint());
        assert!(ca.fingerprint().starts_with("sha256:") && ca.fingerprint().len() == 7 + 64);
    }
}
