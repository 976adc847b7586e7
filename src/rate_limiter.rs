//! Token buckets, one per key: a client IP for the endpoints that attract guessing (login,
//! registration), a user for the actions one account could flood the server with, an
//! account for wrong passwords.
//!
//! Memory stays bounded by the buckets in use: a bucket that has refilled is the same as
//! none, so it is forgotten, in sweeps that run each time the map has doubled since the
//! last one (so their cost is spread over the requests that grew it).

use std::{
    borrow::Borrow,
    collections::HashMap,
    hash::Hash,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::config::RateLimit;

/// No sweep below this many buckets.
const MIN_SWEEP: usize = 1024;

/// The longest wait ever announced (about 49 days), so that a tiny `per_second` cannot
/// ask for a duration no client or JSON number can hold.
const MAX_WAIT_MS: f64 = u32::MAX as f64;

pub struct RateLimiter<K> {
    limit: RateLimit,
    state: Mutex<Buckets<K>>,
}

struct Buckets<K> {
    map: HashMap<K, Bucket>,
    /// The map's size at which the next sweep runs.
    sweep_at: usize,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl<K: Hash + Eq> RateLimiter<K> {
    pub fn new(limit: RateLimit) -> Self {
        Self { limit, state: Mutex::new(Buckets { map: HashMap::new(), sweep_at: MIN_SWEEP }) }
    }

    /// Takes one token for `key`, or says how long until one is available (rounded up to
    /// the millisecond, so that a client waiting exactly that long gets through).
    pub fn check<Q>(&self, key: &Q) -> Result<(), Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.check_at(key, Instant::now())
    }

    /// Whether `key` has a token left, without taking it: for limits on failures, checked
    /// before an attempt and spent ([`RateLimiter::check`]) only when it fails.
    pub fn peek<Q>(&self, key: &Q) -> Result<(), Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let now = Instant::now();
        let state = self.state.lock().expect("rate limiter lock is never poisoned");
        let Some(bucket) = state.map.get(key) else { return Ok(()) };
        let RateLimit { per_second, burst } = self.limit;
        let tokens = (bucket.tokens + now.duration_since(bucket.updated).as_secs_f64() * per_second)
            .min(f64::from(burst));
        if tokens >= 1.0 { Ok(()) } else { Err(wait(tokens, per_second)) }
    }

    fn check_at<Q>(&self, key: &Q, now: Instant) -> Result<(), Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let RateLimit { per_second, burst } = self.limit;
        let burst = f64::from(burst);
        let mut state = self.state.lock().expect("rate limiter lock is never poisoned");
        if state.map.len() >= state.sweep_at {
            state
                .map
                .retain(|_, b| b.tokens + now.duration_since(b.updated).as_secs_f64() * per_second < burst);
            state.sweep_at = (state.map.len() * 2).max(MIN_SWEEP);
        }
        if !state.map.contains_key(key) {
            state.map.insert(key.to_owned(), Bucket { tokens: burst, updated: now });
        }
        let bucket = state.map.get_mut(key).expect("inserted above");
        let refill = now.duration_since(bucket.updated).as_secs_f64() * per_second;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(wait(bucket.tokens, per_second))
        }
    }

    #[cfg(test)]
    fn buckets(&self) -> usize {
        self.state.lock().unwrap().map.len()
    }
}

/// How long until a bucket holding `tokens` has one.
fn wait(tokens: f64, per_second: f64) -> Duration {
    let ms = ((1.0 - tokens) / per_second * 1000.0).ceil().min(MAX_WAIT_MS);
    Duration::from_millis(ms as u64)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    #[test]
    fn burst_then_refill() {
        let limiter = RateLimiter::new(RateLimit { per_second: 2.0, burst: 3 });
        let ip: IpAddr = [127, 0, 0, 1].into();
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.check_at(&ip, t0).unwrap();
        }
        let wait = limiter.check_at(&ip, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        limiter.check_at(&ip, t0 + wait).unwrap();
        // Another address has its own bucket.
        limiter.check_at(&IpAddr::from([127, 0, 0, 2]), t0).unwrap();
    }

    #[test]
    fn users_are_looked_up_without_an_owned_key() {
        let limiter: RateLimiter<String> = RateLimiter::new(RateLimit { per_second: 0.1, burst: 1 });
        let t0 = Instant::now();
        limiter.check_at("@alice:localhost", t0).unwrap();
        assert_eq!(limiter.check_at("@alice:localhost", t0).unwrap_err(), Duration::from_secs(10));
        limiter.check_at("@bob:localhost", t0).unwrap();
    }

    #[test]
    fn refilled_buckets_are_forgotten_and_busy_ones_kept() {
        let limiter: RateLimiter<u32> = RateLimiter::new(RateLimit { per_second: 1.0, burst: 2 });
        let t0 = Instant::now();
        // An emptied bucket, which takes two seconds to refill.
        limiter.check_at(&0, t0).unwrap();
        limiter.check_at(&0, t0).unwrap();
        for key in 1..MIN_SWEEP as u32 {
            limiter.check_at(&key, t0).unwrap();
        }
        assert_eq!(limiter.buckets(), MIN_SWEEP);
        // A second later the buckets that spent one token are full again; key 0 is not.
        limiter.check_at(&u32::MAX, t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(limiter.buckets(), 2, "key 0 and the newcomer");
        assert!(limiter.check_at(&0, t0 + Duration::from_secs(1)).is_ok(), "one token back after a second");
        assert!(limiter.check_at(&0, t0 + Duration::from_secs(1)).is_err(), "its bucket was kept");
    }

    #[test]
    fn sweeps_grow_with_the_buckets_in_use() {
        let limiter: RateLimiter<u32> = RateLimiter::new(RateLimit { per_second: 0.001, burst: 1 });
        let t0 = Instant::now();
        // None refills within the test, so nothing can be forgotten: the map grows, and
        // sweeps run only when it has doubled.
        for key in 0..(4 * MIN_SWEEP as u32) {
            limiter.check_at(&key, t0).unwrap();
        }
        assert_eq!(limiter.buckets(), 4 * MIN_SWEEP);
        assert_eq!(limiter.state.lock().unwrap().sweep_at, 4 * MIN_SWEEP);
    }

    #[test]
    fn peeking_takes_nothing() {
        let limiter: RateLimiter<String> = RateLimiter::new(RateLimit { per_second: 0.001, burst: 1 });
        assert!(limiter.peek("@alice:localhost").is_ok(), "no bucket yet");
        assert!(limiter.peek("@alice:localhost").is_ok(), "still none");
        limiter.check("@alice:localhost").unwrap();
        assert!(limiter.peek("@alice:localhost").is_err(), "the one token is spent");
        assert!(limiter.peek("@bob:localhost").is_ok());
    }

    #[test]
    fn a_tiny_rate_announces_a_bounded_wait() {
        let limiter: RateLimiter<u32> = RateLimiter::new(RateLimit { per_second: 1e-300, burst: 1 });
        let t0 = Instant::now();
        limiter.check_at(&1, t0).unwrap();
        assert_eq!(limiter.check_at(&1, t0).unwrap_err(), Duration::from_millis(u64::from(u32::MAX)));
    }
}
