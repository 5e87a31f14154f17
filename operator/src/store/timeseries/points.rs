//! The pure half of the one-row-per-batch layout (ADR 8): splitting batches into rows of
//! `metric_points` and folding those rows into rows of `metric_points_1m`.
//!
//! Rows travel to PostgreSQL as flat arrays plus 1-based inclusive bounds per row, which
//! the SQL turns back into one array per row with a slice (`flat[first:last]`): ragged
//! arrays of arrays cannot be bound, and slicing a parameter is cheap.
use std::collections::HashMap;

use uuid::Uuid;

/// Rows of `metric_points` (one per device and instant), flattened for binding.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PointRows {
    pub devices: Vec<Uuid>,
    pub times_ms: Vec<i64>,
    /// Bounds of each row's elements in `series_ids` and `values`.
    pub first: Vec<i64>,
    pub last: Vec<i64>,
    pub series_ids: Vec<i64>,
    pub values: Vec<f64>,
}

impl PointRows {
    /// Adds the samples of one batch: one row per distinct timestamp, rows in time order,
    /// series ascending within a row (so that the rollup fold mostly sees equal id arrays).
    pub fn push_batch(
        &mut self,
        device: Uuid,
        series_ids: &[i64],
        times_ms: &[i64],
        values: &[f64],
    ) {
        let mut order: Vec<usize> =
            (0..series_ids.len().min(times_ms.len()).min(values.len())).collect();
        order.sort_by_key(|&i| (times_ms[i], series_ids[i]));
        let mut current = None;
        for i in order {
            if current != Some(times_ms[i]) {
                self.close_row();
                current = Some(times_ms[i]);
                self.devices.push(device);
                self.times_ms.push(times_ms[i]);
                self.first.push(self.series_ids.len() as i64 + 1);
            }
            self.series_ids.push(series_ids[i]);
            self.values.push(values[i]);
        }
        self.close_row();
    }

    fn close_row(&mut self) {
        if self.last.len() < self.first.len() {
            self.last.push(self.series_ids.len() as i64);
        }
    }
}

/// Min, max, sum and count of one series over one minute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aggregate {
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: i64,
}

impl Aggregate {
    fn of(value: f64) -> Self {
        Self {
            min: value,
            max: value,
            sum: value,
            count: 1,
        }
    }

    fn add(&mut self, value: f64) {
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.sum += value;
        self.count += 1;
    }
}

/// One device's minute being folded: series ids kept sorted and unique, an aggregate each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MinuteFold {
    pub series_ids: Vec<i64>,
    pub aggregates: Vec<Aggregate>,
}

impl MinuteFold {
    /// Folds one row of `metric_points` in. A device sends the same series every time, so
    /// a row usually carries exactly the ids already held and is folded element by element.
    pub fn add(&mut self, series_ids: &[i64], values: &[f64]) {
        if self.series_ids == series_ids {
            for (aggregate, value) in self.aggregates.iter_mut().zip(values) {
                aggregate.add(*value);
            }
            return;
        }
        for (id, value) in series_ids.iter().zip(values) {
            match self.series_ids.binary_search(id) {
                Ok(i) => self.aggregates[i].add(*value),
                Err(i) => {
                    self.series_ids.insert(i, *id);
                    self.aggregates.insert(i, Aggregate::of(*value));
                }
            }
        }
    }
}

/// The folds of one minute, by device.
#[derive(Debug, Default)]
pub struct MinuteFolds {
    by_device: HashMap<Uuid, MinuteFold>,
}

impl MinuteFolds {
    pub fn add(&mut self, device: Uuid, series_ids: &[i64], values: &[f64]) {
        self.by_device
            .entry(device)
            .or_default()
            .add(series_ids, values);
    }

    /// The rollup rows, by device (a stable order keeps concurrent upserts from deadlocking).
    pub fn into_rows(self) -> RollupRows {
        let mut folds: Vec<(Uuid, MinuteFold)> = self.by_device.into_iter().collect();
        folds.sort_unstable_by_key(|(device, _)| *device);
        let mut rows = RollupRows::default();
        for (device, fold) in folds {
            rows.devices.push(device);
            rows.first.push(rows.series_ids.len() as i64 + 1);
            rows.series_ids.extend_from_slice(&fold.series_ids);
            rows.last.push(rows.series_ids.len() as i64);
            for a in fold.aggregates {
                rows.mins.push(a.min);
                rows.maxs.push(a.max);
                rows.sums.push(a.sum);
                rows.counts.push(a.count);
            }
        }
        rows
    }
}

