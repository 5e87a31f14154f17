//! The `objects` table: desired state (spec, labels) and status of every custom resource.
use std::collections::BTreeMap;

use cdot_crds::kind::Kind;
use serde_json::{Value, json};
use sqlx::Row;
use uuid::Uuid;

use super::{Store, StoreError};

/// Owner of the objects that a manifest directory defines; only these are pruned.
pub const MANAGED_BY_MANIFESTS: &str = "manifests";

/// One object as a desired-state source wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredObject {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub spec: Value,
    /// Where it came from, e.g. `acme/devices.yaml#2`.
    pub source: String,
}

/// One object as stored, with its status.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredObject {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub uid: Uuid,
    pub generation: i64,
    pub resource_version: i64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub spec: Value,
    pub status: Value,
    pub created_at: String,
}

impl StoredObject {
    /// The object in the shape the Kubernetes API serves it.
    pub fn to_resource(&self) -> Value {
        json!({
            "apiVersion": cdot_crds::API_VERSION,
            "kind": self.kind.as_str(),
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "uid": self.uid,
                "generation": self.generation,
                "resourceVersion": self.resource_version.to_string(),
                "creationTimestamp": self.created_at,
                "labels": self.labels,
                "annotations": self.annotations,
            },
            "spec": self.spec,
            "status": self.status,
        })
    }
}

/// A status update written by a reconciler: merged over the stored status, top-level keys.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusPatch {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub status: Value,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChangeSummary {
    pub created: u32,
    pub updated: u32,
    pub deleted: u32,
}

impl ChangeSummary {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Reads go through the view that merges each device's heartbeat into its status.
pub(super) const SELECT_OBJECTS: &str = "SELECT kind, namespace, name, uid, generation, resource_version, labels, annotations, spec, status, \
     to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS created_at FROM objects_with_heartbeats";

impl Store {
    /// Makes the stored manifest-managed objects equal to `desired` in one transaction:
    /// creates, updates (bumping `generation` when the spec changed) and prunes.
    pub async fn apply_manifests(
        &self,
        desired: &[DesiredObject],
        tokens: &[cdot_crds::api_token::ApiToken],
        enrollment_tokens: &[cdot_crds::enrollment_token::EnrollmentToken],
        fingerprint: &str,
    ) -> Result<ChangeSummary, StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query("begin manifest transaction"))?;
        let mut summary = ChangeSummary::default();

        let namespaces: Vec<&str> = desired.iter().map(|o| o.namespace.as_str()).collect();
        let kinds: Vec<&str> = desired.iter().map(|o| o.kind.as_str()).collect();
        let names: Vec<&str> = desired.iter().map(|o| o.name.as_str()).collect();
        let labels: Vec<Value> = desired.iter().map(|o| json!(o.labels)).collect();
        let annotations: Vec<Value> = desired.iter().map(|o| json!(o.annotations)).collect();
        let specs: Vec<Value> = desired.iter().map(|o| o.spec.clone()).collect();
        let sources: Vec<&str> = desired.iter().map(|o| o.source.as_str()).collect();

