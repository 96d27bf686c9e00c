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
    // A time from a center or a state file can be as far away as its parser allows: refuse
    // one `SystemTime` cannot hold rather than panic in the addition.
    UNIX_EPOCH
        .checked_add(Duration::from_secs(seconds))
        .ok_or_else(|| format!("{text:?} is too far in the future"))
}

/// The shortest interval between check-ins the agent accepts from a center: a buggy or hostile
/// center answering `0` must not turn the agent into a busy loop against it.
pub(crate) const MIN_CHECKIN: Duration = Duration::from_secs(10);

/// The longest: a center answering `u64::MAX` must not silence a terminal for ever (and a
/// deadline that far away would overflow `SystemTime`).
pub(crate) const MAX_CHECKIN: Duration = Duration::from_secs(7 * 24 * 3600);

/// The interval a center asked for, clamped to [`MIN_CHECKIN`, `MAX_CHECKIN`], with a sentence
/// for the log when it had to be clamped.
pub(crate) fn checkin_interval(asked_secs: u64) -> (Duration, Option<String>) {
    let asked = Duration::from_secs(asked_secs);
    let kept = asked.clamp(MIN_CHECKIN, MAX_CHECKIN);
    let note = (kept != asked).then(|| {
        format!(
            "the center asked for the next check-in in {asked_secs} s; using {} s (the agent \
             keeps intervals between {} s and {} s)",
            kept.as_secs(),
            MIN_CHECKIN.as_secs(),
            MAX_CHECKIN.as_secs()
        )
    });
    (kept, note)
}

/// `at + delay`, or the latest time the platform can represent instead of a panic when the sum
/// overflows: a deadline is only ever compared, so "far away" is as good as the exact value.
pub(crate) fn later(at: SystemTime, delay: Duration) -> SystemTime {
    at.checked_add(delay)
        .or_else(|| at.checked_add(MAX_CHECKIN))
        .unwrap_or(at)
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
    // `mul_f64` panics when the product overflows; a huge duration stays huge instead.
    Duration::try_from_secs_f64(duration.as_secs_f64() * factor.max(0.0)).unwrap_or(Duration::MAX)
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
        // Waiting longer than the longest check-in interval for a center that was merely down
        // helps nobody, and keeps every delay addable to `now`.
        let min = min.min(MAX_CHECKIN);
        Backoff {
            min,
            max: max.clamp(min, MAX_CHECKIN),
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
    fn a_center_sending_a_huge_interval_does_not_crash_the_agent() {
        let (kept, note) = checkin_interval(u64::MAX);
        assert_eq!(kept, MAX_CHECKIN);
        assert!(note.unwrap().contains(&u64::MAX.to_string()));
        // The deadline the daemon computes from it is representable.
        let now = SystemTime::now();
        assert_eq!(later(now, kept), now + MAX_CHECKIN);
        // Even a delay nobody clamped gives a deadline, not a panic.
        assert!(later(now, Duration::from_secs(u64::MAX)) > now);
        assert!(later(now, Duration::MAX) > now);
    }

    #[test]
    fn a_center_sending_a_zero_interval_does_not_make_the_agent_spin() {
        for asked in [0, 1, 9] {
            let (kept, note) = checkin_interval(asked);
            assert_eq!(kept, MIN_CHECKIN);
            assert!(note.is_some(), "clamping {asked} is logged");
        }
        assert_eq!(checkin_interval(3517), (Duration::from_secs(3517), None));
        assert_eq!(checkin_interval(10), (MIN_CHECKIN, None));
        assert_eq!(checkin_interval(7 * 24 * 3600), (MAX_CHECKIN, None));
    }

    #[test]
    fn back_off_with_an_absurd_cap_stays_addable_to_now() {
        let mut backoff =
            Backoff::new(Duration::from_secs(u64::MAX), Duration::from_secs(u64::MAX));
        for _ in 0..40 {
            let delay = backoff.next_delay();
            assert!(later(SystemTime::now(), delay) > SystemTime::now());
        }
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
