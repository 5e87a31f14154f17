//! sFlow counter samples sent over UDP to the sFlow receiver come out as interface samples
//! of the Device whose address is the sFlow agent's; an unknown agent's and an
//! SNMP-polled Device's counters are counted and dropped.
use std::{net::UdpSocket, time::Duration};

use cdot_collector::flow::{
    self, FlowConfig, FlowMetrics, FlowSink, InterfaceCounters, synth::SflowBuilder,
};
use cdot_crds::{
    device::SnmpVersion,
    wire::collector::{InterfaceSample, SiteDevice, SnmpCredentials, SnmpTarget},
};
use tokio::sync::{mpsc, watch};

const SWITCH: [u8; 4] = [192, 0, 2, 9];
const UNKNOWN: [u8; 4] = [198, 51, 100, 7];
const ROUTER: [u8; 4] = [192, 0, 2, 1];

fn counters(if_index: u32, sequence: u32, octets: u64, packets: u32) -> InterfaceCounters {
    InterfaceCounters {
        received_ms: 0,
        agent: SWITCH.into(),
        sub_agent_id: 0,
        uptime_ms: 0,
        sequence,
        if_index,
        if_type: 6,
        speed_bps: 1_000_000_000,
        direction: 1,
        status: 3,
        in_octets: octets,
        in_ucast_pkts: packets,
        in_multicast_pkts: 0,
        in_broadcast_pkts: 0,
        in_discards: sequence,
        in_errors: 0,
        in_unknown_protos: 0,
        out_octets: octets / 4,
        out_ucast_pkts: packets / 4,
        out_multicast_pkts: 0,
        out_broadcast_pkts: 0,
        out_discards: 0,
        out_errors: sequence * 2,
        promiscuous: 0,
    }
}

/// One datagram of `agent` at `uptime_ms` with the counters of two interfaces.
fn datagram(agent: [u8; 4], uptime_ms: u32, step: u32) -> Vec<u8> {
    let octets = u64::from(step) * 50_000_000 + (1 << 40);
    // The packet counters pass 2³² between the second and the third sample.
    let packets = (u32::MAX - 15_000).wrapping_add(step * 10_000);
    SflowBuilder::default()
        .interface_counters(&counters(1, step + 1, octets, packets))
        .interface_counters(&counters(2, step + 1, octets * 2, packets))
        .uptime(uptime_ms)
        .build(agent)
}

#[tokio::test]
async fn sflow_counter_samples_become_interface_samples_of_their_device() {
    let config = FlowConfig {
        netflow_listen: None,
        sflow_listen: Some("127.0.0.1:0".parse().expect("addr")),
        receive_buffer_bytes: 1 << 20,
        ..FlowConfig::default()
    };
    let metrics = FlowMetrics::default();
    let (groups, _groups_rx) = mpsc::channel(16);
    let (counters_tx, counters_rx) = mpsc::channel(16);
    let (stop_tx, stop_rx) = watch::channel(false);
    let receivers = flow::spawn(
        config,
        metrics.clone(),
        FlowSink {
            groups,
            counters: Some(counters_tx),
        },
        stop_rx,
    )
    .expect("start the sFlow receiver");
    let (_devices_tx, devices_rx) = watch::channel(vec![
        SiteDevice {
            device: "sw-1".into(),
            addresses: vec!["sw-1.example.net".into(), "192.0.2.9".into()],
        },
        SiteDevice {
            device: "rtr-1".into(),
            addresses: vec!["192.0.2.1".into()],
        },
    ]);
    let (_snmp_tx, snmp_rx) = watch::channel(vec![SnmpTarget {
        device: "rtr-1".into(),
        address: "rtr-1.example.net".into(),
        port: 161,
        version: SnmpVersion::V2c,
        credentials: SnmpCredentials::Community {
            community: "public".into(),
        },
        poll_interval_secs: 60,
        timeout_ms: 1_000,
        retries: 1,
        interfaces: Vec::new(),
    }]);
    let (samples_tx, mut samples_rx) = mpsc::channel(16);
    let converter = flow::interfaces::spawn(
        counters_rx,
        devices_rx,
        snmp_rx,
        samples_tx,
        metrics.clone(),
    );

    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind the sender");
    let to = receivers.sflow_addr().expect("sFlow address");
    for step in 0..3 {
        // 20 s apart on the agents' clocks.
        let uptime = 600_000 + step * 20_000;
        for agent in [SWITCH, UNKNOWN, ROUTER] {
            sender
                .send_to(&datagram(agent, uptime, step), to)
                .expect("send");
        }
    }

    let mut samples: Vec<InterfaceSample> = Vec::new();
    while samples.len() < 4 {
        let batch = tokio::time::timeout(Duration::from_secs(10), samples_rx.recv())
            .await
            .expect("interface samples within 10 s")
            .expect("converter running");
        samples.extend(batch);
    }
    stop_tx.send(true).expect("stop");
    receivers.stopped().await;
    converter.await.expect("converter ends with the receiver");
    assert!(samples_rx.recv().await.is_none(), "no further samples");

    samples.sort_by_key(|s| (s.if_index, s.t));
    assert!(samples.iter().all(|s| s.device == "sw-1"), "{samples:?}");
    let first = &samples[0];
    assert_eq!((first.if_index, first.name.as_str()), (1, "ifIndex 1"));
    assert_eq!((first.interval_ms, first.oper_status), (20_000, 1));
    assert_eq!(first.speed_bps, 1_000_000_000);
    // 50 MB per 20 s in, a quarter of it out.
    assert_eq!(first.in_bps, 20_000_000.0);
    assert_eq!(first.out_bps, 5_000_000.0);
    assert_eq!((first.in_pps, first.out_pps), (500.0, 125.0));
    assert_eq!((first.in_discards, first.out_errors), (1, 2));
    // Across the 32-bit wrap of the packet counters.
    assert_eq!(samples[1].in_pps, 500.0);
    assert_eq!((samples[2].if_index, samples[2].in_bps), (2, 40_000_000.0));

    let unused = |reason: &'static str| metrics.counter_sample_unused(reason).get();
    assert_eq!(unused("baseline"), 2);
    assert_eq!(unused("unknown_agent"), 6);
    assert_eq!(unused("snmp_polled"), 6);
    assert_eq!(metrics.interface_samples.get(), 4);
}
