//! PostgreSQL store: connection, embedded migrations, and one module per table group.
use std::time::Duration;

use sqlx::{PgPool, postgres::PgPoolOptions};

pub mod agents;
pub mod cluster;
pub mod embedded;
pub mod health;
pub mod heartbeats;
pub mod network;
pub mod objects;
pub mod partitions;
pub mod timeseries;
pub mod tokens;

pub use objects::{ChangeSummary, DesiredObject, StatusPatch, StoredObject};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to connect to PostgreSQL at {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("failed to apply database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("failed to {operation}: {source}")]
    Query {
        operation: &'static str,
        source: sqlx::Error,
    },
    #[error("{kind} {namespace}/{name} was deleted while it was being stored")]
    Vanished {
        kind: cdot_crds::kind::Kind,
        namespace: String,
        name: String,
    },
}

impl StoreError {
    pub fn query(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError::Query { operation, source }
    }

    /// A short, low-cardinality label for metrics.
    /// Whether the database could not be reached (as opposed to refusing a statement): the
    /// request may succeed later, so it is answered 503.
    pub fn is_unavailable(&self) -> bool {
        let StoreError::Query { source, .. } = self else {
            return matches!(self, StoreError::Connect { .. });
        };
        match source {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::WorkerCrashed => true,
            // Class 08: connection exception; 57P0x: the server is shutting down, crashed or
            // still starting.
            sqlx::Error::Database(e) => e
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
            _ => false,
        }
    }

    pub fn metric_label(&self) -> &'static str {
        match self {
            StoreError::Connect { .. } => "connect",
            StoreError::Migrate(_) => "migrate",
            StoreError::Query { operation, .. } => operation,
            StoreError::Vanished { .. } => "vanished",
        }
    }
}

/// Handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
    health: std::sync::Arc<health::Health>,
}

impl Store {
    /// Connects and applies the embedded migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|source| StoreError::Connect {
                url: redact_url(url),
                source,
            })?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self {
            pool,
            health: std::sync::Arc::default(),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether the database answers, as the [`health::watch`] task last saw it.
    pub fn health(&self) -> &health::Health {
        &self.health
    }

    pub fn is_up(&self) -> bool {
        self.health.is_up()
    }
}

/// Hides the password of a connection URL so that it can be logged.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://cdot:s3cret@127.0.0.1:5432/cdot"),
            "postgres://cdot:***@127.0.0.1:5432/cdot"
        );
        assert_eq!(
            redact_url("postgres://127.0.0.1/cdot"),
            "postgres://127.0.0.1/cdot"
        );
    }
}
