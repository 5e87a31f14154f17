//! sFlow counter samples as interface samples: consecutive generic interface counter
//! records of one agent's interface become [`InterfaceSample`] rows, with rates over the
//! agent's own counter interval and the counter arithmetic of SNMP polling
//! ([`crate::snmp::counters`]: 32-bit wraps, 64-bit resets, agent restarts).
//!
//! **Which Device.** An interface sample names a Device, so the sFlow agent address is
//! matched against the addresses the assignments carry (`devices`, and the SNMP targets);
//! host names are not resolved. Counters of an agent that matches no Device are dropped and
//! counted (`reason="unknown_agent"`): an unmanaged switch is not an error.
//!
//! **SNMP first.** A Device this collector polls over SNMP gets its interface samples from
//! SNMP only, and its sFlow counters are dropped and counted (`reason="snmp_polled"`): SNMP
//! carries ifName/ifAlias and honours the Device's interface filter, and two sources for one
//! interface would store every interval twice.
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    time::Duration,
};

use cdot_crds::wire::collector::{InterfaceSample, SiteDevice, SnmpTarget};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use super::{FlowMetrics, sflow::InterfaceCounters};
use crate::snmp::counters::{self, CounterSet, CounterWidth, NoRate};

/// Interfaces whose last counters are kept; samples of further interfaces are dropped
/// (spoofed ifIndexes must not grow memory without bound).
pub const MAX_INTERFACES: usize = 100_000;
/// An interface silent for this long is forgotten (agents send every 20–30 s).
const FORGET_AFTER_MS: i64 = 10 * 60 * 1000;
/// sysUpTime ticks are hundredths of a second; sFlow uptimes are milliseconds.
const MS_PER_TICK: u32 = 10;

/// Why a counter sample yields no interface sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unused {
    /// The agent address matches no assigned Device.
    UnknownAgent,
    /// The Device is polled over SNMP, which wins.
    SnmpPolled,
    /// The first sample of an interface: the base of the next one's rates.
    Baseline,
    /// Not newer than the last sample of the interface (repeated or reordered).
    Stale,
    /// [`MAX_INTERFACES`] interfaces are tracked already.
    InterfaceLimit,
    /// The interval has no honest rate (agent restart, counter reset, ...).
    NoRate(NoRate),
}

impl Unused {
    /// Short label for the `reason` of `cdot_collector_flow_counter_samples_unused_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::UnknownAgent => "unknown_agent",
            Self::SnmpPolled => "snmp_polled",
            Self::Baseline => "baseline",
            Self::Stale => "stale",
            Self::InterfaceLimit => "interface_limit",
            Self::NoRate(reason) => reason.label(),
        }
    }
}

/// Which Device an sFlow agent address belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attribution {
    devices: HashMap<IpAddr, String>,
    snmp_polled: HashSet<String>,
}

impl Attribution {
    /// From the assignments' devices and SNMP targets.
    pub fn new(devices: &[SiteDevice], snmp: &[SnmpTarget]) -> Self {
        let mut out = Self::default();
        let addresses = devices
            .iter()
            .flat_map(|d| d.addresses.iter().map(move |a| (a, &d.device)))
            .chain(snmp.iter().map(|t| (&t.address, &t.device)));
        for (address, device) in addresses {
            if let Ok(ip) = address.parse::<IpAddr>() {
                // The first Device listing an address keeps it.
                out.devices
                    .entry(ip.to_canonical())
                    .or_insert_with(|| device.clone());
            }
        }
        out.snmp_polled = snmp.iter().map(|t| t.device.clone()).collect();
        out
    }

    /// The Device of `agent`, or why there is none to use.
    pub fn device(&self, agent: IpAddr) -> Result<&str, Unused> {
        let device = self
            .devices
            .get(&agent.to_canonical())
            .ok_or(Unused::UnknownAgent)?;
        if self.snmp_polled.contains(device) {
            return Err(Unused::SnmpPolled);
        }
        Ok(device)
    }
}

/// Last counters of one interface.
#[derive(Clone, Copy, Debug)]
struct Last {
    received_ms: i64,
    uptime_ms: u32,
    sequence: u32,
    counters: CounterSet,
}

/// Turns consecutive counter samples of each (agent, sub-agent, ifIndex) into rates.
#[derive(Debug, Default)]
pub struct CounterRates {
    last: HashMap<(IpAddr, u32, u32), Last>,
}

