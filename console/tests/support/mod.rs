//! The console's end-to-end fixture: a real operator on a fresh PostgreSQL database,
//! seeded through its agent API, and the console in an egui_kittest harness (no display).
#![allow(dead_code)] // each test binary uses a different part

use std::time::{Duration, Instant};

use cdot_console::{app::ConsoleApp, config::Settings};
use cdot_crds::device::DeviceClass;
use cdot_testkit::{
    operator::{MadeUpAgent, Operator, create_enrollment_token, create_token},
    pg::TestDb,
};
use egui_kittest::{Harness, kittest::Queryable as _};

/// How long a test waits for the console to show what the operator answered.
pub const UI_TIMEOUT: Duration = Duration::from_secs(30);

pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// A rule that fires at once on a CPU sample above 90.
const MANIFESTS: &str = r#"apiVersion: rmm.cdot.io/v1alpha1
kind: AlertRule
metadata: {name: cpu-high, namespace: acme}
spec:
  metric: cpu
  reduce: {function: last, window: 1m}
  condition: {op: ">", threshold: 90}
  severity: Critical
  summary: "CPU on {{ device }} at {{ value }}%"
---
apiVersion: rmm.cdot.io/v1alpha1
kind: Device
metadata: {name: hq-router, namespace: acme}
spec:
  class: Router
  site: hq
"#;

/// The operator with namespace `acme`: web-01 reporting, db-01 reporting a CPU that fires
/// `cpu-high`, zz-edge reported once and then went silent (offline), hq-router only in
/// the manifests (never reported).
pub struct Seeded {
    pub operator: Operator,
    pub viewer: String,
    pub oncall: String,
    pub enroll: String,
    _db: TestDb,
    _tmp: tempfile::TempDir,
}

impl Seeded {
    pub async fn start() -> Self {
        let db = TestDb::create().await;
        let tmp = tempfile::tempdir().expect("tmp");
        let repo = tmp.path().join("repo");
        std::fs::create_dir_all(&repo).expect("mkdir");
        std::fs::write(repo.join("acme.yaml"), MANIFESTS).expect("write manifests");
        let viewer = create_token(&repo, "viewer", "acme", "viewer", "acme");
        let oncall = create_token(&repo, "oncall", "acme", "operator", "acme");
        let enroll = create_enrollment_token(&repo, "fleet", "acme");
        let operator = Operator::start(&repo, &db.url, tmp.path()).await;
        let seeded = Self {
            operator,
            viewer,
            oncall,
            enroll,
            _db: db,
            _tmp: tmp,
        };
        // Reporting hourly: online for the whole test after one batch.
        for (device, cpu) in [("web-01", 40.0), ("db-01", 95.0)] {
            let agent = seeded.agent(device, None).await;
            assert_eq!(
                agent
                    .send_metrics(now_ms(), &[("cpu", &[], cpu)], 3600)
                    .await,
                200
            );
        }
        // Reporting every second, once: offline three seconds later.
        let edge = seeded.agent("zz-edge", None).await;
        assert_eq!(
            edge.send_metrics(now_ms(), &[("cpu", &[], 5.0)], 1).await,
            200
        );
        seeded
    }

    pub async fn agent(&self, device: &str, class: Option<DeviceClass>) -> MadeUpAgent {
        MadeUpAgent::enroll(&self.operator, &self.enroll, "acme", device, class).await
    }

    /// The console on this operator with `token`, namespace `acme`.
    pub fn console(&self, token: &str) -> Harness<'static, ConsoleApp> {
        console(&self.operator.base, token)
    }
}

/// The console against `api` with `token`, offering namespace `acme`.
pub fn console(api: &str, token: &str) -> Harness<'static, ConsoleApp> {
    let settings = Settings {
        api: api.to_owned(),
        token: Some(token.to_owned()),
        namespaces: vec!["acme".into()],
        timeout: Duration::from_secs(10),
    };
    Harness::builder()
        .with_size([1400.0, 900.0])
        .build_ui_state(
            |ui, app: &mut ConsoleApp| app.ui(ui),
            ConsoleApp::new(&settings),
        )
}

/// Runs frames until `check` holds; panics naming `what` after [`UI_TIMEOUT`].
pub fn wait_until(
    harness: &mut Harness<'static, ConsoleApp>,
    what: &str,
    check: impl Fn(&Harness<'static, ConsoleApp>) -> bool,
) {
    let deadline = Instant::now() + UI_TIMEOUT;
    loop {
        harness.step();
        if check(harness) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not shown within {UI_TIMEOUT:?}; requests: {:#?}",
            harness.state().requested()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until a widget labelled exactly `label` is shown.
pub fn wait_for_label(harness: &mut Harness<'static, ConsoleApp>, label: &str) {
    wait_until(harness, label, |h| h.query_by_label(label).is_some());
}

/// Waits until a widget whose label contains `text` is shown.
pub fn wait_for_text(harness: &mut Harness<'static, ConsoleApp>, text: &str) {
    wait_until(harness, text, |h| h.query_by_label_contains(text).is_some());
}

/// Focuses the text field labelled `label` and types `text` into it.
pub fn type_into(harness: &mut Harness<'static, ConsoleApp>, label: &str, text: &str) {
    harness.get_by_label(label).focus();
    harness.step();
    harness.get_by_label(label).type_text(text);
    harness.step();
}
