//! Workflow steps against real things: scripts run by sh, bash and python3; a service
//! restarted under a real supervisord; isolation checked with real packets between network
//! namespaces, applied by the real agent binary that fetched the step from a scripted
//! operator over HTTPS; and the work loop's at-most-once promise across a restart.
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Query, State},
    http::StatusCode,
    routing::{get, post, put},
};
use cdot_agent::{
    actions::{
        script,
        service::{ServiceManager, supervisor_states},
    },
    client::gunzip,
    config::AgentSettings,
    run::Agent,
    testing::{RunningAgent, enrolled_state, wait_for},
};
use cdot_crds::{
    wire::{
        AgentConfig, BatchAck, MetricsBatch,
        isolation::NFT_TABLE,
        work::{
            Isolate, MAX_STEP_OUTPUT_BYTES, RunScript, StepOrigin, StepResult, StepState, WorkItem,
            WorkKind, WorkList, WorkReport,
        },
    },
    workflow::Shell,
};
use cdot_testkit::{
    netns::{Host, Lab},
    supervisor::Supervisord,
};
use uuid::Uuid;

fn origin(step: &str, timeout_secs: u64) -> StepOrigin {
    StepOrigin {
        workflow: "fix-disk".into(),
        run: Uuid::from_u128(7),
        step: step.into(),
        attempt: 1,
        timeout_secs,
    }
}

fn script(shell: Shell, body: &str, args: &[&str], timeout_secs: u64) -> RunScript {
    RunScript {
        origin: origin("script", timeout_secs),
        shell,
        body: body.into(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        run_as: None,
    }
}

async fn run(dir: &Path, s: &RunScript) -> StepResult {
    script::run(dir, s, Duration::from_secs(s.origin.timeout_secs)).await
}

#[tokio::test]
async fn scripts_report_exit_code_output_and_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let failing = script(
        Shell::Sh,
        "echo \"$CDOT_WORKFLOW/$CDOT_RUN/$CDOT_STEP $1 $2\"; echo oops >&2; exit 3",
        &["a b", "c"],
        10,
    );
    let result = run(dir.path(), &failing).await;
    assert_eq!(result.state, StepState::Failed, "{result:#?}");
    assert_eq!(result.exit_code, Some(3));
    assert_eq!(
        result.stdout,
        format!("fix-disk/{}/script a b c\n", Uuid::from_u128(7))
    );
    assert_eq!(
        (result.stderr.as_str(), result.truncated),
        ("oops\n", false)
    );
    assert!(
        result.message.contains("exited with 3"),
        "{}",
        result.message
    );

    let bash = script(
        Shell::Bash,
        "arr=(x y); echo \"${arr[1]}${#arr[@]}\"",
        &[],
        10,
    );
    let result = run(dir.path(), &bash).await;
    assert_eq!(
        (result.state, result.stdout.as_str()),
        (StepState::Succeeded, "y2\n")
    );

    let python = script(
        Shell::Python,
        "import sys, os\nprint(sum(int(a) for a in sys.argv[1:]), os.environ['CDOT_STEP'])",
        &["2", "40"],
        10,
    );
    let result = run(dir.path(), &python).await;
    assert_eq!(
        (result.state, result.stdout.as_str()),
        (StepState::Succeeded, "42 script\n"),
        "{result:#?}"
    );

    let mut as_nobody = script(Shell::Sh, "id -un; pwd", &[], 10);
    as_nobody.run_as = Some("nobody".into());
    let result = run(dir.path(), &as_nobody).await;
    assert_eq!(result.state, StepState::Succeeded, "{result:#?}");
    assert!(result.stdout.starts_with("nobody\n"), "{}", result.stdout);
    as_nobody.run_as = Some("no-such-user-cdot".into());
    let result = run(dir.path(), &as_nobody).await;
    assert_eq!(result.state, StepState::Failed);
    assert!(
        result.message.contains("no-such-user-cdot"),
        "{}",
        result.message
    );

    let result = run(dir.path(), &script(Shell::PowerShell, "Get-Date", &[], 10)).await;
    assert_eq!(result.state, StepState::Failed);
    assert!(
        result.message.contains("not available on this OS"),
        "{}",
        result.message
    );
    // Every script's directory is removed after it.
    assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0);
}