impl CounterRates {
    /// Interfaces tracked.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }

    /// The interface sample of `device` that `c` completes, or why there is none.
    pub fn sample(
        &mut self,
        device: &str,
        c: &InterfaceCounters,
    ) -> Result<InterfaceSample, Unused> {
        let key = (c.agent, c.sub_agent_id, c.if_index);
        let current = Last {
            received_ms: c.received_ms,
            uptime_ms: c.uptime_ms,
            sequence: c.sequence,
            counters: CounterSet {
                // sFlow's octets are 64-bit, its packet counters 32-bit.
                width: CounterWidth::Bits64,
                packet_width: CounterWidth::Bits32,
                in_octets: c.in_octets,
                out_octets: c.out_octets,
                in_ucast_pkts: u64::from(c.in_ucast_pkts),
                out_ucast_pkts: u64::from(c.out_ucast_pkts),
                in_errors: c.in_errors,
                out_errors: c.out_errors,
                in_discards: c.in_discards,
                out_discards: c.out_discards,
            },
        };
        let Some(previous) = self.last.get_mut(&key) else {
            if self.last.len() >= MAX_INTERFACES {
                return Err(Unused::InterfaceLimit);
            }
            self.last.insert(key, current);
            return Err(Unused::Baseline);
        };
        let elapsed = Duration::from_millis(
            u64::try_from(c.received_ms.saturating_sub(previous.received_ms)).unwrap_or(0),
        );
        if counters::agent_restarted(
            previous.uptime_ms / MS_PER_TICK,
            c.uptime_ms / MS_PER_TICK,
            elapsed,
        ) {
            *previous = current;
            return Err(Unused::NoRate(NoRate::AgentRestarted));
        }
        // A reordered sample looks like a restart above and costs one interval; counter
        // samples of one interface are 20-30 s apart, so that is rare. Sequence numbers
        // wrap: "newer" is ahead by less than half the space.
        if (c.sequence.wrapping_sub(previous.sequence) as i32) <= 0 {
            return Err(Unused::Stale);
        }
        let before = std::mem::replace(previous, current);
        // The agent's clock spaces its counter readings; arrival times add network jitter.
        let interval_ms = u64::from(c.uptime_ms.saturating_sub(before.uptime_ms));
        let rates = counters::rates(
            &before.counters,
            &current.counters,
            Duration::from_millis(interval_ms),
            c.speed_bps,
        )
        .map_err(Unused::NoRate)?;
        Ok(InterfaceSample {
            t: c.received_ms,
            device: device.to_owned(),
            if_index: c.if_index,
            // sFlow carries no interface names.
            name: format!("ifIndex {}", c.if_index),
            alias: String::new(),
            // ifOperStatus: bit 1 of the sFlow status is "operationally up".
            oper_status: if c.status & 2 != 0 { 1 } else { 2 },
            speed_bps: c.speed_bps,
            interval_ms,
            in_bps: rates.in_bps,
            out_bps: rates.out_bps,
            in_pps: rates.in_pps,
            out_pps: rates.out_pps,
            in_errors: rates.in_errors,
            out_errors: rates.out_errors,
            in_discards: rates.in_discards,
            out_discards: rates.out_discards,
        })
    }

    /// Forgets interfaces not heard from since `FORGET_AFTER_MS` before `now_ms`.
    pub fn forget_silent(&mut self, now_ms: i64) {
        self.last
            .retain(|_, last| now_ms - last.received_ms < FORGET_AFTER_MS);
    }
}

/// Attributes and converts a batch of counter samples, counting what is not used.
pub fn convert(
    attribution: &Attribution,
    rates: &mut CounterRates,
    batch: &[InterfaceCounters],
    metrics: &FlowMetrics,
) -> Vec<InterfaceSample> {
    let mut samples = Vec::new();
    for c in batch {
        match attribution
            .device(c.agent)
            .and_then(|device| rates.sample(device, c))
        {
            Ok(sample) => samples.push(sample),
            Err(unused) => {
                tracing::trace!(agent = %c.agent, if_index = c.if_index, reason = unused.label(), "sFlow counter sample unused");
                metrics.counter_sample_unused(unused.label()).inc();
            }
        }
    }
    metrics.interface_samples.inc_by(samples.len() as u64);
    samples
}

