//! The audit log: one hash chain over every entry in the database, whatever its namespace.
//!
//! * **What is hashed.** Each entry's `body` is the canonical JSON of `{seq, at, namespace,
//!   actor, action, run, detail}`: keys sorted by their UTF-8 bytes at every depth, no
//!   whitespace, `at` as RFC 3339 UTC with exactly six fractional digits (timestamptz keeps
//!   microseconds, so the time is truncated to them before hashing and round-trips exactly).
//!   `hash = hex(SHA-256(prev_hash + "\n" + body))`. The body is stored as text, not
//!   jsonb, so verification never depends on how PostgreSQL re-encodes JSON.
//! * **One writer at a time.** [`append`] runs inside the caller's transaction (a step
//!   transition and its entry commit together) and takes a transaction-level advisory lock
//!   before reading the head, so concurrent appenders (two replicas included) serialise
//!   and the chain stays gapless.
//! * **Retention.** [`prune`] deletes a prefix of the chain and records the last deleted
//!   entry in `audit_anchor`, so [`verify`] starts from that hash instead of zeros.
//! * **What verification cannot see.** Deleting the newest entries leaves a shorter chain
//!   that is still valid; compare the head [`verify`] reports with one recorded elsewhere.
use std::{fmt, sync::Arc, time::Duration};

use cdot_crds::wire::automation::AuditEntry;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::watch;
use uuid::Uuid;

use crate::{
    metrics::Metrics,
    store::{Store, StoreError},
};

/// The `prev_hash` of the first entry when nothing was pruned.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Key of the advisory lock that serialises appends and pruning ("cdotaudt").
const AUDIT_LOCK: i64 = 0x6364_6f74_6175_6474;
/// Entries [`verify`] reads per query: bounded memory for chains of millions.
const VERIFY_PAGE: i64 = 5_000;
/// Entries [`prune`] deletes per transaction, so that a large backlog does not hold one
/// long transaction (and the append lock) for minutes.
const PRUNE_CHUNK: i64 = 20_000;
/// How often the retention job runs.
const RETENTION_EVERY: Duration = Duration::from_secs(86_400);
/// The `to_char` pattern that prints a timestamptz like [`format_at`] does.
const AT_TEXT: &str =
    r#"to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at_text"#;

/// An entry to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    /// Truncated to microseconds.
    pub at: Timestamp,
    pub namespace: String,
    /// Who: `trigger`, `engine`, an agent (`device/web-01`) or a token name.
    pub actor: String,
    /// What: `run.started`, `step.finished`, `run.approved`, ...
    pub action: String,
    pub run: Option<Uuid>,
    /// Inputs and outputs of the action.
    pub detail: Value,
}

/// `at` as it is hashed and stored: RFC 3339, UTC, microseconds.
pub fn format_at(at: Timestamp) -> String {
    format!("{:.6}", truncate(at))
}

fn truncate(at: Timestamp) -> Timestamp {
    Timestamp::from_microsecond(at.as_microsecond()).unwrap_or(at)
}

/// The canonical JSON of an entry, the exact text that is hashed and stored as `body`.
pub fn canonical_body(seq: i64, entry: &NewEntry) -> String {
    let value = json!({
        "seq": seq,
        "at": format_at(entry.at),
        "namespace": entry.namespace,
        "actor": entry.actor,
        "action": entry.action,
        "run": entry.run,
        "detail": entry.detail,
    });
    let mut out = String::new();
    write_canonical(&mut out, &value);
    out
}

/// Sorts keys itself rather than trusting `serde_json::Map` to be ordered: a dependency
/// enabling serde_json's `preserve_order` would otherwise change every hash.
fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                write_canonical(out, value);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// `hex(SHA-256(prev_hash + "\n" + body))`.
pub fn chain_hash(prev_hash: &str, body: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(body.as_bytes());
    hex::encode(hasher.finalize())
}

