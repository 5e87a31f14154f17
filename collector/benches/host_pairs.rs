//! A router's busy minute on one core: 60,000 distinct host pairs and 120,000 five-tuples
//! (each pair on two ports) from one exporter over four interface pairs, every key new, so
//! both five-tuple and host-pair bounds are exercised (ADR 22). Measures adding the
//! minute's records and flushing it into shippable pieces, and prints what the pieces
//! weigh on the wire.
//!
//! `cargo bench -p cdot-collector --bench host_pairs`
use std::{
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
};

use cdot_collector::flow::{Aggregator, FlowConfig, FlowRecord};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const PAIRS: u32 = 60_000;
const PORTS_PER_PAIR: u32 = 2;
const MINUTE: i64 = 1_764_064_800_000;

fn minute_of_records() -> Vec<FlowRecord> {
    let exporter = IpAddr::from([192, 0, 2, 1]);
    let mut records = Vec::with_capacity((PAIRS * PORTS_PER_PAIR) as usize);
    for pair in 0..PAIRS {
        for port in 0..PORTS_PER_PAIR {
            records.push(FlowRecord {
                exporter,
                in_if: 1 + pair % 4,
                out_if: 10,
                src: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + pair / 16)),
                dst: IpAddr::V4(Ipv4Addr::from(0xc633_0000 + pair % 4_000)),
                proto: 17,
                src_port: 40_000 + (pair % 20_000) as u16,
                dst_port: 53 + port as u16,
                bytes: u64::from(60 + pair % 1_400),
                packets: 1,
            });
        }
    }
    records
}

fn bench(c: &mut Criterion) {
    let records = minute_of_records();
    let limits = FlowConfig::default().limits();
    let mut group = c.benchmark_group("host_pairs");
    group.sample_size(20);
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("aggregate and flush a minute of 60k pairs", |b| {
        b.iter(|| {
            let mut aggregator = Aggregator::new(limits);
            for record in &records {
                aggregator.add(MINUTE, record);
            }
            black_box(aggregator.flush_all())
        })
    });
    group.finish();

    let mut aggregator = Aggregator::new(limits);
    for record in &records {
        aggregator.add(MINUTE, record);
    }
    let pieces = aggregator.flush_all();
    let pairs: usize = pieces.iter().map(|p| p.top.len() + p.hosts.len()).sum();
    let bytes: usize = pieces
        .iter()
        .map(|p| serde_json::to_vec(p).map_or(0, |v| v.len()))
        .sum();
    println!(
        "one minute: {} records -> {} pieces, {pairs} rows, {:.1} MB of JSON before gzip",
        records.len(),
        pieces.len(),
        bytes as f64 / 1e6
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
