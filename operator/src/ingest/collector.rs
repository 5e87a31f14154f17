//! Validation of a collector's batch: everything checked before it is stored, each
//! refusal naming the offending field (`flows[2].top[0].bytes`).
use std::collections::HashMap;

use cdot_crds::wire::{
    MAX_FUTURE_SKEW_MS, MAX_SAMPLE_AGE_MS,
    collector::{CollectorBatch, Counts, FlowGroup, MAX_ITEMS_PER_BATCH},
    discovery::{MAX_HOSTS_PER_REPORT, MAX_TABLE_ROWS, MAX_TEXT_LEN, ScanReport},
};

use super::Rejection;
use crate::store::network::{MINUTE_MS, write::DeviceRef};

/// Longest accepted collector version string.
const MAX_VERSION_LEN: usize = 64;
/// Longest accepted interface name or alias, probe name or device name.
const MAX_NAME_LEN: usize = 256;
/// Longest accepted probe target (a URL).
const MAX_TARGET_LEN: usize = 2048;

fn bad(reason: &'static str, field: String, message: String) -> Rejection {
    Rejection::invalid(reason, field, message)
}

fn too_many(field: &str, n: usize) -> Rejection {
    Rejection::too_large(
        "too_many_items",
        field,
        format!("the batch has {n} {field} items; at most {MAX_ITEMS_PER_BATCH} are accepted"),
    )
}

fn check_time(t: i64, now_ms: i64, field: impl Fn() -> String) -> Result<(), Rejection> {
    if t > now_ms + MAX_FUTURE_SKEW_MS {
        return Err(bad(
            "timestamp",
            field(),
            format!(
                "time {t} is more than {} s ahead of the operator's clock ({now_ms})",
                MAX_FUTURE_SKEW_MS / 1000
            ),
        ));
    }
    if t < now_ms - MAX_SAMPLE_AGE_MS {
        return Err(bad(
            "timestamp",
            field(),
            format!(
                "time {t} is older than {} days",
                MAX_SAMPLE_AGE_MS / 86_400_000
            ),
        ));
    }
    Ok(())
}

/// Counts are stored as signed 64-bit integers.
fn check_count(v: u64, field: impl Fn() -> String) -> Result<(), Rejection> {
    if i64::try_from(v).is_err() {
        return Err(bad(
            "count",
            field(),
            format!("count {v} is larger than {}", i64::MAX),
        ));
    }
    Ok(())
}

fn check_counts(c: &Counts, field: impl Fn() -> String) -> Result<(), Rejection> {
    check_count(c.b, || format!("{}.b", field()))?;
    check_count(c.p, || format!("{}.p", field()))?;
    check_count(c.f, || format!("{}.f", field()))
}

fn check_rate(v: f64, field: impl Fn() -> String) -> Result<(), Rejection> {
    if !v.is_finite() || v < 0.0 {
        return Err(bad(
            "rate",
            field(),
            format!("{v} is not a finite number of at least 0"),
        ));
    }
    Ok(())
}

fn check_text(v: &str, max: usize, field: impl Fn() -> String) -> Result<(), Rejection> {
    if v.is_empty() || v.len() > max {
        return Err(bad("text", field(), format!("must have 1 to {max} bytes")));
    }
    Ok(())
}