/// Appends `entries` in order and answers them as stored. Call it inside the transaction
/// that makes the change the entries describe (a READ COMMITTED one: the head is read after
/// the lock, so it must see what the previous holder committed). Outside a transaction the
/// lock ends with its statement and concurrent appenders collide on `seq`.
pub async fn append(
    conn: &mut PgConnection,
    entries: &[NewEntry],
) -> Result<Vec<AuditEntry>, StoreError> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(AUDIT_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::query("lock the audit log"))?;
    let (mut seq, mut prev) = head(&mut *conn).await?;
    let mut stored = Vec::with_capacity(entries.len());
    for entry in entries {
        seq += 1;
        let body = canonical_body(seq, entry);
        let hash = chain_hash(&prev, &body);
        stored.push((
            AuditEntry {
                seq,
                at: format_at(entry.at),
                namespace: entry.namespace.clone(),
                actor: entry.actor.clone(),
                action: entry.action.clone(),
                run: entry.run,
                detail: entry.detail.clone(),
                prev_hash: std::mem::replace(&mut prev, hash.clone()),
                hash,
            },
            body,
        ));
    }
    let column = |f: fn(&(AuditEntry, String)) -> String| stored.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO audit_log (seq, at, namespace, actor, action, run, body, prev_hash, hash)
         SELECT * FROM UNNEST($1::int8[], $2::text[]::timestamptz[], $3::text[], $4::text[],
                              $5::text[], $6::uuid[], $7::text[], $8::text[], $9::text[])",
    )
    .bind(stored.iter().map(|(e, _)| e.seq).collect::<Vec<_>>())
    .bind(column(|(e, _)| e.at.clone()))
    .bind(column(|(e, _)| e.namespace.clone()))
    .bind(column(|(e, _)| e.actor.clone()))
    .bind(column(|(e, _)| e.action.clone()))
    .bind(stored.iter().map(|(e, _)| e.run).collect::<Vec<_>>())
    .bind(column(|(_, body)| body.clone()))
    .bind(column(|(e, _)| e.prev_hash.clone()))
    .bind(column(|(e, _)| e.hash.clone()))
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("append to the audit log"))?;
    Ok(stored.into_iter().map(|(entry, _)| entry).collect())
}

