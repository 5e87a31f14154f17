//! Interface polls and probe results for `--samples`: what the console's network screen
//! shows beside the flows, so its first screen over 24 h has every panel's real volume.
//!
//! Every router polls its four flow interfaces and its uplink (ifIndex 100) once a minute
//! and pings one target once a minute, for every minute of the range; the load goes through
//! `Store::write_collector_batch` like the flows.
use std::sync::Arc;

use cdot_crds::wire::collector::{CollectorBatch, InterfaceSample, ProbeResult};
use cdot_operator::store::{
    Store,
    network::{HOUR_MS, MINUTE_MS},
};

use crate::{Rng, Tenant};

/// Interfaces polled per router: the flows' ingress interfaces and the uplink.
const INTERFACES: [(u32, u64); 5] = [
    (1, 1_000_000_000),
    (2, 1_000_000_000),
    (3, 1_000_000_000),
    (4, 1_000_000_000),
    (100, 10_000_000_000),
];

/// Writes `hours` of polls and probe results ending at `end_ms`; returns the rows written.
pub async fn load(
    store: &Store,
    tenants: &[Tenant],
    hours: i64,
    end_ms: i64,
) -> anyhow::Result<u64> {
    let now = jiff::Timestamp::now().as_millisecond();
    let store = Arc::new(store.clone());
    let mut rng = Rng(0x5eed_0f1f);
    let mut rows = 0u64;
    let mut devices = Vec::new();
    for tenant in tenants {
        let names: Vec<String> = tenant
            .exporters
            .iter()
            .map(|e| format!("rtr-{e:03}"))
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        devices.push(Arc::new(
            store.network_devices(&tenant.namespace, &names).await?,
        ));
    }
    let mut pending = tokio::task::JoinSet::new();
    for m in 0..hours * 60 {
        let t = end_ms - hours * HOUR_MS + m * MINUTE_MS;
        // A working day's swell, so charts and percentiles have a shape.
        let day = 0.55
            + 0.45
                * ((t % (24 * HOUR_MS)) as f64 / (24.0 * HOUR_MS as f64) * std::f64::consts::TAU)
                    .sin();
        for (tenant, devices) in tenants.iter().zip(&devices) {
            let mut interfaces = Vec::new();
            let mut probes = Vec::new();
            for &e in &tenant.exporters {
                let device = format!("rtr-{e:03}");
                for (if_index, speed) in INTERFACES {
                    let load = speed as f64 * 0.3 * day * (0.8 + 0.4 * rng.unit());
                    interfaces.push(InterfaceSample {
                        t,
                        device: device.clone(),
                        if_index,
                        name: format!("ge-0/0/{if_index}"),
                        alias: String::new(),
                        oper_status: 1,
                        speed_bps: speed,
                        interval_ms: 60_000,
                        in_bps: load,
                        out_bps: load * 0.4,
                        in_pps: load / 6_000.0,
                        out_pps: load / 9_000.0,
                        in_errors: u64::from(rng.below(50) == 0),
                        out_errors: 0,
                        in_discards: u64::from(rng.below(20) == 0),
                        out_discards: 0,
                    });
                }
                let received = if rng.below(100) == 0 { 4 } else { 5 };
                let rtt = 8.0 + 20.0 * day + 4.0 * rng.unit();
                probes.push(ProbeResult {
                    t,
                    device,
                    probe: "wan".into(),
                    target: "198.51.100.1".into(),
                    sent: 5,
                    received,
                    rtt_min_ms: Some(rtt * 0.8),
                    rtt_avg_ms: Some(rtt),
                    rtt_max_ms: Some(rtt * 1.5),
                    jitter_ms: Some(1.0 + rng.unit()),
                });
            }
            rows += (interfaces.len() + probes.len()) as u64;
            let batch = CollectorBatch {
                batch_id: uuid::Uuid::new_v4(),
                collector_version: "bench".into(),
                scans: Vec::new(),
                interval_secs: None,
                flows: Vec::new(),
                interfaces,
                probes,
            };
            let store = store.clone();
            let collector = tenant.collector.clone();
            let devices = devices.clone();
            pending.spawn(async move {
                store
                    .write_collector_batch(&collector, "bench", &batch, &devices, now)
                    .await
            });
            while pending.len() >= 2 {
                if let Some(done) = pending.join_next().await {
                    done??;
                }
            }
        }
    }
    while let Some(done) = pending.join_next().await {
        done??;
    }
    Ok(rows)
}
