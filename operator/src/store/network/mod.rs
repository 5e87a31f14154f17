//! Network performance data of collectors in PostgreSQL: dictionaries (exporters,
//! interfaces, probes), flow aggregates, interface and probe samples, their rollups, and
//! the daily partitions of each (see `migrations/0005_network.sql`, `0007_flow_tiers.sql`
//! and `0013_ranked_site_talkers.sql`).
//!
//! Times cross the boundary as Unix milliseconds (`i64`), as in [`super::timeseries`].
use super::partitions::DailyTable;

/// SQL for "Unix milliseconds to timestamptz" of parameter `$n`.
macro_rules! at_ms {
    ($n:literal) => {
        concat!(
            "('epoch'::timestamptz + $",
            $n,
            "::int8 * interval '1 millisecond')"
        )
    };
}

pub mod query;
pub mod rollup;
pub mod talkers;
pub mod write;

pub const MINUTE_MS: i64 = 60_000;
pub const TEN_MINUTES_MS: i64 = 600_000;
pub const HOUR_MS: i64 = 3_600_000;

/// A time-series table of network data, partitioned by day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetTable {
    Flows1m,
    Flows10m,
    Flows1h,
    FlowSites10m,
    FlowSites1h,
    InterfaceSamples,
    Interfaces1m,
    Interfaces1h,
    ProbeSamples,
    Probes1m,
    Probes1h,
}

impl NetTable {
    pub const ALL: [NetTable; 11] = [
        NetTable::Flows1m,
        NetTable::Flows10m,
        NetTable::Flows1h,
        NetTable::FlowSites10m,
        NetTable::FlowSites1h,
        NetTable::InterfaceSamples,
        NetTable::Interfaces1m,
        NetTable::Interfaces1h,
        NetTable::ProbeSamples,
        NetTable::Probes1m,
        NetTable::Probes1h,
    ];
}

impl DailyTable for NetTable {
    fn table(self) -> &'static str {
        match self {
            NetTable::Flows1m => "net_flows_1m",
            NetTable::Flows10m => "net_flows_10m",
            NetTable::Flows1h => "net_flows_1h",
            NetTable::FlowSites10m => "net_flows_site_10m",
            NetTable::FlowSites1h => "net_flows_site_1h",
            NetTable::InterfaceSamples => "net_if_samples",
            NetTable::Interfaces1m => "net_if_1m",
            NetTable::Interfaces1h => "net_if_1h",
            NetTable::ProbeSamples => "net_probe_samples",
            NetTable::Probes1m => "net_probe_1m",
            NetTable::Probes1h => "net_probe_1h",
        }
    }
}

/// Start of the bucket of `size_ms` that holds `ms`.
pub fn floor_to(ms: i64, size_ms: i64) -> i64 {
    ms.div_euclid(size_ms) * size_ms
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::partitions::{day_of, partition_name};

    #[test]
    fn tables_name_their_partitions_and_buckets_floor() {
        let day = day_of(1_764_028_800_000); // 2025-11-25T00:00:00Z
        assert_eq!(
            partition_name(NetTable::FlowSites1h, day),
            "net_flows_site_1h_p20251125"
        );
        assert_eq!(floor_to(HOUR_MS + 5, TEN_MINUTES_MS), HOUR_MS);
        assert_eq!(floor_to(HOUR_MS + 5, HOUR_MS), HOUR_MS);
        assert_eq!(floor_to(-1, MINUTE_MS), -MINUTE_MS);
    }
}