/// The newest entry's (seq, hash); else the anchor's; else (0, [`GENESIS`]).
async fn head(conn: &mut PgConnection) -> Result<(i64, String), StoreError> {
    let row: Option<(i64, String)> = sqlx::query_as(
        "(SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1)
         UNION ALL (SELECT seq, hash FROM audit_anchor)
         ORDER BY seq DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(StoreError::query("read the audit log's head"))?;
    Ok(row.unwrap_or_else(|| (0, GENESIS.to_owned())))
}

async fn anchor(conn: &mut PgConnection) -> Result<(i64, String), StoreError> {
    let row: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM audit_anchor")
        .fetch_optional(&mut *conn)
        .await
        .map_err(StoreError::query("read the audit anchor"))?;
    Ok(row.unwrap_or_else(|| (0, GENESIS.to_owned())))
}

/// What a stored body holds.
#[derive(Debug, Deserialize)]
struct Body {
    seq: i64,
    at: String,
    namespace: String,
    actor: String,
    action: String,
    run: Option<Uuid>,
    detail: Value,
}

/// What is wrong with one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tamper {
    /// `hash` is not the hash of `prev_hash` and `body`.
    Hash,
    /// Entries `from..=to` are gone.
    Missing { from: i64, to: i64 },
    /// `prev_hash` is not the hash of entry `previous` (0: the start of the chain).
    Link { previous: i64 },
    /// A copied column differs from the body.
    Column(&'static str),
    /// The body is not an entry's JSON.
    Body(String),
}

impl fmt::Display for Tamper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tamper::Hash => write!(f, "hash does not match its body (entry edited)"),
            Tamper::Missing { from, to } if from == to => {
                write!(f, "entry {from} is missing (entry deleted)")
            }
            Tamper::Missing { from, to } => {
                write!(f, "entries {from}..{to} are missing (entries deleted)")
            }
            Tamper::Link { previous: 0 } => write!(
                f,
                "prev_hash does not match the start of the chain (entry inserted or replaced)"
            ),
            Tamper::Link { previous } => write!(
                f,
                "prev_hash does not match the hash of entry {previous} (entry inserted, replaced or deleted)"
            ),
            Tamper::Column(column) => {
                write!(f, "column {column} differs from the body (column edited)")
            }
            Tamper::Body(e) => write!(f, "body is not an audit entry: {e} (entry edited)"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub seq: i64,
    pub what: Tamper,
}

/// The result of walking the chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries read.
    pub checked: u64,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    /// Hash of the newest entry (of the anchor, or [`GENESIS`], when there is none): record
    /// it elsewhere to notice entries deleted from the end later.
    pub head_hash: String,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Walks the whole chain in seq order from the anchor, a page at a time, in one snapshot
/// (a concurrent prune or append does not show up half-way).
pub async fn verify(pool: &PgPool) -> Result<VerifyReport, StoreError> {
    let mut tx = pool
        .begin()
        .await
        .map_err(StoreError::query("begin verifying the audit log"))?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("begin verifying the audit log"))?;
    let (mut previous, mut expected) = anchor(&mut tx).await?;
    let mut report = VerifyReport::default();
    loop {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT seq, {AT_TEXT}, namespace, actor, action, run, body, prev_hash, hash
             FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
        )))
        .bind(previous)
        .bind(VERIFY_PAGE)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::query("read the audit log"))?;
        let full = rows.len() as i64 == VERIFY_PAGE;
        for row in rows {
            let stored = StoredRow {
                seq: row.get("seq"),
                at: row.get("at_text"),
                namespace: row.get("namespace"),
                actor: row.get("actor"),
                action: row.get("action"),
                run: row.get("run"),
                body: row.get("body"),
                prev_hash: row.get("prev_hash"),
                hash: row.get("hash"),
            };
            let seq = stored.seq;
            report.problems.extend(
                check(&stored, previous, &expected)
                    .into_iter()
                    .map(|what| Problem { seq, what }),
            );
            report.checked += 1;
            report.first_seq.get_or_insert(seq);
            report.last_seq = Some(seq);
            previous = seq;
            expected = stored.hash;
        }
        if !full {
            break;
        }
    }
    report.head_hash = expected;
    tx.rollback()
        .await
        .map_err(StoreError::query("end verifying the audit log"))?;
    Ok(report)
}

struct StoredRow {
    seq: i64,
    at: String,
    namespace: String,
    actor: String,
    action: String,
    run: Option<Uuid>,
    body: String,
    prev_hash: String,
    hash: String,
}

/// The problems of one entry that follows entry `previous` whose hash is `expected`.
fn check(row: &StoredRow, previous: i64, expected: &str) -> Vec<Tamper> {
    let mut found = Vec::new();
    // A gap also breaks the link; saying which entries are missing is the more useful half.
    if row.seq != previous + 1 {
        found.push(Tamper::Missing {
            from: previous + 1,
            to: row.seq - 1,
        });
    } else if row.prev_hash != expected {
        found.push(Tamper::Link { previous });
    }
    if chain_hash(&row.prev_hash, &row.body) != row.hash {
        found.push(Tamper::Hash);
    }
    match serde_json::from_str::<Body>(&row.body) {
        Ok(body) => {
            let columns = [
                ("seq", body.seq == row.seq),
                ("at", body.at == row.at),
                ("namespace", body.namespace == row.namespace),
                ("actor", body.actor == row.actor),
                ("action", body.action == row.action),
                ("run", body.run == row.run),
            ];
            found.extend(
                columns
                    .into_iter()
                    .filter(|(_, same)| !same)
                    .map(|(column, _)| Tamper::Column(column)),
            );
        }
        Err(e) => found.push(Tamper::Body(e.to_string())),
    }
    found
}

