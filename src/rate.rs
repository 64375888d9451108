//! Flood control: a token bucket per chat client, pure arithmetic on instants.

use std::time::{Duration, Instant};

/// Allows `burst` lines at once, then `rate` lines per second. The client thread waits
/// for a token before passing each line on, so a flooder is read more slowly and TCP
/// backpressure slows it down; nothing it sent is dropped.
#[derive(Debug)]
pub struct TokenBucket {
    per_second: f64,
    capacity: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    /// A full bucket; `None` if `per_second` is 0 (flood control off).
    pub fn new(per_second: u32, burst: u32, now: Instant) -> Option<TokenBucket> {
        if per_second == 0 {
            return None;
        }
        let capacity = f64::from(burst.max(1));
        Some(TokenBucket {
            per_second: f64::from(per_second),
            capacity,
            tokens: capacity,
            refilled_at: now,
        })
    }

    /// Takes a token if there is one; otherwise says how long until there will be.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.per_second,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 3, start).expect("on");
        for _ in 0..3 {
            assert_eq!(bucket.take(start), Ok(()));
        }
        let wait = bucket.take(start).expect_err("empty");
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        assert_eq!(bucket.take(start + Duration::from_millis(100)), Ok(()));
        // Idle time refills up to the burst, not beyond.
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(bucket.take(later), Ok(()));
        }
        assert!(bucket.take(later).is_err());
    }

    #[test]
    fn rate_zero_turns_flood_control_off() {
        assert!(TokenBucket::new(0, 20, Instant::now()).is_none());
    }
}
