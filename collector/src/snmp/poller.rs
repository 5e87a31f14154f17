//! Polling one device: read sysUpTime and the interface tables, pick the interfaces the
//! target asks for, and turn counter deltas since the previous poll into samples.
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use cdot_crds::wire::collector::{InterfaceSample, SnmpTarget};
use regex::Regex;
use tracing::debug;

use super::{
    counters::{self, CounterSet, CounterWidth, NoRate},
    error::{Agent, SnmpError},
    metrics::SnmpMetrics,
    oids::{self, dotted},
    session::{Request, Session, SnmpValue},
    walk::{Row, index_columns, walk_columns},
};
use crate::unix_ms;

/// ifOperStatus up(1).
const OPER_UP: u8 = 1;

/// Columns read at every poll: names, speeds, status, 64-bit counters, errors and discards
/// (in the order of the `C_*` positions below).
const MAIN_COLUMNS: [&[u64]; 14] = [
    oids::IF_DESCR,
    oids::IF_SPEED,
    oids::IF_OPER_STATUS,
    oids::IF_IN_DISCARDS,
    oids::IF_IN_ERRORS,
    oids::IF_OUT_DISCARDS,
    oids::IF_OUT_ERRORS,
    oids::IF_NAME,
    oids::IF_ALIAS,
    oids::IF_HIGH_SPEED,
    oids::IF_HC_IN_OCTETS,
    oids::IF_HC_IN_UCAST_PKTS,
    oids::IF_HC_OUT_OCTETS,
    oids::IF_HC_OUT_UCAST_PKTS,
];

const C_DESCR: usize = 0;
const C_SPEED: usize = 1;
const C_OPER_STATUS: usize = 2;
const C_IN_DISCARDS: usize = 3;
const C_IN_ERRORS: usize = 4;
const C_OUT_DISCARDS: usize = 5;
const C_OUT_ERRORS: usize = 6;
const C_NAME: usize = 7;
const C_ALIAS: usize = 8;
const C_HIGH_SPEED: usize = 9;
const C_HC_IN_OCTETS: usize = 10;
const C_HC_IN_UCAST_PKTS: usize = 11;
const C_HC_OUT_OCTETS: usize = 12;
const C_HC_OUT_UCAST_PKTS: usize = 13;

/// 32-bit traffic counters, read only for interfaces without 64-bit ones.
const COUNTER32_COLUMNS: [&[u64]; 4] = [
    oids::IF_IN_OCTETS,
    oids::IF_IN_UCAST_PKTS,
    oids::IF_OUT_OCTETS,
    oids::IF_OUT_UCAST_PKTS,
];

/// One read of a device: its uptime and the selected interfaces.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// When the read finished (monotonic), for the interval to the next one.
    pub at: Instant,
    /// The same moment, Unix milliseconds.
    pub time_ms: i64,
    /// sysUpTime.0 in hundredths of a second.
    pub uptime_ticks: u32,
    /// Selected interfaces by ifIndex.
    pub interfaces: Vec<InterfaceRow>,
}

/// One interface as read.
#[derive(Clone, Debug, PartialEq)]
pub struct InterfaceRow {
    pub if_index: u32,
    /// ifName (ifDescr when the agent has no ifName).
    pub name: String,
    pub descr: String,
    pub alias: String,
    pub oper_status: u8,
    /// ifHighSpeed × 10⁶ when the agent has it, else ifSpeed; 0 unknown.
    pub speed_bps: u64,
    /// `None` when the agent has neither 64-bit nor 32-bit traffic counters for it.
    pub counters: Option<CounterSet>,
}

/// The previous poll, the base of the next rates.
struct Previous {
    at: Instant,
    uptime_ticks: u32,
    /// By ifIndex: the interface's name (an index taken over by another interface
    /// starts over) and counters.
    interfaces: HashMap<u32, (String, CounterSet)>,
}

