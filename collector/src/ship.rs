//! What the components produced since the last shipment, cut into batches that each fit
//! the operator's body limit, ready for the spool; and the empty batch of an idle
//! collector, which keeps its Device reporting.
use cdot_crds::wire::{
    MAX_BODY_BYTES,
    collector::{CollectorBatch, FlowGroup, InterfaceSample, MAX_ITEMS_PER_BATCH, ProbeResult},
    discovery::ScanReport,
};
use uuid::Uuid;

use crate::COLLECTOR_VERSION;

/// JSON bytes one batch aims at: the operator refuses bodies over [`MAX_BODY_BYTES`]
/// (after decompression); the margin covers the envelope.
const TARGET_BATCH_BYTES: usize = MAX_BODY_BYTES * 3 / 4;

/// Aggregates waiting to be shipped.
#[derive(Debug, Default)]
pub struct Pending {
    pub flows: Vec<FlowGroup>,
    pub interfaces: Vec<InterfaceSample>,
    pub probes: Vec<ProbeResult>,
    /// Discovery reports, in the order each run sent them.
    pub scans: Vec<ScanReport>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
            && self.interfaces.is_empty()
            && self.probes.is_empty()
            && self.scans.is_empty()
    }

    /// Takes everything as batches of at most [`TARGET_BATCH_BYTES`] of JSON and
    /// [`MAX_ITEMS_PER_BATCH`] items per list, each with a fresh id.
    pub fn take_batches(&mut self) -> Vec<CollectorBatch> {
        let mut batches = Vec::new();
        let mut current = new_batch();
        let mut size = 0usize;
        let flows = std::mem::take(&mut self.flows);
        let interfaces = std::mem::take(&mut self.interfaces);
        let probes = std::mem::take(&mut self.probes);
        let scans = std::mem::take(&mut self.scans);
        // Sizes are measured item by item: serialising an item again is cheap next to
        // compressing and sending it, and an estimate could overshoot the operator's limit.
        let mut place = |batches: &mut Vec<CollectorBatch>,
                         current: &mut CollectorBatch,
                         item_size: usize,
                         count: fn(&CollectorBatch) -> usize| {
            if !is_empty(current)
                && (size + item_size > TARGET_BATCH_BYTES || count(current) >= MAX_ITEMS_PER_BATCH)
            {
                batches.push(std::mem::replace(current, new_batch()));
                size = 0;
            }
            size += item_size;
        };
        for group in flows {
            place(&mut batches, &mut current, json_len(&group), |b| {
                b.flows.len()
            });
            current.flows.push(group);
        }
        for sample in interfaces {
            place(&mut batches, &mut current, json_len(&sample), |b| {
                b.interfaces.len()
            });
            current.interfaces.push(sample);
        }
        for result in probes {
            place(&mut batches, &mut current, json_len(&result), |b| {
                b.probes.len()
            });
            current.probes.push(result);
        }
        for report in scans {
            place(&mut batches, &mut current, json_len(&report), |b| {
                b.scans.len()
            });
            current.scans.push(report);
        }
        if !is_empty(&current) {
            batches.push(current);
        }
        batches
    }
}

/// A batch with nothing in it: sent by an idle collector at its ship interval, so that the
/// operator sees it alive (the batch carries `interval_secs`).
pub fn heartbeat() -> CollectorBatch {
    new_batch()
}

fn new_batch() -> CollectorBatch {
    CollectorBatch {
        batch_id: Uuid::new_v4(),
        collector_version: COLLECTOR_VERSION.to_owned(),
        ..Default::default()
    }
}

fn is_empty(batch: &CollectorBatch) -> bool {
    batch.flows.is_empty()
        && batch.interfaces.is_empty()
        && batch.probes.is_empty()
        && batch.scans.is_empty()
}

fn json_len<T: serde::Serialize>(item: &T) -> usize {
    serde_json::to_vec(item).map_or(0, |v| v.len() + 1)
}

#[cfg(test)]
mod tests {
    use cdot_crds::wire::collector::{Counts, FlowCount};

    use super::*;

    fn group(pairs: usize) -> FlowGroup {
        FlowGroup {
            minute_ms: 1_764_064_800_000,
            exporter: "10.0.0.1".parse().expect("ip"),
            in_if: 1,
            out_if: 2,
            top: (0..pairs)
                .map(|i| FlowCount {
                    src: std::net::Ipv4Addr::from(0x0a00_0000 + i as u32).into(),
                    dst: "192.0.2.1".parse().expect("ip"),
                    proto: 6,
                    sp: 443,
                    dp: 50_000,
                    b: 1_000_000,
                    p: 1_000,
                    f: 1,
                })
                .collect(),
            hosts: Vec::new(),
            other: Counts::default(),
        }
    }

    #[test]
    fn large_minutes_are_cut_into_batches_under_the_body_limit() {
        let mut pending = Pending {
            flows: (0..200).map(|_| group(1000)).collect(),
            ..Default::default()
        };
        let batches = pending.take_batches();
        assert!(pending.is_empty());
        assert!(
            batches.len() > 1,
            "200 exporters × 1,000 pairs need several batches"
        );
        let mut groups = 0;
        for batch in &batches {
            let json = serde_json::to_vec(batch).expect("json");
            assert!(json.len() <= MAX_BODY_BYTES, "{} bytes", json.len());
            groups += batch.flows.len();
        }
        assert_eq!(groups, 200, "nothing lost or duplicated");
        let ids: std::collections::HashSet<_> = batches.iter().map(|b| b.batch_id).collect();
        assert_eq!(ids.len(), batches.len(), "each batch has its own id");
    }

    #[test]
    fn nothing_pending_makes_no_batch() {
        assert!(Pending::default().take_batches().is_empty());
    }

    #[test]
    fn scan_reports_are_shipped_in_order() {
        use cdot_crds::wire::discovery::{ScanCounts, ScanState};
        let report = |scanned: u64| ScanReport {
            run: Uuid::nil(),
            scan: "lan".into(),
            started_ms: 1,
            t: 2,
            state: ScanState::Running,
            error: None,
            total: 254,
            scanned,
            counts: ScanCounts::default(),
            hosts: Vec::new(),
        };
        let mut pending = Pending {
            scans: vec![report(1), report(2)],
            ..Default::default()
        };
        assert!(!pending.is_empty());
        let batches = pending.take_batches();
        assert!(pending.is_empty());
        let [batch] = batches.as_slice() else {
            panic!("one batch: {batches:?}");
        };
        let scanned: Vec<u64> = batch.scans.iter().map(|r| r.scanned).collect();
        assert_eq!(scanned, [1, 2]);
        assert!(is_empty(&heartbeat()));
    }
}
