//! Throttling and aggregation of alerts during outbreaks, pure (the clock is a parameter).
//!
//! Per rule, time runs in windows of `window_secs`. In a calm window the first `burst` alerts
//! go out one by one; the next one sends a single summary ("outbreak: more than N alerts …")
//! and everything after it in the window is only counted. When a window that aggregated ends,
//! one digest says how many alerts came, of which kinds and about what (the most frequent
//! subjects), and the next window aggregates from its first alert (the outbreak is assumed to
//! go on); a window that ends without aggregating returns the rule to calm. So 10,000
//! detections in five minutes make `burst` alerts, one summary and one digest per window,
//! whatever their number.
//!
//! A rule's [`Window`] is data (serde): center processes sharing a database keep it in the
//! store and decide with this same code over the window they read (`alerts/mod.rs`).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// The distinct subjects a digest counts; beyond it they are counted as "others".
pub const MAX_DIGEST_SUBJECTS: usize = 1000;
/// Subjects a digest names, most frequent first.
pub const LISTED_SUBJECTS: usize = 10;

/// What one alert says, before it reaches a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offered<'a> {
    pub kind: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
}

/// What to send for a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The alert's own kind, or `summary` / `digest`.
    pub kind: String,
    pub subject: String,
    pub text: String,
    /// How many alerts it stands for (1 for a single alert).
    pub count: u64,
}

pub const SUMMARY: &str = "summary";
pub const DIGEST: &str = "digest";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub window_secs: i64,
    pub burst: u32,
}

/// One rule's current window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    start: i64,
    sent: u32,
    /// Aggregating: counting, not sending.
    outbreak: bool,
    counted: u64,
    kinds: BTreeMap<String, u64>,
    subjects: HashMap<String, u64>,
    other_subjects: u64,
}

/// The windows of every rule.
#[derive(Debug)]
pub struct Throttle {
    limits: Limits,
    rules: HashMap<String, Window>,
}

impl Throttle {
    pub fn new(limits: Limits) -> Throttle {
        Throttle {
            limits: Limits {
                window_secs: limits.window_secs.max(1),
                burst: limits.burst,
            },
            rules: HashMap::new(),
        }
    }

    /// `rule`'s current window, as another process left it.
    pub fn set_window(&mut self, rule: &str, window: Window) {
        self.rules.insert(rule.to_owned(), window);
    }

    /// Takes `rule`'s current window out, `None` when it has none.
    pub fn take_window(&mut self, rule: &str) -> Option<Window> {
        self.rules.remove(rule)
    }

    /// An alert for `rule` at `now`: what to send at once (nothing while aggregating). A
    /// digest of a window that ended before `now` comes first.
    pub fn offer(&mut self, rule: &str, alert: &Offered<'_>, now: i64) -> Vec<Notice> {
        let limits = self.limits;
        let mut out = Vec::new();
        let window = self.rules.entry(rule.to_owned()).or_insert_with(|| Window {
            start: now,
            ..Window::default()
        });
        if now >= window.start + limits.window_secs {
            out.extend(close_window(rule, window, now, limits));
        }
        if !window.outbreak && window.sent < limits.burst {
            window.sent += 1;
            out.push(Notice {
                kind: alert.kind.to_owned(),
                subject: alert.subject.to_owned(),
                text: alert.text.to_owned(),
                count: 1,
            });
            return out;
        }
        if !window.outbreak {
            window.outbreak = true;
            out.push(Notice {
                kind: SUMMARY.to_owned(),
                subject: rule.to_owned(),
                text: format!(
                    "Outbreak ({rule}): more than {} alerts within {} s, the latest {}: {}. \
                     Further alerts of this rule are collected into a digest every {} s.",
                    limits.burst, limits.window_secs, alert.kind, alert.text, limits.window_secs
                ),
                count: 1,
            });
        }
        window.counted += 1;
        *window.kinds.entry(alert.kind.to_owned()).or_default() += 1;
        let room = window.subjects.len() < MAX_DIGEST_SUBJECTS;
        match window.subjects.get_mut(alert.subject) {
            Some(n) => *n += 1,
            None if room => {
                window.subjects.insert(alert.subject.to_owned(), 1);
            }
            None => window.other_subjects += 1,
        }
        out
    }