/// Checks everything of a batch that needs no database; the first offending field refuses
/// the whole batch.
pub fn validate_batch(batch: &CollectorBatch, now_ms: i64) -> Result<(), Rejection> {
    check_text(&batch.collector_version, MAX_VERSION_LEN, || {
        "collectorVersion".into()
    })?;
    super::validate::check_interval(batch.interval_secs)?;
    let flow_rows: usize = batch.flows.iter().map(FlowGroup::rows).sum();
    for (field, n) in [
        ("flows", flow_rows),
        ("interfaces", batch.interfaces.len()),
        ("probes", batch.probes.len()),
    ] {
        if n > MAX_ITEMS_PER_BATCH {
            return Err(too_many(field, n));
        }
    }
    for (i, g) in batch.flows.iter().enumerate() {
        if g.minute_ms.rem_euclid(MINUTE_MS) != 0 {
            return Err(bad(
                "minute",
                format!("flows[{i}].minuteMs"),
                format!(
                    "{} is not the start of a minute (a multiple of 60000)",
                    g.minute_ms
                ),
            ));
        }
        check_time(g.minute_ms, now_ms, || format!("flows[{i}].minuteMs"))?;
        if g.exporter.is_unspecified() || g.exporter.is_multicast() {
            return Err(bad(
                "exporter",
                format!("flows[{i}].exporter"),
                format!("{} is not an exporter's unicast address", g.exporter),
            ));
        }
        for (j, c) in g.top.iter().enumerate() {
            let counts = Counts {
                b: c.b,
                p: c.p,
                f: c.f,
            };
            check_counts(&counts, || format!("flows[{i}].top[{j}]"))?;
        }
        for (j, h) in g.hosts.iter().enumerate() {
            let counts = Counts {
                b: h.b,
                p: h.p,
                f: h.f,
            };
            check_counts(&counts, || format!("flows[{i}].hosts[{j}]"))?;
        }
        check_counts(&g.other, || format!("flows[{i}].other"))?;
    }
    for (i, s) in batch.interfaces.iter().enumerate() {
        let at = |name: &str| format!("interfaces[{i}].{name}");
        check_time(s.t, now_ms, || at("t"))?;
        check_text(&s.device, MAX_NAME_LEN, || at("device"))?;
        check_text(&s.name, MAX_NAME_LEN, || at("name"))?;
        if s.alias.len() > MAX_NAME_LEN {
            return Err(bad(
                "text",
                at("alias"),
                format!("must have at most {MAX_NAME_LEN} bytes"),
            ));
        }
        if s.interval_ms == 0 {
            return Err(bad(
                "interval",
                at("intervalMs"),
                "the interval between two polls must be positive".into(),
            ));
        }
        for (name, v) in [
            ("inBps", s.in_bps),
            ("outBps", s.out_bps),
            ("inPps", s.in_pps),
            ("outPps", s.out_pps),
        ] {
            check_rate(v, || at(name))?;
        }
        for (name, v) in [
            ("speedBps", s.speed_bps),
            ("inErrors", s.in_errors),
            ("outErrors", s.out_errors),
            ("inDiscards", s.in_discards),
            ("outDiscards", s.out_discards),
        ] {
            check_count(v, || at(name))?;
        }
    }
    for (i, p) in batch.probes.iter().enumerate() {
        let at = |name: &str| format!("probes[{i}].{name}");
        check_time(p.t, now_ms, || at("t"))?;
        check_text(&p.device, MAX_NAME_LEN, || at("device"))?;
        check_text(&p.probe, MAX_NAME_LEN, || at("probe"))?;
        check_text(&p.target, MAX_TARGET_LEN, || at("target"))?;
        if i32::try_from(p.sent).is_err() {
            return Err(bad(
                "count",
                at("sent"),
                format!("{} probes in one interval are too many", p.sent),
            ));
        }
        if p.received > p.sent {
            return Err(bad(
                "count",
                at("received"),
                format!("{} replies to {} probes", p.received, p.sent),
            ));
        }
        for (name, v) in [
            ("rttMinMs", p.rtt_min_ms),
            ("rttAvgMs", p.rtt_avg_ms),
            ("rttMaxMs", p.rtt_max_ms),
            ("jitterMs", p.jitter_ms),
        ] {
            if let Some(v) = v {
                check_rate(v, || at(name))?;
            }
        }
    }
    for (i, r) in batch.scans.iter().enumerate() {
        check_scan_report(r, now_ms, &|name: &str| format!("scans[{i}].{name}"))?;
    }
    Ok(())
}

