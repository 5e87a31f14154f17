//! The real `cdot-agent` against the real operator: while the operator is down for 60 s the
//! agent spools; after the restart every sample taken during the outage is stored exactly once.
mod support;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use sqlx::{Connection, Row};
use support::{Operator, TestDb, wait_for, workspace_bin};

const OUTAGE: Duration = Duration::from_secs(60);

async fn stored_batches(db: &str) -> i64 {
    let Ok(mut conn) = sqlx::PgConnection::connect(db).await else {
        return 0;
    };
    sqlx::query_scalar("SELECT count(*) FROM ingested_batches")
        .fetch_one(&mut conn)
        .await
        .unwrap_or(0)
}

#[tokio::test]
async fn samples_taken_while_the_operator_is_down_are_stored_exactly_once() {
    let db = TestDb::create().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let manifests = tmp.path().join("repo");
    std::fs::create_dir_all(&manifests).expect("mkdir");
    let token = support::create_enrollment_token(&manifests, "outage", "acme");
    let operator = Operator::start(&[&manifests], Some(&db.url), &[], tmp.path()).await;
    let ports = operator.ports();

    let agent = workspace_bin("cdot-agent");
    let state = tmp.path().join("agent");
    support::enroll_agent(&operator, &token, "outage-host", &state);

    let agent_log = tmp.path().join("agent.log");
    let mut running = Command::new(&agent)
        .args(["run", "--metrics-interval-secs", "1"])
        .arg("--state-dir")
        .arg(&state)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&agent_log).expect("log"))
        .spawn()
        .expect("cdot-agent run");

    // Reporting works before the outage.
    let before = wait_for(Duration::from_secs(20), || async {
        let n = stored_batches(&db.url).await;
        (n >= 3).then_some(n)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "agent never reported:\n{}",
            std::fs::read_to_string(&agent_log).unwrap_or_default()
        )
    });

    let mut operator = operator;
    assert!(operator.interrupt().success());
    let down_at = Instant::now();
    let down_wall = jiff::Timestamp::now();
    tokio::time::sleep(OUTAGE).await;
    let up_wall = jiff::Timestamp::now();
    let operator = Operator::start_at(ports, &[&manifests], Some(&db.url), &[], tmp.path()).await;
    let outage = down_at.elapsed();

    // The spool drains: the batches of the outage arrive, then reporting continues.
    let expected = before + outage.as_secs() as i64;
    let drained = wait_for(Duration::from_secs(60), || async {
        let n = stored_batches(&db.url).await;
        (n >= expected + 3).then_some(n)
    })
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(running.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let exit = running.wait().expect("agent exit");
    let agent_output = std::fs::read_to_string(&agent_log).unwrap_or_default();
    assert!(
        drained.is_some(),
        "spool did not drain (stored {}):\n{agent_output}\n{}",
        stored_batches(&db.url).await,
        operator.logs()
    );
    assert!(
        exit.success(),
        "agent did not stop cleanly on SIGTERM: {exit}\n{agent_output}"
    );

    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    // Exactly once: no series has two samples at the same instant.
    let duplicates: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT u.series_id, p.at FROM metric_points p, unnest(p.series_ids) AS u(series_id)
                               GROUP BY 1, 2 HAVING count(*) > 1) d",
    )
    .fetch_one(&mut conn)
    .await
    .expect("duplicates");
    assert_eq!(duplicates, 0, "samples stored twice");
    // Every second of the outage has its sample: the uptime series has no gap.
    let rows = sqlx::query(
        "SELECT extract(epoch FROM p.at)::float8 AS t
         FROM metric_points p CROSS JOIN LATERAL unnest(p.series_ids) AS u(series_id) JOIN metric_series m ON m.id = u.series_id
         WHERE m.metric = 'uptime' ORDER BY p.at",
    )
    .fetch_all(&mut conn)
    .await
    .expect("uptime samples");
    let times: Vec<f64> = rows.iter().map(|r| r.get("t")).collect();
    let during = times
        .iter()
        .filter(|t| **t >= down_wall.as_second() as f64 && **t <= up_wall.as_second() as f64)
        .count();
    assert!(
        during as u64 >= OUTAGE.as_secs() - 5,
        "only {during} samples from the {} s outage were stored",
        OUTAGE.as_secs()
    );
    let largest_gap = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(
        largest_gap < 3.0,
        "a gap of {largest_gap:.1} s in the uptime series"
    );
}
