//! Which upstream the agent talks to (failover, issue 12): its site first, then the center (or
//! the list `--upstream` gives). When the current one has not answered for `failover_after`
//! the agent moves to the next; while it is not on the first (preferred) one it probes that one
//! every `probe_every` and goes back as soon as it answers. Pure: the clock is an argument, and
//! the caller does the talking.
//!
//! Only silence counts: an upstream that answers, even with a refusal or a 5xx, is reachable,
//! and failing over would not change its mind.

use std::time::{Duration, SystemTime};

#[derive(Debug, Clone)]
pub(crate) struct Upstreams {
    list: Vec<String>,
    current: usize,
    /// When the current upstream first did not answer, in the current run of silences.
    silent_since: Option<SystemTime>,
    failover_after: Duration,
    probe_every: Duration,
    /// When to probe the preferred upstream next (only while on another).
    next_probe: Option<SystemTime>,
}

impl Upstreams {
    /// `list` in order of preference, without duplicates; at least one.
    pub(crate) fn new(list: Vec<String>, failover_after: Duration, probe_every: Duration) -> Self {
        let mut unique: Vec<String> = Vec::with_capacity(list.len());
        for url in list {
            let url = url.trim().trim_end_matches('/').to_owned();
            if !url.is_empty() && !unique.contains(&url) {
                unique.push(url);
            }
        }
        assert!(!unique.is_empty(), "an agent has at least one upstream");
        Upstreams {
            list: unique,
            current: 0,
            silent_since: None,
            failover_after,
            probe_every,
            next_probe: None,
        }
    }

    pub(crate) fn list(&self) -> &[String] {
        &self.list
    }

    pub(crate) fn current(&self) -> &str {
        &self.list[self.current]
    }

    pub(crate) fn preferred(&self) -> &str {
        &self.list[0]
    }

    pub(crate) fn on_preferred(&self) -> bool {
        self.current == 0
    }

    /// The current upstream answered.
    pub(crate) fn answered(&mut self) {
        self.silent_since = None;
    }

    /// The current upstream did not answer at `now`: the index to move to when it has been
    /// silent for `failover_after` and there is another.
    pub(crate) fn silent(&mut self, now: SystemTime) -> Option<usize> {
        let since = *self.silent_since.get_or_insert(now);
        let silent_for = now.duration_since(since).unwrap_or_default();
        (self.list.len() > 1 && silent_for >= self.failover_after)
            .then(|| (self.current + 1) % self.list.len())
    }

    /// When the current upstream will have been silent long enough to leave it (to wake up
    /// then rather than after a longer back-off).
    pub(crate) fn failover_at(&self) -> Option<SystemTime> {
        if self.list.len() < 2 {
            return None;
        }
        self.silent_since
            .and_then(|since| since.checked_add(self.failover_after))
    }

    pub(crate) fn switch_to(&mut self, index: usize, now: SystemTime) {
        self.current = index.min(self.list.len() - 1);
        self.silent_since = None;
        self.next_probe = (self.current != 0)
            .then(|| now.checked_add(self.probe_every))
            .flatten();
    }

    /// Whether to probe the preferred upstream now.
    pub(crate) fn probe_due(&self, now: SystemTime) -> bool {
        self.next_probe.is_some_and(|at| at <= now)
    }

    /// The preferred upstream did not answer the probe.
    pub(crate) fn probed(&mut self, now: SystemTime) {
        self.next_probe = now.checked_add(self.probe_every);
    }

    pub(crate) fn next_probe(&self) -> Option<SystemTime> {
        self.next_probe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        T0 + Duration::from_secs(secs)
    }

    fn two() -> Upstreams {
        Upstreams::new(
            vec!["https://site:8443/".into(), "https://center:8443".into()],
            Duration::from_secs(60),
            Duration::from_secs(300),
        )
    }

    #[test]
    fn fails_over_after_a_minute_of_silence_and_not_before() {
        let mut upstreams = two();
        assert_eq!(upstreams.current(), "https://site:8443");
        assert_eq!(upstreams.silent(at(0)), None);
        assert_eq!(upstreams.failover_at(), Some(at(60)));
        assert_eq!(upstreams.silent(at(30)), None);
        // An answer in between starts the count again.
        upstreams.answered();
        assert_eq!(upstreams.silent(at(70)), None);
        assert_eq!(upstreams.silent(at(129)), None);
        assert_eq!(upstreams.silent(at(130)), Some(1));
        upstreams.switch_to(1, at(130));
        assert_eq!(upstreams.current(), "https://center:8443");
        assert!(!upstreams.on_preferred());
        assert_eq!(upstreams.next_probe(), Some(at(430)));
    }

    #[test]
    fn probes_the_preferred_one_and_goes_back() {
        let mut upstreams = two();
        upstreams.switch_to(1, at(0));
        assert!(!upstreams.probe_due(at(299)));
        assert!(upstreams.probe_due(at(300)));
        upstreams.probed(at(300));
        assert!(!upstreams.probe_due(at(599)));
        upstreams.switch_to(0, at(600));
        assert!(upstreams.on_preferred());
        assert_eq!(upstreams.next_probe(), None);
        assert!(!upstreams.probe_due(at(10_000)));
    }

    #[test]
    fn one_upstream_never_fails_over_and_duplicates_count_once() {
        let mut one = Upstreams::new(
            vec!["https://c:1".into(), "https://c:1/".into()],
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        assert_eq!(one.list().len(), 1);
        assert_eq!(one.silent(at(0)), None);
        assert_eq!(one.silent(at(1000)), None);
        assert_eq!(one.failover_at(), None);
    }

    #[test]
    fn the_last_upstream_wraps_round_to_the_first() {
        let mut three = Upstreams::new(
            vec![
                "https://a:1".into(),
                "https://b:1".into(),
                "https://c:1".into(),
            ],
            Duration::from_secs(10),
            Duration::from_secs(100),
        );
        three.switch_to(2, at(0));
        three.silent(at(0));
        assert_eq!(three.silent(at(10)), Some(0));
    }
}