/// A discovery report: its bounds (hosts, tables, texts) and that progress adds up.
fn check_scan_report(
    r: &ScanReport,
    now_ms: i64,
    at: &dyn Fn(&str) -> String,
) -> Result<(), Rejection> {
    check_time(r.t, now_ms, || at("t"))?;
    check_text(&r.scan, MAX_NAME_LEN, || at("scan"))?;
    if r.scanned > r.total {
        return Err(bad(
            "count",
            at("scanned"),
            format!("{} addresses scanned of {}", r.scanned, r.total),
        ));
    }
    if r.hosts.len() > MAX_HOSTS_PER_REPORT {
        return Err(Rejection::too_large(
            "too_many_items",
            at("hosts"),
            format!(
                "{} hosts in one report; at most {MAX_HOSTS_PER_REPORT}",
                r.hosts.len()
            ),
        ));
    }
    for (j, h) in r.hosts.iter().enumerate() {
        let host = |name: &str| at(&format!("hosts[{j}].{name}"));
        if let Some(rtt) = h.rtt_ms {
            check_rate(rtt, || host("rttMs"))?;
        }
        let Some(f) = &h.snmp else { continue };
        for (name, text) in [
            ("snmp.sysName", &f.sys_name),
            ("snmp.sysDescr", &f.sys_descr),
            ("snmp.sysObjectId", &f.sys_object_id),
            ("snmp.sysLocation", &f.sys_location),
        ] {
            if text.len() > MAX_TEXT_LEN * 4 {
                return Err(bad(
                    "text",
                    host(name),
                    format!("must have at most {} bytes", MAX_TEXT_LEN * 4),
                ));
            }
        }
        for (name, n) in [
            ("snmp.addresses", f.addresses.len()),
            ("snmp.interfaces", f.interfaces.len()),
            ("snmp.neighbours", f.neighbours.len()),
        ] {
            if n > MAX_TABLE_ROWS {
                return Err(Rejection::too_large(
                    "too_many_items",
                    host(name),
                    format!("{n} rows; at most {MAX_TABLE_ROWS}"),
                ));
            }
        }
    }
    Ok(())
}

