//! Decode plus aggregation on one core: records/s for NetFlow v5, v9 and IPFIX
//! datagrams of 30 records, softflowd- and Juniper-shaped, over 30,000 distinct flows in
//! four interface pairs (the steady state of a busy minute: keys already known).
//!
//! `cargo bench -p cdot-collector --bench flow_decode`
use std::{hint::black_box, net::SocketAddr};

use cdot_collector::flow::{
    Aggregator, FlowConfig, NetflowDecoder,
    netflow::NetflowSettings,
    synth::{self, Builder, Field, Flow, Version},
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const RECORDS_PER_DATAGRAM: u32 = 30;
const DATAGRAMS: u32 = 1000;
const MINUTE: i64 = 1_764_064_800_000;

fn flows(datagram: u32) -> Vec<Flow> {
    let first = datagram * RECORDS_PER_DATAGRAM;
    (first..first + RECORDS_PER_DATAGRAM)
        .map(Flow::v4)
        .collect()
}

/// The template datagram and the data datagrams of one template-based export.
fn template_export(version: Version, domain: u32, fields: &[Field]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let template = Builder::new(version, domain).template(256, fields).build();
    let data = (0..DATAGRAMS)
        .map(|n| {
            Builder::new(version, domain)
                .data(256, fields, &flows(n))
                .build()
        })
        .collect();
    (template, data)
}

fn bench(
    c: &mut Criterion,
    name: &str,
    setup: Option<&[u8]>,
    datagrams: &[Vec<u8>],
    directly: bool,
) {
    let source: SocketAddr = "192.0.2.1:2055".parse().expect("address");
    let settings = NetflowSettings {
        decode_directly: directly,
        ..NetflowSettings::default()
    };
    let mut decoder = NetflowDecoder::new(&settings);
    let mut aggregator = Aggregator::new(FlowConfig::default().limits());
    let mut records = Vec::with_capacity(64);
    if let Some(template) = setup {
        decoder
            .decode(source, template, &mut records)
            .expect("template");
    }
    let mut group = c.benchmark_group("flow_decode");
    group.throughput(Throughput::Elements(u64::from(
        RECORDS_PER_DATAGRAM * DATAGRAMS,
    )));
    group.bench_function(name, |b| {
        b.iter(|| {
            for datagram in datagrams {
                records.clear();
                let decoded = decoder
                    .decode(source, datagram, &mut records)
                    .expect("decode");
                black_box(decoded);
                for record in &records {
                    black_box(aggregator.add(MINUTE, record));
                }
            }
        });
    });
    group.finish();
    black_box(aggregator.flush_all());
}

fn decode_and_aggregate(c: &mut Criterion) {
    let v5: Vec<Vec<u8>> = (0..DATAGRAMS)
        .map(|n| synth::v5(&flows(n), 0, 1_764_064_800))
        .collect();
    bench(c, "v5", None, &v5, true);
    let (template, data) = template_export(Version::V9, 0, synth::SOFTFLOWD_V9_V4);
    bench(c, "v9_softflowd", Some(&template), &data, true);
    bench(c, "v9_softflowd_generic", Some(&template), &data, false);
    let (template, data) = template_export(Version::Ipfix, 0, synth::SOFTFLOWD_IPFIX_V4);
    bench(c, "ipfix_softflowd", Some(&template), &data, true);
    bench(c, "ipfix_softflowd_generic", Some(&template), &data, false);
    let (template, data) = template_export(Version::Ipfix, 524_288, synth::JUNIPER_V4);
    bench(c, "ipfix_juniper", Some(&template), &data, true);
}

criterion_group!(benches, decode_and_aggregate);
criterion_main!(benches);
