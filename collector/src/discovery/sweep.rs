//! The ICMP sweep: one echo per address, `retries` more after a timeout, each waiting
//! `timeout`. Every address of a run shares one socket per family (opened by the run, so
//! that its replies go to no one else on a datagram socket) and one identifier; the
//! sequence number is the attempt. Silent addresses are waited out side by side: the run
//! keeps up to `concurrency` addresses in flight, and only the pacer spaces the echoes.
use std::{io, net::IpAddr, sync::Arc, time::Duration};

use prometheus_client::metrics::counter::Counter;
use surge_ping::{Client, ICMP, PingIdentifier, PingSequence, SurgeError};
use tracing::debug;

use crate::{
    icmp::{self, PAYLOAD},
    pace::Pacer,
};

/// No ICMP socket for a family the run needs.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot open an {family} ICMP socket (needs root, CAP_NET_RAW or net.ipv4.ping_group_range): {source}"
)]
pub(super) struct SocketError {
    family: &'static str,
    #[source]
    source: io::Error,
}

/// Echoes of one run.
pub(super) struct Sweep {
    v4: Option<Client>,
    v6: Option<Client>,
    ident: PingIdentifier,
    timeout: Duration,
    attempts: u16,
    pacer: Arc<Pacer>,
    /// Echoes the kernel refused to send.
    send_errors: Counter,
}

impl Sweep {
    /// Opens a socket for each family the run has (`v4`, `v6`).
    pub(super) fn open(
        (v4, v6): (bool, bool),
        timeout: Duration,
        retries: u8,
        pacer: Arc<Pacer>,
        send_errors: Counter,
    ) -> Result<Self, SocketError> {
        let open = |needed: bool, kind: ICMP, family: &'static str| {
            needed
                .then(|| icmp::open(kind).map_err(|source| SocketError { family, source }))
                .transpose()
        };
        Ok(Self {
            v4: open(v4, ICMP::V4, "IPv4")?,
            v6: open(v6, ICMP::V6, "IPv6")?,
            ident: icmp::next_ident(),
            timeout,
            attempts: u16::from(retries) + 1,
            pacer,
            send_errors,
        })
    }

    /// The round-trip time of the first echo `address` answers; `None` when it answers
    /// none, or answers with an ICMP error (unreachable: no point in asking again).
    pub(super) async fn echo(&self, address: IpAddr) -> Option<Duration> {
        let client = match address {
            IpAddr::V4(_) => self.v4.as_ref(),
            IpAddr::V6(_) => self.v6.as_ref(),
        }?;
        let mut pinger = client.pinger(address, self.ident).await;
        pinger.timeout(self.timeout);
        for attempt in 0..self.attempts {
            self.pacer.wait().await;
            match pinger.ping(PingSequence(attempt), &PAYLOAD).await {
                Ok((reply, rtt)) if icmp::is_echo_reply(&reply) => return Some(rtt),
                Ok(_) => return None,
                Err(SurgeError::Timeout { .. }) => {}
                Err(error) => {
                    self.send_errors.inc();
                    debug!(%address, %error, "echo not sent");
                }
            }
        }
        None
    }
}
