//! Verification of the short-lived Ed25519 JWTs agents send when TLS ends in front of the
//! operator (a load balancer or ingress) and client certificates cannot reach it.
//!
//! The agent signs `{"sub": <device uid>, "aud": "cdot-rmm", "iat", "exp", "jti"}` with the
//! key whose public half it registered at enrollment. Only `EdDSA` is accepted: no `none`,
//! no algorithm chosen by the token.
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Deserialize;
use uuid::Uuid;

pub const AUDIENCE: &str = "cdot-rmm";
/// Longest lifetime a token may claim.
pub const MAX_LIFETIME_SECS: i64 = 3600;
/// Tolerated clock difference between agent and operator.
pub const CLOCK_SKEW_SECS: i64 = 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is not a compact JWS (three base64url parts)")]
    Malformed,
    #[error("unsupported JWT header: {0}")]
    Header(String),
    #[error("invalid JWT claims: {0}")]
    Claims(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token's signature does not verify with the device's registered key")]
    Signature,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
struct Claims {
    sub: Uuid,
    aud: String,
    iat: i64,
    exp: i64,
}

/// Reads the subject without verifying, to find the key to verify with.
pub fn unverified_subject(token: &str) -> Result<Uuid, JwtError> {
    let (_, claims, _) = split(token)?;
    Ok(decode::<Claims>(claims)?.sub)
}

/// Verifies signature, audience and lifetime; returns the device uid.
pub fn verify(token: &str, public_key: &[u8], now: i64) -> Result<Uuid, JwtError> {
    let (header, claims, signature) = split(token)?;
    let header_value: Header = decode(header).map_err(|_| JwtError::Header("unreadable".into()))?;
    if header_value.alg != "EdDSA" {
        return Err(JwtError::Header(format!(
            "alg {:?} is not EdDSA",
            header_value.alg
        )));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| JwtError::Malformed)?;
    let signed = &token[..header.len() + 1 + claims.len()];
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| JwtError::Signature)?;
    let claims: Claims = decode(claims)?;
    if claims.aud != AUDIENCE {
        return Err(JwtError::Claims(format!(
            "aud {:?} is not {AUDIENCE:?}",
            claims.aud
        )));
    }
    if claims.exp - claims.iat > MAX_LIFETIME_SECS {
        return Err(JwtError::Claims(format!(
            "lifetime over {MAX_LIFETIME_SECS} s"
        )));
    }
    if claims.iat > now + CLOCK_SKEW_SECS {
        return Err(JwtError::Claims("issued in the future".into()));
    }
    if claims.exp + CLOCK_SKEW_SECS < now {
        return Err(JwtError::Expired);
    }
    Ok(claims.sub)
}

fn split(token: &str) -> Result<(&str, &str, &str), JwtError> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(c), Some(s), None) if !h.is_empty() && !c.is_empty() && !s.is_empty() => {
            Ok((h, c, s))
        }
        _ => Err(JwtError::Malformed),
    }
}

fn decode<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|e| JwtError::Claims(e.to_string()))
}

#[cfg(test)]
mod tests {
    use ring::signature::{Ed25519KeyPair, KeyPair as _};

    use super::*;

    fn sign(key: &Ed25519KeyPair, header: &str, claims: &serde_json::Value) -> String {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = key.sign(signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    fn key() -> Ed25519KeyPair {
        let pkcs8 =
            Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).expect("pkcs8");
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key")
    }

    const HEADER: &str = r#"{"alg":"EdDSA","typ":"JWT"}"#;

    #[test]
    fn a_good_token_names_its_device() {
        let key = key();
        let uid = Uuid::new_v4();
        let token = sign(
            &key,
            HEADER,
            &serde_json::json!({ "sub": uid, "aud": "cdot-rmm", "iat": 1000, "exp": 1300, "jti": "x" }),
        );
        assert_eq!(unverified_subject(&token), Ok(uid));
        assert_eq!(verify(&token, key.public_key().as_ref(), 1100), Ok(uid));
    }

    #[test]
    fn bad_tokens_are_refused() {
        let key = key();
        let other = self::key();
        let uid = Uuid::new_v4();
        let claims = serde_json::json!({ "sub": uid, "aud": "cdot-rmm", "iat": 1000, "exp": 1300 });
        let good = sign(&key, HEADER, &claims);
        assert_eq!(
            verify(&good, other.public_key().as_ref(), 1100),
            Err(JwtError::Signature)
        );
        assert_eq!(
            verify(&good, key.public_key().as_ref(), 2000),
            Err(JwtError::Expired)
        );
        let none = sign(&key, r#"{"alg":"none"}"#, &claims);
        assert!(matches!(
            verify(&none, key.public_key().as_ref(), 1100),
            Err(JwtError::Header(_))
        ));
        let long = sign(
            &key,
            HEADER,
            &serde_json::json!({ "sub": uid, "aud": "cdot-rmm", "iat": 1000, "exp": 100_000 }),
        );
        assert!(matches!(
            verify(&long, key.public_key().as_ref(), 1100),
            Err(JwtError::Claims(_))
        ));
        let audience = sign(
            &key,
            HEADER,
            &serde_json::json!({ "sub": uid, "aud": "other", "iat": 1000, "exp": 1300 }),
        );
        assert!(matches!(
            verify(&audience, key.public_key().as_ref(), 1100),
            Err(JwtError::Claims(_))
        ));
        assert_eq!(
            verify("a.b", key.public_key().as_ref(), 1100),
            Err(JwtError::Malformed)
        );
        let mut tampered = good.clone();
        tampered.insert(good.find('.').expect("dot") + 2, 'x');
        assert!(verify(&tampered, key.public_key().as_ref(), 1100).is_err());
    }
}