/// A state directory given relative to the agent's working directory (as the quick start
/// does: `--state-dir .cdot/agent`) still runs scripts, which run in a directory of their own.
#[tokio::test]
async fn a_relative_state_directory_runs_scripts() {
    // Under the target directory, reached from the working directory without climbing
    // to `/` (where `..` stops, and a wrong base would still find the file).
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let cwd = std::env::current_dir().expect("cwd");
    let (ups, common) = cwd
        .ancestors()
        .enumerate()
        .find(|(_, a)| dir.path().starts_with(a) && a.parent().is_some())
        .expect("a common ancestor below /");
    let relative = Path::new(&"../".repeat(ups)).join(
        dir.path()
            .strip_prefix(common)
            .expect("below the common ancestor"),
    );
    assert!(relative.is_relative(), "{}", relative.display());
    let result = run(&relative, &script(Shell::Sh, "echo here", &[], 10)).await;
    assert_eq!(
        (result.state, result.stdout.as_str()),
        (StepState::Succeeded, "here\n"),
        "{result:#?}"
    );
}

#[tokio::test]
async fn output_over_the_cap_keeps_its_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let loud = script(
        Shell::Sh,
        "echo BEGIN; head -c 100000 /dev/zero | tr '\\0' a; echo END; echo short >&2",
        &[],
        10,
    );
    let result = run(dir.path(), &loud).await;
    assert_eq!(result.state, StepState::Succeeded);
    assert!(result.truncated);
    assert_eq!(result.stdout.len(), MAX_STEP_OUTPUT_BYTES);
    assert!(result.stdout.ends_with("aaaEND\n") && !result.stdout.contains("BEGIN"));
    assert_eq!(result.stderr, "short\n");
}

fn alive(pid: u32) -> bool {
    // Gone, or a zombie waiting for a parent that does not reap it.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                != Some("Z")
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn a_script_is_stopped_at_its_limit_with_its_children() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pids = dir.path().join("pids");
    let sleeper = script(
        Shell::Sh,
        "sleep 300 & echo $! > \"$1\"; echo started; sleep 300",
        &[pids.to_str().expect("utf8")],
        1,
    );
    let started = Instant::now();
    let result = run(&dir.path().join("scripts"), &sleeper).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(result.state, StepState::TimedOut, "{result:#?}");
    assert!(
        result.message.contains("time limit of 1 s"),
        "{}",
        result.message
    );
    assert_eq!(result.stdout, "started\n");
    let child: u32 = std::fs::read_to_string(&pids)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    wait_for(
        "the background child to be killed",
        Duration::from_secs(3),
        || !alive(child),
    )
    .await;
}

#[tokio::test]
async fn a_failed_supervisor_program_is_restarted() {
    let supervisord = Supervisord::start(1, 0);
    let manager = ServiceManager::Supervisor {
        config: Some(supervisord.config()),
    };
    let services = vec!["flaky".to_owned()];
    let failed = |m: &ServiceManager| m.failed(&services);
    let m = manager.clone();
    wait_for("flaky to exit", Duration::from_secs(10), move || {
        failed(&m) == Some(vec![true])
    })
    .await;
    let status = Command::new("supervisorctl")
        .args(["-c", &supervisord.config().display().to_string(), "status"])
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    let states = supervisor_states(&text);
    assert!(
        matches!(states.as_slice(), [("flaky", "EXITED" | "FATAL")]),
        "{text}"
    );

    let result = manager.restart("flaky").await;
    assert_eq!(result.state, StepState::Succeeded, "{result:#?}");
    assert!(
        result.message.contains("supervisorctl -c") && result.message.contains("restart flaky"),
        "{}",
        result.message
    );
    assert_eq!(manager.failed(&services), Some(vec![false]));

    let missing = manager.restart("no-such-program").await;
    assert_eq!(missing.state, StepState::Failed, "{missing:#?}");
    assert!(
        missing.message.contains("no-such-program"),
        "{}",
        missing.message
    );
}

// ---- the work loop and isolation, through a scripted operator ----

#[derive(Default)]
struct Stub {
    items: Vec<WorkItem>,
    revision: u64,
    reports: Vec<WorkReport>,
}

type Shared = Arc<Mutex<Stub>>;

