//! Statistics of one round of echoes: loss, minimum, mean and maximum round-trip time, and
//! jitter as the mean absolute difference of consecutive round-trip times (RFC 3550's
//! interarrival jitter, without its 1/16 smoothing). Pure functions.
use std::time::Duration;

/// Summary of one round.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EchoStats {
    pub sent: u32,
    pub received: u32,
    /// Milliseconds; `None` when nothing came back.
    pub rtt_min_ms: Option<f64>,
    pub rtt_avg_ms: Option<f64>,
    pub rtt_max_ms: Option<f64>,
    /// Milliseconds; `None` with fewer than two replies.
    pub jitter_ms: Option<f64>,
}

/// Summarises a round: `rtts` has one entry per echo sent, in sending order, `None` for
/// an echo that got no reply. Jitter is taken over consecutive replies (lost echoes
/// skipped).
pub fn summarise(rtts: &[Option<Duration>]) -> EchoStats {
    let replies: Vec<f64> = rtts
        .iter()
        .flatten()
        .map(|rtt| rtt.as_secs_f64() * 1_000.0)
        .collect();
    let sent = u32::try_from(rtts.len()).unwrap_or(u32::MAX);
    let received = u32::try_from(replies.len()).unwrap_or(u32::MAX);
    if replies.is_empty() {
        return EchoStats {
            sent,
            received,
            rtt_min_ms: None,
            rtt_avg_ms: None,
            rtt_max_ms: None,
            jitter_ms: None,
        };
    }
    let min = replies.iter().copied().fold(f64::INFINITY, f64::min);
    let max = replies.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let avg = replies.iter().sum::<f64>() / replies.len() as f64;
    let jitter = (replies.len() > 1).then(|| {
        let differences: f64 = replies.windows(2).map(|w| (w[1] - w[0]).abs()).sum();
        differences / (replies.len() - 1) as f64
    });
    EchoStats {
        sent,
        received,
        rtt_min_ms: Some(min),
        rtt_avg_ms: Some(avg),
        rtt_max_ms: Some(max),
        jitter_ms: jitter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Option<Duration> {
        Some(Duration::from_millis(v))
    }

    #[test]
    fn all_replies() {
        let stats = summarise(&[ms(10), ms(14), ms(12), ms(20), ms(10)]);
        assert_eq!((stats.sent, stats.received), (5, 5));
        assert_eq!(stats.rtt_min_ms, Some(10.0));
        assert_eq!(stats.rtt_max_ms, Some(20.0));
        assert_eq!(stats.rtt_avg_ms, Some(13.2));
        // |14-10| + |12-14| + |20-12| + |10-20| = 24 over 4 differences.
        assert_eq!(stats.jitter_ms, Some(6.0));
    }

    #[test]
    fn lost_echoes_count_as_sent_and_are_skipped_for_jitter() {
        let stats = summarise(&[ms(10), None, ms(16), None, ms(13)]);
        assert_eq!((stats.sent, stats.received), (5, 3));
        assert_eq!(stats.rtt_avg_ms, Some(13.0));
        assert_eq!(stats.jitter_ms, Some(4.5));
    }

    #[test]
    fn constant_round_trip_has_no_jitter() {
        let stats = summarise(&[ms(5), ms(5), ms(5)]);
        assert_eq!(stats.jitter_ms, Some(0.0));
    }

    #[test]
    fn one_reply_has_no_jitter() {
        let stats = summarise(&[None, ms(7), None]);
        assert_eq!(stats.received, 1);
        assert_eq!(stats.rtt_min_ms, Some(7.0));
        assert_eq!(stats.rtt_max_ms, Some(7.0));
        assert_eq!(stats.jitter_ms, None);
    }

    #[test]
    fn total_loss_has_no_round_trip_times() {
        let stats = summarise(&[None, None, None, None, None]);
        assert_eq!((stats.sent, stats.received), (5, 0));
        assert_eq!(stats.rtt_min_ms, None);
        assert_eq!(stats.rtt_avg_ms, None);
        assert_eq!(stats.rtt_max_ms, None);
        assert_eq!(stats.jitter_ms, None);
    }

    #[test]
    fn sub_millisecond_round_trips_keep_their_precision() {
        let stats = summarise(&[
            Some(Duration::from_micros(250)),
            Some(Duration::from_micros(750)),
        ]);
        let close = |v: Option<f64>| v.is_some_and(|v| (v - 0.5).abs() < 1e-9);
        assert!(close(stats.rtt_avg_ms), "{stats:?}");
        assert!(close(stats.jitter_ms), "{stats:?}");
    }
}
