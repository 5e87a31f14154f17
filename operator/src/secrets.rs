//! Secrets that resources refer to by name (SNMP credentials, channel keys). In standalone
//! mode they come from the Secret documents of the last applied manifests and are held in
//! memory only: never written to PostgreSQL, never logged (only key names are).
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock},
};

/// One Secret's decoded `data` (merged with `stringData`).
pub type SecretData = Arc<BTreeMap<String, Vec<u8>>>;

/// Secrets by (namespace, name).
#[derive(Default)]
pub struct Secrets {
    by_name: RwLock<HashMap<(String, String), SecretData>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("count", &self.read().len())
            .finish_non_exhaustive()
    }
}

impl Secrets {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<(String, String), SecretData>> {
        self.by_name
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces every secret (a new desired state was applied).
    pub fn replace(
        &self,
        secrets: impl IntoIterator<Item = (String, String, BTreeMap<String, Vec<u8>>)>,
    ) {
        let map = secrets
            .into_iter()
            .map(|(namespace, name, data)| ((namespace, name), Arc::new(data)))
            .collect();
        *self
            .by_name
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = map;
    }

    /// The Secret `name` of `namespace`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<SecretData> {
        self.read()
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
}