/// Starts the task that turns the sFlow receiver's counter samples into interface samples
/// for `sink`, attributed with the latest `devices` and `snmp` assignments. It ends when
/// `counters` closes (the receivers stopped) or `sink` does.
pub fn spawn(
    mut counters: mpsc::Receiver<Vec<InterfaceCounters>>,
    mut devices: watch::Receiver<Vec<SiteDevice>>,
    mut snmp: watch::Receiver<Vec<SnmpTarget>>,
    sink: mpsc::Sender<Vec<InterfaceSample>>,
    metrics: FlowMetrics,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut rates = CounterRates::default();
        let mut attribution =
            Attribution::new(&devices.borrow_and_update(), &snmp.borrow_and_update());
        while let Some(batch) = counters.recv().await {
            // Rebuilt only when the assignments changed (they are fetched every minute).
            if devices.has_changed().unwrap_or(false) || snmp.has_changed().unwrap_or(false) {
                attribution =
                    Attribution::new(&devices.borrow_and_update(), &snmp.borrow_and_update());
            }
            if let Some(newest) = batch.iter().map(|c| c.received_ms).max() {
                rates.forget_silent(newest);
            }
            let samples = convert(&attribution, &mut rates, &batch, &metrics);
            if !samples.is_empty() && sink.send(samples).await.is_err() {
                break;
            }
        }
        tracing::debug!("sFlow interface counters stopped");
    })
}

#[cfg(test)]
mod tests {
    use cdot_crds::{
        device::SnmpVersion,
        wire::collector::{SnmpCredentials, SnmpTarget},
    };

    use super::*;

    const AGENT: [u8; 4] = [192, 0, 2, 9];

    fn counters(received_ms: i64, uptime_ms: u32, sequence: u32, octets: u64) -> InterfaceCounters {
        InterfaceCounters {
            received_ms,
            agent: IpAddr::from(AGENT),
            sub_agent_id: 0,
            uptime_ms,
            sequence,
            if_index: 3,
            if_type: 6,
            speed_bps: 1_000_000_000,
            direction: 1,
            status: 3,
            in_octets: octets,
            in_ucast_pkts: 10,
            in_multicast_pkts: 0,
            in_broadcast_pkts: 0,
            in_discards: 0,
            in_errors: 1,
            in_unknown_protos: 0,
            out_octets: octets / 2,
            out_ucast_pkts: 5,
            out_multicast_pkts: 0,
            out_broadcast_pkts: 0,
            out_discards: 0,
            out_errors: 0,
            promiscuous: 0,
        }
    }

    fn snmp(device: &str, address: &str) -> SnmpTarget {
        SnmpTarget {
            device: device.into(),
            address: address.into(),
            port: 161,
            version: SnmpVersion::V2c,
            credentials: SnmpCredentials::Community {
                community: "public".into(),
            },
            poll_interval_secs: 60,
            timeout_ms: 1000,
            retries: 1,
            interfaces: Vec::new(),
        }
    }