    /// The digests of windows that have ended by `now` (rules without alerts since stay quiet).
    pub fn due(&mut self, now: i64) -> Vec<(String, Notice)> {
        let limits = self.limits;
        let mut out = Vec::new();
        for (rule, window) in &mut self.rules {
            if now >= window.start + limits.window_secs
                && let Some(digest) = close_window(rule, window, now, limits)
            {
                out.push((rule.clone(), digest));
            }
        }
        // Calm rules with nothing pending are forgotten, so the map holds active rules only.
        self.rules
            .retain(|_, window| window.outbreak || now < window.start + limits.window_secs);
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// Ends `window` (starting the next at `now`) and gives its digest if it aggregated anything.
fn close_window(rule: &str, window: &mut Window, now: i64, limits: Limits) -> Option<Notice> {
    let digest = (window.counted > 0).then(|| digest(rule, window, limits));
    // An outbreak that collected something goes on aggregating; one that collected nothing
    // (or a calm window) is over.
    let outbreak = window.outbreak && window.counted > 0;
    *window = Window {
        start: now,
        outbreak,
        ..Window::default()
    };
    digest
}

fn digest(rule: &str, window: &Window, limits: Limits) -> Notice {
    let mut subjects: Vec<(&String, &u64)> = window.subjects.iter().collect();
    subjects.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let listed: Vec<String> = subjects
        .iter()
        .take(LISTED_SUBJECTS)
        .map(|(subject, n)| format!("{subject} ({n})"))
        .collect();
    let more = subjects.len().saturating_sub(LISTED_SUBJECTS);
    let kinds: Vec<String> = window
        .kinds
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    let mut text = format!(
        "Digest ({rule}): {} more alerts in the last {} s: {}. Most frequent: {}",
        window.counted,
        limits.window_secs,
        kinds.join(", "),
        listed.join(", ")
    );
    if more > 0 {
        text.push_str(&format!(", and {more} more subjects"));
    }
    if window.other_subjects > 0 {
        text.push_str(&format!(
            " (plus {} alerts about subjects beyond the {MAX_DIGEST_SUBJECTS} counted apart)",
            window.other_subjects
        ));
    }
    text.push('.');
    Notice {
        kind: DIGEST.to_owned(),
        subject: rule.to_owned(),
        text,
        count: window.counted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(subject: &str) -> Offered<'_> {
        Offered {
            kind: "detection",
            subject,
            text: "EICAR found",
        }
    }

    const LIMITS: Limits = Limits {
        window_secs: 300,
        burst: 3,
    };

    #[test]
    fn ten_thousand_alerts_make_a_few_singles_one_summary_and_one_digest_per_window() {
        let mut throttle = Throttle::new(LIMITS);
        let mut sent = Vec::new();
        // 10,000 detections on 2,000 terminals within 100 s.
        for i in 0..10_000i64 {
            let subject = format!("t{}", i % 2000);
            sent.extend(throttle.offer("outbreak", &alert(&subject), 1000 + i / 100));
            if i % 1000 == 0 {
                sent.extend(throttle.due(1000 + i / 100).into_iter().map(|(_, n)| n));
            }
        }
        assert_eq!(sent.len(), 4, "{sent:#?}");
        assert!(sent[..3].iter().all(|n| n.kind == "detection"));
        assert_eq!(sent[3].kind, SUMMARY);
        // Nothing before the window ends; then one digest counting the rest.
        assert!(throttle.due(1299).is_empty());
        let digests = throttle.due(1300);
        assert_eq!(digests.len(), 1);
        let digest = &digests[0].1;
        assert_eq!(digest.kind, DIGEST);
        assert_eq!(digest.count, 10_000 - 3);
        assert!(
            digest.text.contains("9997 more alerts") && digest.text.contains("9997 detection"),
            "{}",
            digest.text
        );
        assert!(
            digest
                .text
                .contains("and 990 more subjects (plus 4997 alerts"),
            "{}",
            digest.text
        );
        // The outbreak goes on: the next window aggregates from its first alert…
        assert!(throttle.offer("outbreak", &alert("t1"), 1400).is_empty());
        let next = throttle.due(1600);
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].1.count, 1);
        // …and a window with nothing in it ends it: alerts go out one by one again.
        assert!(throttle.due(1900).is_empty());
        let calm = throttle.offer("outbreak", &alert("t2"), 1950);
        assert_eq!(calm.len(), 1);
        assert_eq!(calm[0].kind, "detection");
    }

