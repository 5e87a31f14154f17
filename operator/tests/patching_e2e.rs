//! Patching end to end with real apt: two Debian roots (debootstrap, see
//! `cdot_testkit::debian_root`), each managed by a real `cdot-agent --patch-root`, against a
//! real standalone operator whose manifests the test edits as a platform team commits.
//!
//! The local apt repository holds v1 (installed) and v2 of: `cdot-tls` (security suite),
//! `cdot-hello` (bugfix), `cdot-broken` (v2's postinst fails), `cdot-db` (denied) and
//! `cdot-app` (v2 needs cdot-db v2). One device is in ring `pilot`, the other in `broad`.
//! A Workflow on PatchFailed opens a ticket in a ServiceNow-shaped receiver when cdot-broken
//! fails.
mod support;

use std::time::{Duration, Instant};

use cdot_crds::{
    patch_policy::Classification,
    wire::{
        automation::RunState,
        patch::{ComplianceReport, Decision, PatchPlan},
    },
};
use cdot_testkit::receiver::{Receiver, Reply};
use serde_json::Value;
use support::{
    Operator, TestDb, create_enrollment_token, create_token, finished_run,
    patching::{commit, root_with_packages, start_agent},
    wait_for,
};

const DEVICES: &str = r#"
apiVersion: rmm.cdot.io/v1alpha1
kind: Device
metadata:
  name: pilot-01
  namespace: acme
  labels: {role: server, ring: pilot, rmm.cdot.io/site: london}
spec:
  class: Server
  site: london
---
apiVersion: rmm.cdot.io/v1alpha1
kind: Device
metadata:
  name: broad-01
  namespace: acme
  labels: {role: server, rmm.cdot.io/site: leeds}
spec:
  class: Server
  site: leeds
"#;

/// What happens when an install fails: a ticket, for cdot-broken only (the condition reads
/// the event), through a ServiceNow-shaped channel at `url`.
fn on_failure(url: &str) -> String {
    format!(
        r#"apiVersion: rmm.cdot.io/v1alpha1
kind: Workflow
metadata: {{name: patch-failed, namespace: acme}}
spec:
  trigger: {{type: PatchFailed}}
  selector: {{matchLabels: {{role: server}}}}
  condition: 'event["package"].starts_with("cdot-broken ")'
  steps:
    - name: ticket
      type: OpenTicket
      channel: itsm
      message: "{{{{ event.package }}}} failed on {{{{ device }}}}"
---
apiVersion: rmm.cdot.io/v1alpha1
kind: NotificationChannel
metadata: {{name: itsm, namespace: acme}}
spec:
  type: Ticket
  ticket: {{system: ServiceNow, url: "{url}", project: Patching, credentialsSecretRef: {{name: itsm}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: itsm, namespace: acme}}
stringData: {{username: svc, password: sn-secret}}
"#
    )
}

/// The policy as committed: `approve` patterns and the window's start vary.
fn policy(approve: &[&str], window_start: &str) -> String {
    let approve: Vec<String> = approve.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        r#"apiVersion: rmm.cdot.io/v1alpha1
kind: PatchPolicy
metadata:
  name: servers
  namespace: acme
spec:
  selector: {{matchLabels: {{role: server}}}}
  classifications: [security, bugfix]
  approval:
    approve: [{}]
    deny: ["^cdot-db$", "^cdot-broken-never$"]
  rings:
    - name: pilot
      selector: {{matchLabels: {{ring: pilot}}}}
      soak: 5s
    - name: broad
  installWindow:
    start: "{window_start}"
    duration: 4h
    timeZone: UTC
  reboot: Never
"#,
        approve.join(", ")
    )
}

/// A window start `hours` from now (UTC, HH:MM).
fn start_in(hours: i64) -> String {
    let t = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(hours))
        .expect("time");
    t.strftime("%H:%M").to_string()
}

async fn get<T: serde::de::DeserializeOwned>(operator: &Operator, token: &str, path: &str) -> T {
    support::get_ok(operator, token, path).await
}

fn decision(plan: &PatchPlan, device: &str, package: &str) -> Option<Decision> {
    plan.devices
        .iter()
        .find(|d| d.device == device)?
        .changes
        .iter()
        .find(|c| c.name == package)
        .map(|c| c.decision)
}

