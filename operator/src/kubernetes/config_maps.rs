//! Kubernetes mode's ConfigMaps (the scripts RunScript steps name by `configMapRef`), from the
//! API server instead of ConfigMap documents in a manifest directory.
//!
//! A reflector caches the ConfigMaps of the watched namespace (every namespace when none is
//! given): Workflows only refer to ConfigMaps of their own namespace, so the system
//! namespace's are not needed. After every change (batched for [`DEBOUNCE`]) the whole cache
//! goes through the manifest validation ([`cdot_crds::manifest::validate_document`]) and
//! replaces the in-memory [`ConfigMaps`] at once.
//!
//! Only `data` is kept: managed fields, kubectl's last-applied copy and `binaryData` (nothing
//! reads binary values) are dropped before the cache.
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use cdot_crds::manifest::{self, Document};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, reflector, watcher},
};
use serde_json::{Map, Value, json};
use tokio::{sync::watch, time::Instant};

use super::LAST_APPLIED;
use crate::config_maps::ConfigMaps;

/// How long changes are collected before the ConfigMaps are rebuilt.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Watches ConfigMaps in the watched namespace (all when `watched` is None) and keeps
/// `config_maps` current. `synced` turns true after the first complete rebuild; returns when
/// `stop` turns true (or its sender is gone).
pub async fn run(
    client: Client,
    watched: Option<String>,
    config_maps: Arc<ConfigMaps>,
    synced: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<ConfigMap> = match watched.as_deref() {
        None => Api::all(client),
        Some(ns) => Api::namespaced(client, ns),
    };
    let (cache, writer) = reflector::store::<ConfigMap>();
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(slim);
    let mut events = std::pin::pin!(reflector(writer, events));
    let mut listed = false;
    let mut due: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            event = events.next() => {
                match event {
                    None => {
                        tracing::warn!("the ConfigMap watch ended");
                        break;
                    }
                    Some(Ok(watcher::Event::InitDone)) => listed = true,
                    Some(Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_))) => {}
                    Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => continue,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "watching ConfigMaps failed; retrying");
                        continue;
                    }
                }
                // Nothing is applied before the first list is complete: a half list would
                // fail the steps whose ConfigMaps come in the other half.
                if listed {
                    due.get_or_insert_with(|| Instant::now() + DEBOUNCE);
                }
            }
            () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                due = None;
                let state = cache.state();
                let built = build(state.iter().map(AsRef::as_ref));
                tracing::debug!(config_maps = built.len(), "ConfigMaps applied");
                config_maps.replace(built);
                synced.send_if_modified(|synced| !std::mem::replace(synced, true));
            }
        }
    }
}

/// Strips what the rebuild does not read.
fn slim(config_map: &mut ConfigMap) {
    config_map.metadata.managed_fields = None;
    if let Some(annotations) = config_map.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
    config_map.binary_data = None;
}

/// The ConfigMaps as (namespace, name, data), each validated as the manifest document it
/// would be in a directory; one that fails (the API server checks the same rules, so this
/// is unlikely) is logged and passed over.
pub fn build<'a>(
    config_maps: impl IntoIterator<Item = &'a ConfigMap>,
) -> Vec<(String, String, BTreeMap<String, String>)> {
    let mut out = Vec::new();
    for config_map in config_maps {
        match manifest::validate_document(&to_manifest(config_map)) {
            Ok(Document::ConfigMap {
                namespace,
                name,
                data,
            }) => out.push((namespace, name, data)),
            Ok(_) => {}
            Err(errors) => tracing::warn!(
                namespace = config_map.metadata.namespace.as_deref().unwrap_or_default(),
                name = config_map.metadata.name.as_deref().unwrap_or_default(),
                reasons = %cdot_crds::validation::describe_errors(&errors),
                "ConfigMap passed over: RunScript steps cannot read it until it is fixed"
            ),
        }
    }
    out
}

fn to_manifest(config_map: &ConfigMap) -> Value {
    let mut metadata = Map::new();
    if let Some(name) = &config_map.metadata.name {
        metadata.insert("name".into(), name.as_str().into());
    }
    if let Some(namespace) = &config_map.metadata.namespace {
        metadata.insert("namespace".into(), namespace.as_str().into());
    }
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": config_map.data.clone().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{ByteString, apimachinery::pkg::apis::meta::v1::ObjectMeta};

    use super::*;

    fn config_map(namespace: &str, name: &str, data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..ObjectMeta::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn config_maps_keep_their_data_and_drop_the_rest() {
        let mut scripts = config_map("acme", "scripts", &[("cleanup.sh", "rm -f /tmp/x")]);
        scripts.binary_data = Some(BTreeMap::from([(
            "logo.png".to_owned(),
            ByteString(vec![0, 1]),
        )]));
        scripts.metadata.annotations =
            Some(BTreeMap::from([(LAST_APPLIED.to_owned(), "{}".to_owned())]));
        slim(&mut scripts);
        assert!(scripts.binary_data.is_none());
        assert!(scripts.metadata.annotations.unwrap_or_default().is_empty());

        let scripts = config_map("acme", "scripts", &[("cleanup.sh", "rm -f /tmp/x")]);
        let bad = config_map("acme", "bad", &[("a/b", "x")]);
        let built = build([&scripts, &bad]);
        assert_eq!(built.len(), 1);
        let (namespace, name, data) = &built[0];
        assert_eq!((namespace.as_str(), name.as_str()), ("acme", "scripts"));
        assert_eq!(data["cleanup.sh"], "rm -f /tmp/x");
    }
}