    #[test]
    fn rules_are_throttled_apart_and_a_late_alert_closes_its_window_first() {
        let mut throttle = Throttle::new(Limits {
            window_secs: 60,
            burst: 1,
        });
        assert_eq!(throttle.offer("a", &alert("x"), 0).len(), 1);
        assert_eq!(throttle.offer("b", &alert("x"), 0).len(), 1);
        // a's second alert: the summary.
        let second = throttle.offer("a", &alert("y"), 1);
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].kind, SUMMARY);
        assert!(throttle.offer("a", &alert("y"), 2).is_empty());
        // An alert after the window (before any `due`) brings the digest with it.
        let late = throttle.offer("a", &alert("z"), 100);
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].kind, DIGEST);
        assert_eq!(late[0].count, 2);
        assert!(late[0].text.contains("y (2)"), "{}", late[0].text);
    }

    #[test]
    fn a_window_taken_out_and_put_back_decides_as_if_it_had_stayed() {
        // Two processes taking turns through a stored window send what one would have.
        let mut one = Throttle::new(LIMITS);
        let mut turns = Throttle::new(LIMITS);
        let mut stored: Option<Window> = None;
        let (mut sent_one, mut sent_turns) = (Vec::new(), Vec::new());
        for i in 0..50i64 {
            let subject = format!("t{}", i % 7);
            sent_one.extend(one.offer("r", &alert(&subject), 1000 + i));
            if let Some(window) = stored.take() {
                let text = serde_json::to_string(&window).unwrap();
                turns.set_window("r", serde_json::from_str(&text).unwrap());
            }
            sent_turns.extend(turns.offer("r", &alert(&subject), 1000 + i));
            stored = turns.take_window("r");
        }
        turns.set_window("r", stored.take().unwrap());
        sent_one.extend(one.due(1400).into_iter().map(|(_, n)| n));
        sent_turns.extend(turns.due(1400).into_iter().map(|(_, n)| n));
        assert_eq!(sent_one, sent_turns);
        let kinds: Vec<&str> = sent_turns.iter().map(|n| n.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["detection", "detection", "detection", SUMMARY, DIGEST]
        );
        // A calm window that ended sends nothing, and the next one stored counts nothing.
        let mut calm = Throttle::new(LIMITS);
        calm.offer("r", &alert("t1"), 0);
        assert!(calm.due(LIMITS.window_secs).is_empty());
        let next = calm.take_window("r").unwrap();
        assert_eq!(
            (next.start, next.sent, next.counted),
            (LIMITS.window_secs, 0, 0)
        );
        assert!(!next.outbreak);
    }

    #[test]
    fn the_digest_counts_subjects_it_cannot_keep() {
        let mut throttle = Throttle::new(Limits {
            window_secs: 10,
            burst: 0,
        });
        for i in 0..(MAX_DIGEST_SUBJECTS + 50) {
            throttle.offer("r", &alert(&format!("s{i}")), 0);
        }
        let digest = &throttle.due(10)[0].1;
        assert_eq!(digest.count, (MAX_DIGEST_SUBJECTS + 50) as u64);
        let more = MAX_DIGEST_SUBJECTS - LISTED_SUBJECTS;
        assert!(
            digest
                .text
                .contains(&format!("and {more} more subjects (plus 50 alerts")),
            "{}",
            digest.text
        );
    }
}