        let rows = sqlx::query(
            "INSERT INTO objects (namespace, kind, name, uid, labels, annotations, spec, source, managed_by)
             SELECT d.namespace, d.kind, d.name, gen_random_uuid(), d.labels, d.annotations, d.spec, d.source, 'manifests'
             FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::jsonb[], $6::jsonb[], $7::text[])
                  AS d(namespace, kind, name, labels, annotations, spec, source)
             ON CONFLICT (namespace, kind, name) DO UPDATE SET
                 labels = EXCLUDED.labels,
                 annotations = EXCLUDED.annotations,
                 spec = EXCLUDED.spec,
                 source = EXCLUDED.source,
                 managed_by = 'manifests',
                 generation = objects.generation + (objects.spec IS DISTINCT FROM EXCLUDED.spec)::int,
                 resource_version = nextval('object_resource_version'),
                 updated_at = now()
             WHERE objects.spec IS DISTINCT FROM EXCLUDED.spec
                OR objects.labels IS DISTINCT FROM EXCLUDED.labels
                OR objects.annotations IS DISTINCT FROM EXCLUDED.annotations
                OR objects.source IS DISTINCT FROM EXCLUDED.source
                OR objects.managed_by <> 'manifests'
             RETURNING (xmax = 0) AS inserted",
        )
        .bind(&namespaces)
        .bind(&kinds)
        .bind(&names)
        .bind(&labels)
        .bind(&annotations)
        .bind(&specs)
        .bind(&sources)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::query("upsert manifest objects"))?;
        for row in rows {
            if row.get::<bool, _>("inserted") {
                summary.created += 1;
            } else {
                summary.updated += 1;
            }
        }

        let deleted = sqlx::query(
            "DELETE FROM objects o WHERE o.managed_by = 'manifests' AND NOT EXISTS (
                 SELECT 1 FROM unnest($1::text[], $2::text[], $3::text[]) AS d(namespace, kind, name)
                 WHERE d.namespace = o.namespace AND d.kind = o.kind AND d.name = o.name)",
        )
        .bind(&namespaces)
        .bind(&kinds)
        .bind(&names)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("prune manifest objects"))?;
        summary.deleted = u32::try_from(deleted.rows_affected()).unwrap_or(u32::MAX);

        super::tokens::write_tokens(&mut tx, tokens, enrollment_tokens).await?;

        sqlx::query(
            "INSERT INTO manifest_loads (fingerprint, applied, created, updated, deleted) VALUES ($1, true, $2, $3, $4)",
        )
        .bind(fingerprint)
        .bind(summary.created as i32)
        .bind(summary.updated as i32)
        .bind(summary.deleted as i32)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("record manifest load"))?;

        tx.commit()
            .await
            .map_err(StoreError::query("commit manifest transaction"))?;
        Ok(summary)
    }

    /// Records a change set that was refused, with its errors, for the audit trail.
    pub async fn record_refused_manifests(
        &self,
        fingerprint: &str,
        errors: &[String],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO manifest_loads (fingerprint, applied, errors) VALUES ($1, false, $2)",
        )
        .bind(fingerprint)
        .bind(json!(errors))
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("record refused manifest load"))?;
        Ok(())
    }

    /// The fingerprint of the newest applied manifest set, to skip reloads that change nothing.
    pub async fn last_applied_fingerprint(&self) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT fingerprint FROM manifest_loads WHERE applied ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("read last manifest load"))
    }

    /// Every stored object (the reconcilers' view of the world).
    pub async fn all_objects(&self) -> Result<Vec<StoredObject>, StoreError> {
        let rows = sqlx::query(SELECT_OBJECTS)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("list all objects"))?;
        Ok(rows.iter().filter_map(decode_object).collect())
    }

    /// Every stored object of one kind, in all namespaces.
    pub async fn objects_of_kind(&self, kind: Kind) -> Result<Vec<StoredObject>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT_OBJECTS} WHERE kind = $1"
        )))
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("list objects of a kind"))?;
        Ok(rows.iter().filter_map(decode_object).collect())
    }

    /// Every Device of one class (`spec.class`), in all namespaces: the collectors, without
    /// reading the whole fleet.
    pub async fn devices_of_class(&self, class: &str) -> Result<Vec<StoredObject>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT_OBJECTS} WHERE kind = 'Device' AND spec->>'class' = $1"
        )))
        .bind(class)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("list devices of a class"))?;
        Ok(rows.iter().filter_map(decode_object).collect())
    }

    pub async fn list_objects(
        &self,
        namespace: &str,
        kind: Kind,
    ) -> Result<Vec<StoredObject>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT_OBJECTS} WHERE namespace = $1 AND kind = $2 ORDER BY name"
        )))
        .bind(namespace)
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("list objects"))?;
        Ok(rows.iter().filter_map(decode_object).collect())
    }

    /// Namespaces that hold at least one object, sorted.
    pub async fn namespaces(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT DISTINCT namespace FROM objects ORDER BY 1")
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("list namespaces"))
    }

    pub async fn get_object(
        &self,
        namespace: &str,
        kind: Kind,
        name: &str,
    ) -> Result<Option<StoredObject>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT_OBJECTS} WHERE namespace = $1 AND kind = $2 AND name = $3"
        )))
        .bind(namespace)
        .bind(kind.as_str())
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("read object"))?;
        Ok(row.as_ref().and_then(decode_object))
    }

    /// Merges each patch over the stored status (a `null` removes a field, as in a JSON merge
    /// patch); rows whose status would not change are not touched, so `resourceVersion` only
    /// moves on real changes. Returns how many changed.
    pub async fn patch_statuses(&self, patches: &[StatusPatch]) -> Result<u64, StoreError> {
        if patches.is_empty() {
            return Ok(0);
        }
        let namespaces: Vec<&str> = patches.iter().map(|p| p.namespace.as_str()).collect();
        let kinds: Vec<&str> = patches.iter().map(|p| p.kind.as_str()).collect();
        let names: Vec<&str> = patches.iter().map(|p| p.name.as_str()).collect();
        let statuses: Vec<Value> = patches.iter().map(|p| p.status.clone()).collect();
        let done = sqlx::query(
            "UPDATE objects o SET status = jsonb_strip_nulls(o.status || d.status),
                                  resource_version = nextval('object_resource_version')
             FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[]) AS d(namespace, kind, name, status)
             WHERE o.namespace = d.namespace AND o.kind = d.kind AND o.name = d.name
               AND o.status IS DISTINCT FROM jsonb_strip_nulls(o.status || d.status)",
        )
        .bind(&namespaces)
        .bind(&kinds)
        .bind(&names)
        .bind(&statuses)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("patch object statuses"))?;
        Ok(done.rows_affected())
    }
}

pub(super) fn decode_object(row: &sqlx::postgres::PgRow) -> Option<StoredObject> {
    let kind_name: String = row.get("kind");
    // A kind this build does not know (a newer schema) is skipped rather than failing every read.
    let kind = Kind::from_kind_name(&kind_name)?;
    let labels: Value = row.get("labels");
    let annotations: Value = row.get("annotations");
    Some(StoredObject {
        kind,
        namespace: row.get("namespace"),
        name: row.get("name"),
        uid: row.get("uid"),
        generation: row.get("generation"),
        resource_version: row.get("resource_version"),
        labels: serde_json::from_value(labels).unwrap_or_default(),
        annotations: serde_json::from_value(annotations).unwrap_or_default(),
        spec: row.get("spec"),
        status: row.get("status"),
        created_at: row.get("created_at"),
    })
}
