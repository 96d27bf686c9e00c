//! The wall clock and randomness the agent needs: RFC 3339 times for events and state files,
//! and jitter for retries (no crate needed for either).

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herd_core::Timestamp;

/// Seconds since the Unix epoch (0 for a clock set before 1970).
pub(crate) fn unix_seconds(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// Now, as RFC 3339 UTC (`2000-11-12T01:02:03Z`).
pub(crate) fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

pub(crate) fn rfc3339(at: SystemTime) -> String {
    Timestamp::from_unix_seconds(unix_seconds(at)).to_string()
}

/// The instant an RFC 3339 text names, as a `SystemTime`.
pub(crate) fn parse_rfc3339(text: &str) -> Result<SystemTime, String> {
    let at = Timestamp::parse(text)?;
    let seconds = u64::try_from(at.unix_seconds()).unwrap_or(0);
    Ok(UNIX_EPOCH + Duration::from_secs(seconds))
}

/// A random number in `[0, 1)`, different in every call and every process. Good enough to
/// spread retries; not for secrets.
pub(crate) fn random_unit() -> f64 {
    // std seeds each `RandomState` from the OS once per thread and then varies it per
    // instance; mixing in the time makes separate processes started together differ too.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.write_u32(std::process::id());
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// `duration` scaled by a random factor in `[1 - spread, 1 + spread]`.
pub(crate) fn jittered(duration: Duration, spread: f64) -> Duration {
    let factor = 1.0 + spread * (2.0 * random_unit() - 1.0);
    duration.mul_f64(factor.max(0.0))
}

/// Exponential back-off with jitter while the center cannot be reached: `min`, doubling per
/// failure up to `max`, each delay randomised by ±25 % so a fleet that lost its center
/// together does not come back in lockstep.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            failures: 0,
        }
    }

    /// The delay before the next attempt, after one more failure.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(30));
        self.failures = self.failures.saturating_add(1);
        let base = self.min.saturating_mul(factor).min(self.max);
        jittered(base, 0.25)
            .min(self.max)
            .max(Duration::from_millis(100))
    }

    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    #[cfg(test)]
    fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_rfc3339() {
        let at = UNIX_EPOCH + Duration::from_secs(974_000_000);
        let text = rfc3339(at);
        assert_eq!(text, "2000-11-12T03:33:20Z");
        assert_eq!(parse_rfc3339(&text).unwrap(), at);
        assert_eq!(
            parse_rfc3339("2000-11-12T12:33:20+09:00").unwrap(),
            at,
            "offsets are honoured"
        );
        assert!(parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn random_numbers_vary_and_stay_in_range() {
        let draws: Vec<f64> = (0..100).map(|_| random_unit()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        let distinct: std::collections::BTreeSet<u64> = draws.iter().map(|x| x.to_bits()).collect();
        assert!(distinct.len() > 90, "{distinct:?}");
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_secs(4), Duration::from_secs(60));
        let first = backoff.next_delay();
        assert!(
            first >= Duration::from_secs(3) && first <= Duration::from_secs(5),
            "{first:?}"
        );
        let second = backoff.next_delay();
        assert!(
            second >= Duration::from_secs(6) && second <= Duration::from_secs(10),
            "{second:?}"
        );
        for _ in 0..40 {
            assert!(backoff.next_delay() <= Duration::from_secs(60));
        }
        assert!(backoff.next_delay() >= Duration::from_secs(45));
        backoff.reset();
        assert_eq!(backoff.failures(), 0);
        assert!(backoff.next_delay() <= Duration::from_secs(5));
    }
}
