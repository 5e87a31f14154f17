//! Decimation on the server: a series asked for with `points=N` comes in at most N buckets,
//! each with the average, minimum and maximum of what it covers (min-max per bucket), so no
//! client draws more than it can show and no short spike or dip is averaged away.
use super::ApiError;

/// Reads `points`: a number of buckets from 1 to `max`.
pub fn parse(value: &str, max: i64) -> Result<i64, ApiError> {
    value
        .parse::<i64>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(
                format!("{value:?} is not a number of points from 1 to {max}"),
                "query.points",
            )
        })
}

/// What a series request asked for: a step, a number of buckets, or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    Step(i64),
    Points(i64),
    Default,
}

impl Ask {
    /// `step` and `points` as given; both at once is a 400 naming `query.points`.
    pub fn of(step: Option<i64>, points: Option<i64>) -> Result<Self, ApiError> {
        match (step, points) {
            (Some(_), Some(_)) => Err(ApiError::bad_request(
                "give step or points, not both",
                "query.points",
            )),
            (Some(step), None) => Ok(Ask::Step(step)),
            (None, Some(points)) => Ok(Ask::Points(points)),
            (None, None) => Ok(Ask::Default),
        }
    }
}

/// Fails (400 naming `query.step`) when buckets of `step`, the first at a multiple of it,
/// would be more than `max` over `[from, to)`.
pub fn check_count(from: i64, to: i64, step: i64, max: i64) -> Result<(), ApiError> {
    let points = ceil_div(to - from.div_euclid(step) * step, step);
    if points > max {
        return Err(ApiError::bad_request(
            format!(
                "the query would return {points} points per series; at most {max} (raise step or narrow from/to)"
            ),
            "query.step",
        ));
    }
    Ok(())
}

/// The smallest step giving at most `points` buckets over `[from, to)` when buckets start
/// at multiples of the step. The step is a whole number of the largest of `units` (the
/// grains the store keeps, finest first) that fits in it, and at least the finest.
pub fn step_for(from: i64, to: i64, points: i64, units: &[i64]) -> i64 {
    let finest = units.first().copied().unwrap_or(1);
    let ideal = ceil_div(to - from, points.max(1)).max(finest);
    let unit = units
        .iter()
        .copied()
        .filter(|u| *u <= ideal)
        .max()
        .unwrap_or(finest);
    let mut step = ceil_div(ideal, unit) * unit;
    // Aligning the first bucket to the step can add one bucket.
    while ceil_div(to - from.div_euclid(step) * step, step) > points {
        step += unit;
    }
    step
}

/// `a / b` rounded up, for positive `b`.
pub fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1).div_euclid(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;
    const HOUR: i64 = 3_600_000;

    #[test]
    fn steps_never_exceed_the_points_asked_for() {
        let to = 1_764_000_123_456;
        for points in [1, 7, 100, 640, 1_920, 11_000] {
            for range in [
                MINUTE,
                15 * MINUTE,
                HOUR,
                24 * HOUR,
                7 * 24 * HOUR,
                400 * 24 * HOUR,
            ] {
                let step = step_for(to - range, to, points, &[MINUTE, HOUR]);
                let first = (to - range).div_euclid(step) * step;
                assert!(
                    ceil_div(to - first, step) <= points,
                    "{points} over {range}"
                );
                assert!(step % MINUTE == 0 && (step < HOUR || step % HOUR == 0));
            }
        }
    }

    #[test]
    fn steps_are_as_fine_as_the_width_allows() {
        let to = 1_764_000_000_000;
        // A day on a 1,920-pixel plot: one-minute buckets would be 1,440 points.
        assert_eq!(step_for(to - 24 * HOUR, to, 1_920, &[MINUTE, HOUR]), MINUTE);
        // A week on 640 pixels: 15.75 minutes, so 16.
        assert_eq!(
            step_for(to - 7 * 24 * HOUR, to, 640, &[MINUTE, HOUR]),
            16 * MINUTE
        );
        // A year on 300 points: whole hours, served by the hour rollup.
        assert_eq!(
            step_for(to - 365 * 24 * HOUR, to, 300, &[MINUTE, HOUR]) % HOUR,
            0
        );
        // Seconds where raw samples are kept.
        assert_eq!(step_for(to - HOUR, to, 400, &[1_000, MINUTE]), 9_000);
    }

    #[test]
    fn bad_point_counts_name_the_parameter() {
        for bad in ["0", "-3", "x", "11001"] {
            assert_eq!(
                parse(bad, 11_000).expect_err(bad).field.as_deref(),
                Some("query.points")
            );
        }
        assert_eq!(parse("640", 11_000).expect("parsed"), 640);
    }
}