    fn site(device: &str, addresses: &[&str]) -> SiteDevice {
        SiteDevice {
            device: device.into(),
            addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    #[test]
    fn agents_map_to_devices_by_address_and_snmp_wins() {
        let attribution = Attribution::new(
            &[
                site("sw-1", &["sw-1.lan", "192.0.2.9"]),
                site("rtr-1", &["192.0.2.1"]),
            ],
            &[snmp("rtr-1", "192.0.2.1"), snmp("fw-1", "192.0.2.3")],
        );
        assert_eq!(attribution.device(IpAddr::from(AGENT)), Ok("sw-1"));
        let mapped: IpAddr = "::ffff:192.0.2.9".parse().expect("ip");
        assert_eq!(attribution.device(mapped), Ok("sw-1"));
        assert_eq!(
            attribution.device(IpAddr::from([192, 0, 2, 1])),
            Err(Unused::SnmpPolled)
        );
        assert_eq!(
            attribution.device(IpAddr::from([192, 0, 2, 3])),
            Err(Unused::SnmpPolled)
        );
        assert_eq!(
            attribution.device(IpAddr::from([198, 51, 100, 1])),
            Err(Unused::UnknownAgent)
        );
    }

    #[test]
    fn consecutive_samples_give_rates_over_the_agents_interval() {
        let mut rates = CounterRates::default();
        assert_eq!(
            rates.sample("sw-1", &counters(1_000, 100_000, 1, 0)),
            Err(Unused::Baseline)
        );
        // 20 s on the agent's clock, 20.3 s by arrival.
        let mut next = counters(21_300, 120_000, 2, 2_500_000);
        next.in_ucast_pkts = 210;
        next.in_errors = 4;
        next.status = 1;
        let sample = rates.sample("sw-1", &next).expect("sample");
        assert_eq!(sample.device, "sw-1");
        assert_eq!((sample.if_index, sample.name.as_str()), (3, "ifIndex 3"));
        assert_eq!((sample.t, sample.interval_ms), (21_300, 20_000));
        assert_eq!(sample.in_bps, 2_500_000.0 * 8.0 / 20.0);
        assert_eq!(sample.out_bps, 1_250_000.0 * 8.0 / 20.0);
        assert_eq!((sample.in_pps, sample.out_pps), (10.0, 0.0));
        assert_eq!((sample.in_errors, sample.oper_status), (3, 2));
        assert_eq!(sample.speed_bps, 1_000_000_000);
    }

    #[test]
    fn packet_counters_wrap_at_32_bits() {
        let mut rates = CounterRates::default();
        let mut first = counters(0, 100_000, 1, 0);
        first.in_ucast_pkts = u32::MAX - 4;
        let _ = rates.sample("sw-1", &first);
        let mut next = counters(10_000, 110_000, 2, 1_000);
        next.in_ucast_pkts = 5;
        let sample = rates.sample("sw-1", &next).expect("sample");
        assert_eq!(sample.in_pps, 1.0);
    }

    #[test]
    fn restarts_resets_and_stale_samples_give_no_rate() {
        let mut rates = CounterRates::default();
        let _ = rates.sample("sw-1", &counters(0, 100_000, 10, 5_000));
        // Repeated, then reordered (which looks like a restart).
        assert_eq!(
            rates.sample("sw-1", &counters(20, 100_000, 10, 5_000)),
            Err(Unused::Stale)
        );
        assert_eq!(
            rates.sample("sw-1", &counters(30, 90_000, 9, 4_000)),
            Err(Unused::NoRate(NoRate::AgentRestarted))
        );
        // The restart became the base: uptime 90 s, 20 s later it is 110 s.
        let sample = rates
            .sample("sw-1", &counters(20_030, 110_000, 11, 14_000))
            .expect("rates after a restart");
        assert_eq!(sample.in_bps, 10_000.0 * 8.0 / 20.0);
        // The 64-bit octets going back without a restart: a counter reset.
        assert_eq!(
            rates.sample("sw-1", &counters(40_030, 130_000, 12, 10)),
            Err(Unused::NoRate(NoRate::CounterReset))
        );
        // Restarted: up for 150 s, less than the 200 s since the last sample.
        assert_eq!(
            rates.sample("sw-1", &counters(240_030, 150_000, 1, 20)),
            Err(Unused::NoRate(NoRate::AgentRestarted))
        );
    }

    #[test]
    fn interfaces_are_told_apart_and_silent_ones_forgotten() {
        let mut rates = CounterRates::default();
        let mut other = counters(0, 100_000, 1, 0);
        other.if_index = 4;
        let _ = rates.sample("sw-1", &counters(0, 100_000, 1, 0));
        assert_eq!(rates.sample("sw-1", &other), Err(Unused::Baseline));
        let mut sub_agent = other.clone();
        sub_agent.sub_agent_id = 1;
        assert_eq!(rates.sample("sw-1", &sub_agent), Err(Unused::Baseline));
        assert_eq!(rates.len(), 3);
        rates.forget_silent(FORGET_AFTER_MS - 1);
        assert_eq!(rates.len(), 3);
        rates.forget_silent(FORGET_AFTER_MS);
        assert!(rates.is_empty());
    }

    #[test]
    fn conversion_counts_what_it_drops() {
        let metrics = FlowMetrics::default();
        let attribution = Attribution::new(&[site("sw-1", &["192.0.2.9"])], &[]);
        let mut rates = CounterRates::default();
        let mut unknown = counters(0, 100_000, 1, 0);
        unknown.agent = IpAddr::from([198, 51, 100, 7]);
        let batch = [
            counters(0, 100_000, 1, 0),
            unknown,
            counters(10_000, 110_000, 2, 1_000),
        ];
        let samples = convert(&attribution, &mut rates, &batch, &metrics);
        assert_eq!(samples.len(), 1);
        assert_eq!(metrics.interface_samples.get(), 1);
        let unused = |reason: &'static str| metrics.counter_sample_unused(reason).get();
        assert_eq!((unused("baseline"), unused("unknown_agent")), (1, 1));
    }
}
