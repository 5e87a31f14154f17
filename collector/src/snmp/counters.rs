//! Counter arithmetic of IF-MIB polling: deltas of wrapping counters, rates over an
//! interval, and the cases where an interval has no honest rate (agent restart, counter
//! reset). Pure functions, no I/O.
use std::time::Duration;

/// 2³², the modulus of a Counter32.
const WRAP_32: u64 = 1 << 32;
/// Above this utilisation a 32-bit delta is taken for a counter reset, not a wrap (a reset
/// and a wrap look the same; the interface cannot carry more than its speed). Slack over
/// 1.0 because the agent samples its counters at slightly different moments than we poll.
const MAX_PLAUSIBLE_UTILISATION: f64 = 1.5;
/// Tolerance between the agent's clock (sysUpTime) and ours when telling a restart.
const UPTIME_SLACK: Duration = Duration::from_secs(1);

/// How wide the octet and packet counters of an interface are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterWidth {
    /// ifTable Counter32 (ifInOctets, ...): wraps at 2³², often within minutes.
    Bits32,
    /// ifXTable Counter64 (ifHCInOctets, ...).
    Bits64,
}

/// The counters of one interface at one poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterSet {
    /// Width of the octet counters (errors and discards are always 32-bit).
    pub width: CounterWidth,
    /// Width of the unicast packet counters: the octets' over SNMP, 32 bits in sFlow's
    /// generic interface counters (whose octets are 64-bit).
    pub packet_width: CounterWidth,
    pub in_octets: u64,
    pub out_octets: u64,
    pub in_ucast_pkts: u64,
    pub out_ucast_pkts: u64,
    pub in_errors: u32,
    pub out_errors: u32,
    pub in_discards: u32,
    pub out_discards: u32,
}

/// Rates and deltas of one interface over one interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rates {
    pub in_bps: f64,
    pub out_bps: f64,
    pub in_pps: f64,
    pub out_pps: f64,
    pub in_errors: u64,
    pub out_errors: u64,
    pub in_discards: u64,
    pub out_discards: u64,
}

/// Why an interval yields no rates; the next poll starts over from the new counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoRate {
    #[error("the agent restarted since the previous poll (sysUpTime went back)")]
    AgentRestarted,
    #[error("the interface's counters changed between 32 and 64 bits")]
    WidthChanged,
    #[error("a 64-bit counter went backwards (counter reset)")]
    CounterReset,
    #[error("a 32-bit delta implies more traffic than the interface speed allows (counter reset)")]
    Implausible,
    #[error("no time passed between the two polls")]
    NoInterval,
}

impl NoRate {
    /// Short label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::AgentRestarted => "agent_restarted",
            Self::WidthChanged => "width_changed",
            Self::CounterReset => "counter_reset",
            Self::Implausible => "implausible",
            Self::NoInterval => "no_interval",
        }
    }
}

/// Increase of a counter from `prev` to `cur`. A 32-bit counter that went down wrapped
/// (modulo 2³²). A 64-bit counter cannot wrap within any real interval (at 400 Gb/s it
/// takes 11 years), so going down means it was reset: `None`.
pub fn delta(prev: u64, cur: u64, width: CounterWidth) -> Option<u64> {
    match width {
        CounterWidth::Bits32 => Some(cur.wrapping_sub(prev) % WRAP_32),
        CounterWidth::Bits64 => cur.checked_sub(prev),
    }
}

/// Increase of a Counter32 (errors, discards), modulo 2³².
pub fn delta32(prev: u32, cur: u32) -> u64 {
    u64::from(cur.wrapping_sub(prev))
}

/// Whether the agent restarted between two polls `elapsed` apart: its uptime went back, or
/// it has been up for less time than passed since the previous poll. (sysUpTime also wraps
/// after 497 days, which costs one interval.)
pub fn agent_restarted(prev_ticks: u32, cur_ticks: u32, elapsed: Duration) -> bool {
    let uptime = Duration::from_millis(u64::from(cur_ticks) * 10);
    cur_ticks < prev_ticks || uptime + UPTIME_SLACK < elapsed
}

/// Share of `speed_bps` that `bps` uses (1.0 = line rate); `None` when the speed is unknown.
pub fn utilisation(bps: f64, speed_bps: u64) -> Option<f64> {
    (speed_bps > 0).then(|| bps / speed_bps as f64)
}

