//! NetFlow v5/v9 and IPFIX through the collector's decoder with template state: the
//! input is a sequence of datagrams, each prefixed by its length (2 bytes, big-endian)
//! and the exporter it comes from (1 byte, one of four), so that templates learned from
//! one datagram decode the next ones, and records go through the aggregator.
#![no_main]

use std::net::SocketAddr;

use cdot_collector::flow::{Aggregator, Limits, NetflowDecoder, netflow::NetflowSettings};

const LIMITS: Limits = Limits {
    top_n: 4,
    key_cap: 16,
    max_keys: 64,
    max_hosts: 32,
    max_groups: 8,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut decoder = NetflowDecoder::new(&NetflowSettings::default());
    let mut aggregator = Aggregator::new(LIMITS);
    let mut records = Vec::new();
    let mut rest = data;
    while let [exporter, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (datagram, next) = tail.split_at(len);
        rest = next;
        let source = SocketAddr::from(([192, 0, 2, exporter % 4], 2055));
        records.clear();
        let _ = decoder.decode(source, datagram, &mut records);
        for record in &records {
            aggregator.add(i64::from(*exporter) * 60_000, record);
        }
    }
    for group in aggregator.flush_all() {
        assert!(group.top.len() <= LIMITS.top_n);
    }
});