#[derive(serde::Deserialize)]
struct WorkQuery {
    seen: Option<String>,
}

async fn work(State(stub): State<Shared>, Query(q): Query<WorkQuery>) -> Json<WorkList> {
    let unchanged = {
        let stub = stub.lock().expect("lock");
        q.seen == Some(stub.revision.to_string())
    };
    if unchanged {
        // A short long-poll: enough to keep the agent from spinning.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stub = stub.lock().expect("lock");
    Json(WorkList {
        revision: stub.revision.to_string(),
        items: stub.items.clone(),
        patch_scan_interval_secs: 0,
    })
}

async fn reports(State(stub): State<Shared>, body: Bytes) -> Json<BatchAck> {
    let report: WorkReport =
        serde_json::from_slice(&gunzip(&body).expect("gzip")).expect("WorkReport");
    let ack = BatchAck {
        batch_id: report.report_id,
        stored: 1,
        duplicate: false,
    };
    stub.lock().expect("lock").reports.push(report);
    Json(ack)
}

async fn metrics(body: Bytes) -> Json<BatchAck> {
    let batch: MetricsBatch =
        serde_json::from_slice(&gunzip(&body).expect("gzip")).expect("MetricsBatch");
    Json(BatchAck {
        batch_id: batch.batch_id,
        stored: 0,
        duplicate: false,
    })
}

/// A scripted operator on `ip` with a certificate for that address; returns its address,
/// its certificate (PEM) and its state.
async fn start_stub(ip: IpAddr) -> (SocketAddr, String, Shared) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.subject_alt_names = vec![rcgen::SanType::IpAddress(ip)];
    let cert = params.self_signed(&key).expect("cert");
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        cert.pem().into_bytes(),
        key.serialize_pem().into_bytes(),
    )
    .await
    .expect("tls");
    let stub = Shared::default();
    let app = Router::new()
        .route("/v1/agent/work", get(work))
        .route("/v1/agent/work/reports", post(reports))
        .route("/v1/agent/metrics", post(metrics))
        .route(
            "/v1/agent/config",
            get(|| async {
                Json(AgentConfig {
                    metrics_interval_secs: 3600,
                    inventory_interval_secs: 86_400,
                    ..AgentConfig::default()
                })
            }),
        )
        .route(
            "/v1/agent/inventory",
            put(|| async { StatusCode::NO_CONTENT }),
        )
        .route(
            "/v1/agent/patches",
            put(|| async { StatusCode::NO_CONTENT }),
        )
        .with_state(stub.clone());
    let listener = std::net::TcpListener::bind((ip, 0)).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let server = axum_server::from_tcp_rustls(listener, tls).expect("server");
    tokio::spawn(async move { server.serve(app.into_make_service()).await });
    (addr, cert.pem(), stub)
}

fn push(stub: &Shared, item: WorkItem) {
    let mut stub = stub.lock().expect("lock");
    stub.items.push(item);
    stub.revision += 1;
}

/// The reports on `item` so far.
fn reports_on(stub: &Shared, item: Uuid) -> Vec<WorkReport> {
    stub.lock()
        .expect("lock")
        .reports
        .iter()
        .filter(|r| r.item == item)
        .cloned()
        .collect()
}

fn final_step(stub: &Shared, item: Uuid) -> Option<StepResult> {
    reports_on(stub, item)
        .into_iter()
        .find(|r| r.done)
        .and_then(|r| r.step)
}