/// Deletes the oldest entries older than `before` (a prefix of the chain: it stops at the
/// first newer one, so no gap opens) and moves the anchor to the last deleted one, in the
/// same transaction. Answers how many were deleted.
pub async fn prune(pool: &PgPool, before: Timestamp) -> Result<u64, StoreError> {
    let before = format_at(before);
    let mut deleted = 0;
    loop {
        let mut tx = pool
            .begin()
            .await
            .map_err(StoreError::query("begin pruning the audit log"))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(AUDIT_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("lock the audit log"))?;
        // The last entry of the old prefix within the chunk, and whether the chunk was all old.
        let last: Option<(i64, String, bool)> = sqlx::query_as(
            "WITH chunk AS (
                 SELECT seq, at < $1::timestamptz AS old FROM audit_log ORDER BY seq LIMIT $2),
             cut AS (
                 SELECT coalesce((SELECT min(seq) - 1 FROM chunk WHERE NOT old),
                                 (SELECT max(seq) FROM chunk)) AS seq,
                        count(*) FILTER (WHERE NOT old) = 0 AND count(*) = $2 AS more
                 FROM chunk)
             SELECT a.seq, a.hash, cut.more FROM cut JOIN audit_log a ON a.seq = cut.seq",
        )
        .bind(&before)
        .bind(PRUNE_CHUNK)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::query("find old audit entries"))?;
        let Some((seq, hash, more)) = last else {
            return Ok(deleted);
        };
        let done = sqlx::query("DELETE FROM audit_log WHERE seq <= $1")
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("delete old audit entries"))?;
        sqlx::query(
            "INSERT INTO audit_anchor (id, seq, hash) VALUES (true, $1, $2)
             ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        )
        .bind(seq)
        .bind(&hash)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("move the audit anchor"))?;
        tx.commit()
            .await
            .map_err(StoreError::query("commit pruning the audit log"))?;
        deleted += done.rows_affected();
        tracing::info!(
            anchor = seq,
            deleted = done.rows_affected(),
            "pruned the audit log"
        );
        if !more {
            return Ok(deleted);
        }
    }
}

/// The daily retention job: entries older than `retention` are pruned; the first run is at
/// start.
pub async fn retain(
    store: Store,
    metrics: Arc<Metrics>,
    retention: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut interval = crate::jobs::interval(RETENTION_EVERY);
    while crate::jobs::tick(&mut interval, &mut shutdown).await {
        let _timer = metrics.ingest.job_timer("audit_retention");
        let before = jiff::SignedDuration::try_from(retention)
            .ok()
            .and_then(|r| Timestamp::now().checked_sub(r).ok())
            .unwrap_or(Timestamp::MIN);
        let result = prune(store.pool(), before).await;
        metrics.ingest.job_run("audit_retention", result.is_ok());
        if let Err(e) = result {
            crate::jobs::failed(&metrics, "audit log retention", &e);
        }
    }
}

/// Entries of `namespace` after `after`, oldest first, at most `limit`; only those of `run`
/// when given. `detail` comes from the hashed body.
pub async fn list(
    pool: &PgPool,
    namespace: &str,
    run: Option<Uuid>,
    after: i64,
    limit: i64,
) -> Result<Vec<AuditEntry>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT seq, {AT_TEXT}, namespace, actor, action, run, body, prev_hash, hash
         FROM audit_log
         WHERE namespace = $1 AND ($2::uuid IS NULL OR run = $2) AND seq > $3
         ORDER BY seq LIMIT $4"
    )))
    .bind(namespace)
    .bind(run)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(StoreError::query("list audit entries"))?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let body: String = row.get("body");
            AuditEntry {
                seq: row.get("seq"),
                at: row.get("at_text"),
                namespace: row.get("namespace"),
                actor: row.get("actor"),
                action: row.get("action"),
                run: row.get("run"),
                // An edited body that no longer parses still lists; `audit verify` says why.
                detail: serde_json::from_str::<Body>(&body)
                    .map(|b| b.detail)
                    .unwrap_or(Value::Null),
                prev_hash: row.get("prev_hash"),
                hash: row.get("hash"),
            }
        })
        .collect())
}