/// Every device the batch names must be a Device of the collector's namespace.
pub fn check_devices(
    batch: &CollectorBatch,
    devices: &HashMap<String, DeviceRef>,
    namespace: &str,
) -> Result<(), Rejection> {
    let unknown = |field: String, name: &str| {
        bad(
            "unknown_device",
            field,
            format!("no Device {name:?} in namespace {namespace:?}"),
        )
    };
    if let Some((i, s)) = batch
        .interfaces
        .iter()
        .enumerate()
        .find(|(_, s)| !devices.contains_key(&s.device))
    {
        return Err(unknown(format!("interfaces[{i}].device"), &s.device));
    }
    if let Some((i, p)) = batch
        .probes
        .iter()
        .enumerate()
        .find(|(_, p)| !devices.contains_key(&p.device))
    {
        return Err(unknown(format!("probes[{i}].device"), &p.device));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use cdot_crds::wire::collector::{FlowCount, FlowGroup, InterfaceSample, ProbeResult};
    use uuid::Uuid;

    use super::*;

    const NOW: i64 = 1_764_000_000_000; // a whole minute

    fn good() -> CollectorBatch {
        CollectorBatch {
            batch_id: Uuid::nil(),
            collector_version: "0.1.0".into(),
            scans: Vec::new(),
            interval_secs: Some(10),
            flows: vec![FlowGroup {
                minute_ms: NOW - MINUTE_MS,
                exporter: "10.0.0.1".parse().expect("ip"),
                in_if: 1,
                out_if: 2,
                top: vec![FlowCount {
                    src: "192.0.2.1".parse().expect("ip"),
                    dst: "192.0.2.2".parse().expect("ip"),
                    proto: 6,
                    sp: 443,
                    dp: 50000,
                    b: 1000,
                    p: 2,
                    f: 1,
                }],
                hosts: Vec::new(),
                other: Counts { b: 10, p: 1, f: 1 },
            }],
            interfaces: vec![InterfaceSample {
                t: NOW,
                device: "core-sw".into(),
                if_index: 1,
                name: "ge-0/0/1".into(),
                alias: String::new(),
                oper_status: 1,
                speed_bps: 1_000_000_000,
                interval_ms: 60_000,
                in_bps: 1.0,
                out_bps: 2.0,
                in_pps: 0.0,
                out_pps: 0.0,
                in_errors: 0,
                out_errors: 0,
                in_discards: 0,
                out_discards: 0,
            }],
            probes: vec![ProbeResult {
                t: NOW,
                device: "core-sw".into(),
                probe: "gw".into(),
                target: "192.0.2.254".into(),
                sent: 5,
                received: 4,
                rtt_min_ms: Some(1.0),
                rtt_avg_ms: Some(2.0),
                rtt_max_ms: Some(3.0),
                jitter_ms: Some(0.5),
            }],
        }
    }

    fn field(batch: &CollectorBatch) -> (String, &'static str) {
        let r = validate_batch(batch, NOW).expect_err("refused");
        (r.field, r.reason)
    }

    #[test]
    fn each_rule_names_the_offending_field() {
        validate_batch(&good(), NOW).expect("valid");
        type Change = Box<dyn Fn(&mut CollectorBatch)>;
        let cases: Vec<(Change, &str, &str)> = vec![
            (
                Box::new(|b: &mut CollectorBatch| b.flows[0].minute_ms += 1),
                "flows[0].minuteMs",
                "minute",
            ),
            (
                Box::new(|b: &mut CollectorBatch| b.flows[0].minute_ms = NOW + 10 * MINUTE_MS),
                "flows[0].minuteMs",
                "timestamp",
            ),
            (
                Box::new(|b: &mut CollectorBatch| {
                    b.flows[0].exporter = "0.0.0.0".parse().expect("ip")
                }),
                "flows[0].exporter",
                "exporter",
            ),
            (
                Box::new(|b: &mut CollectorBatch| b.flows[0].top[0].b = u64::MAX),
                "flows[0].top[0].b",
                "count",
            ),
            (
                Box::new(|b: &mut CollectorBatch| b.flows[0].other.p = u64::MAX),
                "flows[0].other.p",
                "count",
            ),
            (
                Box::new(|b: &mut CollectorBatch| b.interfaces[0].t = NOW - MAX_SAMPLE_AGE_MS - 1),
                "interfaces[0].t",
                "timestamp",
            ),
            (
                Box::new(|b: &mut CollectorBatch| b.interfaces[0].in_bps = f64::NAN),
                "interfaces[0].inBps",
                "rate",
            ),
            (
                Box::new(|b: &mut CollectorBatch| b.interfaces[0].out_pps = -1.0),
                "interfaces[0].outPps",
                "rate",
            ),
            (
                Box::new(|b: &mut CollectorBatch| b.interfaces[0].interval_ms = 0),
                "interfaces[0].intervalMs",
                "interval",
            ),
            (
                Box::new(|b: &mut CollectorBatch| b.interfaces[0].name.clear()),
                "interfaces[0].name",
                "text",
            ),
            (
                Box::new(|b: &mut CollectorBatch| b.probes[0].received = 6),
                "probes[0].received",
                "count",
            ),
            (
                Box::new(|b: &mut CollectorBatch| b.probes[0].rtt_avg_ms = Some(f64::INFINITY)),
                "probes[0].rttAvgMs",
                "rate",
            ),
            (
                Box::new(|b: &mut CollectorBatch| b.probes[0].device.clear()),
                "probes[0].device",
                "text",
            ),
            (
                Box::new(|b: &mut CollectorBatch| b.collector_version.clear()),
                "collectorVersion",
                "text",
            ),
        ];
        for (change, want_field, want_reason) in cases {
            let mut b = good();
            change(&mut b);
            assert_eq!(field(&b), (want_field.to_owned(), want_reason));
        }
        let mut b = good();
        b.interfaces = vec![good().interfaces[0].clone(); MAX_ITEMS_PER_BATCH + 1];
        let r = validate_batch(&b, NOW).expect_err("refused");
        assert_eq!(r.problem, super::super::error::Problem::TooLarge);
        assert_eq!(r.field, "interfaces");
    }

    #[test]
    fn unknown_devices_are_named_by_their_field() {
        let b = good();
        let r = check_devices(&b, &HashMap::new(), "acme").expect_err("refused");
        assert_eq!(r.field, "interfaces[0].device");
        let devices = HashMap::from([(
            "core-sw".to_owned(),
            DeviceRef {
                uid: Uuid::nil(),
                name: "core-sw".into(),
                site: None,
            },
        )]);
        check_devices(&b, &devices, "acme").expect("known");
    }
}
