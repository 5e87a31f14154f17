//! Alert evaluation cost on the ingest path: 1,000 AlertRules over 10,000 Devices (each
//! Device selected by 10 rules through its labels), batches shaped like an agent's report.
//! Prints samples evaluated per second on one core (criterion's throughput), and the cost
//! of compiling the rule set after a change.
//!
//!     cargo bench -p cdot-operator --bench alert_eval
use std::collections::BTreeMap;

use cdot_operator::{
    alerting::{
        engine::{Engine, Sample},
        rules::RuleSet,
    },
    index::Index,
    store::StoredObject,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use uuid::Uuid;

const DEVICES: usize = 10_000;
const RULES: usize = 1_000;
const GROUPS: usize = 100;

fn object(kind: &str, name: String, labels: BTreeMap<String, String>, spec: Value) -> StoredObject {
    StoredObject {
        kind: cdot_crds::kind::Kind::from_kind_name(kind).expect("kind"),
        namespace: "acme".into(),
        name,
        uid: Uuid::new_v4(),
        generation: 1,
        resource_version: 1,
        labels,
        annotations: BTreeMap::new(),
        spec,
        status: json!({}),
        created_at: "2026-12-06T00:00:00Z".into(),
    }
}

/// 10,000 Devices in 100 label groups; 1,000 rules, 10 per group, over the metrics an
/// agent reports (thresholds no sample reaches: the steady state of a fleet).
fn fleet() -> (Index, Vec<Uuid>) {
    let metrics = [
        ("cpu", json!({})),
        ("memory", json!({})),
        ("disk", json!({"mount": "/"})),
        ("disk", json!({"mount": "/var*"})),
        ("load1", json!({})),
        ("swap", json!({})),
        ("networkIn", json!({"interface": "eth*"})),
        ("networkOut", json!({"interface": "*"})),
        ("processes", json!({})),
        ("cpuCore", json!({"core": "*"})),
    ];
    let mut objects = Vec::new();
    let mut devices = Vec::new();
    for i in 0..DEVICES {
        let labels = [("group".to_owned(), format!("g{}", i % GROUPS))].into();
        let d = object(
            "Device",
            format!("host-{i:05}"),
            labels,
            json!({"class": "Server"}),
        );
        devices.push(d.uid);
        objects.push(d);
    }
    for i in 0..RULES {
        let (metric, series) = &metrics[i % metrics.len()];
        let spec = json!({
            "selector": {"matchLabels": {"group": format!("g{}", (i / metrics.len()) % GROUPS)}},
            "metric": metric,
            "series": series,
            "reduce": {"function": "avg", "window": "5m"},
            "condition": {"op": "<", "threshold": 0},
            "for": "5m",
        });
        objects.push(object(
            "AlertRule",
            format!("rule-{i:04}"),
            BTreeMap::new(),
            spec,
        ));
    }
    let index = Index::default();
    index.replace(&objects);
    (index, devices)
}

/// One 10-second report: the agent's usual series.
fn batch() -> Vec<(&'static str, BTreeMap<String, String>, f64)> {
    let l =
        |k: &str, v: &str| -> BTreeMap<String, String> { [(k.to_owned(), v.to_owned())].into() };
    let mut out = vec![
        ("cpu", BTreeMap::new(), 12.0),
        ("memory", BTreeMap::new(), 40.0),
        ("disk", l("mount", "/"), 70.0),
        ("disk", l("mount", "/var"), 50.0),
        ("load1", BTreeMap::new(), 0.5),
        ("load5", BTreeMap::new(), 0.4),
        ("load15", BTreeMap::new(), 0.3),
        ("swap", BTreeMap::new(), 0.0),
        ("processes", BTreeMap::new(), 180.0),
        ("uptime", BTreeMap::new(), 1e6),
    ];
    for iface in ["eth0", "lo"] {
        out.push(("networkIn", l("interface", iface), 1e6));
        out.push(("networkOut", l("interface", iface), 1e6));
    }
    for core in 0..4 {
        out.push(("cpuCore", l("core", &core.to_string()), 10.0));
    }
    out
}

fn evaluation(c: &mut Criterion) {
    let (index, devices) = fleet();
    let engine = Engine::default();
    let rules = RuleSet::compile(&index.snapshot());
    assert_eq!(rules.len(), RULES);
    engine.set_rules(rules, 0);
    let batch = batch();
    let mut t = 0i64;
    // Warm every window, as a running fleet has them.
    for d in &devices {
        engine.observe(
            *d,
            None,
            batch.iter().map(|(m, l, v)| Sample {
                metric: m,
                labels: l,
                t_ms: t,
                value: *v,
            }),
        );
    }
    let mut group = c.benchmark_group("alert_evaluation");
    group.throughput(Throughput::Elements((batch.len() * 1000) as u64));
    let mut next = 0usize;
    group.bench_function("1000_rules_10000_devices_per_1000_batches", |b| {
        b.iter(|| {
            t += 10_000;
            for _ in 0..1000 {
                let d = devices[next % devices.len()];
                next += 1;
                let out = engine.observe(
                    d,
                    None,
                    batch.iter().map(|(m, l, v)| Sample {
                        metric: m,
                        labels: l,
                        t_ms: t,
                        value: *v,
                    }),
                );
                assert!(out.is_empty());
            }
        });
    });
    group.finish();

    let mut compile = c.benchmark_group("alert_rules");
    compile.sample_size(10);
    compile.bench_function("compile_1000_rules_over_10000_devices", |b| {
        b.iter(|| RuleSet::compile(&index.snapshot()));
    });
    compile.finish();
}

criterion_group!(benches, evaluation);
criterion_main!(benches);