/// Polls one [`SnmpTarget`] and keeps the previous counters of its interfaces.
pub struct Poller {
    target: SnmpTarget,
    filters: Vec<Regex>,
    session: Session,
    metrics: SnmpMetrics,
    previous: Option<Previous>,
}

impl Poller {
    /// A poller for `target`; fails on an invalid interface filter or credentials that do
    /// not fit the SNMP version. Nothing is sent yet.
    pub fn new(target: SnmpTarget, metrics: SnmpMetrics) -> Result<Self, SnmpError> {
        let agent = Arc::new(Agent {
            name: format!("device {}", target.device),
            address: target.address.clone(),
            port: target.port,
        });
        let filters = target
            .interfaces
            .iter()
            .map(|pattern| {
                Regex::new(pattern).map_err(|source| SnmpError::InvalidFilter {
                    agent: agent.clone(),
                    pattern: pattern.clone(),
                    source: Box::new(source),
                })
            })
            .collect::<Result<_, _>>()?;
        let session = Session::new(&target, agent, metrics.timeouts.clone())?;
        Ok(Self {
            target,
            filters,
            session,
            metrics,
            previous: None,
        })
    }

    /// Reads sysUpTime.0 and the selected interfaces' rows, without touching the previous
    /// poll's counters.
    pub async fn read(&mut self) -> Result<Snapshot, SnmpError> {
        let uptime_ticks = self.uptime().await?;
        let main = walk_columns(&mut self.session, &MAIN_COLUMNS).await?;
        let mut rows = interface_rows(&main, &self.filters);
        let missing_64 = rows.values().any(|(_, row)| row.counters.is_none());
        if missing_64 {
            let counter32 = walk_columns(&mut self.session, &COUNTER32_COLUMNS).await?;
            add_counter32(&mut rows, &counter32);
        }
        Ok(Snapshot {
            at: Instant::now(),
            time_ms: unix_ms(),
            uptime_ticks,
            interfaces: rows.into_values().map(|(_, row)| row).collect(),
        })
    }

    /// Polls once and returns a sample per selected interface with rates since the previous
    /// poll: none on the first poll, after an agent restart, or for an interface whose
    /// counters were reset (each counted in `cdot_collector_snmp_intervals_skipped_total`).
    pub async fn poll(&mut self) -> Result<Vec<InterfaceSample>, SnmpError> {
        let snapshot = self.read().await?;
        let samples = match &self.previous {
            Some(previous) => self.samples(previous, &snapshot),
            None => Vec::new(),
        };
        self.previous = Some(Previous {
            at: snapshot.at,
            uptime_ticks: snapshot.uptime_ticks,
            interfaces: snapshot
                .interfaces
                .iter()
                .filter_map(|row| Some((row.if_index, (row.name.clone(), row.counters?))))
                .collect(),
        });
        Ok(samples)
    }

    fn samples(&self, previous: &Previous, snapshot: &Snapshot) -> Vec<InterfaceSample> {
        let elapsed = snapshot.at.saturating_duration_since(previous.at);
        let device = &self.target.device;
        if counters::agent_restarted(previous.uptime_ticks, snapshot.uptime_ticks, elapsed) {
            debug!(%device, "agent restarted since the previous poll: no rates this interval");
            self.skip(NoRate::AgentRestarted);
            return Vec::new();
        }
        // Rates over the whole milliseconds reported, so that rate × interval_ms gives
        // back the counter delta.
        let interval_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let interval = Duration::from_millis(interval_ms);
        let mut samples = Vec::with_capacity(snapshot.interfaces.len());
        for row in &snapshot.interfaces {
            let Some(current) = row.counters else {
                continue;
            };
            let Some((name, before)) = previous.interfaces.get(&row.if_index) else {
                continue;
            };
            if *name != row.name {
                continue;
            }
            match counters::rates(before, &current, interval, row.speed_bps) {
                Ok(rates) => samples.push(InterfaceSample {
                    t: snapshot.time_ms,
                    device: device.clone(),
                    if_index: row.if_index,
                    name: row.name.clone(),
                    alias: row.alias.clone(),
                    oper_status: row.oper_status,
                    speed_bps: row.speed_bps,
                    interval_ms,
                    in_bps: rates.in_bps,
                    out_bps: rates.out_bps,
                    in_pps: rates.in_pps,
                    out_pps: rates.out_pps,
                    in_errors: rates.in_errors,
                    out_errors: rates.out_errors,
                    in_discards: rates.in_discards,
                    out_discards: rates.out_discards,
                }),
                Err(reason) => {
                    debug!(%device, interface = %row.name, %reason, "no rates this interval");
                    self.skip(reason);
                }
            }
        }
        self.metrics.samples.inc_by(samples.len() as u64);
        samples
    }

