//! Time-series tables natively partitioned by UTC day: partition names, listing, creation
//! ahead of time and dropping by retention. Which table is data ([`DailyTable`]), so agent
//! metrics and network data share one implementation.
use super::{Store, StoreError};

pub const DAY_MS: i64 = 86_400_000;

/// A table partitioned by range of a `timestamptz`, one partition per UTC day named
/// `{table}_pYYYYMMDD`.
pub trait DailyTable: Copy + std::fmt::Debug {
    /// The parent table; a constant of the code, never from input (it is spliced into SQL).
    fn table(self) -> &'static str;
}

/// `metric_points_p20261125` for the day 2026-11-25 (UTC) of `metric_points`.
pub fn partition_name(table: impl DailyTable, day: i64) -> String {
    format!("{}_p{}", table.table(), day_string(day, "%Y%m%d"))
}

/// Days since the Unix epoch of a UTC time in milliseconds.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
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
    /// Partitions of `table`: (name, day since the Unix epoch), oldest first.
    pub async fn partitions(
        &self,
        table: impl DailyTable,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let parent = table.table();
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = $1::regclass ORDER BY 1",
        )
        .bind(parent)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("list partitions"))?;
        Ok(names
            .into_iter()
            .filter_map(|name| {
                let day = name
                    .strip_prefix(parent)
                    .and_then(|s| s.strip_prefix("_p"))
                    .and_then(parse_day)?;
                Some((name, day))
            })
            .collect())
    }

    /// Creates the partition of `table` for `day` unless it exists; true when created.
    #[tracing::instrument(skip(self), fields(table = table.table()))]
    pub async fn create_partition(
        &self,
        table: impl DailyTable,
        day: i64,
    ) -> Result<bool, StoreError> {
        let name = partition_name(table, day);
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(&name)
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::query("look up partition"))?;
        if exists {
            return Ok(false);
        }
        // Name and bounds come from a table constant and a day number, never from input.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table}
             FOR VALUES FROM ('{from} 00:00:00+00') TO ('{to} 00:00:00+00')",
            table = table.table(),
            from = day_string(day, "%Y-%m-%d"),
            to = day_string(day + 1, "%Y-%m-%d"),
        )))
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("create partition"))?;
        Ok(true)
    }

    /// Drops the partitions of `table` whose day is before `first_kept_day`; returns them.
    #[tracing::instrument(skip(self), fields(table = table.table()))]
    pub async fn drop_partitions_before(
        &self,
        table: impl DailyTable,
        first_kept_day: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut dropped = Vec::new();
        for (name, day) in self.partitions(table).await? {
            if day < first_kept_day {
                // The name came from pg_class and matched our own pattern.
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {name}")))
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::query("drop partition"))?;
                dropped.push(name);
            }
        }
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy)]
    struct Table;

    impl DailyTable for Table {
        fn table(self) -> &'static str {
            "metric_points"
        }
    }

    #[test]
    fn partition_names_round_trip_days() {
        let day = day_of(1_764_028_800_000); // 2025-11-25T00:00:00Z
        assert_eq!(partition_name(Table, day), "metric_points_p20251125");
        assert_eq!(parse_day("20251125"), Some(day));
        assert_eq!(parse_day("2025112"), None);
        assert_eq!(parse_day("2025112x"), None);
        assert_eq!(parse_day("20251340"), None);
        assert_eq!(day_of(-1), -1);
    }
}
