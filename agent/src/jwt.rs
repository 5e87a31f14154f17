//! JWTs signed with the agent's Ed25519 key (compact JWS, `alg` `EdDSA`).
//!
//! Header `{"alg":"EdDSA","typ":"JWT"}`, claims `{"sub":"<deviceUid>","aud":"cdot-rmm",
//! "iat":<unix s>,"exp":<iat+300>,"jti":"<uuid v4>"}`, each part base64url without padding.
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ring::{
    rand::SystemRandom,
    signature::{Ed25519KeyPair, KeyPair},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `aud` of every agent JWT.
pub const AUDIENCE: &str = "cdot-rmm";
/// Seconds a JWT is valid.
pub const LIFETIME_SECS: i64 = 300;
/// The fixed JOSE header.
pub const HEADER_JSON: &str = r#"{"alg":"EdDSA","typ":"JWT"}"#;
/// PEM label of the stored key.
pub const PEM_LABEL: &str = "PRIVATE KEY";

/// Claims of an agent JWT.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// The device uid.
    pub sub: String,
    /// Always [`AUDIENCE`].
    pub aud: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expiry, Unix seconds (`iat + 300`).
    pub exp: i64,
    /// Unique token id (UUID v4).
    pub jti: String,
}

/// Failure handling an Ed25519 key.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// Key generation failed.
    #[error("failed to generate an Ed25519 key")]
    Generate,
    /// The key is not a valid Ed25519 PKCS#8 document.
    #[error("invalid Ed25519 PKCS#8 key: {0}")]
    InvalidKey(String),
}

/// Makes a new Ed25519 key; returns its PKCS#8 DER.
pub fn generate_pkcs8() -> Result<Vec<u8>, JwtError> {
    Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map(|doc| doc.as_ref().to_vec())
        .map_err(|_| JwtError::Generate)
}

/// Signs JWTs for one device.
pub struct JwtSigner {
    key: Ed25519KeyPair,
    subject: String,
}

impl std::fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSigner")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl JwtSigner {
    /// A signer from a PKCS#8 DER key; `subject` is the device uid.
    pub fn from_pkcs8(der: &[u8], subject: impl Into<String>) -> Result<Self, JwtError> {
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| JwtError::InvalidKey(e.to_string()))?;
        Ok(Self {
            key,
            subject: subject.into(),
        })
    }

    /// A signer from a PEM (`PRIVATE KEY`) key.
    pub fn from_pem(pem: &str, subject: impl Into<String>) -> Result<Self, JwtError> {
        let der = crate::state::pem_decode_all(PEM_LABEL, pem)
            .into_iter()
            .next()
            .ok_or_else(|| JwtError::InvalidKey("no PRIVATE KEY block in PEM".into()))?;
        Self::from_pkcs8(&der, subject)
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    /// The public key as sent in `EnrollRequest.jwtPublicKey` (base64url, no padding).
    pub fn public_key_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public_key())
    }

    /// A token issued at `iat` (Unix seconds).
    pub fn token_at(&self, iat: i64) -> String {
        let claims = Claims {
            sub: self.subject.clone(),
            aud: AUDIENCE.to_owned(),
            iat,
            exp: iat + LIFETIME_SECS,
            jti: Uuid::new_v4().to_string(),
        };
        // Serializing a struct of strings and integers cannot fail.
        let claims_json = serde_json::to_vec(&claims).unwrap_or_default();
        let mut token = URL_SAFE_NO_PAD.encode(HEADER_JSON);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(claims_json, &mut token);
        let signature = self.key.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
        token
    }

    /// A token issued now.
    pub fn token(&self) -> String {
        self.token_at(unix_now())
    }
}

/// Current time, Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use ring::signature::{ED25519, UnparsedPublicKey};

    use super::*;

    #[test]
    fn token_has_the_documented_shape_and_verifies() {
        let der = generate_pkcs8().expect("generate");
        let uid = Uuid::new_v4().to_string();
        let signer = JwtSigner::from_pkcs8(&der, uid.clone()).expect("signer");
        let token = signer.token_at(1_700_000_000);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "{token}");
        assert!(!token.contains('='), "no padding: {token}");

        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
        assert_eq!(header, serde_json::json!({"alg": "EdDSA", "typ": "JWT"}));

        let claims: Claims =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
        assert_eq!(claims.sub, uid);
        assert_eq!(claims.aud, "cdot-rmm");
        assert_eq!(claims.iat, 1_700_000_000);
        assert_eq!(claims.exp, 1_700_000_300);
        let jti = Uuid::parse_str(&claims.jti).expect("jti is a uuid");
        assert_eq!(jti.get_version_num(), 4);

        let public = URL_SAFE_NO_PAD
            .decode(signer.public_key_b64())
            .expect("b64");
        assert_eq!(public.len(), 32);
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("b64");
        let signed = format!("{}.{}", parts[0], parts[1]);
        UnparsedPublicKey::new(&ED25519, &public)
            .verify(signed.as_bytes(), &signature)
            .expect("signature verifies");
        // A changed claim no longer verifies.
        let tampered = format!("{}.{}x", parts[0], parts[1]);
        assert!(
            UnparsedPublicKey::new(&ED25519, &public)
                .verify(tampered.as_bytes(), &signature)
                .is_err()
        );
        // Two tokens never share a jti.
        assert_ne!(signer.token_at(1), signer.token_at(1));
    }

    #[test]
    fn pem_key_round_trips() {
        let der = generate_pkcs8().expect("generate");
        let pem = crate::state::pem_encode(PEM_LABEL, &der);
        let a = JwtSigner::from_pkcs8(&der, "x").expect("der");
        let b = JwtSigner::from_pem(&pem, "x").expect("pem");
        assert_eq!(a.public_key(), b.public_key());
        assert!(JwtSigner::from_pem("garbage", "x").is_err());
    }
}
