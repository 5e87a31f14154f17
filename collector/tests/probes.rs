//! ICMP probes against lab hosts (needs root for the raw ICMP socket).
use std::time::Duration;

use cdot_collector::probe::{self, ProbeMetrics, Prober, RoundPlan};
use cdot_crds::{device::ProbeType, wire::collector::ProbeTarget};
use cdot_testkit::{echo::DelayedEcho, netns::Lab};
use prometheus_client::{encoding::text::encode, registry::Registry};
use tokio::sync::{mpsc, watch};

const WAIT: Duration = Duration::from_secs(20);

fn icmp(name: &str, target: String, interval_secs: u64) -> ProbeTarget {
    ProbeTarget {
        device: "branch-gw".into(),
        name: name.into(),
        type_: ProbeType::Icmp,
        target,
        port: None,
        interval_secs,
    }
}

#[tokio::test]
async fn a_lab_host_answers_every_echo_quickly() {
    let lab = Lab::new();
    let host = lab.add_host();
    let prober = Prober::new(ProbeMetrics::default());
    let target = icmp("lan", host.addr.to_string(), 1);
    let result = prober
        .round(&target, RoundPlan::for_interval(Duration::from_secs(1)))
        .await
        .expect("round");
    assert_eq!((result.sent, result.received), (5, 5), "{result:?}");
    let (min, avg, max) = (
        result.rtt_min_ms.expect("min"),
        result.rtt_avg_ms.expect("avg"),
        result.rtt_max_ms.expect("max"),
    );
    assert!(
        0.0 < min && min <= avg && avg <= max && max < 50.0,
        "{result:?}"
    );
    assert!(
        result.jitter_ms.is_some_and(|j| (0.0..50.0).contains(&j)),
        "{result:?}"
    );
    assert_eq!(
        (result.device.as_str(), result.probe.as_str()),
        ("branch-gw", "lan")
    );
}

#[tokio::test]
async fn a_host_that_answers_20_ms_late_shows_20_ms() {
    let lab = Lab::new();
    let host = lab.add_host();
    let _late = DelayedEcho::start(&host, Duration::from_millis(20));
    let prober = Prober::new(ProbeMetrics::default());
    let target = icmp("wan", host.addr.to_string(), 2);
    let result = prober
        .round(&target, RoundPlan::for_interval(Duration::from_secs(2)))
        .await
        .expect("round");
    assert_eq!((result.sent, result.received), (5, 5), "{result:?}");
    let min = result.rtt_min_ms.expect("min");
    let avg = result.rtt_avg_ms.expect("avg");
    assert!(min >= 20.0, "{result:?}");
    assert!(avg < 35.0, "{result:?}");
}

#[tokio::test]
async fn an_address_without_a_host_loses_every_echo() {
    let lab = Lab::new();
    let mut registry = Registry::default();
    let metrics = ProbeMetrics::register(&mut registry);
    let prober = Prober::new(metrics);
    let nobody = format!("10.231.{}.250", lab.gateway().octets()[2]);
    let target = icmp("void", nobody, 1);
    let result = prober
        .round(&target, RoundPlan::for_interval(Duration::from_secs(1)))
        .await
        .expect("round");
    assert_eq!((result.sent, result.received), (5, 0), "{result:?}");
    assert_eq!(result.rtt_avg_ms, None);
    assert_eq!(result.jitter_ms, None);
    let mut text = String::new();
    encode(&mut text, &registry).expect("encode");
    assert!(
        text.contains(r#"cdot_collector_probe_rounds_total{result="unreachable"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn the_component_runs_icmp_probes_skips_other_types_and_stops() {
    let lab = Lab::new();
    let host = lab.add_host();
    let mut tcp = icmp("ssh", host.addr.to_string(), 1);
    tcp.type_ = ProbeType::Tcp;
    tcp.port = Some(22);
    let targets = vec![icmp("lan", host.addr.to_string(), 1), tcp];
    let (_targets_tx, targets_rx) = watch::channel(targets);
    let (sink, mut results) = mpsc::channel(16);
    let (stop, shutdown) = watch::channel(false);
    let mut registry = Registry::default();
    let metrics = ProbeMetrics::register(&mut registry);
    let component = probe::spawn(targets_rx, sink, metrics, shutdown);

    for _ in 0..2 {
        let batch = tokio::time::timeout(WAIT, results.recv())
            .await
            .expect("a result in time")
            .expect("a batch");
        let [result] = batch.as_slice() else {
            panic!("one result per round: {batch:?}");
        };
        assert_eq!(result.probe, "lan");
        assert_eq!((result.sent, result.received), (5, 5), "{result:?}");
    }
    stop.send(true).expect("shutdown");
    tokio::time::timeout(Duration::from_secs(5), component)
        .await
        .expect("stops on shutdown")
        .expect("no panic");
    let mut text = String::new();
    encode(&mut text, &registry).expect("encode");
    assert!(
        text.contains(r#"cdot_collector_probe_skipped_total{type="tcp"} 1"#),
        "{text}"
    );
    // Two full rounds at least (a third may have begun before the shutdown).
    let received: u64 = text
        .lines()
        .find_map(|line| line.strip_prefix("cdot_collector_probe_echoes_received_total "))
        .and_then(|value| value.trim().parse().ok())
        .expect("echoes received");
    assert!(received >= 10, "{text}");
}
