//! The `api_tokens` table: hashed API tokens of the last applied desired state, and the
//! one code path that replaces it together with the enrollment tokens.
use cdot_crds::{
    api_token::{ApiToken, Role},
    enrollment_token::EnrollmentToken,
};
use sqlx::{Postgres, Row, Transaction};

use super::{Store, StoreError};

/// Key of the transaction-level advisory lock that serializes token replacements: every
/// replica in Kubernetes mode writes the same set, and `DELETE` + `INSERT` from two
/// transactions at once would collide on the primary key.
const TOKENS_LOCK: i64 = 0x6364_6f74_746f_6b6e; // "cdottokn"

/// Makes `api_tokens` equal to `tokens` and the enrollment tokens equal to
/// `enrollment_tokens` (keeping the `uses` of those whose hash is unchanged, see
/// [`Store::replace_enrollment_tokens`]) inside `tx`. The one place tokens are replaced:
/// [`Store::apply_manifests`] and [`Store::replace_tokens`] both call it.
pub(super) async fn write_tokens(
    tx: &mut Transaction<'_, Postgres>,
    tokens: &[ApiToken],
    enrollment_tokens: &[EnrollmentToken],
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(TOKENS_LOCK)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("lock tokens"))?;
    sqlx::query("DELETE FROM api_tokens")
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("replace api tokens"))?;
    for token in tokens {
        sqlx::query("INSERT INTO api_tokens (namespace, name, token_sha256, role, namespaces) VALUES ($1, $2, $3, $4, $5)")
            .bind(&token.namespace)
            .bind(&token.name)
            .bind(token.token_sha256.as_slice())
            .bind(token.role.as_str())
            .bind(&token.namespaces)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::query("replace api tokens"))?;
    }
    Store::replace_enrollment_tokens(tx, enrollment_tokens).await
}

impl Store {
    /// Replaces the API tokens and the enrollment tokens in one transaction, leaving every
    /// other table alone: what Kubernetes mode does when the token Secrets change.
    pub async fn replace_tokens(
        &self,
        tokens: &[ApiToken],
        enrollment_tokens: &[EnrollmentToken],
    ) -> Result<(), StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query("begin token transaction"))?;
        write_tokens(&mut tx, tokens, enrollment_tokens).await?;
        tx.commit()
            .await
            .map_err(StoreError::query("commit token transaction"))
    }

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
