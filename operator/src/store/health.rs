//! Whether PostgreSQL answers, known without asking it per request.
//!
//! A watcher checks the server every [`CHECK_INTERVAL`] on a connection of its own (not
//! the pool's, so that a pool exhausted by load is not taken for a dead server). After
//! [`FAILURES_TO_DOWN`] failed checks in a row the store is *down*: `/readyz` answers 503 at
//! once and requests that need the database are refused with 503 and `Retry-After`
//! instead of each waiting out the pool's acquire timeout. The first check that succeeds
//! makes it *up* again; the pool opens fresh connections by itself, since sqlx tests a
//! pooled connection before handing it out.
use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};
use tokio::sync::watch;

use super::Store;
use crate::metrics::DatabaseMetrics;

/// Time between checks while the server answers.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// Time between checks while it does not (or after one failure).
const RETRY_INTERVAL: Duration = Duration::from_millis(200);
/// How long one check (connect and `SELECT 1`) may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Failed checks in a row that mark the store down (one lost packet is not an outage).
const FAILURES_TO_DOWN: u32 = 2;

/// The shared up/down state of the database; every clone of a [`Store`] sees the same.
#[derive(Debug)]
pub struct Health {
    up: watch::Sender<bool>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            up: watch::Sender::new(true),
        }
    }
}

impl Health {
    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// Completes when the store is (or turns) down.
    pub async fn down(&self) {
        let mut rx = self.up.subscribe();
        let _ = rx.wait_for(|up| !*up).await;
    }

    /// Records a state; true when it changed.
    fn set(&self, up: bool) -> bool {
        self.up.send_if_modified(|current| {
            let changed = *current != up;
            *current = up;
            changed
        })
    }

    /// Marks the store down at once, e.g. when the embedded server's process is gone.
    pub fn mark_down(&self) -> bool {
        self.set(false)
    }
}

/// Checks the database until `shutdown`; see the module documentation.
pub async fn watch(store: Store, metrics: DatabaseMetrics, mut shutdown: watch::Receiver<bool>) {
    let options = store.pool().connect_options();
    let mut connection: Option<PgConnection> = None;
    let mut failures = 0u32;
    metrics.up.set(1);
    loop {
        let result = tokio::time::timeout(CHECK_TIMEOUT, async {
            if connection.is_none() {
                connection = Some(PgConnection::connect_with(&options).await?);
            }
            if let Some(conn) = connection.as_mut() {
                conn.execute("SELECT 1").await?;
            }
            Ok::<_, sqlx::Error>(())
        })
        .await;
        let error = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within {CHECK_TIMEOUT:?}")),
        };
        match error {
            None => {
                failures = 0;
                if store.health().set(true) {
                    metrics.up.set(1);
                    tracing::info!("the database answers again; serving");
                }
            }
            Some(error) => {
                connection = None;
                failures += 1;
                if failures >= FAILURES_TO_DOWN && store.health().set(false) {
                    metrics.up.set(0);
                    metrics.outages.inc();
                    tracing::error!(%error, "the database does not answer; refusing requests that need it with 503 until it does");
                }
            }
        }
        let pause = if failures == 0 {
            CHECK_INTERVAL
        } else {
            RETRY_INTERVAL
        };
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
}