fn settings(dir: &Path) -> AgentSettings {
    let mut settings = AgentSettings::new(dir);
    settings.metrics_interval_override = Some(Duration::from_secs(3600));
    settings.inventory_interval_override = Some(Duration::from_secs(86_400));
    settings.retry_backoff_max = Duration::from_secs(1);
    settings.work_wait = Duration::from_secs(1);
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_run_side_by_side_and_never_twice() {
    let (addr, ca, stub) = start_stub(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    let state = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    enrolled_state(state.path(), "web-1", addr, ca);
    let counter = work.path().join("runs");
    let counter = counter.to_str().expect("utf8");
    let slow = WorkItem {
        id: Uuid::new_v4(),
        kind: WorkKind::RunScript(script(
            Shell::Sh,
            "echo slow >> \"$1\"; sleep 2; echo done",
            &[counter],
            30,
        )),
    };
    let quick = WorkItem {
        id: Uuid::new_v4(),
        kind: WorkKind::RunScript(script(Shell::Sh, "echo quick >> \"$1\"", &[counter], 30)),
    };
    push(&stub, slow.clone());
    push(&stub, quick.clone());

    let agent = RunningAgent::spawn(Agent::new(settings(state.path())).expect("agent"));
    wait_for("the quick step to finish", Duration::from_secs(10), || {
        final_step(&stub, quick.id).is_some()
    })
    .await;
    // The slow one started first and still runs: it blocked nothing.
    assert!(final_step(&stub, slow.id).is_none());
    let running = reports_on(&stub, slow.id);
    assert_eq!(running.len(), 1, "{running:#?}");
    assert_eq!(
        running[0].step.as_ref().map(|s| s.state),
        Some(StepState::Running)
    );
    assert!(!running[0].done);
    wait_for("the slow step to finish", Duration::from_secs(10), || {
        final_step(&stub, slow.id).is_some()
    })
    .await;
    let slow_end = final_step(&stub, slow.id).expect("final");
    assert_eq!(
        (slow_end.state, slow_end.stdout.as_str()),
        (StepState::Succeeded, "done\n")
    );
    // Listed again on every poll while it ran, started once.
    assert_eq!(reports_on(&stub, slow.id).len(), 2);
    agent.stop().await;

    // After a restart the operator still lists both: neither runs again. (A report in
    // flight at the stop is sent again: the same report id, which the operator ignores.)
    let report_ids = |stub: &Shared| {
        let mut ids: Vec<Uuid> = [slow.id, quick.id]
            .into_iter()
            .flat_map(|item| reports_on(stub, item))
            .map(|r| r.report_id)
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let before = report_ids(&stub);
    assert_eq!(before.len(), 4);
    let agent = RunningAgent::spawn(Agent::new(settings(state.path())).expect("agent"));
    let rerun = WorkItem {
        id: Uuid::new_v4(),
        kind: WorkKind::RunScript(script(Shell::Sh, "echo marker >> \"$1\"", &[counter], 30)),
    };
    push(&stub, rerun.clone());
    wait_for("the new step to finish", Duration::from_secs(10), || {
        final_step(&stub, rerun.id).is_some()
    })
    .await;
    agent.stop().await;
    assert_eq!(
        report_ids(&stub),
        before,
        "only the new item was reported on"
    );
    // Each ran once (the first two side by side, in either order).
    let runs = std::fs::read_to_string(work.path().join("runs")).expect("runs");
    let mut lines: Vec<&str> = runs.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["marker", "quick", "slow"], "{runs}");
}

/// The real agent binary, run inside `host`'s namespace.
fn spawn_agent(host: &Host, state: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    host.command(env!("CARGO_BIN_EXE_cdot-agent"))
        .args(["--state-dir", state.to_str().expect("utf8"), "run"])
        .args(["--metrics-interval-secs", "3600"])
        .env("CDOT_AGENT_SERVICE_MANAGER", "supervisor")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the agent")
}

fn ping(host: &Host, to: Ipv4Addr) -> bool {
    host.command("ping")
        .args(["-c", "1", "-W", "1", &to.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("ping")
        .success()
}

fn tables(host: &Host) -> String {
    let out = host.run("nft", &["list", "tables"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_cuts_the_device_off_but_the_operator_and_survives_a_restart() {
    let lab = Lab::new();
    let device = lab.add_host();
    let peer = lab.add_host();
    let operator = lab.gateway();
    let (addr, ca, stub) = start_stub(IpAddr::V4(operator)).await;
    let state = tempfile::tempdir().expect("tempdir");
    enrolled_state(state.path(), "isolated-1", addr, ca);
    let log = state.path().join("agent.log");
    assert!(ping(&device, peer.addr) && ping(&device, operator));
    assert!(ping(&peer, device.addr));

    struct Running(Child);
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut agent = Running(spawn_agent(&device, state.path(), &log));
    let isolate = WorkItem {
        id: Uuid::new_v4(),
        kind: WorkKind::Isolate(Isolate {
            origin: origin("isolate", 30),
            allow: vec!["192.0.2.0/24".into()],
        }),
    };
    push(&stub, isolate.clone());
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let result = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(result) = final_step(&stub, isolate.id) {
                return result;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no isolate result; agent log:\n{}", logs()));
    // The result came back after the rules were in: the operator stays reachable.
    assert_eq!(
        result.state,
        StepState::Succeeded,
        "{result:#?}\n{}",
        logs()
    );
    assert!(
        result.message.contains("192.0.2.0/24"),
        "{}",
        result.message
    );
    assert!(
        result.message.contains(&operator.to_string()),
        "{}",
        result.message
    );
    assert!(result.message.contains("policy drop"), "{}", result.message);
    assert!(tables(&device).contains("cdot_isolation"));
    assert!(!ping(&device, peer.addr), "the peer is cut off");
    assert!(!ping(&peer, device.addr), "both ways");
    assert!(ping(&device, operator), "the operator answers");
    let saved = std::fs::read_to_string(state.path().join("isolation.json")).expect("recorded");
    assert!(
        saved.contains("192.0.2.0/24") && saved.contains(&operator.to_string()),
        "{saved}"
    );

    // A reboot: the agent stops and the rules are gone; the next start applies them again.
    drop(agent);
    let delete: Vec<&str> = ["delete", "table"]
        .into_iter()
        .chain(NFT_TABLE.split(' '))
        .collect();
    device.run("nft", &delete);
    assert!(ping(&device, peer.addr));
    agent = Running(spawn_agent(&device, state.path(), &log));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !tables(&device).contains("cdot_isolation") {
        assert!(
            Instant::now() < deadline,
            "not isolated again; agent log:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !ping(&device, peer.addr),
        "isolated again after the restart"
    );
    assert!(ping(&device, operator));
    // The isolate item is done: it is not run (or reported) again.
    let isolate_reports = reports_on(&stub, isolate.id).len();

    let release = WorkItem {
        id: Uuid::new_v4(),
        kind: WorkKind::Release(origin("release", 30)),
    };
    push(&stub, release.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    let result = loop {
        if let Some(result) = final_step(&stub, release.id) {
            break result;
        }
        assert!(
            Instant::now() < deadline,
            "no release result; agent log:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(result.state, StepState::Succeeded, "{result:#?}");
    assert!(!tables(&device).contains("cdot_isolation"));
    assert!(
        ping(&device, peer.addr) && ping(&peer, device.addr),
        "released"
    );
    assert!(!state.path().join("isolation.json").exists());
    assert_eq!(reports_on(&stub, isolate.id).len(), isolate_reports);
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_interrupted_by_a_restart_is_not_run_again() {
    let (addr, ca, stub) = start_stub(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    let state = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    enrolled_state(state.path(), "web-2", addr, ca);
    let pids = work.path().join("pids");
    let long = WorkItem {
        id: Uuid::new_v4(),
        kind: WorkKind::RunScript(script(
            Shell::Sh,
            "echo $$ >> \"$1\"; sleep 300",
            &[pids.to_str().expect("utf8")],
            600,
        )),
    };
    push(&stub, long.clone());
    let agent = RunningAgent::spawn(Agent::new(settings(state.path())).expect("agent"));
    wait_for("the script to start", Duration::from_secs(10), || {
        std::fs::read_to_string(&pids).is_ok_and(|p| p.ends_with('\n'))
    })
    .await;
    agent.stop().await;
    let pid: u32 = std::fs::read_to_string(&pids)
        .expect("pids")
        .trim()
        .parse()
        .expect("pid");
    wait_for(
        "the script to end with the agent",
        Duration::from_secs(3),
        || !alive(pid),
    )
    .await;

    let agent = RunningAgent::spawn(Agent::new(settings(state.path())).expect("agent"));
    wait_for(
        "the interrupted step's result",
        Duration::from_secs(10),
        || final_step(&stub, long.id).is_some(),
    )
    .await;
    agent.stop().await;
    let result = final_step(&stub, long.id).expect("final");
    assert_eq!(result.state, StepState::Failed, "{result:#?}");
    assert!(
        result.message.contains("not run a second time"),
        "{}",
        result.message
    );
    assert_eq!(
        std::fs::read_to_string(&pids)
            .expect("pids")
            .lines()
            .count(),
        1
    );
}
