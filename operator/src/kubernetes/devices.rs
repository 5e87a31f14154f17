//! Devices the system creates (agent enrollment, discovery) are created through the API server in
//! Kubernetes mode, so that `kubectl get devices` and GitOps tools see them; labels say
//! where each came from. The store gets the same uid at once, so the enrollment transaction
//! finds the Device and binds the agent to it.
use std::collections::BTreeMap;

use cdot_crds::{ENROLLMENT_TOKEN_LABEL, ORIGIN_LABEL, kind::Kind};
use kube::{
    Api, Client,
    api::{DynamicObject, PostParams},
};
use serde_json::{Value, json};

use super::api_resource;
use crate::store::{Store, StoreError, cluster::ClusterObject};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("failed to create Device {namespace}/{name} in the API server: {source}")]
    Create {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("the API server returned Device {namespace}/{name} without a uid")]
    NoUid { namespace: String, name: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where an enrolling agent's Device comes from.
pub struct NewDevice<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub token_name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub spec: &'a Value,
}

pub struct ClusterDevices {
    client: Client,
}

impl ClusterDevices {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Creates the Device unless the API server has it, and mirrors it into the store.
    pub async fn ensure(&self, store: &Store, device: NewDevice<'_>) -> Result<(), DeviceError> {
        let manifest = enrolled_device(&device);
        let status = json!({ "source": "Agent" });
        self.put(
            store,
            device.namespace,
            device.name,
            &manifest,
            status,
            true,
        )
        .await
        .map(|_| ())
    }

    /// Creates a Device discovery found and mirrors it into the store; false when the API
    /// server already has one of that name (the caller picks another name).
    pub async fn create(
        &self,
        store: &Store,
        namespace: &str,
        name: &str,
        manifest: &Value,
        status: Value,
    ) -> Result<bool, DeviceError> {
        self.put(store, namespace, name, manifest, status, false)
            .await
    }

    /// Creates `manifest` (or, with `adopt`, takes the existing object of its name) and
    /// mirrors it with `status`. False when the name was taken and not adopted.
    async fn put(
        &self,
        store: &Store,
        namespace: &str,
        name: &str,
        manifest: &Value,
        status: Value,
        adopt: bool,
    ) -> Result<bool, DeviceError> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &api_resource(Kind::Device));
        let error = |source| DeviceError::Create {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        };
        let object = match api.get_opt(name).await.map_err(error)? {
            Some(existing) if adopt => existing,
            Some(_) => return Ok(false),
            None => {
                let new: DynamicObject = serde_json::from_value(manifest.clone())
                    .map_err(|e| error(kube::Error::SerdeError(e)))?;
                match api.create(&PostParams::default(), &new).await {
                    Ok(created) => {
                        tracing::info!(namespace, name, "created the Device in the API server");
                        created
                    }
                    // Another replica or a person was quicker: use theirs.
                    Err(kube::Error::Api(status)) if status.code == 409 && adopt => {
                        api.get(name).await.map_err(error)?
                    }
                    Err(kube::Error::Api(status)) if status.code == 409 => return Ok(false),
                    Err(e) => return Err(error(e)),
                }
            }
        };
        let uid = object
            .metadata
            .uid
            .as_deref()
            .and_then(|u| u.parse().ok())
            .ok_or_else(|| DeviceError::NoUid {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })?;
        store
            .mirror_object(&ClusterObject {
                kind: Kind::Device,
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                uid,
                generation: object.metadata.generation.unwrap_or(1),
                labels: object.metadata.labels.clone().unwrap_or_default(),
                annotations: BTreeMap::new(),
                spec: object
                    .data
                    .get("spec")
                    .cloned()
                    .unwrap_or_else(|| json!({})),
                status,
            })
            .await?;
        Ok(true)
    }
}

/// The Device manifest for an enrolling agent: the token's labels plus where it came from.
pub fn enrolled_device(device: &NewDevice<'_>) -> Value {
    let mut labels = device.labels.clone();
    labels.insert(ORIGIN_LABEL.into(), "enrollment".into());
    labels.insert(ENROLLMENT_TOKEN_LABEL.into(), device.token_name.into());
    json!({
        "apiVersion": cdot_crds::API_VERSION,
        "kind": "Device",
        "metadata": { "name": device.name, "namespace": device.namespace, "labels": labels },
        "spec": device.spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_enrolled_device_says_where_it_came_from() {
        let labels = BTreeMap::from([("rmm.cdot.io/site".to_owned(), "london".to_owned())]);
        let manifest = enrolled_device(&NewDevice {
            namespace: "acme",
            name: "pc-7",
            token_name: "laptops",
            labels: &labels,
            spec: &json!({ "class": "Workstation" }),
        });
        assert_eq!(
            manifest["metadata"]["labels"]["rmm.cdot.io/origin"],
            "enrollment"
        );
        assert_eq!(
            manifest["metadata"]["labels"]["rmm.cdot.io/enrollment-token"],
            "laptops"
        );
        assert_eq!(manifest["metadata"]["labels"]["rmm.cdot.io/site"], "london");
        assert_eq!(manifest["spec"]["class"], "Workstation");
    }
}
