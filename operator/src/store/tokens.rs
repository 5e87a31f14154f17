//! The `api_tokens` table: hashed API tokens of the last applied desired state.
use cdot_crds::api_token::{ApiToken, Role};
use sqlx::Row;

use super::{Store, StoreError};

impl Store {
    pub async fn api_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let rows =
            sqlx::query("SELECT namespace, name, token_sha256, role, namespaces FROM api_tokens")
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::query("list api tokens"))?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let hash: Vec<u8> = row.get("token_sha256");
                let role: String = row.get("role");
                Some(ApiToken {
                    namespace: row.get("namespace"),
                    name: row.get("name"),
                    token_sha256: hash.try_into().ok()?,
                    role: Role::parse(&role)?,
                    namespaces: row.get("namespaces"),
                })
            })
            .collect())
    }
}
