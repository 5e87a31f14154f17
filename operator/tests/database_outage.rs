//! The operator while its database is gone (issue 11): it answers 503 with `Retry-After`
//! at once (never after a pool timeout), `/readyz` says so within a second, and it serves
//! again by itself when the database is back: the embedded PostgreSQL is restarted by the
//! operator's supervisor, an external one is reconnected to.
mod support;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use cdot_operator::store::embedded::EmbeddedPostgres;
use reqwest::StatusCode;
use support::{Operator, create_token, insecure_client, wait_for};

const DEVICES: &str = "apiVersion: rmm.cdot.io/v1alpha1\nkind: Device\nmetadata:\n  name: web-01\n  namespace: acme\nspec:\n  class: Server\n";

fn make_searchable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A manifest directory with one Device and a viewer token for acme.
fn repo(dir: &Path) -> String {
    let manifests = dir.join("repo");
    std::fs::create_dir_all(&manifests).expect("mkdir");
    std::fs::write(manifests.join("devices.yaml"), DEVICES).expect("write");
    create_token(&manifests, "viewer", "acme", "viewer", "acme")
}

fn postmaster_pid(pgdata: &Path) -> i32 {
    std::fs::read_to_string(pgdata.join("postmaster.pid"))
        .expect("postmaster.pid")
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("pid")
}

/// One request with a 1 s deadline: its status and `Retry-After`, or `None` if no answer.
async fn probe(url: &str, token: Option<&str>) -> Option<(StatusCode, Option<String>)> {
    let mut request = insecure_client().get(url).timeout(Duration::from_secs(1));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.ok()?;
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Some((response.status(), retry))
}

/// While down: `/readyz`, a people route and an agent route each answer 503 with
/// `Retry-After` within a second.
async fn assert_fails_fast(operator: &Operator, token: &str) {
    let routes = [
        (format!("{}/readyz", operator.base), None),
        (
            format!("{}/v1/namespaces/acme/devices", operator.base),
            Some(token),
        ),
        (format!("{}/v1/agent/config", operator.agent_base), None),
    ];
    for (url, token) in &routes {
        let started = Instant::now();
        let answer = probe(url, *token).await;
        let took = started.elapsed();
        assert!(
            matches!(&answer, Some((StatusCode::SERVICE_UNAVAILABLE, Some(_)))),
            "{url} answered {answer:?} while the database is down, after {took:?}:\n{}",
            operator.logs()
        );
        assert!(took < Duration::from_secs(1), "{url} took {took:?}");
    }
}

/// The Device of the repo is served again.
async fn assert_serves(operator: &Operator, token: &str) {
    let (status, _) = probe(
        &format!("{}/v1/namespaces/acme/devices/web-01", operator.base),
        Some(token),
    )
    .await
    .expect("answer");
    assert_eq!(status, StatusCode::OK, "{}", operator.logs());
}

async fn wait_until_down(operator: &Operator) -> Duration {
    let started = Instant::now();
    wait_for(Duration::from_secs(10), || async {
        let answer = probe(&format!("{}/readyz", operator.base), None).await;
        matches!(answer, Some((StatusCode::SERVICE_UNAVAILABLE, _))).then_some(())
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "/readyz never said the database is down:\n{}",
            operator.logs()
        )
    });
    started.elapsed()
}

async fn wait_until_ready(operator: &Operator, timeout: Duration) -> Duration {
    let started = Instant::now();
    wait_for(timeout, || async {
        let answer = probe(&format!("{}/readyz", operator.base), None).await;
        matches!(answer, Some((StatusCode::OK, _))).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("not ready again within {timeout:?}:\n{}", operator.logs()));
    started.elapsed()
}

/// `kill -9` of the embedded postmaster: the operator notices, restarts it on the same port
/// (crash recovery), counts the restart and serves again without anyone touching it.
#[tokio::test]
async fn the_embedded_postgres_is_restarted_after_it_is_killed() {
    let tmp = tempfile::tempdir().expect("tmp");
    make_searchable(tmp.path());
    let token = repo(tmp.path());
    let data_dir = tmp.path().join("data");
    let data_arg = data_dir.to_str().expect("utf8");
    let operator = Operator::start(
        &[&tmp.path().join("repo")],
        None,
        &["--data-dir", data_arg],
        tmp.path(),
    )
    .await;
    let port_before = std::fs::read_to_string(data_dir.join("postgres.port")).expect("port file");
    // The data directory holds the cluster and its password: nobody else may list it
    // (as root, the server's group may only pass through to its cluster).
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&data_dir)
            .expect("data dir")
            .permissions()
            .mode()
            & 0o777
    };
    let expected = if nix::unistd::Uid::effective().is_root() {
        0o710
    } else {
        0o700
    };
    assert_eq!(mode, expected, "data directory mode {mode:o}");
    let pgdata = data_dir.join("postgres");

    let killed_at = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(postmaster_pid(&pgdata)),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 the postmaster");
    let noticed = wait_until_down(&operator).await;
    assert_fails_fast(&operator, &token).await;
    let ready_after =
        killed_at.elapsed() + wait_until_ready(&operator, Duration::from_secs(60)).await;
    println!("postmaster killed: /readyz 503 after {noticed:?}, 200 again after {ready_after:?}");

    assert_serves(&operator, &token).await;
    let logs = operator.logs();
    assert!(
        logs.contains("the embedded PostgreSQL died") && logs.contains("restarted after it died"),
        "{logs}"
    );
    let metrics = operator.metrics_text().await;
    assert!(
        metrics.contains("cdot_embedded_postgres_restarts_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cdot_database_outages_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("cdot_database_up 1"), "{metrics}");
    assert_eq!(
        std::fs::read_to_string(data_dir.join("postgres.port")).expect("port file"),
        port_before,
        "the restarted server moved to another port"
    );
}

/// An external PostgreSQL (`--database-url`) that goes away and comes back: fast 503s while
/// it is gone, and the operator reconnects by itself.
#[tokio::test]
async fn an_external_database_is_reconnected_to() {
    let tmp = tempfile::tempdir().expect("tmp");
    make_searchable(tmp.path());
    let token = repo(tmp.path());
    let pg_dir = tmp.path().join("external");
    let start = {
        let pg_dir = pg_dir.clone();
        move || EmbeddedPostgres::start(&pg_dir, None).expect("start a PostgreSQL server")
    };
    let server = tokio::task::spawn_blocking(start.clone())
        .await
        .expect("join");
    let url = server.database_url().await.expect("database");
    let operator = Operator::start(&[&tmp.path().join("repo")], Some(&url), &[], tmp.path()).await;

    // A clean shutdown of the server (as for a PostgreSQL upgrade or failover).
    tokio::task::spawn_blocking(move || server.stop())
        .await
        .expect("join")
        .expect("stop the server");
    wait_until_down(&operator).await;
    assert_fails_fast(&operator, &token).await;
    // Down for a while: nothing the operator does in the meantime may wedge it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_fails_fast(&operator, &token).await;

    let server = tokio::task::spawn_blocking(start).await.expect("join");
    let back = wait_until_ready(&operator, Duration::from_secs(30)).await;
    println!("external database back: /readyz 200 after {back:?}");
    assert_serves(&operator, &token).await;
    drop(operator);
    tokio::task::spawn_blocking(move || server.stop())
        .await
        .expect("join")
        .expect("stop the server");
}
