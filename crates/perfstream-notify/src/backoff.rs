//! Per-target pacing: exponential backoff after failures and a token-bucket rate limit. Pure:
//! time is an argument (seconds on any monotonic scale), so tests need no clock.

use std::time::Duration;

/// The wait after `failures` consecutive failed attempts (1 = the first failure):
/// `initial * 2^(failures-1)`, at most `max`.
pub fn backoff(failures: u32, initial: Duration, max: Duration) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    initial.saturating_mul(1u32 << exp).min(max)
}

/// A token bucket: `rate` tokens per second, at most `burst` stored.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: f64,
}

impl Bucket {
    /// A full bucket at time `now`.
    pub fn new(rate: f64, burst: u32, now: f64) -> Bucket {
        let burst = f64::from(burst.max(1));
        Bucket {
            rate,
            burst,
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: f64) {
        if now > self.at {
            self.tokens = (self.tokens + (now - self.at) * self.rate).min(self.burst);
            self.at = now;
        }
    }

    /// Takes a token if one is there.
    pub fn try_take(&mut self, now: f64) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (i, m) = (Duration::from_secs(1), Duration::from_secs(60));
        let got: Vec<u64> = (1..=9).map(|f| backoff(f, i, m).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(u32::MAX, i, m), m);
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let mut b = Bucket::new(2.0, 3, 0.0);
        assert!((0..3).all(|_| b.try_take(0.0)));
        assert!(!b.try_take(0.0));
        assert!(!b.try_take(0.4));
        assert!(b.try_take(0.5));
        assert!(!b.try_take(0.5));
    }

    proptest! {
        /// Over any span, the bucket never lets more than burst + rate * span through.
        #[test]
        fn bucket_never_exceeds_its_rate(
            rate in 0.5f64..50.0, burst in 1u32..20,
            steps in proptest::collection::vec(0.0f64..0.5, 1..300),
        ) {
            let mut b = Bucket::new(rate, burst, 0.0);
            let (mut now, mut taken) = (0.0, 0u32);
            for d in steps {
                now += d;
                if b.try_take(now) { taken += 1; }
            }
            prop_assert!(f64::from(taken) <= f64::from(burst) + rate * now + 1e-9);
        }
    }
}
