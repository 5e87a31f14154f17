//! Objects whose desired state lives in a Kubernetes API server, mirrored into `objects` so
//! that ingest, alerting, assignments and the HTTP API read one table in both modes.
//!
//! The API server owns spec, labels, uid and generation; the store keeps owning what other
//! writers put in status (enrollment, heartbeats, scanners). An object recreated under the
//! same name (a new uid) starts over from the API server's status.
use std::collections::BTreeMap;

use cdot_crds::kind::Kind;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Store, StoreError, objects::StoredObject};

/// `managed_by` of mirrored objects: neither manifest pruning nor enrollment touches them.
pub const MANAGED_BY_KUBERNETES: &str = "kubernetes";

/// One object as the API server serves it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterObject {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub uid: Uuid,
    pub generation: i64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub spec: Value,
    pub status: Value,
}

impl Store {
    /// Makes the stored copy of `object` current and returns it as reconcilers read it (with
    /// heartbeat fields merged into status), and whether anything changed (nothing is
    /// written when nothing did).
    pub async fn mirror_object(
        &self,
        object: &ClusterObject,
    ) -> Result<(StoredObject, bool), StoreError> {
        let changed = sqlx::query(
            "INSERT INTO objects (namespace, kind, name, uid, generation, labels, annotations, spec, status, managed_by, source)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'kubernetes', 'kubernetes')
             ON CONFLICT (namespace, kind, name) DO UPDATE SET
                 uid = EXCLUDED.uid,
                 generation = EXCLUDED.generation,
                 labels = EXCLUDED.labels,
                 annotations = EXCLUDED.annotations,
                 spec = EXCLUDED.spec,
                 status = CASE WHEN objects.uid = EXCLUDED.uid THEN objects.status ELSE EXCLUDED.status END,
                 managed_by = 'kubernetes',
                 source = 'kubernetes',
                 resource_version = nextval('object_resource_version'),
                 updated_at = now()
             WHERE objects.uid IS DISTINCT FROM EXCLUDED.uid
                OR objects.generation IS DISTINCT FROM EXCLUDED.generation
                OR objects.spec IS DISTINCT FROM EXCLUDED.spec
                OR objects.labels IS DISTINCT FROM EXCLUDED.labels
                OR objects.annotations IS DISTINCT FROM EXCLUDED.annotations
                OR objects.managed_by <> 'kubernetes'",
        )
        .bind(&object.namespace)
        .bind(object.kind.as_str())
        .bind(&object.name)
        .bind(object.uid)
        .bind(object.generation)
        .bind(json!(object.labels))
        .bind(json!(object.annotations))
        .bind(&object.spec)
        .bind(&object.status)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("mirror a cluster object"))?
        .rows_affected()
            > 0;
        let stored = self
            .get_object(&object.namespace, object.kind, &object.name)
            .await?
            .ok_or(StoreError::Vanished {
                kind: object.kind,
                namespace: object.namespace.clone(),
                name: object.name.clone(),
            })?;
        Ok((stored, changed))
    }

    /// Removes the stored copy of a deleted object, if it is still the one with `uid`, and
    /// what only it owned: a Device's agent identity (its credentials stop working at once),
    /// heartbeat and software inventory. Metric and flow history stays until retention
    /// drops its partitions. Returns whether a row was removed.
    pub async fn forget_object(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        uid: Uuid,
    ) -> Result<bool, StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query("begin forgetting an object"))?;
        let removed = sqlx::query(
            "DELETE FROM objects WHERE namespace = $1 AND kind = $2 AND name = $3 AND uid = $4",
        )
        .bind(namespace)
        .bind(kind.as_str())
        .bind(name)
        .bind(uid)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("forget an object"))?
        .rows_affected();
        if kind == Kind::Device {
            for statement in [
                "DELETE FROM agents WHERE uid = $1",
                "DELETE FROM device_heartbeats WHERE device_uid = $1",
                "DELETE FROM device_polls WHERE device_uid = $1",
                "DELETE FROM device_software WHERE device_uid = $1",
            ] {
                sqlx::query(statement)
                    .bind(uid)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query("forget a device's identity"))?;
            }
        }
        tx.commit()
            .await
            .map_err(StoreError::query("commit forgetting an object"))?;
        Ok(removed > 0)
    }
}
