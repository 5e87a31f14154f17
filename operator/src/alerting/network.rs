//! Catalogue metrics from a collector's batch: interface utilisation, errors, discards and
//! status from SNMP polls, latency, jitter and loss from probes, per polled Device.
use std::collections::{BTreeMap, HashMap};

use cdot_crds::wire::collector::CollectorBatch;
use uuid::Uuid;

/// One derived sample: (device uid, metric, series labels, time, value).
pub type NetworkSample = (Uuid, &'static str, BTreeMap<String, String>, i64, f64);

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The samples of `batch` for the devices in `uids` (by name; others are skipped).
pub fn samples(batch: &CollectorBatch, uids: &HashMap<String, Uuid>) -> Vec<NetworkSample> {
    let mut out = Vec::new();
    for s in &batch.interfaces {
        let Some(uid) = uids.get(&s.device) else {
            continue;
        };
        let name = s.name.as_str();
        let one = labels(&[("interface", name)]);
        // ifOperStatus 1 is up; everything else (down, testing, dormant, ...) is not.
        out.push((
            *uid,
            "interfaceDown",
            one.clone(),
            s.t,
            if s.oper_status == 1 { 0.0 } else { 1.0 },
        ));
        if s.speed_bps > 0 {
            let used = s.in_bps.max(s.out_bps) / s.speed_bps as f64 * 100.0;
            out.push((
                *uid,
                "interfaceUtilisation",
                one.clone(),
                s.t,
                used.clamp(0.0, 100.0),
            ));
        }
        if s.interval_ms > 0 {
            let secs = s.interval_ms as f64 / 1000.0;
            for (direction, errors, discards) in [
                ("in", s.in_errors, s.in_discards),
                ("out", s.out_errors, s.out_discards),
            ] {
                let two = labels(&[("interface", name), ("direction", direction)]);
                out.push((
                    *uid,
                    "interfaceErrors",
                    two.clone(),
                    s.t,
                    errors as f64 / secs,
                ));
                out.push((*uid, "interfaceDiscards", two, s.t, discards as f64 / secs));
            }
        }
    }
    for p in &batch.probes {
        let Some(uid) = uids.get(&p.device) else {
            continue;
        };
        let l = labels(&[("probe", &p.probe), ("target", &p.target)]);
        if p.sent > 0 {
            let lost = f64::from(p.sent.saturating_sub(p.received)) / f64::from(p.sent) * 100.0;
            out.push((*uid, "probeLoss", l.clone(), p.t, lost));
        }
        if let Some(rtt) = p.rtt_avg_ms {
            out.push((*uid, "probeLatency", l.clone(), p.t, rtt));
        }
        if let Some(jitter) = p.jitter_ms {
            out.push((*uid, "probeJitter", l, p.t, jitter));
        }
    }
    // Per series in time order, as the evaluator wants them.
    out.sort_by_key(|s| s.3);
    out
}

#[cfg(test)]
mod tests {
    use cdot_crds::wire::collector::{InterfaceSample, ProbeResult};

    use super::*;

    #[test]
    fn polls_and_probes_become_catalogue_metrics() {
        let uid = Uuid::new_v4();
        let batch = CollectorBatch {
            interfaces: vec![InterfaceSample {
                t: 1000,
                device: "core-sw".into(),
                if_index: 1,
                name: "ge-0/0/1".into(),
                alias: String::new(),
                oper_status: 2,
                speed_bps: 1_000_000_000,
                interval_ms: 10_000,
                in_bps: 950_000_000.0,
                out_bps: 10_000_000.0,
                in_pps: 0.0,
                out_pps: 0.0,
                in_errors: 50,
                out_errors: 0,
                in_discards: 20,
                out_discards: 0,
            }],
            probes: vec![ProbeResult {
                t: 2000,
                device: "core-sw".into(),
                probe: "gw".into(),
                target: "10.0.0.1".into(),
                sent: 10,
                received: 7,
                rtt_min_ms: Some(1.0),
                rtt_avg_ms: Some(2.5),
                rtt_max_ms: Some(4.0),
                jitter_ms: Some(0.5),
            }],
            ..CollectorBatch::default()
        };
        let got = samples(&batch, &[("core-sw".to_owned(), uid)].into());
        let find = |metric: &str, extra: Option<(&str, &str)>| {
            got.iter()
                .find(|s| {
                    s.1 == metric
                        && extra.is_none_or(|(k, v)| s.2.get(k).map(String::as_str) == Some(v))
                })
                .map(|s| s.4)
        };
        assert_eq!(find("interfaceDown", None), Some(1.0));
        assert_eq!(find("interfaceUtilisation", None), Some(95.0));
        assert_eq!(
            find("interfaceErrors", Some(("direction", "in"))),
            Some(5.0)
        );
        assert_eq!(
            find("interfaceDiscards", Some(("direction", "in"))),
            Some(2.0)
        );
        assert_eq!(find("probeLoss", None), Some(30.0));
        assert_eq!(find("probeLatency", None), Some(2.5));
        assert_eq!(find("probeJitter", None), Some(0.5));
        assert!(samples(&batch, &HashMap::new()).is_empty());
    }
}
