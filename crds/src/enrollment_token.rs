//! Agent enrollment tokens as Secret-shaped documents.
//!
//! ```yaml
//! apiVersion: v1
//! kind: Secret
//! type: rmm.cdot.io/enrollment-token
//! metadata: {name: acme-laptops, namespace: acme}
//! stringData:
//!   tokenHash: "sha256:<64 hex>"
//!   expires: "2026-12-31T00:00:00Z"   # optional; RFC 3339
//!   maxUses: "25"                     # optional; default 1 (one-time)
//!   labels: "rmm.cdot.io/site=london,role=laptop"   # optional; put on enrolled Devices
//!   device: "web-01"                  # optional; see below
//! ```
//!
//! A token belongs to its namespace: devices that enroll with it are created there. A token
//! enrolls new Devices and claims declared Devices that no agent has enrolled yet; it never
//! takes over a Device whose agent is enrolled. Only a token bound to one Device (`device`)
//! may enroll that Device again, replacing (and so revoking) its current credentials, and
//! it enrolls no other (ADR 15).
use std::{collections::BTreeMap, fmt};

use crate::{
    FieldError,
    api_token::{format_token_hash, hash_token, parse_token_hash},
    excerpt::excerpt,
};

/// `type` of an enrollment token Secret.
pub const SECRET_TYPE: &str = "rmm.cdot.io/enrollment-token";

/// A parsed enrollment token document.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrollmentToken {
    /// Secret name.
    pub name: String,
    /// Namespace the enrolled devices join.
    pub namespace: String,
    /// SHA-256 of the token.
    pub token_sha256: [u8; 32],
    /// When the token stops working; `None` = never.
    pub expires: Option<jiff::Timestamp>,
    /// How many enrollments the token allows.
    pub max_uses: u32,
    /// Labels put on Devices created by this token.
    pub labels: BTreeMap<String, String>,
    /// The only Device this token enrolls, replacing its agent's credentials if it has
    /// one (re-enrollment); `None` = any new or never-enrolled Device of the namespace.
    pub device: Option<String>,
}

impl fmt::Debug for EnrollmentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollmentToken")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("expires", &self.expires)
            .field("max_uses", &self.max_uses)
            .field("labels", &self.labels)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl EnrollmentToken {
    /// Builds a token from a Secret's (decoded) data. Errors name `stringData.<key>` paths.
    pub fn from_secret_data(
        name: &str,
        namespace: &str,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<EnrollmentToken, Vec<FieldError>> {
        let mut errs = Vec::new();
        let text = |k: &str, errs: &mut Vec<FieldError>| -> Option<String> {
            let bytes = data.get(k)?;
            match std::str::from_utf8(bytes) {
                Ok(s) => Some(s.trim().to_owned()),
                Err(_) => {
                    errs.push(FieldError::new(format!("stringData.{k}"), "must be UTF-8"));
                    None
                }
            }
        };
        let hash = match text("tokenHash", &mut errs) {
            None => {
                errs.push(FieldError::new("stringData.tokenHash", "required"));
                None
            }
            Some(h) => parse_token_hash(&h)
                .map_err(|e| errs.push(FieldError::new("stringData.tokenHash", e)))
                .ok(),
        };
        let expires = text("expires", &mut errs).and_then(|e| {
            e.parse::<jiff::Timestamp>()
                .map_err(|err| {
                    errs.push(FieldError::new(
                        "stringData.expires",
                        format!("{} is not an RFC 3339 time: {err}", excerpt(&e)),
                    ))
                })
                .ok()
        });
        let max_uses = match text("maxUses", &mut errs) {
            None => 1,
            Some(m) => match m.parse::<u32>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    errs.push(FieldError::new(
                        "stringData.maxUses",
                        format!("{} is not a whole number of at least 1", excerpt(&m)),
                    ));
                    1
                }
            },
        };
        let mut labels = BTreeMap::new();
        if let Some(list) = text("labels", &mut errs) {
            for pair in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some((k, v))
                        if crate::validation::check_label_key(k.trim()).is_ok()
                            && crate::validation::check_label_value(v.trim()).is_ok() =>
                    {
                        labels.insert(k.trim().to_owned(), v.trim().to_owned());
                    }
                    _ => errs.push(FieldError::new(
                        "stringData.labels",
                        format!("{} is not a valid key=value label", excerpt(pair)),
                    )),
                }
            }
        }
        let device = text("device", &mut errs).filter(|d| {
            let valid = crate::validation::is_dns1123_subdomain(d);
            if !valid {
                errs.push(FieldError::new(
                    "stringData.device",
                    format!("{d:?} is not a valid Device name (lowercase RFC 1123 subdomain)"),
                ));
            }
            valid
        });
        match hash {
            Some(token_sha256) if errs.is_empty() => Ok(EnrollmentToken {
                name: name.to_owned(),
                namespace: namespace.to_owned(),
                token_sha256,
                expires,
                max_uses,
                labels,
                device,
            }),
            _ => Err(errs),
        }
    }
}

