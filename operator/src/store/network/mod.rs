//! Network performance data of collectors in PostgreSQL: dictionaries (exporters,
//! interfaces, probes), flow aggregates, interface and probe samples, their rollups, and
//! the daily partitions of each (see `migrations/0005_network.sql`).
//!
//! Times cross the boundary as Unix milliseconds (`i64`), as in [`super::timeseries`].
use super::{Store, StoreError};

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
pub mod write;

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

/// A time-series table of network data, partitioned by day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetTable {
    Flows1m,
    Flows1h,
    InterfaceSamples,
    Interfaces1m,
    Interfaces1h,
    ProbeSamples,
    Probes1m,
    Probes1h,
}

impl NetTable {
    pub const ALL: [NetTable; 8] = [
        NetTable::Flows1m,
        NetTable::Flows1h,
        NetTable::InterfaceSamples,
        NetTable::Interfaces1m,
        NetTable::Interfaces1h,
        NetTable::ProbeSamples,
        NetTable::Probes1m,
        NetTable::Probes1h,
    ];

    pub fn table(self) -> &'static str {
        match self {
            NetTable::Flows1m => "net_flows_1m",
            NetTable::Flows1h => "net_flows_1h",
            NetTable::InterfaceSamples => "net_if_samples",
            NetTable::Interfaces1m => "net_if_1m",
            NetTable::Interfaces1h => "net_if_1h",
            NetTable::ProbeSamples => "net_probe_samples",
            NetTable::Probes1m => "net_probe_1m",
            NetTable::Probes1h => "net_probe_1h",
        }
    }

    /// `net_flows_1m_p20261125` for the day 2026-11-25 (UTC).
    pub fn partition(self, day: i64) -> String {
        format!("{}_p{}", self.table(), day_string(day, "%Y%m%d"))
    }
}

/// Days since the Unix epoch of a UTC time in milliseconds.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// Start of the bucket of `size_ms` that holds `ms`.
pub fn floor_to(ms: i64, size_ms: i64) -> i64 {
    ms.div_euclid(size_ms) * size_ms
}

fn day_string(day: i64, format: &str) -> String {
    jiff::Timestamp::from_second(day * 86_400)
        .map(|t| t.strftime(format).to_string())
        .unwrap_or_default()
}

fn parse_day(s: &str) -> Option<i64> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let date = jiff::civil::Date::strptime("%Y%m%d", s).ok()?;
    let ts = date.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    Some(ts.as_second().div_euclid(86_400))
}

impl Store {
    /// Partitions of a network table: (name, day since the Unix epoch), oldest first.
    pub async fn net_partitions(&self, table: NetTable) -> Result<Vec<(String, i64)>, StoreError> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = $1::regclass ORDER BY 1",
        )
        .bind(table.table())
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("list network partitions"))?;
        Ok(names
            .into_iter()
            .filter_map(|name| {
                let day = name
                    .strip_prefix(table.table())
                    .and_then(|s| s.strip_prefix("_p"))
                    .and_then(parse_day)?;
                Some((name, day))
            })
            .collect())
    }

    /// Creates the partition of `table` for `day` unless it exists; true when created.
    pub async fn create_net_partition(
        &self,
        table: NetTable,
        day: i64,
    ) -> Result<bool, StoreError> {
        let name = table.partition(day);
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(&name)
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::query("look up network partition"))?;
        if exists {
            return Ok(false);
        }
        // Name and bounds come from our own enum and a day number, never from input.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table}
             FOR VALUES FROM ('{from} 00:00:00+00') TO ('{to} 00:00:00+00')",
            table = table.table(),
            from = day_string(day, "%Y-%m-%d"),
            to = day_string(day + 1, "%Y-%m-%d"),
        )))
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("create network partition"))?;
        Ok(true)
    }

    /// Drops the partitions of `table` whose day is before `first_kept_day`; returns them.
    pub async fn drop_net_partitions_before(
        &self,
        table: NetTable,
        first_kept_day: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut dropped = Vec::new();
        for (name, day) in self.net_partitions(table).await? {
            if day < first_kept_day {
                // The name came from pg_class and matched our own pattern.
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {name}")))
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::query("drop network partition"))?;
                dropped.push(name);
            }
        }
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip_days() {
        let day = day_of(1_764_028_800_000); // 2025-11-25T00:00:00Z
        assert_eq!(NetTable::Flows1h.partition(day), "net_flows_1h_p20251125");
        assert_eq!(parse_day("20251125"), Some(day));
        assert_eq!(parse_day("2025112x"), None);
        assert_eq!(floor_to(HOUR_MS + 5, HOUR_MS), HOUR_MS);
        assert_eq!(floor_to(-1, MINUTE_MS), -MINUTE_MS);
    }
}
