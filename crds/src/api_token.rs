//! API tokens as Secret-shaped documents.
//!
//! ```yaml
//! apiVersion: v1
//! kind: Secret
//! type: rmm.cdot.io/api-token
//! metadata: {name: ops-alice, namespace: cdot-system}
//! stringData:
//!   tokenHash: "sha256:<64 hex>"
//!   role: operator            # viewer | operator | admin
//!   namespaces: "acme,globex" # "*" for every namespace
//! ```
//!
//! Manifests live in git, so they only ever hold the SHA-256 of a token, never the token.

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    FieldError,
    excerpt::excerpt,
    validation::{is_dns1123_label, is_dns1123_subdomain},
};

/// `type` of an API token Secret.
pub const SECRET_TYPE: &str = "rmm.cdot.io/api-token";

/// What a token may do.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read devices, alerts, reports.
    Viewer,
    /// Viewer plus acknowledge/silence alerts and run workflows.
    Operator,
    /// Everything.
    Admin,
}

impl Role {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed API token document.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Secret name.
    pub name: String,
    /// Secret namespace.
    pub namespace: String,
    /// SHA-256 of the token.
    pub token_sha256: [u8; 32],
    /// Role.
    pub role: Role,
    /// Namespaces the token may access; `*` means all.
    pub namespaces: Vec<String>,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("role", &self.role)
            .field("namespaces", &self.namespaces)
            .finish_non_exhaustive()
    }
}

impl ApiToken {
    /// Whether the token may access `namespace`.
    pub fn allows_namespace(&self, namespace: &str) -> bool {
        self.namespaces.iter().any(|n| n == "*" || n == namespace)
    }

    /// Builds a token from a Secret's (decoded) data. Errors name `data.<key>` paths.
    pub fn from_secret_data(
        name: &str,
        namespace: &str,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<ApiToken, Vec<FieldError>> {
        let mut errs = Vec::new();
        let get = |k: &str, errs: &mut Vec<FieldError>| -> Option<String> {
            match data.get(k) {
                None => {
                    errs.push(FieldError::new(format!("stringData.{k}"), "required"));
                    None
                }
                Some(v) => match String::from_utf8(v.clone()) {
                    Ok(s) => Some(s.trim().to_owned()),
                    Err(_) => {
                        errs.push(FieldError::new(format!("stringData.{k}"), "must be UTF-8"));
                        None
                    }
                },
            }
        };
        let hash = get("tokenHash", &mut errs).and_then(|h| match parse_token_hash(&h) {
            Ok(v) => Some(v),
            Err(e) => {
                errs.push(FieldError::new("stringData.tokenHash", e));
                None
            }
        });
        let role = get("role", &mut errs).and_then(|r| match Role::parse(&r) {
            Some(r) => Some(r),
            None => {
                errs.push(FieldError::new(
                    "stringData.role",
                    format!(
                        "unknown role {}: expected viewer, operator or admin",
                        excerpt(&r)
                    ),
                ));
                None
            }
        });
        let namespaces = get("namespaces", &mut errs).map(|n| {
            n.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        });
        if let Some(ns) = &namespaces {
            if ns.is_empty() {
                errs.push(FieldError::new(
                    "stringData.namespaces",
                    "list at least one namespace (comma-separated) or \"*\"",
                ));
            }
            for n in ns {
                if n != "*" && !is_dns1123_label(n) {
                    errs.push(FieldError::new(
                        "stringData.namespaces",
                        format!("{} is not a valid namespace name", excerpt(n)),
                    ));
                }
            }
        }
        for k in data.keys() {
            if !matches!(
                k.as_str(),
                "tokenHash" | "role" | "namespaces" | "description"
            ) {
                errs.push(FieldError::new(
                    format!("stringData.{k}"),
                    "unknown key; expected tokenHash, role, namespaces, description",
                ));
            }
        }
        if !is_dns1123_subdomain(name) {
            errs.push(FieldError::new(
                "metadata.name",
                "must be an RFC 1123 subdomain",
            ));
        }
        match (hash, role, namespaces) {
            (Some(token_sha256), Some(role), Some(namespaces)) if errs.is_empty() => Ok(ApiToken {
                name: name.to_owned(),
                namespace: namespace.to_owned(),
                token_sha256,
                role,
                namespaces,
            }),
            _ => Err(errs),
        }
    }
}

/// SHA-256 of a plaintext token.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Parses `sha256:<64 lowercase hex>`.
pub fn parse_token_hash(s: &str) -> Result<[u8; 32], String> {
    let err =
        || "expected \"sha256:\" followed by 64 hex digits (never the plaintext token)".to_owned();
    let hexpart = s.strip_prefix("sha256:").ok_or_else(err)?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hexpart, &mut out).map_err(|_| err())?;
    Ok(out)
}

/// `sha256:<hex>` form of a hash.
pub fn format_token_hash(hash: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(hash))
}

/// Renders the Secret document for a new token (only its hash is written).
pub fn render_token_secret(
    name: &str,
    namespace: &str,
    role: Role,
    namespaces: &[String],
    token: &str,
) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Secret\ntype: {SECRET_TYPE}\nmetadata:\n  name: {}\n  namespace: {}\nstringData:\n  tokenHash: {}\n  role: {}\n  namespaces: {}\n",
        q(name),
        q(namespace),
        q(&format_token_hash(&hash_token(token))),
        role.as_str(),
        q(&namespaces.join(",")),
    )
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

    #[test]
    fn hash_is_sha256() {
        assert_eq!(
            hex::encode(hash_token("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!(
            serde_json::to_string(&Role::Admin).ok().as_deref(),
            Some("\"admin\"")
        );
    }

    #[test]
    fn from_secret_data_ok_and_matches() {
        let h = format_token_hash(&hash_token("s3cret"));
        let t = ApiToken::from_secret_data(
            "alice",
            "cdot-system",
            &data(&[
                ("tokenHash", &h),
                ("role", "operator"),
                ("namespaces", "acme, globex"),
            ]),
        )
        .expect("valid");
        assert_eq!(t.token_sha256, hash_token("s3cret"));
        assert_ne!(t.token_sha256, hash_token("other"));
        assert_eq!(t.namespaces, ["acme", "globex"]);
        assert!(t.allows_namespace("acme") && !t.allows_namespace("initech"));
        assert!(!format!("{t:?}").contains(&h[7..]));
    }

    #[test]
    fn from_secret_data_errors() {
        let errs = ApiToken::from_secret_data(
            "alice",
            "x",
            &data(&[
                ("tokenHash", "plaintext"),
                ("role", "root"),
                ("namespaces", "Bad_NS"),
            ]),
        )
        .expect_err("invalid");
        let paths: Vec<_> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "stringData.tokenHash",
                "stringData.role",
                "stringData.namespaces"
            ]
        );
    }

    #[test]
    fn render_has_hash_not_token() {
        let y = render_token_secret(
            "alice",
            "cdot-system",
            Role::Admin,
            &["*".into()],
            "tok-123",
        );
        assert!(!y.contains("tok-123"));
        assert!(y.contains(&format_token_hash(&hash_token("tok-123"))));
        assert!(y.contains("type: rmm.cdot.io/api-token"));
    }
}
