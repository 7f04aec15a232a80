//! Rate limit: token buckets per client address for CreateCall and Join.
//!
//! Each (operation, client IP) pair has a bucket of `burst` tokens refilled at `per_second`;
//! a request takes one token or is refused with RESOURCE_EXHAUSTED (the message says when
//! to retry) and counted in `shopcall_grpc_rate_limited_total{operation}`. The client's port
//! is ignored, so reconnecting does not reset a bucket. Time is an input ([`RateLimiter::check`]
//! takes `now`), so the tests need no sleeps.
//!
//! Memory is bounded: past [`MAX_TRACKED`] buckets, the full ones (clients idle long enough to
//! have refilled, which are the same as absent) are dropped; if a flood of distinct addresses
//! still leaves too many, every bucket is dropped, which at worst lets those clients start
//! again from a full burst.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{RateLimit, RateLimits};

/// Buckets kept before the idle ones are dropped.
pub const MAX_TRACKED: usize = 4096;

/// A rate-limited operation: the `operation` label of `shopcall_grpc_rate_limited_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// CreateCall.
    CreateCall,
    /// Join.
    Join,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 2] = [Operation::CreateCall, Operation::Join];

    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::CreateCall => "create_call",
            Operation::Join => "join",
        }
    }

    /// The RPC's name.
    pub fn rpc(self) -> &'static str {
        match self {
            Operation::CreateCall => "CreateCall",
            Operation::Join => "Join",
        }
    }
}

/// A request over its limit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "rate limit: more than {per_second} {rpc} requests per second (burst {burst}) from {client}; \
     retry in {retry_ms} ms",
    rpc = operation.rpc(),
    retry_ms = retry_after.as_millis().max(1)
)]
pub struct RateLimited {
    /// Which operation.
    pub operation: Operation,
    /// The client address.
    pub client: IpAddr,
    /// The limit's rate.
    pub per_second: u32,
    /// The limit's burst.
    pub burst: u32,
    /// When one token will be back.
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// The bucket's tokens at `now`.
    fn refill(&mut self, limit: RateLimit, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * f64::from(limit.per_second)).min(f64::from(limit.burst));
        self.at = now;
    }
}

/// Token buckets per (operation, client address).
#[derive(Debug)]
pub struct RateLimiter {
    limits: RateLimits,
    buckets: Mutex<HashMap<(Operation, IpAddr), Bucket>>,
}

impl RateLimiter {
    /// A limiter with these limits.
    pub fn new(limits: RateLimits) -> RateLimiter {
        RateLimiter {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// A limiter that lets everything through.
    pub fn off() -> RateLimiter {
        RateLimiter::new(RateLimits {
            create_call: RateLimit::OFF,
            join: RateLimit::OFF,
        })
    }

    fn limit(&self, operation: Operation) -> RateLimit {
        match operation {
            Operation::CreateCall => self.limits.create_call,
            Operation::Join => self.limits.join,
        }
    }

    /// Takes a token for one request of `operation` from `client` (`None`: an address tonic
    /// could not tell, all counted as one client), or says when to retry.
    pub fn check(
        &self,
        operation: Operation,
        client: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), RateLimited> {
        let limit = self.limit(operation);
        if !limit.is_on() {
            return Ok(());
        }
        let client = client.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&(operation, client)) {
            let limits = self.limits;
            buckets.retain(|(op, _), b| {
                let l = match op {
                    Operation::CreateCall => limits.create_call,
                    Operation::Join => limits.join,
                };
                b.refill(l, now);
                b.tokens < f64::from(l.burst)
            });
            if buckets.len() >= MAX_TRACKED {
                tracing::warn!(
                    tracked = buckets.len(),
                    "rate limiter: too many client addresses at once; forgetting them all"
                );
                buckets.clear();
            }
        }
        let bucket = buckets.entry((operation, client)).or_insert(Bucket {
            tokens: f64::from(limit.burst),
            at: now,
        });
        bucket.refill(limit, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let missing = 1.0 - bucket.tokens;
        Err(RateLimited {
            operation,
            client,
            per_second: limit.per_second,
            burst: limit.burst,
            retry_after: Duration::from_secs_f64(missing / f64::from(limit.per_second)),
        })
    }

    /// Buckets held now (for tests).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: u32, burst: u32) -> RateLimiter {
        RateLimiter::new(RateLimits {
            create_call: RateLimit { per_second, burst },
            join: RateLimit::OFF,
        })
    }

    #[test]
    fn a_burst_passes_then_the_rate_refills() {
        let l = limiter(2, 3);
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            l.check(Operation::CreateCall, Some(ip), t0).unwrap();
        }
        let err = l.check(Operation::CreateCall, Some(ip), t0).unwrap_err();
        assert_eq!(err.retry_after, Duration::from_millis(500));
        assert_eq!(
            err.to_string(),
            "rate limit: more than 2 CreateCall requests per second (burst 3) from 10.1.2.3; \
             retry in 500 ms"
        );
        // Another client has its own bucket; Join is not limited here.
        l.check(Operation::CreateCall, Some("10.1.2.4".parse().unwrap()), t0)
            .unwrap();
        for _ in 0..100 {
            l.check(Operation::Join, Some(ip), t0).unwrap();
        }
        // Half a second gives one token back, not two.
        let t1 = t0 + Duration::from_millis(500);
        l.check(Operation::CreateCall, Some(ip), t1).unwrap();
        assert!(l.check(Operation::CreateCall, Some(ip), t1).is_err());
        // A long pause refills to the burst, no more.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            l.check(Operation::CreateCall, Some(ip), t2).unwrap();
        }
        assert!(l.check(Operation::CreateCall, Some(ip), t2).is_err());
    }

    #[test]
    fn memory_stays_bounded_under_many_addresses() {
        let l = limiter(1, 1);
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED as u32 * 3) {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            let _ = l.check(Operation::CreateCall, Some(ip), t0);
        }
        assert!(l.tracked() <= MAX_TRACKED);
        // Idle buckets are dropped first.
        let later = t0 + Duration::from_secs(10);
        let _ = l.check(
            Operation::CreateCall,
            Some("192.0.2.1".parse().unwrap()),
            later,
        );
        assert!(l.tracked() < 10, "{}", l.tracked());
    }

    #[test]
    fn off_lets_everything_through() {
        let l = RateLimiter::off();
        let t0 = Instant::now();
        for _ in 0..10_000 {
            l.check(Operation::Join, None, t0).unwrap();
        }
    }
}
