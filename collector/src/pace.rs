//! Pacing of probe packets: every packet of a discovery run (ICMP echoes, SNMP requests and
//! their retries) first takes a slot from one [`Pacer`], so that the run never sends more
//! than its rate in any second, whatever its concurrency.
//!
//! Slots are reserved at fixed spacing (1/rate apart) and never accumulate while the run is
//! idle: there is no burst, which keeps a slow network's buffers (and its IDS) calm. A
//! reservation is made under a short lock and waited for outside it, so thousands of tasks
//! can queue for slots; a task cancelled while it waits leaves its slot unused.
use std::{
    sync::{Mutex, PoisonError},
    time::Duration,
};

use prometheus_client::metrics::counter::Counter;
use tokio::time::{Instant, sleep_until};

/// A shared packet rate. Clones of an `Arc<Pacer>` share the rate.
#[derive(Debug)]
pub(crate) struct Pacer {
    spacing: Duration,
    next: Mutex<Option<Instant>>,
    sent: Counter,
}

impl Pacer {
    /// At most `per_second` packets a second (at least one), each counted in `sent`.
    pub(crate) fn new(per_second: u32, sent: Counter) -> Self {
        Self {
            spacing: Duration::from_secs(1) / per_second.max(1),
            next: Mutex::new(None),
            sent,
        }
    }

    /// Waits for the next free slot; the caller sends one packet right after.
    pub(crate) async fn wait(&self) {
        let slot = self.reserve(Instant::now());
        sleep_until(slot).await;
        self.sent.inc();
    }

    /// The slot of a packet asked for at `now`: the one after the last reserved slot, or
    /// `now` when the pacer has been idle longer than that.
    fn reserve(&self, now: Instant) -> Instant {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = next.map_or(now, |next| next.max(now));
        *next = Some(slot + self.spacing);
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_spaced_by_the_rate_and_idle_time_is_not_saved_up() {
        let pacer = Pacer::new(50, Counter::default());
        let t0 = Instant::now();
        let slots: Vec<Duration> = (0..5).map(|_| pacer.reserve(t0) - t0).collect();
        let ms = |v| Duration::from_millis(v);
        assert_eq!(slots, [ms(0), ms(20), ms(40), ms(60), ms(80)]);
        // Idle for a second: the next packet goes at once, the one after 20 ms later.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(pacer.reserve(later), later);
        assert_eq!(pacer.reserve(later), later + ms(20));
    }

    #[test]
    fn a_rate_of_zero_is_one_a_second() {
        let pacer = Pacer::new(0, Counter::default());
        let t0 = Instant::now();
        pacer.reserve(t0);
        assert_eq!(pacer.reserve(t0) - t0, Duration::from_secs(1));
    }

    #[tokio::test]
    async fn many_tasks_together_keep_to_the_rate() {
        let sent = Counter::default();
        let pacer = std::sync::Arc::new(Pacer::new(500, sent.clone()));
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..100 {
            let pacer = pacer.clone();
            tasks.spawn(async move { pacer.wait().await });
        }
        tasks.join_all().await;
        // 100 packets at 500/s: the last one 198 ms after the first.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(198), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(600), "{elapsed:?}");
        assert_eq!(sent.get(), 100);
    }
}