    fn skip(&self, reason: NoRate) {
        self.metrics.skipped(reason.label()).inc();
    }

    async fn uptime(&mut self) -> Result<u32, SnmpError> {
        let request = Request::Get(&[oids::SYS_UPTIME]);
        let response = self.session.request(request).await?;
        let agent = self.session.agent();
        let value = response
            .varbinds
            .into_iter()
            .find(|vb| vb.oid == oids::SYS_UPTIME)
            .map(|vb| vb.value);
        match value {
            Some(SnmpValue::Timeticks(ticks)) if response.error_status == 0 => Ok(ticks),
            other => Err(SnmpError::UnexpectedValue {
                agent: agent.clone(),
                oid: dotted(oids::SYS_UPTIME),
                expected: "TimeTicks",
                found: match other {
                    Some(value) => value.type_name().to_owned(),
                    None if response.error_status != 0 => {
                        format!("error status {}", response.error_status)
                    }
                    None => "missing".to_owned(),
                },
            }),
        }
    }
}

/// Interfaces by ifIndex from the main columns, keeping the selected ones; each with its
/// errors and discards, for 32-bit counters to be added to.
fn interface_rows(
    main: &[Vec<Row>],
    filters: &[Regex],
) -> BTreeMap<u32, (ErrorCounters, InterfaceRow)> {
    let by_index = index_columns(main);
    let mut rows = BTreeMap::new();
    for (if_index, values) in by_index {
        let text = |c: usize| values[c].and_then(SnmpValue::as_text).unwrap_or_default();
        let number = |c: usize| values[c].and_then(SnmpValue::as_u64);
        let descr = text(C_DESCR);
        let if_name = text(C_NAME);
        let name = if if_name.is_empty() {
            descr.clone()
        } else {
            if_name
        };
        let oper_status = number(C_OPER_STATUS)
            .and_then(|v| u8::try_from(v).ok())
            .unwrap_or(0);
        if !selected(filters, &name, &descr, oper_status) {
            continue;
        }
        let speed_bps = match number(C_HIGH_SPEED) {
            Some(mbps) if mbps > 0 => mbps.saturating_mul(1_000_000),
            _ => number(C_SPEED).unwrap_or(0),
        };
        let counter32 = |c: usize| number(c).and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
        let counters = match (
            number(C_HC_IN_OCTETS),
            number(C_HC_IN_UCAST_PKTS),
            number(C_HC_OUT_OCTETS),
            number(C_HC_OUT_UCAST_PKTS),
        ) {
            (Some(in_octets), Some(in_pkts), Some(out_octets), Some(out_pkts)) => {
                Some(CounterSet {
                    width: CounterWidth::Bits64,
                    packet_width: CounterWidth::Bits64,
                    in_octets,
                    out_octets,
                    in_ucast_pkts: in_pkts,
                    out_ucast_pkts: out_pkts,
                    in_discards: counter32(C_IN_DISCARDS),
                    in_errors: counter32(C_IN_ERRORS),
                    out_discards: counter32(C_OUT_DISCARDS),
                    out_errors: counter32(C_OUT_ERRORS),
                })
            }
            _ => None,
        };
        let row = InterfaceRow {
            if_index,
            name,
            descr,
            alias: text(C_ALIAS),
            oper_status,
            speed_bps,
            counters,
        };
        let errors = [
            counter32(C_IN_DISCARDS),
            counter32(C_IN_ERRORS),
            counter32(C_OUT_DISCARDS),
            counter32(C_OUT_ERRORS),
        ];
        rows.insert(if_index, (errors, row));
    }
    rows
}

