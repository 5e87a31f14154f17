//! Per-call overhead of the rhai sandbox: a typical workflow condition and a typical Rhai
//! step, each compiled once and evaluated with a fresh scope per call (as the engine does).
//! Prints the time per call.
//!
//!     cargo bench -p cdot-operator --bench rhai_step
use std::collections::BTreeMap;

use cdot_crds::{wire::automation::Event, workflow::TriggerType};
use cdot_operator::automation::sandbox::{DeviceView, Inputs, Limits, Sandbox};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

const CONDITION: &str =
    r#"device.labels["tier"] == "web" && event.type == "ServiceFailed" && event.value >= 3.0"#;

const STEP: &str = r#"
let attempts = if vars.attempts == () { 1 } else { vars.attempts + 1 };
set("attempts", attempts);
set("severity", if event.value > 5.0 { "critical" } else { "warning" });
#{ device: device.name, site: device.site, attempts: attempts, ok: steps.check.exitCode == 0 }
"#;

fn overhead(c: &mut Criterion) {
    let sandbox = Sandbox::new(Limits::default());
    let event = Event {
        type_: Some(TriggerType::ServiceFailed),
        device: Some("web-01".into()),
        service: Some("nginx.service".into()),
        value: Some(3.0),
        labels: [("team".to_owned(), "web".to_owned())].into(),
        at: Some("2026-12-06T10:00:00Z".into()),
        ..Event::default()
    };
    let device = DeviceView {
        name: "web-01".into(),
        namespace: "acme".into(),
        labels: [
            ("tier".to_owned(), "web".to_owned()),
            ("env".to_owned(), "prod".to_owned()),
        ]
        .into(),
        class: Some("Server".into()),
        site: Some("hq".into()),
    };
    let steps: BTreeMap<String, Value> = [(
        "check".to_owned(),
        json!({"exitCode": 0, "stdout": "active\n"}),
    )]
    .into();
    let vars: BTreeMap<String, Value> = [("attempts".to_owned(), json!(1))].into();
    let inputs = Inputs {
        event: &event,
        device: &device,
        steps: &steps,
        vars: &vars,
        now: 1_796_000_000,
    };
    let condition = sandbox.compile(CONDITION).expect("condition");
    let step = sandbox.compile(STEP).expect("step");
    assert!(sandbox.eval_bool(&condition, &inputs).expect("eval"));
    assert_eq!(
        sandbox.run(&step, &inputs).expect("run").set["attempts"],
        json!(2)
    );

    let mut group = c.benchmark_group("rhai");
    group.bench_function("condition", |b| {
        b.iter(|| sandbox.eval_bool(&condition, &inputs).expect("eval"));
    });
    group.bench_function("step", |b| {
        b.iter(|| sandbox.run(&step, &inputs).expect("run"));
    });
    group.bench_function("compile_step", |b| {
        b.iter(|| sandbox.compile(STEP).expect("compile"));
    });
    group.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