/// Rates between two readings of one interface taken `elapsed` apart.
pub fn rates(
    prev: &CounterSet,
    cur: &CounterSet,
    elapsed: Duration,
    speed_bps: u64,
) -> Result<Rates, NoRate> {
    if prev.width != cur.width || prev.packet_width != cur.packet_width {
        return Err(NoRate::WidthChanged);
    }
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return Err(NoRate::NoInterval);
    }
    let width = cur.width;
    let counter = |p: u64, c: u64, w| delta(p, c, w).ok_or(NoRate::CounterReset);
    let in_octets = counter(prev.in_octets, cur.in_octets, width)?;
    let out_octets = counter(prev.out_octets, cur.out_octets, width)?;
    let in_pkts = counter(prev.in_ucast_pkts, cur.in_ucast_pkts, cur.packet_width)?;
    let out_pkts = counter(prev.out_ucast_pkts, cur.out_ucast_pkts, cur.packet_width)?;
    let rates = Rates {
        in_bps: in_octets as f64 * 8.0 / secs,
        out_bps: out_octets as f64 * 8.0 / secs,
        in_pps: in_pkts as f64 / secs,
        out_pps: out_pkts as f64 / secs,
        in_errors: delta32(prev.in_errors, cur.in_errors),
        out_errors: delta32(prev.out_errors, cur.out_errors),
        in_discards: delta32(prev.in_discards, cur.in_discards),
        out_discards: delta32(prev.out_discards, cur.out_discards),
    };
    let implausible =
        |bps: f64| utilisation(bps, speed_bps).is_some_and(|u| u > MAX_PLAUSIBLE_UTILISATION);
    if width == CounterWidth::Bits32 && (implausible(rates.in_bps) || implausible(rates.out_bps)) {
        return Err(NoRate::Implausible);
    }
    Ok(rates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(width: CounterWidth, octets: u64, pkts: u64) -> CounterSet {
        CounterSet {
            width,
            packet_width: width,
            in_octets: octets,
            out_octets: octets / 2,
            in_ucast_pkts: pkts,
            out_ucast_pkts: pkts / 2,
            in_errors: 0,
            out_errors: 0,
            in_discards: 0,
            out_discards: 0,
        }
    }

    #[test]
    fn deltas_of_counters_that_went_up() {
        assert_eq!(delta(10, 25, CounterWidth::Bits32), Some(15));
        assert_eq!(delta(10, 25, CounterWidth::Bits64), Some(15));
        assert_eq!(delta(7, 7, CounterWidth::Bits64), Some(0));
        assert_eq!(delta32(3, 10), 7);
    }

    #[test]
    fn a_32_bit_counter_wraps_modulo_2_pow_32() {
        let prev = u64::from(u32::MAX) - 99;
        assert_eq!(delta(prev, 50, CounterWidth::Bits32), Some(150));
        assert_eq!(delta(u64::from(u32::MAX), 0, CounterWidth::Bits32), Some(1));
        assert_eq!(delta32(u32::MAX, 4), 5);
    }

    #[test]
    fn a_64_bit_counter_going_back_is_a_reset() {
        assert_eq!(delta(1_000, 999, CounterWidth::Bits64), None);
        assert_eq!(delta(u64::MAX, 0, CounterWidth::Bits64), None);
        assert_eq!(delta(0, u64::MAX, CounterWidth::Bits64), Some(u64::MAX));
    }

    #[test]
    fn rates_per_second_from_deltas() {
        let prev = set(CounterWidth::Bits64, 1_000, 10);
        let cur = set(CounterWidth::Bits64, 1_000 + 125_000 * 10, 10 + 500);
        let r = rates(&prev, &cur, Duration::from_secs(10), 1_000_000_000).expect("rates");
        assert_eq!(r.in_bps, 1_000_000.0);
        assert_eq!(r.out_bps, 500_000.0);
        assert_eq!(r.in_pps, 50.0);
        assert_eq!(r.out_pps, 25.0);
    }

    #[test]
    fn rates_over_a_32_bit_wrap() {
        let prev = set(CounterWidth::Bits32, u64::from(u32::MAX) - 999, 0);
        let mut cur = set(CounterWidth::Bits32, 1_000, 0);
        cur.out_octets = prev.out_octets + 2_000;
        let r = rates(&prev, &cur, Duration::from_secs(2), 10_000_000).expect("rates");
        assert_eq!(r.in_bps, 2_000.0 * 8.0 / 2.0);
        assert_eq!(r.out_bps, 8_000.0);
    }

    #[test]
    fn packet_counters_of_their_own_width_wrap_on_their_own() {
        // sFlow: 64-bit octets, 32-bit packets.
        let mut prev = set(CounterWidth::Bits64, 1_000, u64::from(u32::MAX) - 9);
        prev.packet_width = CounterWidth::Bits32;
        let mut cur = set(CounterWidth::Bits64, 2_000, 10);
        cur.packet_width = CounterWidth::Bits32;
        cur.out_ucast_pkts = prev.out_ucast_pkts;
        let r = rates(&prev, &cur, Duration::from_secs(1), 0).expect("rates");
        assert_eq!((r.in_bps, r.in_pps, r.out_pps), (8_000.0, 20.0, 0.0));
        let mut narrower = cur;
        narrower.packet_width = CounterWidth::Bits64;
        assert_eq!(
            rates(&prev, &narrower, Duration::from_secs(1), 0),
            Err(NoRate::WidthChanged)
        );
    }

    #[test]
    fn errors_and_discards_are_deltas_that_wrap() {
        let mut prev = set(CounterWidth::Bits64, 0, 0);
        let mut cur = prev;
        prev.in_errors = u32::MAX;
        cur.in_errors = 2;
        prev.out_errors = 5;
        cur.out_errors = 9;
        cur.in_discards = 1;
        prev.out_discards = 100;
        cur.out_discards = 100;
        let r = rates(&prev, &cur, Duration::from_secs(1), 0).expect("rates");
        assert_eq!((r.in_errors, r.out_errors), (3, 4));
        assert_eq!((r.in_discards, r.out_discards), (1, 0));
    }

    #[test]
    fn a_64_bit_reset_gives_no_rate() {
        let prev = set(CounterWidth::Bits64, 5_000_000, 100);
        let cur = set(CounterWidth::Bits64, 10, 1);
        assert_eq!(
            rates(&prev, &cur, Duration::from_secs(60), 0),
            Err(NoRate::CounterReset)
        );
    }

    #[test]
    fn a_32_bit_reset_is_told_from_a_wrap_by_the_interface_speed() {
        // Cleared from 1 GB to 10: as a wrap that is 3.2 GB in 60 s on a 10 Mb/s link.
        let prev = set(CounterWidth::Bits32, 1_000_000_000, 100);
        let cur = set(CounterWidth::Bits32, 10, 1);
        let elapsed = Duration::from_secs(60);
        assert_eq!(
            rates(&prev, &cur, elapsed, 10_000_000),
            Err(NoRate::Implausible)
        );
        // On a 1 Tb/s link (or with the speed unknown) it passes as a wrap.
        assert!(rates(&prev, &cur, elapsed, 1_000_000_000_000).is_ok());
        assert!(rates(&prev, &cur, elapsed, 0).is_ok());
    }

    #[test]
    fn fast_64_bit_counters_are_never_implausible() {
        // A tunnel that reports 10 Mb/s but carries far more keeps its rates.
        let prev = set(CounterWidth::Bits64, 0, 0);
        let cur = set(CounterWidth::Bits64, 1_000_000_000, 0);
        assert!(rates(&prev, &cur, Duration::from_secs(1), 10_000_000).is_ok());
    }

    #[test]
    fn width_change_and_zero_interval_give_no_rate() {
        let a = set(CounterWidth::Bits32, 1, 1);
        let b = set(CounterWidth::Bits64, 2, 2);
        assert_eq!(
            rates(&a, &b, Duration::from_secs(1), 0),
            Err(NoRate::WidthChanged)
        );
        assert_eq!(rates(&a, &a, Duration::ZERO, 0), Err(NoRate::NoInterval));
    }

    #[test]
    fn agent_restart_when_uptime_goes_back_or_is_shorter_than_the_interval() {
        let minute = Duration::from_secs(60);
        assert!(!agent_restarted(100_000, 106_000, minute));
        assert!(agent_restarted(100_000, 50, minute));
        // Restarted after the previous poll and already past its old uptime.
        assert!(agent_restarted(1_000, 3_000, minute));
        // A young agent polled soon after start is not a restart.
        assert!(!agent_restarted(100, 6_050, minute));
        assert!(!agent_restarted(0, 100, Duration::from_millis(1_500)));
    }

    #[test]
    fn utilisation_against_speed() {
        assert_eq!(utilisation(50_000_000.0, 100_000_000), Some(0.5));
        assert_eq!(utilisation(1.0, 0), None);
    }
}