/// With no filter, every interface that is up; else those whose ifName or ifDescr
/// matches one of the target's expressions, whatever their status.
fn selected(filters: &[Regex], name: &str, descr: &str, oper_status: u8) -> bool {
    if filters.is_empty() {
        return oper_status == OPER_UP;
    }
    filters
        .iter()
        .any(|re| re.is_match(name) || re.is_match(descr))
}

/// in/out errors and discards of a row, as read with the main columns.
type ErrorCounters = [u32; 4];

/// Gives the rows without 64-bit counters the ifTable's 32-bit ones.
fn add_counter32(rows: &mut BTreeMap<u32, (ErrorCounters, InterfaceRow)>, counter32: &[Vec<Row>]) {
    let by_index = index_columns(counter32);
    for (if_index, (errors, row)) in rows.iter_mut() {
        if row.counters.is_some() {
            continue;
        }
        let Some(values) = by_index.get(if_index) else {
            continue;
        };
        let number = |c: usize| values[c].and_then(SnmpValue::as_u64);
        if let (Some(in_octets), Some(in_pkts), Some(out_octets), Some(out_pkts)) =
            (number(0), number(1), number(2), number(3))
        {
            let [in_discards, in_errors, out_discards, out_errors] = *errors;
            row.counters = Some(CounterSet {
                width: CounterWidth::Bits32,
                packet_width: CounterWidth::Bits32,
                in_octets,
                out_octets,
                in_ucast_pkts: in_pkts,
                out_ucast_pkts: out_pkts,
                in_errors,
                out_errors,
                in_discards,
                out_discards,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> SnmpValue {
        SnmpValue::OctetString(s.as_bytes().to_vec())
    }

    /// Main columns for interfaces (ifIndex, ifDescr, ifName, oper status, HC in octets).
    fn main_columns(interfaces: &[(u64, &str, &str, i64, Option<u64>)]) -> Vec<Vec<Row>> {
        let mut columns = vec![Vec::new(); MAIN_COLUMNS.len()];
        for &(index, descr, name, oper, hc) in interfaces {
            let mut put = |c: usize, value: SnmpValue| columns[c].push((vec![index], value));
            put(C_DESCR, text(descr));
            put(C_SPEED, SnmpValue::Unsigned32(u32::MAX));
            put(C_OPER_STATUS, SnmpValue::Integer(oper));
            put(C_IN_DISCARDS, SnmpValue::Counter32(1));
            put(C_IN_ERRORS, SnmpValue::Counter32(2));
            put(C_OUT_DISCARDS, SnmpValue::Counter32(3));
            put(C_OUT_ERRORS, SnmpValue::Counter32(4));
            put(C_NAME, text(name));
            put(C_ALIAS, text("uplink"));
            put(C_HIGH_SPEED, SnmpValue::Unsigned32(10_000));
            if let Some(hc) = hc {
                put(C_HC_IN_OCTETS, SnmpValue::Counter64(hc));
                put(C_HC_IN_UCAST_PKTS, SnmpValue::Counter64(hc / 100));
                put(C_HC_OUT_OCTETS, SnmpValue::Counter64(hc * 2));
                put(C_HC_OUT_UCAST_PKTS, SnmpValue::Counter64(hc / 50));
            }
        }
        columns
    }

    fn regexes(patterns: &[&str]) -> Vec<Regex> {
        patterns
            .iter()
            .map(|p| Regex::new(p).expect("regex"))
            .collect()
    }

    #[test]
    fn without_filters_every_interface_that_is_up() {
        let main = main_columns(&[
            (1, "lo", "lo", 1, Some(10)),
            (2, "eth0", "eth0", 2, Some(20)),
            (3, "eth1", "", 1, Some(30)),
        ]);
        let rows = interface_rows(&main, &[]);
        let names: Vec<_> = rows.values().map(|(_, r)| r.name.as_str()).collect();
        // eth0 is down; eth1 has no ifName, so its ifDescr names it.
        assert_eq!(names, ["lo", "eth1"]);
        let (errors, eth1) = &rows[&3];
        assert_eq!(*errors, [1, 2, 3, 4]);
        assert_eq!(
            eth1.speed_bps, 10_000_000_000,
            "ifHighSpeed wins over a saturated ifSpeed"
        );
        assert_eq!(eth1.alias, "uplink");
        let counters = eth1.counters.expect("64-bit counters");
        assert_eq!(counters.width, CounterWidth::Bits64);
        assert_eq!((counters.in_octets, counters.out_octets), (30, 60));
        assert_eq!((counters.in_errors, counters.out_discards), (2, 3));
    }

    #[test]
    fn filters_match_name_or_description_whatever_the_status() {
        let main = main_columns(&[
            (1, "lo", "lo", 1, Some(10)),
            (2, "GigabitEthernet0/1", "Gi0/1", 2, Some(20)),
            (3, "GigabitEthernet0/2", "Gi0/2", 1, Some(30)),
        ]);
        let rows = interface_rows(&main, &regexes(&["^Gi0/1$", "Ethernet0/2"]));
        assert_eq!(rows.keys().copied().collect::<Vec<_>>(), [2, 3]);
        assert!(interface_rows(&main, &regexes(&["^nothing$"])).is_empty());
    }

    #[test]
    fn rows_without_64_bit_counters_take_the_32_bit_ones() {
        let main = main_columns(&[
            (1, "eth0", "eth0", 1, None),
            (2, "eth1", "eth1", 1, Some(5)),
        ]);
        let mut rows = interface_rows(&main, &[]);
        assert!(rows[&1].1.counters.is_none());
        let counter32: Vec<Vec<Row>> = [100, 7, 200, 9]
            .into_iter()
            .map(|v| {
                vec![
                    (vec![1], SnmpValue::Counter32(v)),
                    (vec![2], SnmpValue::Counter32(1)),
                ]
            })
            .collect();
        add_counter32(&mut rows, &counter32);
        let eth0 = rows[&1].1.counters.expect("32-bit counters");
        assert_eq!(eth0.width, CounterWidth::Bits32);
        assert_eq!(
            (
                eth0.in_octets,
                eth0.in_ucast_pkts,
                eth0.out_octets,
                eth0.out_ucast_pkts
            ),
            (100, 7, 200, 9)
        );
        assert_eq!((eth0.in_discards, eth0.out_errors), (1, 4));
        assert_eq!(
            rows[&2].1.counters.map(|c| c.width),
            Some(CounterWidth::Bits64)
        );
    }

    #[test]
    fn odd_indexes_and_types_are_ignored_not_fatal() {
        let mut main = main_columns(&[(1, "eth0", "eth0", 1, Some(10))]);
        // A two-arc index, an index beyond u32, and a string where a counter belongs.
        main[C_DESCR].push((vec![2, 1], text("x")));
        main[C_DESCR].push((vec![1 << 40], text("y")));
        main[C_HC_IN_OCTETS][0].1 = text("not a number");
        let rows = interface_rows(&main, &[]);
        assert_eq!(rows.len(), 1);
        assert!(rows[&1].1.counters.is_none());
    }
}
