//! The audit log against a real PostgreSQL: concurrent appends form one gapless chain, every
//! kind of tampering is found at the right seq, retention keeps the chain verifiable,
//! `cdot-operator audit verify` exits 0 or 1, and the route pages a namespace's entries.
use std::{process::Command, sync::Arc, time::Duration};

use axum::{body::Body, http::Request};
use cdot_crds::api_token::{ApiToken, Role, hash_token};
use cdot_operator::{
    api::{self, AppState, TokenIndex},
    automation::audit::{
        self, GENESIS, NewEntry, Problem, Tamper, canonical_body, chain_hash, format_at,
    },
    metrics::Metrics,
    store::Store,
};
use cdot_testkit::pg::TestDb;
use jiff::Timestamp;
use serde_json::json;
use sqlx::PgPool;
use tower::ServiceExt;
use uuid::Uuid;

async fn store(connections: u32) -> (TestDb, Store) {
    let db = TestDb::create().await;
    let store = Store::connect(&db.url, connections)
        .await
        .expect("connect and migrate");
    (db, store)
}

fn entry(at: Timestamp, namespace: &str, run: Option<Uuid>, n: usize) -> NewEntry {
    NewEntry {
        at,
        namespace: namespace.into(),
        actor: "engine".into(),
        action: "step.finished".into(),
        run,
        detail: json!({ "n": n, "step": "restart", "output": { "exit": 0, "stdout": "ok\n" } }),
    }
}

/// Appends `entries` in one transaction.
async fn append(
    pool: &PgPool,
    entries: &[NewEntry],
) -> Vec<cdot_crds::wire::automation::AuditEntry> {
    let mut tx = pool.begin().await.expect("begin");
    let stored = audit::append(&mut tx, entries).await.expect("append");
    tx.commit().await.expect("commit");
    stored
}

async fn exec(pool: &PgPool, sql: &str) {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn problems(pool: &PgPool) -> Vec<Problem> {
    audit::verify(pool).await.expect("verify").problems
}

#[tokio::test]
async fn concurrent_appends_form_one_gapless_verifiable_chain() {
    let (_db, store) = store(10).await;
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let pool = store.pool().clone();
            tokio::spawn(async move {
                let run = Uuid::new_v4();
                // 200 entries per task: one or three per transaction.
                let mut n = 0;
                while n < 200 {
                    let size = if n % 7 == 0 { 3.min(200 - n) } else { 1 };
                    let batch: Vec<_> = (n..n + size)
                        .map(|i| entry(Timestamp::now(), &format!("ns{}", task % 2), Some(run), i))
                        .collect();
                    let stored = append(&pool, &batch).await;
                    assert_eq!(stored.len(), size);
                    n += size;
                }
                run
            })
        })
        .collect();
    let mut runs = Vec::new();
    for task in tasks {
        runs.push(task.await.expect("task"));
    }

    let (count, min, max): (i64, i64, i64) =
        sqlx::query_as("SELECT count(*), min(seq), max(seq) FROM audit_log")
            .fetch_one(store.pool())
            .await
            .expect("count");
    assert_eq!((count, min, max), (1600, 1, 1600), "gapless");
    let report = audit::verify(store.pool()).await.expect("verify");
    assert_eq!(report.problems, []);
    assert_eq!(
        (report.checked, report.first_seq, report.last_seq),
        (1600, Some(1), Some(1600))
    );

    // The route's query: one run's entries in chain order, paged with `after`, the detail
    // read back from the hashed body and `at` exactly as hashed.
    let page = audit::list(store.pool(), "ns0", Some(runs[0]), 0, 150)
        .await
        .expect("list");
    assert_eq!(page.len(), 150);
    assert!(page.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(page[0].detail["n"], 0);
    assert_eq!(page[0].detail["output"]["stdout"], "ok\n");
    let rest = audit::list(store.pool(), "ns0", Some(runs[0]), page[149].seq, 1000)
        .await
        .expect("list");
    assert_eq!(rest.len(), 50);
    assert!(
        rest.iter()
            .all(|e| e.run == Some(runs[0]) && e.namespace == "ns0")
    );
    assert!(
        audit::list(store.pool(), "ns1", Some(runs[0]), 0, 10)
            .await
            .expect("list")
            .is_empty()
    );
    let first = &page[0];
    let at: Timestamp = first.at.parse().expect("at");
    assert_eq!(format_at(at), first.at);
    let body = canonical_body(
        first.seq,
        &NewEntry {
            at,
            namespace: first.namespace.clone(),
            actor: first.actor.clone(),
            action: first.action.clone(),
            run: first.run,
            detail: first.detail.clone(),
        },
    );
    assert_eq!(chain_hash(&first.prev_hash, &body), first.hash);
}

