//! sFlow v5 datagrams through the collector's decoder, the aggregator and the counter
//! rates: the input is split in two datagrams from the same agent, so that the second one's
//! counter samples meet the first one's as their previous reading.
#![no_main]

use cdot_collector::flow::{Aggregator, Limits, interfaces::CounterRates, sflow};

const LIMITS: Limits = Limits {
    top_n: 4,
    key_cap: 16,
    max_keys: 64,
    max_hosts: 32,
    max_groups: 8,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let (first, second) = data.split_at(split);
    let mut aggregator = Aggregator::new(LIMITS);
    let mut rates = CounterRates::default();
    for (i, datagram) in [first, second].into_iter().enumerate() {
        let mut output = sflow::SflowOutput::default();
        if sflow::decode(datagram, i as i64 * 30_000, &mut output).is_err() {
            assert!(output.flows.is_empty() && output.counters.is_empty());
            continue;
        }
        for record in &output.flows {
            aggregator.add(0, record);
        }
        for counters in &output.counters {
            if let Ok(sample) = rates.sample("fuzz", counters) {
                for rate in [sample.in_bps, sample.out_bps, sample.in_pps, sample.out_pps] {
                    assert!(rate.is_finite() && rate >= 0.0, "{sample:?}");
                }
            }
        }
    }
    for group in aggregator.flush_all() {
        assert!(group.top.len() <= LIMITS.top_n);
    }
});
