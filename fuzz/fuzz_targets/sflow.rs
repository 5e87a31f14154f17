//! sFlow v5 datagrams through the collector's decoder and the aggregator.
#![no_main]

use cdot_collector::flow::{Aggregator, Limits, sflow};

const LIMITS: Limits = Limits {
    top_n: 4,
    key_cap: 16,
    max_keys: 64,
    max_groups: 8,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut output = sflow::SflowOutput::default();
    if sflow::decode(data, 0, &mut output).is_err() {
        assert!(output.flows.is_empty() && output.counters.is_empty());
        return;
    }
    let mut aggregator = Aggregator::new(LIMITS);
    for record in &output.flows {
        aggregator.add(0, record);
    }
    for group in aggregator.flush_all() {
        assert!(group.top.len() <= LIMITS.top_n);
    }
});