async fn install_state(
    db: &str,
    device: &str,
    package: &str,
) -> Option<(String, Option<String>, Option<String>)> {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::PgConnection::connect(db).await.ok()?;
    let row = sqlx::query(
        "SELECT i.state, i.detail, i.log_tail FROM patch_installs i JOIN objects o ON o.uid = i.device_uid
         WHERE o.kind = 'Device' AND o.name = $1 AND i.name = $2 AND i.version = '2.0'",
    )
    .bind(device)
    .bind(package)
    .fetch_optional(&mut conn)
    .await
    .ok()??;
    Some((row.get("state"), row.get("detail"), row.get("log_tail")))
}

/// The whole patching story of the issue, on real apt: scans classify, the plan shows the
/// effect of a commit before it is made, nothing installs outside the window, an approval
/// commit reaches the agent by long-poll within seconds once the window is open, a
/// denied package is never installed (not even as a dependency), a failing postinst is
/// reported with its log and halts that package's rollout before the next ring, the
/// next ring waits for the pilot's soak, and the compliance report equals dpkg-query.
#[tokio::test(flavor = "multi_thread")]
async fn an_approval_commit_rolls_out_ring_by_ring_on_real_apt() {
    let db = TestDb::create().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    std::fs::write(repo.join("devices.yaml"), DEVICES).expect("devices");
    let policy_file = repo.join("patching.yaml");
    // The window opens in three hours: approvals must wait for it.
    commit(&policy_file, &policy(&[], &start_in(3)));
    let enroll = create_enrollment_token(&repo, "patch-enroll", "acme");
    let viewer = create_token(&repo, "patch-viewer", "acme", "viewer", "acme");
    let itsm = Receiver::start().await;
    itsm.reply_with(|_| Reply::json(201, r#"{"result":{"sys_id":"sys1","number":"INC0001001"}}"#));
    std::fs::write(repo.join("automation.yaml"), on_failure(&itsm.url("/"))).expect("workflow");
    let ca = tmp.path().join("itsm-ca.pem");
    std::fs::write(&ca, itsm.ca_pem()).expect("ca");
    let ca = ca.display().to_string();
    let operator = Operator::start(
        &[&repo],
        Some(&db.url),
        &["--notify-ca-file", &ca],
        tmp.path(),
    )
    .await;

    let (pilot_root, broad_root) = (root_with_packages(), root_with_packages());
    let pilot = start_agent(
        &operator,
        &enroll,
        "pilot-01",
        pilot_root.path(),
        tmp.path(),
    );
    let broad = start_agent(
        &operator,
        &enroll,
        "broad-01",
        broad_root.path(),
        tmp.path(),
    );
    let logs = || {
        format!(
            "operator:\n{}\npilot agent:\n{}\nbroad agent:\n{}",
            operator.logs(),
            std::fs::read_to_string(&pilot.log).unwrap_or_default(),
            std::fs::read_to_string(&broad.log).unwrap_or_default()
        )
    };

    // Both agents scan (the operator hands each a scan item at once): the plan lists every
    // update in scope with its classification and the policy's decision.
    let plan_path = "/v1/namespaces/acme/patchpolicies/servers/plan";
    let plan: PatchPlan = wait_for(Duration::from_secs(120), || async {
        let plan: PatchPlan = get(&operator, &viewer, plan_path).await;
        plan.devices
            .iter()
            .all(|d| d.scanned_at.is_some())
            .then_some(plan)
    })
    .await
    .unwrap_or_else(|| panic!("no scans:\n{}", logs()));
    for device in ["pilot-01", "broad-01"] {
        let d = plan
            .devices
            .iter()
            .find(|d| d.device == device)
            .expect("device in plan");
        let class = |name: &str| {
            d.changes
                .iter()
                .find(|c| c.name == name)
                .map(|c| c.classification)
        };
        assert_eq!(class("cdot-tls"), Some(Classification::Security), "{d:?}");
        assert_eq!(class("cdot-hello"), Some(Classification::Bugfix), "{d:?}");
        assert_eq!(decision(&plan, device, "cdot-db"), Some(Decision::Denied));
        assert_eq!(
            decision(&plan, device, "cdot-tls"),
            Some(Decision::NotApproved)
        );
    }
    assert_eq!(
        plan.devices
            .iter()
            .find(|d| d.device == "pilot-01")
            .expect("pilot-01 in the plan")
            .ring,
        "pilot"
    );

    // Commit 1: approvals, and one pattern that overlaps a deny (reported, deny wins).
    let approvals = ["^cdot-tls$", "^cdot-broken$", "^cdot-app$", "^cdot-db$"];
    commit(&policy_file, &policy(&approvals, &start_in(3)));
    let plan: PatchPlan = wait_for(Duration::from_secs(30), || async {
        let plan: PatchPlan = get(&operator, &viewer, plan_path).await;
        (decision(&plan, "pilot-01", "cdot-tls") == Some(Decision::Install)).then_some(plan)
    })
    .await
    .unwrap_or_else(|| panic!("approval not applied:\n{}", logs()));
    assert_eq!(
        decision(&plan, "pilot-01", "cdot-db"),
        Some(Decision::Denied)
    );
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("cdot-db") && w.contains("deny wins")),
        "{:?}",
        plan.warnings
    );
    // Outside the window: the pilot's agent says its packages wait, and installs nothing.
    let pending = wait_for(Duration::from_secs(30), || async {
        install_state(&db.url, "pilot-01", "cdot-tls")
            .await
            .filter(|s| s.0 == "pending")
    })
    .await
    .unwrap_or_else(|| panic!("no pending report outside the window:\n{}", logs()));
    assert!(
        pending
            .1
            .as_deref()
            .unwrap_or_default()
            .contains("opens next at"),
        "{pending:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(pilot_root.version("cdot-tls").as_deref(), Some("1.0"));

    // Commit 2: the window opens now. The agent is already waiting on the work channel.
    let committed = Instant::now();
    commit(&policy_file, &policy(&approvals, &start_in(-1)));
    let started = wait_for(Duration::from_secs(60), || async {
        install_state(&db.url, "pilot-01", "cdot-tls")
            .await
            .filter(|s| s.0 != "pending")
            .map(|_| committed.elapsed())
    })
    .await
    .unwrap_or_else(|| panic!("the install never started:\n{}", logs()));
    eprintln!("commit → first install step reported: {started:?}");
    assert!(started < Duration::from_secs(15), "took {started:?}");

    // The pilot: cdot-tls v2 installed; cdot-broken failed with its postinst's words;
    // cdot-app refused because it needs the denied cdot-db; cdot-db and cdot-hello untouched.
    let broken = wait_for(Duration::from_secs(120), || async {
        install_state(&db.url, "pilot-01", "cdot-broken")
            .await
            .filter(|s| s.0 == "failed")
    })
    .await
    .unwrap_or_else(|| panic!("cdot-broken never failed:\n{}", logs()));
    assert!(
        broken
            .2
            .as_deref()
            .unwrap_or_default()
            .contains("cannot migrate its data"),
        "{broken:?}"
    );
    // The failure started the workflow, whose ticket reached the ServiceNow receiver.
    let run = finished_run(
        &operator,
        &viewer,
        "acme",
        "patch-failed",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(run.summary.state, RunState::Succeeded, "{run:#?}");
    assert_eq!(run.event.device.as_deref(), Some("pilot-01"));
    let package = run.event.package.clone().unwrap_or_default();
    assert!(package.starts_with("cdot-broken 2"), "{run:#?}");
    let tickets = itsm.requests();
    assert_eq!(tickets.len(), 1, "{tickets:?}");
    let ticket = tickets[0].json();
    assert_eq!(tickets[0].path, "/api/now/table/incident");
    assert_eq!(
        ticket["short_description"],
        format!("{package} failed on pilot-01").as_str()
    );
    let app = wait_for(Duration::from_secs(60), || async {
        install_state(&db.url, "pilot-01", "cdot-app")
            .await
            .filter(|s| s.0 == "failed")
    })
    .await
    .unwrap_or_else(|| panic!("cdot-app was not refused:\n{}", logs()));
    assert!(
        app.1.as_deref().unwrap_or_default().contains("cdot-db"),
        "{app:?}"
    );
    wait_for(Duration::from_secs(60), || async {
        (pilot_root.version("cdot-tls").as_deref() == Some("2.0")).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("cdot-tls 2.0 not installed in the pilot:\n{}", logs()));
    assert_eq!(pilot_root.version("cdot-db").as_deref(), Some("1.0"));
    assert_eq!(pilot_root.version("cdot-hello").as_deref(), Some("1.0"));
    assert_eq!(pilot_root.version("cdot-app").as_deref(), Some("1.0"));

    // Ring broad: cdot-tls follows after the pilot's 5 s soak; cdot-broken's rollout halted
    // in the pilot and never reaches it; the policy says why.
    wait_for(Duration::from_secs(90), || async {
        (broad_root.version("cdot-tls").as_deref() == Some("2.0")).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("cdot-tls never reached ring broad:\n{}", logs()));
    // Ring broad opened no sooner than the pilot's soak after the pilot's install finished.
    let soaked: f64 = {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("db");
        sqlx::query_scalar(
            "SELECT extract(epoch FROM r.opened_at - i.finished_at)::float8
             FROM patch_rollouts r, patch_installs i JOIN objects o ON o.uid = i.device_uid
             WHERE r.name = 'cdot-tls' AND r.ring = 1 AND i.name = 'cdot-tls' AND o.name = 'pilot-01'",
        )
        .fetch_one(&mut conn)
        .await
        .expect("ring broad's opening")
    };
    assert!(
        soaked >= 5.0,
        "ring broad opened {soaked} s after the pilot finished"
    );
    let status: Value = get(
        &operator,
        &viewer,
        "/v1/namespaces/acme/patchpolicies/servers",
    )
    .await;
    let rollout = &status["status"]["rollout"];
    assert_eq!(rollout["state"], "Halted", "{status}");
    assert!(
        rollout["message"]
            .as_str()
            .unwrap_or_default()
            .contains("cdot-broken"),
        "{rollout}"
    );
    assert_eq!(broad_root.version("cdot-broken").as_deref(), Some("1.0"));
    assert_eq!(
        install_state(&db.url, "broad-01", "cdot-broken").await,
        None,
        "the halted rollout reached ring broad"
    );

    // The compliance report's numbers are dpkg-query's.
    let report: ComplianceReport = wait_for(Duration::from_secs(60), || async {
        let r: ComplianceReport =
            get(&operator, &viewer, "/v1/namespaces/acme/patches/compliance").await;
        let broad = r.devices.iter().find(|d| d.device == "broad-01")?;
        (broad
            .missing
            .get(&Classification::Security)
            .copied()
            .unwrap_or(0)
            == 0)
            .then_some(r)
    })
    .await
    .unwrap_or_else(|| panic!("compliance never caught up:\n{}", logs()));
    for (device, root) in [("pilot-01", &pilot_root), ("broad-01", &broad_root)] {
        let d = report
            .devices
            .iter()
            .find(|d| d.device == device)
            .expect("device");
        assert_eq!(d.installed, root.installed_count(), "{device}: {d:?}");
        // Missing in scope (denied aside): exactly the packages dpkg still has at 1.0.
        let at_v1 = ["cdot-tls", "cdot-hello", "cdot-broken", "cdot-app"]
            .iter()
            .filter(|p| root.version(p).as_deref() == Some("1.0"))
            .count() as u32;
        let missing: u32 = d.missing.values().sum();
        assert_eq!(missing, at_v1, "{device}: {d:?}");
    }
    let pilot_row = report
        .devices
        .iter()
        .find(|d| d.device == "pilot-01")
        .expect("pilot-01 in the report");
    assert_eq!(pilot_row.failed, 2, "{pilot_row:?}");
    assert!(!pilot_row.compliant);
    assert_eq!(report.totals.devices, 2);
    let csv = support::insecure_client()
        .get(format!(
            "{}/v1/namespaces/acme/patches/compliance?format=csv",
            operator.base
        ))
        .bearer_auth(&viewer)
        .send()
        .await
        .expect("csv")
        .text()
        .await
        .expect("csv body");
    assert!(csv.starts_with("device,site,policy"), "{csv}");
    assert_eq!(csv.lines().count(), 3, "{csv}");
}
