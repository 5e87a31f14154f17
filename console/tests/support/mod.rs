//! The console's end-to-end fixture: a real operator on a fresh PostgreSQL database,
//! seeded through its agent API, and the console in an egui_kittest harness (no display).
#![allow(dead_code)] // each test binary uses a different part

pub mod standin;

use std::time::{Duration, Instant};

use cdot_console::{app::ConsoleApp, config::Settings};
use cdot_crds::{
    device::DeviceClass,
    wire::{
        collector::{CollectorBatch, Counts, FlowCount, FlowGroup, InterfaceSample, ProbeResult},
        network::{InterfaceReport, TopTalkers},
    },
};
use cdot_testkit::{
    operator::{MadeUpAgent, Operator, create_enrollment_token, create_token, wait_for},
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
kind: AlertRule
metadata: {name: link-busy, namespace: acme}
spec:
  metric: interfaceUtilisation
  reduce: {function: last, window: 1m}
  condition: {op: ">", threshold: 30}
  severity: Warning
  summary: "{{ device }} {{ series.interface }} busy"
---
apiVersion: rmm.cdot.io/v1alpha1
kind: Device
metadata: {name: hq-router, namespace: acme}
spec:
  class: Router
  site: hq
  managementAddresses: ["10.1.0.1"]
---
apiVersion: rmm.cdot.io/v1alpha1
kind: Device
metadata: {name: branch-sw, namespace: acme}
spec:
  class: Switch
  site: branch
  managementAddresses: ["10.2.0.1"]
"#;

/// The operator with namespace `acme`: web-01 reporting, db-01 reporting a CPU that fires
/// `cpu-high`, zz-edge reported once and then went silent (offline), hq-router (site hq)
/// and branch-sw (site branch) only in the manifests (never reported themselves).
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
        // Closed minutes of network data reach the rollups the queries read within a second.
        let operator = Operator::start(
            &repo,
            &db.url,
            tmp.path(),
            &["--network-rollup-interval", "1s"],
        )
        .await;
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

    /// A collector's batch of the last minutes: flows exported by hq-router (10.1.1.10 to
    /// 8.8.8.8) and branch-sw (10.2.2.20 to 1.1.1.1), their interfaces ge-0/0/1 and eth1
    /// polled each minute, and hq-router's probe of 8.8.8.8; waits until the API answers
    /// with all of it.
    pub async fn seed_network(&self) {
        let collector = self.agent("col-1", Some(DeviceClass::Collector)).await;
        let minute = now_ms() / 60_000 * 60_000;
        // Hour-long ranges read flows by 10 minutes, folded when the 10 minutes close (the
        // open ones only every 50 s): a minute of an earlier ten shows at once.
        let closed_ten = now_ms() / 600_000 * 600_000 - 2 * 600_000;
        let flow = |exporter: &str, src: &str, dst: &str, bytes: u64| FlowGroup {
            minute_ms: closed_ten + 2 * 60_000,
            exporter: exporter.parse().expect("ip"),
            in_if: 1,
            out_if: 2,
            top: vec![FlowCount {
                src: src.parse().expect("ip"),
                dst: dst.parse().expect("ip"),
                proto: 17,
                sp: 40_000,
                dp: 53,
                b: bytes,
                p: bytes / 100,
                f: 10,
            }],
            hosts: Vec::new(),
            other: Counts::default(),
        };
        let interface = |t: i64, device: &str, name: &str, bps: f64| InterfaceSample {
            t,
            device: device.into(),
            if_index: 1,
            name: name.into(),
            alias: String::new(),
            oper_status: 1,
            speed_bps: 1_000_000_000,
            interval_ms: 60_000,
            in_bps: bps,
            out_bps: bps / 2.0,
            in_pps: 100.0,
            out_pps: 50.0,
            in_errors: 0,
            out_errors: 0,
            in_discards: 0,
            out_discards: 0,
        };
        let mut interfaces = Vec::new();
        let mut probes = Vec::new();
        for back in 1..=4 {
            let t = minute - back * 60_000 + 5_000;
            interfaces.push(interface(t, "hq-router", "ge-0/0/1", 400e6));
            interfaces.push(interface(t, "branch-sw", "eth1", 20e6));
            probes.push(ProbeResult {
                t,
                device: "hq-router".into(),
                probe: "wan".into(),
                target: "8.8.8.8".into(),
                sent: 10,
                received: 9,
                rtt_min_ms: Some(9.0),
                rtt_avg_ms: Some(12.0),
                rtt_max_ms: Some(20.0),
                jitter_ms: Some(1.5),
            });
        }
        let batch = CollectorBatch {
            batch_id: uuid::Uuid::new_v4(),
            collector_version: "0.1.0-test".into(),
            scans: Vec::new(),
            flows: vec![
                flow("10.1.0.1", "10.1.1.10", "8.8.8.8", 9_000_000),
                flow("10.2.0.1", "10.2.2.20", "1.1.1.1", 1_000_000),
            ],
            interfaces,
            probes,
            interval_secs: Some(3600),
        };
        assert_eq!(collector.send_collector(&batch).await, 200);
        let last = std::sync::Mutex::new(String::new());
        let ready = wait_for(Duration::from_secs(30), || async {
            let report: InterfaceReport = self
                .operator
                .get(&self.viewer, "/v1/namespaces/acme/network/interfaces")
                .await;
            let talkers: TopTalkers = self
                .operator
                .get(&self.viewer, "/v1/namespaces/acme/network/top-talkers")
                .await;
            let done = report.items.len() == 2 && talkers.items.len() == 2;
            *last.lock().expect("lock") = format!("{report:#?}\n{talkers:#?}");
            done.then_some(())
        })
        .await;
        assert!(
            ready.is_some(),
            "the seeded network data never showed in the API: {}\n{}",
            last.lock().expect("lock"),
            self.operator.logs()
        );
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
    console_with_timeout(api, token, Duration::from_secs(10))
}

/// The same with a request timeout of `timeout`.
pub fn console_with_timeout(
    api: &str,
    token: &str,
    timeout: Duration,
) -> Harness<'static, ConsoleApp> {
    console_with(Settings {
        api: api.to_owned(),
        token: Some(token.to_owned()),
        namespaces: vec!["acme".into()],
        timeout,
        ca_pem: None,
        range: cdot_console::widgets::range::Preset::Hour1,
    })
}

/// The console with these settings.
pub fn console_with(settings: Settings) -> Harness<'static, ConsoleApp> {
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
    wait_until(harness, label, |h| {
        h.query_all_by_label(label).next().is_some()
    });
}

/// Waits until a widget whose label contains `text` is shown.
pub fn wait_for_text(harness: &mut Harness<'static, ConsoleApp>, text: &str) {
    wait_until(harness, text, |h| {
        h.query_all_by_label_contains(text).next().is_some()
    });
}

/// Focuses the text field labelled `label` and types `text` into it.
pub fn type_into(harness: &mut Harness<'static, ConsoleApp>, label: &str, text: &str) {
    harness.get_by_label(label).focus();
    harness.step();
    harness.get_by_label(label).type_text(text);
    harness.step();
}

/// The value of `name` in `url`'s query, percent-decoded.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    let raw = query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))?;
    let mut out = Vec::new();
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex: String = bytes.by_ref().take(2).map(char::from).collect();
            out.push(u8::from_str_radix(&hex, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}
