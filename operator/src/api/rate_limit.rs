//! Enrollment rate limit per source address: a token bucket per address.
//!
//! Enrollment tokens are too long to guess, but every attempt costs a TLS handshake, a token
//! hash and a database lookup; the limit keeps the endpoint from being a free CPU sink. It
//! is per source address (IPv6 by /64, what one host usually gets), so a fleet enrolling
//! behind one NAT shares one bucket: the defaults (see `cli::ServerArgs`) let it through.
//! The table is bounded: buckets that have refilled are the same as no bucket and are
//! dropped, and when it is still full the least recently used entry goes.
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::{
    extract::{ConnectInfo, MatchedPath, Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{ApiError, AppState};

/// The route the limit applies to.
pub const ENROLL_ROUTE: &str = "/v1/agent/enroll";
/// Most addresses tracked at once.
pub const MAX_ADDRESSES: usize = 16_384;

/// How many requests an address may make: `burst` at once, then one per `interval`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub burst: u32,
    pub interval: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by source address; `None` rate: no limit.
#[derive(Debug)]
pub struct RateLimiter {
    rate: Option<Rate>,
    capacity: usize,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new(None, MAX_ADDRESSES)
    }
}

impl RateLimiter {
    /// `rate` `None` (or a zero burst or interval) turns the limit off.
    pub fn new(rate: Option<Rate>, capacity: usize) -> Self {
        Self {
            rate: rate.filter(|r| r.burst > 0 && !r.interval.is_zero()),
            capacity: capacity.max(1),
            buckets: Mutex::default(),
        }
    }

    /// Takes a token for `address` at `now`; `Err(seconds)` until one is available.
    pub fn check(&self, address: IpAddr, now: Instant) -> Result<(), u64> {
        let Some(rate) = self.rate else {
            return Ok(());
        };
        let burst = f64::from(rate.burst);
        let per_second = 1.0 / rate.interval.as_secs_f64();
        let refill = |b: &Bucket| {
            (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_second).min(burst)
        };
        let key = bucket_key(address);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !buckets.contains_key(&key) && buckets.len() >= self.capacity {
            buckets.retain(|_, b| refill(b) < burst);
            if buckets.len() >= self.capacity
                && let Some(oldest) = buckets.iter().min_by_key(|(_, b)| b.at).map(|(k, _)| *k)
            {
                buckets.remove(&oldest);
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens = refill(bucket);
        bucket.at = now;
        // The epsilon absorbs rounding: a token refilled in two steps is still a token.
        if bucket.tokens >= 1.0 - 1e-9 {
            bucket.tokens = (bucket.tokens - 1.0).max(0.0);
            Ok(())
        } else {
            // Whole seconds until a token is there, at least 1.
            let wait = (1.0 - bucket.tokens) / per_second;
            Err(((wait - 1e-6).ceil() as u64).max(1))
        }
    }

    /// Addresses tracked now.
    pub fn len(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// IPv4 addresses as they are; IPv6 by their /64 (IPv4-mapped ones as IPv4).
fn bucket_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::from(segments)
            }
        },
    }
}

/// The middleware: limits [`ENROLL_ROUTE`] by the connection's peer address. Requests
/// without one (a router called in-process) are not limited.
pub async fn enroll(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let is_enroll = request
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|p| p.as_str() == ENROLL_ROUTE);
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let (true, Some(peer)) = (is_enroll, peer)
        && let Err(seconds) = state.enroll_limiter.check(peer, Instant::now())
    {
        state.metrics.enroll_rate_limited.inc();
        tracing::warn!(%peer, retry_after = seconds, "enrollment rate limit reached");
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            format!("too many enrollment requests from {peer}; retry in {seconds} s"),
        )
        .with_retry_after(seconds)
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(burst: u32, interval_secs: u64, capacity: usize) -> RateLimiter {
        RateLimiter::new(
            Some(Rate {
                burst,
                interval: Duration::from_secs(interval_secs),
            }),
            capacity,
        )
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn a_burst_then_one_per_interval_with_the_wait_in_seconds() {
        let l = limiter(3, 6, 10);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check(A, t0), Ok(()));
        }
        assert_eq!(l.check(A, t0), Err(6));
        assert_eq!(l.check(A, t0 + Duration::from_secs(4)), Err(2));
        // Another address has its own bucket.
        assert_eq!(l.check(B, t0), Ok(()));
        assert_eq!(l.check(A, t0 + Duration::from_secs(6)), Ok(()));
        assert_eq!(l.check(A, t0 + Duration::from_secs(6)), Err(6));
    }

    #[test]
    fn no_rate_means_no_limit() {
        let l = RateLimiter::new(None, 10);
        let t0 = Instant::now();
        assert!((0..1000).all(|_| l.check(A, t0).is_ok()));
        assert!(l.is_empty());
    }

    #[test]
    fn the_table_is_bounded_and_refilled_buckets_go_first() {
        let l = limiter(2, 1, 4);
        let t0 = Instant::now();
        for i in 0..4u8 {
            assert_eq!(
                l.check(
                    IpAddr::from([10, 0, 0, i]),
                    t0 + Duration::from_secs(u64::from(i))
                ),
                Ok(())
            );
        }
        // At t0+5 s, every bucket has refilled: all are dropped for the new address.
        assert_eq!(l.check(A, t0 + Duration::from_secs(5)), Ok(()));
        assert_eq!(l.len(), 1);
        // A full table of busy buckets loses its least recently used entry.
        let l = limiter(2, 60, 2);
        for (i, ip) in [A, B].into_iter().enumerate() {
            assert_eq!(l.check(ip, t0 + Duration::from_secs(i as u64)), Ok(()));
        }
        assert_eq!(
            l.check(IpAddr::from([10, 0, 0, 9]), t0 + Duration::from_secs(2)),
            Ok(())
        );
        assert_eq!(l.len(), 2);
        // B stayed: its bucket still holds one token, not a fresh two.
        assert_eq!(l.check(B, t0 + Duration::from_secs(2)), Ok(()));
        assert!(l.check(B, t0 + Duration::from_secs(2)).is_err());
    }

    #[test]
    fn ipv6_hosts_share_their_64() {
        let l = limiter(1, 60, 10);
        let t0 = Instant::now();
        let one: IpAddr = "2001:db8:1:2::1".parse().expect("address");
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("address");
        let other_64: IpAddr = "2001:db8:1:3::1".parse().expect("address");
        assert_eq!(l.check(one, t0), Ok(()));
        assert!(l.check(same_64, t0).is_err());
        assert_eq!(l.check(other_64, t0), Ok(()));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("address");
        assert_eq!(l.check(A, t0), Ok(()));
        assert!(l.check(mapped, t0).is_err());
    }
}
