//! Workflows end to end: a real standalone operator and a real agent. An alert fires from
//! the agent's own samples and starts a run whose scripts run on the agent over the work
//! channel; the operator is killed (`kill -9`) between two steps and the run resumes
//! without running a finished step again; the audit chain verifies. A trigger over 50
//! devices with a blast-radius limit of 10 runs 10 and waits for an approval that its
//! starter cannot give. A plan shows every step's effect and writes nothing.
mod support;

use std::{path::Path, process::Command, time::Duration};

use cdot_crds::wire::automation::{LaneState, RunList, RunPlan, RunState, RunView};
use cdot_testkit::{process::Daemon, supervisor::Supervisord};
use serde_json::{Value, json};
use support::{
    Operator, TestDb, create_enrollment_token, create_token, finished_run, get_ok as get, wait_for,
};

async fn post(operator: &Operator, token: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = support::insecure_client()
        .post(format!("{}{path}", operator.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("POST");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Enrolls and runs the real agent as `device`, reporting every `interval` seconds.
fn start_agent(
    operator: &Operator,
    token: &str,
    device: &str,
    work: &Path,
    interval: &str,
    extra: &[&str],
) -> (Daemon, std::path::PathBuf) {
    let mut args = vec!["--metrics-interval-secs", interval];
    args.extend_from_slice(extra);
    let agent = support::start_agent(operator, token, device, work, &args);
    (agent.daemon, agent.log)
}

fn workflow(mark: &Path) -> String {
    format!(
        r#"apiVersion: rmm.cdot.io/v1alpha1
kind: Device
metadata: {{name: web-01, namespace: acme, labels: {{role: web}}}}
spec: {{class: Server}}
---
apiVersion: rmm.cdot.io/v1alpha1
kind: AlertRule
metadata: {{name: memory-in-use, namespace: acme}}
spec:
  selector: {{matchLabels: {{role: web}}}}
  metric: memory
  reduce: {{function: last, window: 1m}}
  condition: {{op: ">", threshold: 0}}
  severity: Info
  summary: "memory on {{{{ device }}}}"
---
apiVersion: rmm.cdot.io/v1alpha1
kind: Workflow
metadata: {{name: heal, namespace: acme}}
spec:
  trigger: {{type: AlertFiring, alertRule: memory-in-use}}
  selector: {{matchLabels: {{role: web}}}}
  condition: 'event.alertRule == "memory-in-use" && device.name == "web-01"'
  steps:
    - name: first
      type: RunScript
      script: {{shell: Sh, body: "echo first >> {mark}; echo hello from $CDOT_STEP"}}
      timeout: 30s
    - name: pause
      type: Wait
      duration: 6s
    - name: second
      type: RunScript
      script: {{shell: Bash, configMapRef: {{name: scripts, key: second.sh}}}}
      timeout: 30s
    - name: judge
      type: Rhai
      rhai: 'set("greeted", steps["first"].stdout.contains("hello")); 42'
---
# The second step's script, read from here when the step starts.
apiVersion: v1
kind: ConfigMap
metadata: {{name: scripts, namespace: acme}}
data:
  second.sh: "echo second >> {mark}"
"#,
        mark = mark.display()
    )
}

async fn newest_run(operator: &Operator, token: &str) -> Option<RunView> {
    let list: RunList = get(
        operator,
        token,
        "/v1/namespaces/acme/workflowruns?workflow=heal",
    )
    .await;
    let id = list.runs.first()?.id;
    Some(
        get(
            operator,
            token,
            &format!("/v1/namespaces/acme/workflowruns/{id}"),
        )
        .await,
    )
}

/// An alert from the agent's own samples starts the run; the operator is killed with
/// SIGKILL while the run waits between its two scripts; the restarted operator resumes it
/// from PostgreSQL, each script ran exactly once, and the audit chain verifies.
#[tokio::test(flavor = "multi_thread")]
async fn an_alert_runs_scripts_on_the_agent_and_a_killed_operator_resumes_the_run() {
    let db = TestDb::create().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    let mark = tmp.path().join("mark");
    std::fs::write(repo.join("heal.yaml"), workflow(&mark)).expect("manifest");
    let enroll = create_enrollment_token(&repo, "auto-enroll", "acme");
    let viewer = create_token(&repo, "auto-viewer", "acme", "viewer", "acme");
    let mut operator = Operator::start(&[&repo], Some(&db.url), &[], tmp.path()).await;
    let (_agent, agent_log) = start_agent(&operator, &enroll, "web-01", tmp.path(), "2", &[]);
    let logs = |op: &Operator| {
        format!(
            "operator:\n{}\nagent:\n{}",
            op.logs(),
            std::fs::read_to_string(&agent_log).unwrap_or_default()
        )
    };

    // The first script ran on the agent and the run waits in `pause`.
    let run = wait_for(Duration::from_secs(60), || async {
        let run = newest_run(&operator, &viewer).await?;
        let lane = run.lanes.first()?;
        (lane.step.as_deref() == Some("pause")).then_some(run)
    })
    .await
    .unwrap_or_else(|| panic!("no run reached the wait:\n{}", logs(&operator)));
    assert_eq!(run.event.alert_rule.as_deref(), Some("memory-in-use"));
    let first = &run.lanes[0].attempts[0];
    let result = first.result.as_ref().expect("the agent's result");
    assert_eq!(result.exit_code, Some(0), "{run:?}");
    assert!(result.stdout.contains("hello from first"), "{result:?}");

    // kill -9 in the middle of the run, then start again on the same database and ports.
    let ports = operator.ports();
    operator.kill();
    let operator = Operator::start_at(ports, &[&repo], Some(&db.url), &[], tmp.path()).await;
    let run = wait_for(Duration::from_secs(60), || async {
        let run = newest_run(&operator, &viewer).await?;
        run.summary.state.is_final().then_some(run)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the run did not finish after the restart:\n{}",
            logs(&operator)
        )
    });
    assert_eq!(run.summary.state, RunState::Succeeded, "{run:#?}");
    let lane = &run.lanes[0];
    assert_eq!(lane.state, LaneState::Succeeded);
    assert_eq!(lane.vars.get("greeted"), Some(&json!(true)), "{lane:?}");
    let steps: Vec<&str> = lane.attempts.iter().map(|a| a.step.as_str()).collect();
    assert_eq!(steps, ["first", "pause", "second", "judge"], "{lane:#?}");
    assert_eq!(
        std::fs::read_to_string(&mark).expect("mark"),
        "first\nsecond\n",
        "each script ran exactly once"
    );
    // One run per alert occurrence, however often the trigger was seen.
    let list: RunList = get(&operator, &viewer, "/v1/namespaces/acme/workflowruns").await;
    assert_eq!(list.runs.len(), 1, "{list:?}");

    // Every transition is in the audit log, and the chain verifies.
    let audit: Value = get(
        &operator,
        &viewer,
        &format!("/v1/namespaces/acme/audit?run={}", run.summary.id),
    )
    .await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"run.started") && actions.contains(&"run.finished"),
        "{actions:?}"
    );
    let verify = Command::new(support::operator_bin())
        .args(["audit", "verify", "--database-url", &db.url])
        .output()
        .expect("audit verify");
    assert!(
        verify.status.success(),
        "audit verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

fn fleet() -> String {
    let mut yaml = String::from(
        r#"apiVersion: rmm.cdot.io/v1alpha1
kind: Workflow
metadata: {name: sweep, namespace: acme}
spec:
  trigger: {type: Manual}
  selector: {matchLabels: {role: kiosk}}
  limits: {maxDevicesPerRun: 10}
  steps:
    - name: tag
      type: Rhai
      rhai: 'set("seen", device.name); true'
    - name: gate
      type: Approval
    - name: done
      type: Rhai
      rhai: 'vars["seen"] == device.name'
"#,
    );
    yaml.push_str(&kiosks(50));
    yaml
}

/// `n` Devices labelled `role: kiosk`, as manifest documents.
fn kiosks(n: usize) -> String {
    (0..n)
        .map(|i| format!(
            "---\napiVersion: rmm.cdot.io/v1alpha1\nkind: Device\nmetadata: {{name: kiosk-{i:02}, namespace: acme, labels: {{role: kiosk}}}}\nspec: {{class: Workstation}}\n"
        ))
        .collect()
}

/// Blast radius and approvals: a run over 50 devices with `maxDevicesPerRun: 10` runs 10
/// (to their Approval step) and holds 40; the person who started it cannot approve it;
/// another operator's approval lets all 50 finish. A plan before it writes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_over_50_devices_with_a_limit_of_10_runs_10_and_waits_for_another_persons_approval() {
    let db = TestDb::create().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    std::fs::write(repo.join("fleet.yaml"), fleet()).expect("manifest");
    let alice = create_token(&repo, "alice", "acme", "operator", "acme");
    let bob = create_token(&repo, "bob", "acme", "operator", "acme");
    let viewer = create_token(&repo, "auto-viewer", "acme", "viewer", "acme");
    let operator = Operator::start(&[&repo], Some(&db.url), &[], tmp.path()).await;

    // The plan: 10 devices at once, 40 held, every step described; nothing written.
    let (status, plan) = post(
        &operator,
        &viewer,
        "/v1/namespaces/acme/workflows/sweep:plan",
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{plan}");
    let plan: RunPlan = serde_json::from_value(plan).expect("plan");
    assert!(plan.would_start);
    assert_eq!((plan.devices.len(), plan.held.len()), (10, 40), "{plan:?}");
    assert_eq!(plan.devices[0].steps.len(), 3);
    let list: RunList = get(&operator, &viewer, "/v1/namespaces/acme/workflowruns").await;
    assert!(list.runs.is_empty(), "a plan started a run: {list:?}");
    // A viewer cannot start a run.
    let (status, _) = post(
        &operator,
        &viewer,
        "/v1/namespaces/acme/workflows/sweep:run",
        json!({}),
    )
    .await;
    assert_eq!(status, 403);

    let (status, run) = post(
        &operator,
        &alice,
        "/v1/namespaces/acme/workflows/sweep:run",
        json!({}),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().expect("id").to_owned();
    let path = format!("/v1/namespaces/acme/workflowruns/{id}");
    let run: RunView = wait_for(Duration::from_secs(30), || async {
        let run: RunView = get(&operator, &viewer, &path).await;
        (run.summary.state == RunState::AwaitingApproval
            && run
                .lanes
                .iter()
                .filter(|l| l.state == LaneState::AwaitingApproval)
                .count()
                == 10)
            .then_some(run)
    })
    .await
    .unwrap_or_else(|| panic!("10 lanes did not reach the gate:\n{}", operator.logs()));
    assert_eq!(
        run.lanes
            .iter()
            .filter(|l| l.state == LaneState::Held)
            .count(),
        40
    );

    let (status, body) = post(
        &operator,
        &alice,
        &format!("{path}:approve"),
        json!({"comment": "mine"}),
    )
    .await;
    assert_eq!(status, 403, "the starter approved her own run: {body}");
    let (status, body) = post(
        &operator,
        &bob,
        &format!("{path}:approve"),
        json!({"comment": "go"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The held 40 now run to the gate too; a second approval lets them through.
    let run: RunView = wait_for(Duration::from_secs(30), || async {
        let run: RunView = get(&operator, &viewer, &path).await;
        (run.lanes
            .iter()
            .filter(|l| l.state == LaneState::AwaitingApproval)
            .count()
            == 40)
            .then_some(run)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the held lanes did not reach the gate:\n{}",
            operator.logs()
        )
    });
    assert_eq!(
        run.lanes
            .iter()
            .filter(|l| l.state == LaneState::Succeeded)
            .count(),
        10
    );
    let (status, body) = post(&operator, &bob, &format!("{path}:approve"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    let run: RunView = wait_for(Duration::from_secs(30), || async {
        let run: RunView = get(&operator, &viewer, &path).await;
        run.summary.state.is_final().then_some(run)
    })
    .await
    .unwrap_or_else(|| panic!("the run did not finish:\n{}", operator.logs()));
    assert_eq!(run.summary.state, RunState::Succeeded, "{run:#?}");
    assert_eq!(run.approvals.len(), 2);
    assert!(run.approvals.iter().all(|a| a.by == "bob"));
}

/// The hourly limit counts devices across runs: a first run over 50 devices with
/// `maxDevicesPerHour: 15` runs 15 and holds 35; a second run within the hour starts on
/// none and holds the 15 that are free, saying why; the plan says the same before it.
#[tokio::test(flavor = "multi_thread")]
async fn the_hourly_limit_holds_devices_across_runs() {
    let db = TestDb::create().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    let workflow = r#"apiVersion: rmm.cdot.io/v1alpha1
kind: Workflow
metadata: {name: hourly, namespace: acme}
spec:
  trigger: {type: Manual}
  selector: {matchLabels: {role: kiosk}}
  limits: {maxDevicesPerHour: 15}
  steps:
    - {name: tag, type: Rhai, rhai: 'set("seen", device.name); true'}
"#;
    std::fs::write(repo.join("fleet.yaml"), format!("{workflow}{}", kiosks(50))).expect("manifest");
    let alice = create_token(&repo, "alice", "acme", "operator", "acme");
    let operator = Operator::start(&[&repo], Some(&db.url), &[], tmp.path()).await;

    let run_to_rest = |expect_running: usize| {
        let operator = &operator;
        let alice = &alice;
        async move {
            let (status, run) = post(
                operator,
                alice,
                "/v1/namespaces/acme/workflows/hourly:run",
                json!({}),
            )
            .await;
            assert_eq!(status, 201, "{run}");
            let path = format!(
                "/v1/namespaces/acme/workflowruns/{}",
                run["id"].as_str().expect("id")
            );
            wait_for(Duration::from_secs(30), || async {
                let run: RunView = get(operator, alice, &path).await;
                let done = run
                    .lanes
                    .iter()
                    .filter(|l| l.state == LaneState::Succeeded)
                    .count();
                (done == expect_running && run.summary.state == RunState::AwaitingApproval)
                    .then_some(run)
            })
            .await
            .unwrap_or_else(|| panic!("the run did not settle:\n{}", operator.logs()))
        }
    };

    let first = run_to_rest(15).await;
    let held = |run: &RunView| {
        run.lanes
            .iter()
            .filter(|l| l.state == LaneState::Held)
            .count()
    };
    assert_eq!(held(&first), 35);
    assert_eq!(
        first.summary.waiting_for.as_deref(),
        Some(
            "approval: 35 of 50 devices are past the blast-radius limit \
             (maxDevicesPerHour 15 (0 started in the last hour))"
        )
    );

    // Within the hour no device starts: the 15 that ran wait for an approval, the 35 the
    // first run still holds are left out (concurrency Forbid). The plan says so first.
    let (status, plan) = post(
        &operator,
        &alice,
        "/v1/namespaces/acme/workflows/hourly:plan",
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{plan}");
    let plan: RunPlan = serde_json::from_value(plan).expect("plan");
    assert_eq!((plan.devices.len(), plan.held.len()), (0, 15), "{plan:?}");
    assert!(
        plan.reason
            .starts_with("not on: kiosk-15: a run is active (concurrency Forbid); ")
            && plan.reason.ends_with(
                "; 15 device(s) would wait for an approval: past the blast-radius limit \
                 (maxDevicesPerHour 15 (15 started in the last hour))"
            ),
        "{}",
        plan.reason
    );

    let second = run_to_rest(0).await;
    assert_eq!(held(&second), 15, "{second:#?}");
    assert_eq!(
        second.summary.waiting_for.as_deref(),
        Some(
            "approval: 15 of 15 devices are past the blast-radius limit \
             (maxDevicesPerHour 15 (15 started in the last hour))"
        )
    );
}

const SERVICE: &str = r#"apiVersion: rmm.cdot.io/v1alpha1
kind: Device
metadata: {name: app-01, namespace: acme, labels: {tier: app}}
spec:
  class: Server
  agent: {monitoredServices: [flaky]}
---
apiVersion: rmm.cdot.io/v1alpha1
kind: Workflow
metadata: {name: heal-flaky, namespace: acme}
spec:
  trigger: {type: ServiceFailed, service: flaky, count: 3, within: 5m}
  selector: {matchLabels: {tier: app}}
  steps:
    - name: restart
      type: RestartService
      service: flaky
      timeout: 30s
"#;

/// A real service (a program under a real supervisord: this machine has no systemd as
/// PID 1) fails three times; the agent reports each failure (`serviceFailed` turning 1),
/// the third within the window starts the workflow, whose RestartService step restarts it
/// through `supervisorctl` on the agent; the run and the audit log show it.
#[tokio::test(flavor = "multi_thread")]
async fn a_service_failing_three_times_is_restarted_by_a_workflow() {
    let db = TestDb::create().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    std::fs::write(repo.join("service.yaml"), SERVICE).expect("manifest");
    let enroll = create_enrollment_token(&repo, "svc-enroll", "acme");
    let viewer = create_token(&repo, "svc-viewer", "acme", "viewer", "acme");
    let operator = Operator::start(&[&repo], Some(&db.url), &[], tmp.path()).await;
    // Each of the first three starts runs 3 s, then exits 1; supervisord leaves it down.
    let supervisord = Supervisord::start(3, 3);
    let config = supervisord.config().display().to_string();
    let (_agent, agent_log) = start_agent(
        &operator,
        &enroll,
        "app-01",
        tmp.path(),
        "1",
        &[
            "--service-manager",
            "supervisor",
            "--supervisor-config",
            &config,
        ],
    );
    let logs = || {
        format!(
            "operator:\n{}\nagent:\n{}\nsupervisorctl status: {}",
            operator.logs(),
            std::fs::read_to_string(&agent_log).unwrap_or_default(),
            supervisord.ctl(&["status"])
        )
    };
    // The test starts it again after its first two failures, as a person would.
    for failure in 1..=2 {
        wait_for(Duration::from_secs(30), || async {
            let status = supervisord.ctl(&["status", "flaky"]);
            (supervisord.starts() == failure && !status.contains("RUNNING")).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("flaky did not fail a {failure}. time:\n{}", logs()));
        // Long enough for the agent to report the failed state before it runs again.
        tokio::time::sleep(Duration::from_secs(3)).await;
        supervisord.ctl(&["start", "flaky"]);
    }
    let list: RunList = get(&operator, &viewer, "/v1/namespaces/acme/workflowruns").await;
    assert!(
        list.runs.is_empty(),
        "a run started before the third failure: {list:?}"
    );

    // The third failure starts the run; the restart is the fourth start, which stays up.
    let run = wait_for(Duration::from_secs(60), || async {
        let list: RunList = get(&operator, &viewer, "/v1/namespaces/acme/workflowruns").await;
        let id = list.runs.first()?.id;
        let run: RunView = get(
            &operator,
            &viewer,
            &format!("/v1/namespaces/acme/workflowruns/{id}"),
        )
        .await;
        run.summary.state.is_final().then_some(run)
    })
    .await
    .unwrap_or_else(|| panic!("no finished run:\n{}", logs()));
    assert_eq!(
        run.summary.state,
        RunState::Succeeded,
        "{run:#?}\n{}",
        logs()
    );
    assert_eq!(run.event.service.as_deref(), Some("flaky"));
    assert!(run.event.value.is_some_and(|n| n >= 3.0), "{:?}", run.event);
    let attempt = &run.lanes[0].attempts[0];
    let result = attempt.result.as_ref().expect("the agent's result");
    assert!(result.message.contains("restart flaky"), "{result:?}");
    assert!(supervisord.ctl(&["status", "flaky"]).contains("RUNNING"));
    assert_eq!(supervisord.starts(), 4);
    let audit: Value = get(
        &operator,
        &viewer,
        &format!("/v1/namespaces/acme/audit?run={}", run.summary.id),
    )
    .await;
    let finished = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["action"] == "step.finished")
        .expect("a step.finished entry");
    assert_eq!(finished["detail"]["step"], "restart", "{finished}");
    assert_eq!(finished["detail"]["state"], "Succeeded", "{finished}");
}

const OFFLINE: &str = r#"apiVersion: rmm.cdot.io/v1alpha1
kind: Device
metadata: {name: edge-01, namespace: acme, labels: {role: edge}}
spec: {class: Server}
---
apiVersion: rmm.cdot.io/v1alpha1
kind: Workflow
metadata: {name: on-offline, namespace: acme}
spec:
  trigger: {type: DeviceOffline, offlineFor: 2s}
  selector: {matchLabels: {role: edge}}
  steps:
    - {name: note, type: Rhai, rhai: 'set("silent", event.value); event.device'}
---
apiVersion: rmm.cdot.io/v1alpha1
kind: Workflow
metadata: {name: on-online, namespace: acme}
spec:
  trigger: {type: DeviceOnline, offlineFor: 2s}
  selector: {matchLabels: {role: edge}}
  steps:
    - {name: note, type: Rhai, rhai: 'event.value'}
---
apiVersion: rmm.cdot.io/v1alpha1
kind: Workflow
metadata: {name: slow, namespace: acme}
spec:
  trigger: {type: Manual}
  selector: {matchLabels: {role: edge}}
  concurrency: Replace
  steps:
    - {name: hold, type: Wait, duration: 1m}
"#;

/// A device that stops reporting starts one DeviceOffline run (not one per look while it
/// stays silent), with how long it has been silent; when it reports again, one
/// DeviceOnline run with the outage's length; `concurrency: Replace` cancels the device's
/// running run when a new one starts.
#[tokio::test(flavor = "multi_thread")]
async fn an_offline_device_starts_one_run_its_return_another_and_replace_cancels_the_older_run() {
    let db = TestDb::create().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    std::fs::write(repo.join("offline.yaml"), OFFLINE).expect("manifest");
    let enroll = create_enrollment_token(&repo, "edge-enroll", "acme");
    let viewer = create_token(&repo, "edge-viewer", "acme", "viewer", "acme");
    let alice = create_token(&repo, "alice", "acme", "operator", "acme");
    let operator = Operator::start(&[&repo], Some(&db.url), &[], tmp.path()).await;
    // One report saying it reports every second, then silence.
    let agent = support::JwtAgent::enroll(&operator, &enroll, "acme", "edge-01").await;
    let now = jiff::Timestamp::now().as_millisecond();
    assert_eq!(agent.send(now, &[("cpu", &[], 5.0)]).await, 200);

    let runs = |workflow: &'static str| {
        let (operator, viewer) = (&operator, &viewer);
        async move {
            get::<RunList>(
                operator,
                viewer,
                &format!("/v1/namespaces/acme/workflowruns?workflow={workflow}"),
            )
            .await
        }
    };
    let view = finished_run(
        &operator,
        &viewer,
        "acme",
        "on-offline",
        Duration::from_secs(40),
    )
    .await;
    assert_eq!(view.summary.state, RunState::Succeeded, "{view:#?}");
    assert_eq!(view.event.device.as_deref(), Some("edge-01"));
    assert!(
        view.event.value.is_some_and(|s| s >= 2.0),
        "{:?}",
        view.event
    );
    // Still silent ten seconds (two looks) later: still one run.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(runs("on-offline").await.runs.len(), 1);
    assert!(runs("on-online").await.runs.is_empty());

    // It reports again: one DeviceOnline run, with how long it was silent.
    let back = jiff::Timestamp::now().as_millisecond();
    assert_eq!(agent.send(back, &[("cpu", &[], 5.0)]).await, 200);
    let view = finished_run(
        &operator,
        &viewer,
        "acme",
        "on-online",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(view.summary.state, RunState::Succeeded, "{view:#?}");
    let outage = view.event.value.expect("the outage's length");
    let sent_apart = (back - now) as f64 / 1000.0;
    assert!(
        (outage - sent_apart).abs() < 1.5,
        "outage {outage} s, reports {sent_apart} s apart"
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(runs("on-online").await.runs.len(), 1);

    // Replace: a second run of `slow` on the device cancels the first.
    let start = || {
        post(
            &operator,
            &alice,
            "/v1/namespaces/acme/workflows/slow:run",
            json!({}),
        )
    };
    let (status, first) = start().await;
    assert_eq!(status, 201, "{first}");
    // The plan of another run says what it would undo.
    let (status, plan) = post(
        &operator,
        &viewer,
        "/v1/namespaces/acme/workflows/slow:plan",
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{plan}");
    let plan: RunPlan = serde_json::from_value(plan).expect("plan");
    assert_eq!(
        (plan.devices.len(), plan.reason.as_str()),
        (1, "would cancel 1 active run(s) (concurrency Replace)")
    );
    let (status, second) = start().await;
    assert_eq!(status, 201, "{second}");
    let first: RunView = get(
        &operator,
        &viewer,
        &format!(
            "/v1/namespaces/acme/workflowruns/{}",
            first["id"].as_str().expect("id")
        ),
    )
    .await;
    assert_eq!(first.summary.state, RunState::Cancelled, "{first:#?}");
    assert_eq!(second["state"], "Running", "{second}");
}