#[tokio::test]
async fn appended_entries_chain_from_genesis_and_keep_microseconds() {
    let (_db, store) = store(2).await;
    let at: Timestamp = "2026-12-01T10:00:00.123456789Z".parse().expect("at");
    let stored = append(
        store.pool(),
        &[entry(at, "acme", None, 0), entry(at, "acme", None, 1)],
    )
    .await;
    assert_eq!(stored[0].seq, 1);
    assert_eq!(stored[0].prev_hash, GENESIS);
    assert_eq!(stored[1].prev_hash, stored[0].hash);
    assert_eq!(stored[0].at, "2026-12-01T10:00:00.123456Z");
    let listed = audit::list(store.pool(), "acme", None, 0, 10)
        .await
        .expect("list");
    assert_eq!(listed, stored);
    assert!(audit::verify(store.pool()).await.expect("verify").is_ok());
}

#[tokio::test]
async fn every_kind_of_tampering_is_found_at_its_seq() {
    let (_db, store) = store(2).await;
    let pool = store.pool();
    let batch: Vec<_> = (0..10)
        .map(|i| entry(Timestamp::now(), "acme", Some(Uuid::new_v4()), i))
        .collect();
    append(pool, &batch).await;
    exec(pool, "CREATE TABLE audit_copy AS SELECT * FROM audit_log").await;
    let restore = || async {
        exec(pool, "DELETE FROM audit_log").await;
        exec(pool, "INSERT INTO audit_log SELECT * FROM audit_copy").await;
        assert_eq!(problems(pool).await, [], "restored");
    };
    let at = |seq, what| vec![Problem { seq, what }];

    // An edited body (the detail): its hash no longer matches.
    exec(
        pool,
        r#"UPDATE audit_log SET body = replace(body, '"exit":0', '"exit":1') WHERE seq = 4"#,
    )
    .await;
    assert_eq!(problems(pool).await, at(4, Tamper::Hash));
    restore().await;

    // An edited column: the body says otherwise.
    exec(pool, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 5").await;
    assert_eq!(problems(pool).await, at(5, Tamper::Column("actor")));
    restore().await;
    exec(
        pool,
        "UPDATE audit_log SET at = at + interval '1 microsecond' WHERE seq = 3",
    )
    .await;
    assert_eq!(problems(pool).await, at(3, Tamper::Column("at")));
    restore().await;
    exec(pool, "UPDATE audit_log SET run = NULL WHERE seq = 2").await;
    assert_eq!(problems(pool).await, at(2, Tamper::Column("run")));
    restore().await;

    // A deleted entry in the middle: a gap where the next one is.
    exec(pool, "DELETE FROM audit_log WHERE seq = 6").await;
    assert_eq!(
        problems(pool).await,
        at(7, Tamper::Missing { from: 6, to: 6 })
    );
    restore().await;

    // The newest entry replaced by a forgery with a correct hash over a wrong prev_hash.
    let (prev_8,): (String,) = sqlx::query_as("SELECT hash FROM audit_log WHERE seq = 8")
        .fetch_one(pool)
        .await
        .expect("hash 8");
    exec(pool, "DELETE FROM audit_log WHERE seq = 10").await;
    let forged = entry(Timestamp::now(), "acme", None, 99);
    let body = canonical_body(10, &forged);
    sqlx::query(
        "INSERT INTO audit_log (seq, at, namespace, actor, action, run, body, prev_hash, hash)
         VALUES (10, $1::timestamptz, 'acme', 'engine', 'step.finished', NULL, $2, $3, $4)",
    )
    .bind(format_at(forged.at))
    .bind(&body)
    .bind(&prev_8)
    .bind(chain_hash(&prev_8, &body))
    .execute(pool)
    .await
    .expect("forge");
    assert_eq!(problems(pool).await, at(10, Tamper::Link { previous: 9 }));
    restore().await;

    // An edited body with a recomputed hash: it checks out alone, the next link breaks.
    let (prev_3,): (String,) = sqlx::query_as("SELECT hash FROM audit_log WHERE seq = 3")
        .fetch_one(pool)
        .await
        .expect("hash 3");
    exec(
        pool,
        r#"UPDATE audit_log SET body = replace(body, '"exit":0', '"exit":1') WHERE seq = 4"#,
    )
    .await;
    exec(
        pool,
        &format!(
            r"UPDATE audit_log SET hash = encode(sha256(convert_to('{prev_3}' || E'\n' || body, 'UTF8')), 'hex') WHERE seq = 4"
        ),
    )
    .await;
    assert_eq!(problems(pool).await, at(5, Tamper::Link { previous: 4 }));
    restore().await;

    // A body that is not an entry any more.
    exec(pool, "UPDATE audit_log SET body = 'gone' WHERE seq = 1").await;
    let found = problems(pool).await;
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(
        found[0],
        Problem {
            seq: 1,
            what: Tamper::Hash
        }
    );
    assert!(matches!(
        found[1],
        Problem {
            seq: 1,
            what: Tamper::Body(_)
        }
    ));
}

#[tokio::test]
async fn pruning_moves_the_anchor_and_the_chain_still_verifies() {
    let (_db, store) = store(2).await;
    let pool = store.pool();
    let old: Timestamp = "2020-01-01T00:00:00Z".parse().expect("old");
    // More old entries than one prune transaction deletes, in one statement each.
    for chunk in 0..3 {
        let batch: Vec<_> = (0..15_000)
            .map(|i| entry(old, "acme", None, chunk * 15_000 + i))
            .collect();
        append(pool, &batch).await;
    }
    let now = Timestamp::now();
    append(pool, &[entry(now, "acme", None, 0)]).await;
    // An old entry after a new one stays: only a prefix of the chain is pruned.
    let straggler = append(pool, &[entry(old, "acme", None, 1)]).await;
    assert!(audit::verify(pool).await.expect("verify").is_ok());

    let cutoff: Timestamp = "2021-01-01T00:00:00Z".parse().expect("cutoff");
    assert_eq!(audit::prune(pool, cutoff).await.expect("prune"), 45_000);
    let anchor: (i64,) = sqlx::query_as("SELECT seq FROM audit_anchor")
        .fetch_one(pool)
        .await
        .expect("anchor");
    assert_eq!(anchor.0, 45_000);
    let report = audit::verify(pool).await.expect("verify");
    assert_eq!(report.problems, []);
    assert_eq!(
        (report.checked, report.first_seq, report.last_seq),
        (2, Some(45_001), Some(straggler[0].seq))
    );
    assert_eq!(audit::prune(pool, cutoff).await.expect("prune again"), 0);

    // Everything pruned: the chain continues from the anchor.
    let far: Timestamp = "2100-01-01T00:00:00Z".parse().expect("far");
    assert_eq!(audit::prune(pool, far).await.expect("prune all"), 2);
    let report = audit::verify(pool).await.expect("verify");
    assert_eq!((report.checked, report.problems.len()), (0, 0));
    assert_eq!(report.head_hash, straggler[0].hash);
    let next = append(pool, &[entry(now, "acme", None, 2)]).await;
    assert_eq!(next[0].seq, straggler[0].seq + 1);
    assert_eq!(next[0].prev_hash, straggler[0].hash);
    assert!(audit::verify(pool).await.expect("verify").is_ok());

    // A forged anchor is noticed at the first kept entry.
    exec(
        pool,
        &format!("UPDATE audit_anchor SET hash = '{}'", "1".repeat(64)),
    )
    .await;
    assert_eq!(
        problems(pool).await,
        [Problem {
            seq: next[0].seq,
            what: Tamper::Link {
                previous: straggler[0].seq
            }
        }]
    );
}

#[tokio::test]
async fn the_verify_command_exits_0_on_a_sound_chain_and_1_on_a_broken_one() {
    let (db, store) = store(2).await;
    let pool = store.pool();
    let batch: Vec<_> = (0..5)
        .map(|i| entry(Timestamp::now(), "acme", None, i))
        .collect();
    append(pool, &batch).await;
    let verify = || {
        Command::new(env!("CARGO_BIN_EXE_cdot-operator"))
            .args(["audit", "verify", "--database-url", &db.url])
            .env_remove("DATABASE_URL")
            .output()
            .expect("run cdot-operator audit verify")
    };

    let out = verify();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("audit log verified: 5 entries (seq 1..5)"),
        "{stdout}"
    );

    exec(
        pool,
        r#"UPDATE audit_log SET body = replace(body, '"exit":0', '"exit":1') WHERE seq = 3"#,
    )
    .await;
    exec(pool, "DELETE FROM audit_log WHERE seq = 4").await;
    let out = verify();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("seq 3: hash does not match its body (entry edited)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("seq 5: entry 4 is missing (entry deleted)"),
        "{stdout}"
    );
}

