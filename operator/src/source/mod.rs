//! Desired-state sources. Standalone mode reads a directory of YAML ([`directory`]) and
//! watches it ([`watch`]); every source produces the same [`Snapshot`].

use std::collections::BTreeMap;

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
    /// SHA-256 over every file's path and bytes: equal fingerprints mean nothing changed.
    pub fingerprint: String,
}
