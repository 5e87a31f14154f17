//! Desired-state sources. Standalone mode reads a directory of YAML ([`directory`]) and
//! watches it ([`watch`]); every source produces the same [`Snapshot`].

use std::collections::{BTreeMap, HashMap};

use cdot_crds::{api_token::ApiToken, enrollment_token::EnrollmentToken};

use crate::store::DesiredObject;

pub mod directory;
pub mod watch;

/// A complete, validated desired state: everything or nothing is applied.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub objects: Vec<DesiredObject>,
    pub tokens: Vec<ApiToken>,
    pub enrollment_tokens: Vec<EnrollmentToken>,
    /// Plain Secrets (namespace, name, data) that resources refer to; kept in memory only.
    pub secrets: Vec<(String, String, BTreeMap<String, Vec<u8>>)>,
    /// ConfigMaps (namespace, name, data) that resources refer to; kept in memory only.
    pub config_maps: Vec<(String, String, BTreeMap<String, String>)>,
    /// SHA-256 over every file's path and bytes: equal fingerprints mean nothing changed.
    pub fingerprint: String,
}

/// Why a token document was refused: the field at fault and what is wrong (never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRefusal {
    /// Field path inside the Secret, e.g. `stringData.namespaces`.
    pub path: &'static str,
    pub message: String,
}

/// The API and enrollment tokens of one desired state, collected under the rules every
/// source applies (a manifest directory and the API server's Secrets alike):
///
/// - only tokens defined in the system namespace may reach other namespaces: a tenant who can
///   write Secrets in its own namespace must not be able to grant itself another tenant's data;
/// - API and enrollment tokens share one namespace of hashes: a token means one thing, so a
///   hash seen before is refused (the first one defined stays).
#[derive(Debug)]
pub struct TokenSet<'a> {
    system_namespace: &'a str,
    /// Where each hash was first defined.
    seen: HashMap<[u8; 32], String>,
    api: Vec<ApiToken>,
    enrollment: Vec<EnrollmentToken>,
}

impl<'a> TokenSet<'a> {
    pub fn new(system_namespace: &'a str) -> Self {
        Self {
            system_namespace,
            seen: HashMap::new(),
            api: Vec::new(),
            enrollment: Vec::new(),
        }
    }

    /// Adds an API token defined at `origin` (e.g. `file.yaml:2`, `Secret ns/name`).
    pub fn add_api_token(&mut self, token: ApiToken, origin: String) -> Result<(), TokenRefusal> {
        check_token_scope(&token, self.system_namespace).map_err(|message| TokenRefusal {
            path: "stringData.namespaces",
            message,
        })?;
        self.claim(token.token_sha256, origin)?;
        self.api.push(token);
        Ok(())
    }

    /// Adds an enrollment token defined at `origin`.
    pub fn add_enrollment_token(
        &mut self,
        token: EnrollmentToken,
        origin: String,
    ) -> Result<(), TokenRefusal> {
        self.claim(token.token_sha256, origin)?;
        self.enrollment.push(token);
        Ok(())
    }

    /// The accepted (API tokens, enrollment tokens), in the order they were added.
    pub fn into_parts(self) -> (Vec<ApiToken>, Vec<EnrollmentToken>) {
        (self.api, self.enrollment)
    }

    fn claim(&mut self, hash: [u8; 32], origin: String) -> Result<(), TokenRefusal> {
        match self.seen.get(&hash) {
            Some(first) => Err(TokenRefusal {
                path: "stringData.tokenHash",
                message: format!("the same token is already defined at {first}"),
            }),
            None => {
                self.seen.insert(hash, origin);
                Ok(())
            }
        }
    }
}

fn check_token_scope(token: &ApiToken, system_namespace: &str) -> Result<(), String> {
    if token.namespace == system_namespace {
        return Ok(());
    }
    match token.namespaces.iter().find(|ns| **ns != token.namespace) {
        Some(other) => Err(format!(
            "a token defined in namespace {:?} may only grant {:?}, not {other:?}; define it in {system_namespace:?} to span namespaces",
            token.namespace, token.namespace
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use cdot_crds::api_token::{Role, format_token_hash, hash_token, render_token_secret};

    use super::directory::{ManifestFiles, ReadLimits};

    /// A manifest directory still refuses the whole set for one bad token, with its position.
    #[test]
    fn a_manifest_directory_applies_the_token_rules() {
        let dir = tempfile::tempdir().expect("temp dir");
        let grabby = render_token_secret(
            "grabby",
            "acme",
            Role::Viewer,
            &["acme".into(), "globex".into()],
            "t1",
        );
        let ops = render_token_secret("ops", "cdot-system", Role::Admin, &["*".into()], "t2");
        let copy = format!(
            "apiVersion: v1\nkind: Secret\ntype: rmm.cdot.io/enrollment-token\nmetadata: {{name: copy, namespace: acme}}\nstringData:\n  tokenHash: \"{}\"\n",
            format_token_hash(&hash_token("t2"))
        );
        std::fs::write(
            dir.path().join("tokens.yaml"),
            format!("{ops}---\n{grabby}---\n{copy}"),
        )
        .expect("write manifests");
        let errors = ManifestFiles::read(&[dir.path().to_path_buf()], ReadLimits::default())
            .parse("cdot-system")
            .expect_err("refused");
        let found: Vec<_> = errors
            .iter()
            .map(|e| (e.document, e.path.as_deref().unwrap_or_default()))
            .collect();
        assert_eq!(
            found,
            [(2, "stringData.namespaces"), (3, "stringData.tokenHash")]
        );
        assert!(
            errors[1]
                .message
                .ends_with("already defined at tokens.yaml:1"),
            "{}",
            errors[1]
        );

        std::fs::write(dir.path().join("tokens.yaml"), ops).expect("write manifests");
        let snapshot = ManifestFiles::read(&[dir.path().to_path_buf()], ReadLimits::default())
            .parse("cdot-system")
            .expect("valid");
        assert_eq!(snapshot.tokens.len(), 1);
    }
}