/// `cdot-operator audit verify`: prints the result; false when the chain is broken.
pub async fn verify_command(database_url: &str) -> anyhow::Result<bool> {
    // No migrations: verifying must not change the database it checks.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(database_url)
        .await
        .map_err(|source| StoreError::Connect {
            url: crate::store::redact_url(database_url),
            source,
        })?;
    let report = verify(&pool).await;
    pool.close().await;
    let report = report?;
    for problem in &report.problems {
        println!("seq {}: {}", problem.seq, problem.what);
    }
    match (report.first_seq, report.last_seq) {
        (Some(first), Some(last)) if report.is_ok() => println!(
            "audit log verified: {} entries (seq {first}..{last}), head {}",
            report.checked, report.head_hash
        ),
        _ if report.is_ok() => println!("audit log verified: 0 entries"),
        _ => println!(
            "audit log broken: {} problem(s) in {} entries",
            report.problems.len(),
            report.checked
        ),
    }
    Ok(report.is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(detail: Value) -> NewEntry {
        NewEntry {
            at: "2026-12-01T10:00:00.123456789Z".parse().expect("time"),
            namespace: "acme".into(),
            actor: "engine".into(),
            action: "step.finished".into(),
            run: Some(Uuid::nil()),
            detail,
        }
    }

    #[test]
    fn the_canonical_body_sorts_keys_at_every_depth_without_whitespace() {
        let body = canonical_body(
            7,
            &entry(json!({ "z": 1, "a": { "y": [true, null, "é\n"], "b": 1.5 }, "m": -2 })),
        );
        assert_eq!(
            body,
            r#"{"action":"step.finished","actor":"engine","at":"2026-12-01T10:00:00.123456Z","detail":{"a":{"b":1.5,"y":[true,null,"é\n"]},"m":-2,"z":1},"namespace":"acme","run":"00000000-0000-0000-0000-000000000000","seq":7}"#
        );
        // Built in another key order: the same text, so the same hash.
        let mut reordered = serde_json::Map::new();
        reordered.insert("m".into(), json!(-2));
        reordered.insert("a".into(), json!({ "b": 1.5, "y": [true, null, "é\n"] }));
        reordered.insert("z".into(), json!(1));
        assert_eq!(canonical_body(7, &entry(Value::Object(reordered))), body);
    }

    #[test]
    fn times_are_truncated_to_microseconds_and_always_print_six_digits() {
        let at: Timestamp = "2026-12-01T10:00:00.999999999Z".parse().expect("time");
        assert_eq!(format_at(at), "2026-12-01T10:00:00.999999Z");
        let at: Timestamp = "2026-12-01T10:00:00Z".parse().expect("time");
        assert_eq!(format_at(at), "2026-12-01T10:00:00.000000Z");
    }

    #[test]
    fn the_hash_covers_the_previous_hash() {
        let body = canonical_body(1, &entry(json!({})));
        assert_ne!(
            chain_hash(GENESIS, &body),
            chain_hash(&"1".repeat(64), &body)
        );
        assert_eq!(chain_hash(GENESIS, &body).len(), 64);
    }

    #[test]
    fn problems_read_as_what_happened() {
        let row = |seq: i64, prev: &str, body: &str| StoredRow {
            seq,
            at: "2026-12-01T10:00:00.123456Z".into(),
            namespace: "acme".into(),
            actor: "engine".into(),
            action: "step.finished".into(),
            run: Some(Uuid::nil()),
            body: body.into(),
            prev_hash: prev.into(),
            hash: chain_hash(prev, body),
        };
        let body = canonical_body(5, &entry(json!({})));
        assert!(check(&row(5, GENESIS, &body), 4, GENESIS).is_empty());
        assert_eq!(
            check(&row(5, GENESIS, &body), 3, GENESIS),
            [Tamper::Missing { from: 4, to: 4 }]
        );
        assert_eq!(
            check(&row(5, GENESIS, &body), 4, &"1".repeat(64)),
            [Tamper::Link { previous: 4 }]
        );
        let mut edited = row(5, GENESIS, &body);
        edited.actor = "mallory".into();
        edited.body = edited.body.replace("step.finished", "step.skipped");
        assert_eq!(
            check(&edited, 4, GENESIS),
            [
                Tamper::Hash,
                Tamper::Column("actor"),
                Tamper::Column("action")
            ]
        );
        assert_eq!(
            Tamper::Hash.to_string(),
            "hash does not match its body (entry edited)"
        );
    }
}