#[tokio::test]
async fn the_route_pages_a_namespace_oldest_first_and_names_bad_parameters() {
    const VIEWER: &str = "cdot_test_audit_viewer";
    let (_db, store) = store(2).await;
    let run = Uuid::new_v4();
    let mut batch: Vec<_> = (0..3)
        .map(|i| entry(Timestamp::now(), "acme", Some(run), i))
        .collect();
    batch.push(entry(Timestamp::now(), "acme", None, 3));
    batch.push(entry(Timestamp::now(), "other", Some(run), 4));
    append(store.pool(), &batch).await;
    let state = AppState::new(store.clone(), Arc::new(Metrics::default()));
    state.replace_tokens(TokenIndex::new(&[ApiToken {
        name: "viewer".into(),
        namespace: "acme".into(),
        token_sha256: hash_token(VIEWER),
        role: Role::Viewer,
        namespaces: vec!["acme".into()],
    }]));
    let app = api::app(state, Duration::from_secs(10));
    let get = |uri: String| {
        let app = app.clone();
        async move {
            let request = Request::get(uri)
                .header("authorization", format!("Bearer {VIEWER}"))
                .body(Body::empty())
                .expect("request");
            let response = app.oneshot(request).await.expect("response");
            let status = response.status().as_u16();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            let body: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
            (status, body)
        }
    };

    let (status, page) = get("/v1/namespaces/acme/audit?limit=2".into()).await;
    assert_eq!(status, 200, "{page}");
    let seqs = |page: &serde_json::Value| -> Vec<i64> {
        page["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| e["seq"].as_i64().expect("seq"))
            .collect()
    };
    assert_eq!(seqs(&page), [1, 2]);
    assert_eq!(page["entries"][0]["detail"]["output"]["exit"], 0);
    assert_eq!(page["entries"][1]["prevHash"], page["entries"][0]["hash"]);
    let (_, rest) = get("/v1/namespaces/acme/audit?after=2".into()).await;
    assert_eq!(seqs(&rest), [3, 4]);
    let (_, of_run) = get(format!("/v1/namespaces/acme/audit?run={run}")).await;
    assert_eq!(seqs(&of_run), [1, 2, 3]);

    for (query, field) in [
        ("limit=0", "query.limit"),
        ("limit=1001", "query.limit"),
        ("after=-1", "query.after"),
        ("run=nope", "query.run"),
        ("before=1", "query.before"),
    ] {
        let (status, body) = get(format!("/v1/namespaces/acme/audit?{query}")).await;
        assert_eq!(
            (status, body["field"].as_str()),
            (400, Some(field)),
            "{query}: {body}"
        );
    }
    let (status, _) = get("/v1/namespaces/other/audit".into()).await;
    assert_eq!(status, 404, "outside the token's namespaces");
}