/// Rows of `metric_points_1m` for one minute, flattened like [`PointRows`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RollupRows {
    pub devices: Vec<Uuid>,
    pub first: Vec<i64>,
    pub last: Vec<i64>,
    pub series_ids: Vec<i64>,
    pub mins: Vec<f64>,
    pub maxs: Vec<f64>,
    pub sums: Vec<f64>,
    pub counts: Vec<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(r: &PointRows) -> Vec<(Uuid, i64, Vec<i64>, Vec<f64>)> {
        (0..r.devices.len())
            .map(|i| {
                let range = (r.first[i] - 1) as usize..r.last[i] as usize;
                (
                    r.devices[i],
                    r.times_ms[i],
                    r.series_ids[range.clone()].to_vec(),
                    r.values[range].to_vec(),
                )
            })
            .collect()
    }

    #[test]
    fn a_batch_becomes_one_row_per_timestamp_with_series_in_order() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut r = PointRows::default();
        r.push_batch(
            a,
            &[7, 3, 5, 3, 7],
            &[2_000, 1_000, 1_000, 2_000, 1_000],
            &[1.0, 2.0, 3.0, 4.0, 5.0],
        );
        r.push_batch(b, &[9], &[1_000], &[6.0]);
        r.push_batch(b, &[], &[], &[]);
        assert_eq!(
            rows(&r),
            [
                (a, 1_000, vec![3, 5, 7], vec![2.0, 3.0, 5.0]),
                (a, 2_000, vec![3, 7], vec![4.0, 1.0]),
                (b, 1_000, vec![9], vec![6.0]),
            ]
        );
        assert_eq!(
            (r.first.clone(), r.last.clone()),
            (vec![1, 4, 6], vec![3, 5, 6])
        );
    }

    #[test]
    fn a_repeated_sample_keeps_both_values() {
        let mut r = PointRows::default();
        r.push_batch(Uuid::nil(), &[4, 4], &[10, 10], &[1.0, 2.0]);
        assert_eq!(rows(&r), [(Uuid::nil(), 10, vec![4, 4], vec![1.0, 2.0])]);
    }

    #[test]
    fn folding_rows_aggregates_each_series_whatever_rows_carry() {
        let mut fold = MinuteFold::default();
        fold.add(&[1, 2, 3], &[10.0, 20.0, 30.0]);
        fold.add(&[1, 2, 3], &[-1.0, 25.0, 30.0]);
        // A series appears, one is missing, one repeats: the slow path keeps ids sorted.
        fold.add(&[0, 2, 2], &[5.0, 15.0, 40.0]);
        fold.add(&[0, 1, 2, 3], &[1.0, 1.0, 1.0, 1.0]);
        assert_eq!(fold.series_ids, [0, 1, 2, 3]);
        let agg = |min, max, sum, count| Aggregate {
            min,
            max,
            sum,
            count,
        };
        assert_eq!(
            fold.aggregates,
            [
                agg(1.0, 5.0, 6.0, 2),
                agg(-1.0, 10.0, 10.0, 3),
                agg(1.0, 40.0, 101.0, 5),
                agg(1.0, 30.0, 61.0, 3),
            ]
        );
    }

    #[test]
    fn minute_folds_become_rows_by_device() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut folds = MinuteFolds::default();
        folds.add(b, &[9], &[1.0]);
        folds.add(a, &[3, 4], &[2.0, 3.0]);
        folds.add(b, &[9], &[5.0]);
        let rows = folds.into_rows();
        assert_eq!(
            rows,
            RollupRows {
                devices: vec![a, b],
                first: vec![1, 3],
                last: vec![2, 3],
                series_ids: vec![3, 4, 9],
                mins: vec![2.0, 3.0, 1.0],
                maxs: vec![2.0, 3.0, 5.0],
                sums: vec![2.0, 3.0, 6.0],
                counts: vec![1, 1, 2],
            }
        );
        assert_eq!(MinuteFolds::default().into_rows(), RollupRows::default());
    }
}
