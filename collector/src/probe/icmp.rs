//! ICMP echo rounds with `surge-ping`: a few echoes spaced over part of the interval, their
//! round-trip times summarised into a [`ProbeResult`].
use std::{net::IpAddr, sync::Arc, time::Duration};

use cdot_crds::wire::collector::{ProbeResult, ProbeTarget};
use surge_ping::{Client, PingSequence, SurgeError};
use tokio::{
    sync::OnceCell,
    time::{Instant, sleep_until},
};
use tracing::debug;

use super::{
    error::{ProbeError, ProbeId},
    metrics::ProbeMetrics,
    stats,
};
use crate::{
    icmp::{self, PAYLOAD},
    unix_ms,
};

/// Echoes per round.
const ECHOES: u16 = 5;
/// Longest wait between echoes and for one reply.
const MAX_SPACING: Duration = Duration::from_secs(1);
const MAX_TIMEOUT: Duration = Duration::from_secs(2);

/// How one round is paced for a probe interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoundPlan {
    pub echoes: u16,
    /// From one echo's sending to the next.
    pub spacing: Duration,
    /// How long a reply is waited for.
    pub timeout: Duration,
}

impl RoundPlan {
    /// A round that fits in `interval` even when every echo times out: echoes go out a
    /// tenth of the interval apart (at most 1 s) and each waits a fifth of it (at most 2 s).
    pub fn for_interval(interval: Duration) -> Self {
        Self {
            echoes: ECHOES,
            spacing: (interval / 10).min(MAX_SPACING),
            timeout: (interval / u32::from(ECHOES)).min(MAX_TIMEOUT),
        }
    }
}

/// Sends echo rounds; clones share the ICMP sockets (opened on first use, one per address
/// family).
#[derive(Clone)]
pub struct Prober {
    v4: Arc<OnceCell<Client>>,
    v6: Arc<OnceCell<Client>>,
    metrics: ProbeMetrics,
}

impl Prober {
    /// A prober counting into `metrics`. Sockets are opened by the first round.
    pub fn new(metrics: ProbeMetrics) -> Self {
        Self {
            v4: Arc::default(),
            v6: Arc::default(),
            metrics,
        }
    }

    /// Runs one round of echoes to `target` paced by `plan`; lost echoes count as lost,
    /// only a target that does not resolve or a socket that cannot be opened is an error.
    pub async fn round(
        &self,
        target: &ProbeTarget,
        plan: RoundPlan,
    ) -> Result<ProbeResult, ProbeError> {
        let result = self.echoes(target, plan).await;
        if let Err(error) = &result {
            self.metrics.round("error").inc();
            self.metrics.error(error.reason()).inc();
        }
        result
    }

    async fn echoes(
        &self,
        target: &ProbeTarget,
        plan: RoundPlan,
    ) -> Result<ProbeResult, ProbeError> {
        let id = ProbeId {
            device: target.device.clone(),
            probe: target.name.clone(),
            target: target.target.clone(),
        };
        let addr = resolve(&id).await?;
        let client = self.client(&id, addr).await?;
        let mut pinger = client.pinger(addr, icmp::next_ident()).await;
        pinger.timeout(plan.timeout);
        let mut rtts = Vec::with_capacity(usize::from(plan.echoes));
        for seq in 0..plan.echoes {
            let sent_at = Instant::now();
            self.metrics.echoes_sent.inc();
            match pinger.ping(PingSequence(seq), &PAYLOAD).await {
                Ok((reply, rtt)) if icmp::is_echo_reply(&reply) => {
                    self.metrics.echoes_received.inc();
                    self.metrics.rtt.observe(rtt.as_secs_f64());
                    rtts.push(Some(rtt));
                }
                // An ICMP error (unreachable) is a lost echo too.
                Ok(_) | Err(SurgeError::Timeout { .. }) => rtts.push(None),
                Err(error) => {
                    // Counted as lost: an unreachable network is what the probe measures.
                    self.metrics.error("send").inc();
                    debug!(probe = %id, %addr, %error, "echo not sent");
                    rtts.push(None);
                }
            }
            if seq + 1 < plan.echoes {
                sleep_until(sent_at + plan.spacing).await;
            }
        }
        let summary = stats::summarise(&rtts);
        let result = match summary.received {
            0 => "unreachable",
            n if n < summary.sent => "loss",
            _ => "ok",
        };
        self.metrics.round(result).inc();
        Ok(ProbeResult {
            t: unix_ms(),
            device: id.device,
            probe: id.probe,
            target: id.target,
            sent: summary.sent,
            received: summary.received,
            rtt_min_ms: summary.rtt_min_ms,
            rtt_avg_ms: summary.rtt_avg_ms,
            rtt_max_ms: summary.rtt_max_ms,
            jitter_ms: summary.jitter_ms,
        })
    }

    async fn client(&self, id: &ProbeId, addr: IpAddr) -> Result<Client, ProbeError> {
        let cell = match addr {
            IpAddr::V4(_) => &self.v4,
            IpAddr::V6(_) => &self.v6,
        };
        let (kind, family) = icmp::family(addr);
        cell.get_or_try_init(|| async {
            icmp::open(kind).map_err(|source| ProbeError::Socket {
                probe: id.clone(),
                family,
                source,
            })
        })
        .await
        .cloned()
    }
}

/// The target's address: a literal, or the first address its name resolves to.
async fn resolve(id: &ProbeId) -> Result<IpAddr, ProbeError> {
    if let Ok(addr) = id.target.parse::<IpAddr>() {
        return Ok(addr);
    }
    let mut addrs = tokio::net::lookup_host((id.target.as_str(), 0))
        .await
        .map_err(|source| ProbeError::Resolve {
            probe: id.clone(),
            source,
        })?;
    addrs
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| ProbeError::NoAddress { probe: id.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_fits_its_interval_even_when_every_echo_times_out() {
        for secs in [1, 5, 10, 30, 60, 300] {
            let interval = Duration::from_secs(secs);
            let plan = RoundPlan::for_interval(interval);
            let worst = plan.spacing.max(plan.timeout) * u32::from(plan.echoes);
            assert!(worst <= interval, "{secs} s: {plan:?}");
            assert!(plan.spacing <= MAX_SPACING && plan.timeout <= MAX_TIMEOUT);
        }
        let plan = RoundPlan::for_interval(Duration::from_secs(60));
        assert_eq!(plan.spacing, Duration::from_secs(1));
        assert_eq!(plan.timeout, Duration::from_secs(2));
        let plan = RoundPlan::for_interval(Duration::from_secs(1));
        assert_eq!(plan.spacing, Duration::from_millis(100));
        assert_eq!(plan.timeout, Duration::from_millis(200));
    }
}
