//! ConfigMaps that resources refer to by name and key (the scripts of RunScript steps). In
//! standalone mode they come from the ConfigMap documents of the last applied manifests, in
//! Kubernetes mode from a watch; either way they are held in memory, replaced whole.
use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, RwLock, RwLockReadGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use cdot_crds::{excerpt::inline, workflow::Script};

/// One ConfigMap's `data`.
pub type ConfigMapData = Arc<BTreeMap<String, String>>;

/// ConfigMaps by (namespace, name).
#[derive(Debug, Default)]
pub struct ConfigMaps {
    by_name: RwLock<HashMap<(String, String), ConfigMapData>>,
    /// Bumped by each replace that changed something, so that the Workflows referring to
    /// ConfigMaps are reconciled again.
    version: AtomicU64,
}

impl ConfigMaps {
    fn read(&self) -> RwLockReadGuard<'_, HashMap<(String, String), ConfigMapData>> {
        self.by_name
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces every ConfigMap (a new desired state was applied, or the watch changed).
    pub fn replace(
        &self,
        config_maps: impl IntoIterator<Item = (String, String, BTreeMap<String, String>)>,
    ) {
        let map = config_maps
            .into_iter()
            .map(|(namespace, name, data)| ((namespace, name), Arc::new(data)))
            .collect();
        let mut current = self
            .by_name
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *current != map {
            *current = map;
            self.version.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Changes whenever the ConfigMaps do.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }

    /// The ConfigMap `name` of `namespace`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<ConfigMapData> {
        self.read()
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// The ConfigMaps of `namespace` by name.
    pub fn in_namespace(&self, namespace: &str) -> BTreeMap<String, ConfigMapData> {
        self.read()
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .map(|((_, name), data)| (name.clone(), data.clone()))
            .collect()
    }
}

/// Where a RunScript step's text comes from when it is not inline, for people:
/// `from ConfigMap NAME/KEY`.
pub fn script_origin(script: &Script) -> Option<String> {
    let r = script
        .config_map_ref
        .as_ref()
        .filter(|_| script.body.is_none())?;
    Some(format!(
        "from ConfigMap {}/{}",
        inline(&r.name),
        inline(&r.key)
    ))
}

/// The text of a RunScript step in `namespace`: its `body`, or the key its `configMapRef`
/// names, looked up with `get` (by ConfigMap name). The error says what is missing.
pub fn script_text(
    script: &Script,
    namespace: &str,
    get: impl FnOnce(&str) -> Option<ConfigMapData>,
) -> Result<String, String> {
    match (&script.body, &script.config_map_ref) {
        (Some(body), _) => Ok(body.clone()),
        (None, Some(r)) => {
            let name = format!("ConfigMap {namespace}/{}", inline(&r.name));
            let data = get(&r.name).ok_or_else(|| format!("{name} does not exist"))?;
            data.get(&r.key)
                .cloned()
                .ok_or_else(|| format!("{name} has no key {}", inline(&r.key)))
        }
        (None, None) => Err("the step has no script".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(v: serde_json::Value) -> Script {
        serde_json::from_value(v).expect("script")
    }

    #[test]
    fn a_script_comes_inline_or_from_a_config_map_key() {
        let maps = ConfigMaps::default();
        maps.replace([(
            "acme".to_owned(),
            "scripts".to_owned(),
            BTreeMap::from([("cleanup.sh".to_owned(), "rm -f /tmp/x".to_owned())]),
        )]);
        let lookup = |name: &str| maps.get("acme", name);
        let inline_body = script(serde_json::json!({"body": "true"}));
        assert_eq!(
            script_text(&inline_body, "acme", lookup).as_deref(),
            Ok("true")
        );
        assert_eq!(script_origin(&inline_body), None);

        let from_map =
            script(serde_json::json!({"configMapRef": {"name": "scripts", "key": "cleanup.sh"}}));
        assert_eq!(
            script_text(&from_map, "acme", lookup).as_deref(),
            Ok("rm -f /tmp/x")
        );
        assert_eq!(
            script_origin(&from_map).as_deref(),
            Some("from ConfigMap scripts/cleanup.sh")
        );
        assert_eq!(maps.in_namespace("acme").len(), 1);
        assert!(maps.in_namespace("globex").is_empty());

        let no_key = script(serde_json::json!({"configMapRef": {"name": "scripts", "key": "x"}}));
        assert_eq!(
            script_text(&no_key, "acme", lookup),
            Err("ConfigMap acme/scripts has no key x".into())
        );
        assert_eq!(
            script_text(&from_map, "globex", |name| maps.get("globex", name)),
            Err("ConfigMap globex/scripts does not exist".into())
        );
    }
}