/// Renders the Secret document for a new enrollment token (only its hash is written);
/// `device` binds it to that Device (re-enrollment).
pub fn render_enrollment_secret(
    name: &str,
    namespace: &str,
    token: &str,
    expires: Option<jiff::Timestamp>,
    max_uses: u32,
    device: Option<&str>,
    labels: &[(String, String)],
) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut out = format!(
        "apiVersion: v1\nkind: Secret\ntype: {SECRET_TYPE}\nmetadata:\n  name: {}\n  namespace: {}\nstringData:\n  tokenHash: {}\n  maxUses: \"{max_uses}\"\n",
        q(name),
        q(namespace),
        q(&format_token_hash(&hash_token(token))),
    );
    if let Some(expires) = expires {
        out.push_str(&format!("  expires: {}\n", q(&expires.to_string())));
    }
    if let Some(device) = device {
        out.push_str(&format!("  device: {}\n", q(device)));
    }
    if !labels.is_empty() {
        let joined: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!("  labels: {}\n", q(&joined.join(","))));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    const HASH: &str = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn defaults_to_one_use_without_expiry() {
        let t = EnrollmentToken::from_secret_data("t", "acme", &data(&[("tokenHash", HASH)]))
            .expect("valid");
        assert_eq!((t.max_uses, t.expires, t.labels.len()), (1, None, 0));
    }

    #[test]
    fn reads_expiry_uses_and_labels() {
        let t = EnrollmentToken::from_secret_data(
            "t",
            "acme",
            &data(&[
                ("tokenHash", HASH),
                ("expires", "2026-12-31T00:00:00Z"),
                ("maxUses", "5"),
                ("labels", "rmm.cdot.io/site=london, role=laptop"),
            ]),
        )
        .expect("valid");
        assert_eq!(t.max_uses, 5);
        assert_eq!(t.labels["rmm.cdot.io/site"], "london");
        assert!(t.expires.is_some());
    }

    #[test]
    fn bad_fields_are_named() {
        let errs = EnrollmentToken::from_secret_data(
            "t",
            "acme",
            &data(&[
                ("tokenHash", "plain"),
                ("expires", "tomorrow"),
                ("maxUses", "0"),
                ("labels", "=x"),
                ("device", "Web_01"),
            ]),
        )
        .expect_err("invalid");
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "stringData.tokenHash",
                "stringData.expires",
                "stringData.maxUses",
                "stringData.labels",
                "stringData.device"
            ]
        );
    }

    #[test]
    fn rendered_secret_round_trips() {
        let yaml = render_enrollment_secret("laptops", "acme", "cdot_enroll_x", None, 3, None, &[]);
        let value: serde_json::Value = serde_saphyr::from_str(&yaml).expect("yaml");
        let doc = crate::manifest::validate_document(&value).expect("valid");
        let crate::manifest::Document::EnrollmentToken(t) = doc else {
            panic!("not an enrollment token: {doc:?}")
        };
        assert_eq!(
            (t.max_uses, t.token_sha256, t.device),
            (3, hash_token("cdot_enroll_x"), None)
        );
    }

    #[test]
    fn a_token_bound_to_a_device_round_trips() {
        let yaml = render_enrollment_secret(
            "web-01-again",
            "acme",
            "cdot_x",
            None,
            1,
            Some("web-01"),
            &[("role".into(), "server".into())],
        );
        let value: serde_json::Value = serde_saphyr::from_str(&yaml).expect("yaml");
        let doc = crate::manifest::validate_document(&value).expect("valid");
        let crate::manifest::Document::EnrollmentToken(t) = doc else {
            panic!("not an enrollment token: {doc:?}")
        };
        assert_eq!(t.device.as_deref(), Some("web-01"));
        assert_eq!(t.labels.get("role").map(String::as_str), Some("server"));
    }
}
