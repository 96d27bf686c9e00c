//! Rollout rings as the planner sees them (SPEC §3.4), and the pure rollout policy the center
//! and `herd sim rollout` drive: which releases a terminal may be offered now, and when a
//! rollout moves to its next ring, completes, or is halted and reverted.
//!
//! Pure like the rest of the planner: ring membership is a function of the terminal id, its
//! group, the release and the rollout's state ([`RingGates`], [`in_ring`]), passed in; no
//! clock, no randomness (the bucket is a stable hash, the same on every machine and in every
//! version). A ring reaches a percentage of the fleet, a list of groups, or both; rings are
//! cumulative (a terminal in a ring is in every later one).

use herd_core::{Catalog, ReleaseIdx};
use rustc_hash::FxHashMap;

/// Ring reach is counted in basis points of the fleet: 10,000 is everyone.
pub const FULL_REACH: u32 = 10_000;

/// A terminal's bucket for a release, in `0..FULL_REACH`: a terminal is in a ring of reach `r`
/// when its bucket is below `r`. FNV-1a over the release key and the terminal id, so the
/// canary ring of one release is not the canary ring of every release (no terminal is always
/// first), and a ring only grows as the reach grows (a terminal once in stays in).
pub fn ring_bucket(release_key: &str, terminal: &str) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in release_key
        .as_bytes()
        .iter()
        .chain(&[0u8])
        .chain(terminal.as_bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV's low bits mix poorly for short inputs; fold the high half in first.
    ((hash ^ (hash >> 32)) % u64::from(FULL_REACH)) as u32
}

/// The key a release is bucketed by (and named by in the rollouts API): `vendor/product/version`.
pub fn release_key(catalog: &Catalog, release: ReleaseIdx) -> String {
    let release = catalog.release(release);
    let product = catalog.product(release.product);
    format!(
        "{}/{}/{}",
        catalog.vendors[product.vendor.get()].id,
        product.id,
        release.version
    )
}

/// Whether a terminal (`terminal` id, in `group` if any) is in a ring that reaches `reach`
/// basis points of the fleet and the terminals of `groups`, for the release `release_key`.
pub fn in_ring(
    reach: u32,
    groups: &[String],
    release_key: &str,
    terminal: &str,
    group: Option<&str>,
) -> bool {
    reach >= FULL_REACH
        || group.is_some_and(|g| groups.iter().any(|r| r == g))
        || (reach > 0 && ring_bucket(release_key, terminal) < reach)
}

/// Parses `name=REACH/SOAKs/MIN_SUCCESSES` rings separated by commas, where REACH is a
/// percentage, `group:NAME` terms, or both joined by `+`, e.g.
/// `canary=group:it-staff/600s/5, early=group:it-staff+10%/1800s/50, broad=100%/0s/0`: each
/// ring reaches more than the one before (a larger percentage, or more groups: rings are
/// cumulative, so a ring's groups include the earlier rings'), the last one 100 %, each
/// percentage with at most two decimals.
pub fn parse_rings(text: &str) -> Result<Vec<RingSpec>, String> {
    let mut rings: Vec<RingSpec> = Vec::new();
    for (i, part) in text.split(',').map(str::trim).enumerate() {
        if part.is_empty() {
            if text.trim().is_empty() {
                break;
            }
            return Err(format!(
                "ring {}: empty (rings are separated by single commas)",
                i + 1
            ));
        }
        let shape = || {
            format!(
                "ring {} ({part:?}): write name=PERCENT%/SOAKs/MIN_SUCCESSES, e.g. canary=1%/600s/5 \
                 or canary=group:it-staff/600s/5",
                i + 1
            )
        };
        let (name, rest) = part.split_once('=').ok_or_else(shape)?;
        let name = name.trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            return Err(format!(
                "ring {}: {name:?} is not a ring name (letters, digits, - and _)",
                i + 1
            ));
        }
        let mut fields = rest.split('/').map(str::trim);
        let (Some(percent), Some(soak), Some(min), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(shape());
        };
        let (reach, mut groups) = parse_reach(percent)
            .map_err(|err| format!("ring {} ({name}): {percent:?}: {err}", i + 1))?;
        let soak_secs: u64 = soak
            .strip_suffix('s')
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                format!(
                    "ring {} ({name}): soak {soak:?} is not seconds like 600s",
                    i + 1
                )
            })?;
        let min_successes: u64 = min.parse().map_err(|_| {
            format!(
                "ring {} ({name}): {min:?} is not a number of successes",
                i + 1
            )
        })?;
        if let Some(previous) = rings.last() {
            // Cumulative: the earlier rings' groups are this one's too.
            let added = groups.iter().any(|g| !previous.groups.contains(g));
            for group in &previous.groups {
                if !groups.contains(group) {
                    groups.push(group.clone());
                }
            }
            groups.sort();
            if reach < previous.reach || (reach == previous.reach && !added) {
                return Err(format!(
                    "ring {} ({name}): its reach must be larger than ring {}'s ({}): a larger \
                     percentage or more groups",
                    i + 1,
                    i,
                    previous.name
                ));
            }
        }
        if rings.iter().any(|r| r.name == name) {
            return Err(format!("ring {} ({name}): named twice", i + 1));
        }
        rings.push(RingSpec {
            name: name.to_owned(),
            reach,
            groups,
            soak_secs,
            min_successes,
        });
    }
    if let Some(last) = rings.last()
        && last.reach != FULL_REACH
    {
        return Err(format!(
            "the last ring ({}) must reach 100 % of the fleet",
            last.name
        ));
    }
    Ok(rings)
}

/// A ring's reach: `10%`, `group:it-staff`, or terms joined by `+` (at most one percentage):
/// basis points (0 without a percentage) and the groups, sorted.
fn parse_reach(text: &str) -> Result<(u32, Vec<String>), String> {
    let mut reach = None;
    let mut groups: Vec<String> = Vec::new();
    for term in text.split('+').map(str::trim) {
        if let Some(group) = term.strip_prefix("group:") {
            let group = group.trim();
            herd_core::check_identifier(group).map_err(|why| format!("group {group:?}: {why}"))?;
            if groups.iter().any(|g| g == group) {
                return Err(format!("group {group:?} is named twice"));
            }
            groups.push(group.to_owned());
        } else if reach.is_some() {
            return Err("give at most one percentage".to_owned());
        } else if term.ends_with('%') {
            reach = Some(parse_percent(term)?);
        } else {
            return Err(format!(
                "{term:?} is neither a percentage like 10% nor a group like group:it-staff"
            ));
        }
    }
    groups.sort();
    Ok((reach.unwrap_or(0), groups))
}

/// `1%`, `0.5%`, `100%` as basis points.
fn parse_percent(text: &str) -> Result<u32, String> {
    let number = text.strip_suffix('%').ok_or("a percentage ends with %")?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || fraction.len() > 2 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a percentage with at most two decimals".to_owned());
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a percentage with at most two decimals".to_owned());
    }
    let whole: u32 = whole.parse().map_err(|_| "too large".to_owned())?;
    let fraction: u32 = format!("{fraction:0<2}").parse().unwrap_or(0);
    let bp = whole.saturating_mul(100).saturating_add(fraction);
    if bp == 0 || bp > FULL_REACH {
        return Err("a ring reaches more than 0 % and at most 100 %".to_owned());
    }
    Ok(bp)
}

/// What the planner may do with one release under rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// Offered to the terminals whose bucket is below `reach` (basis points).
    Ring { reach: u32 },
    /// Offered to nobody; with `revert`, the terminals that run it are planned back to the
    /// newest release before it that they may be offered.
    Withdrawn { revert: bool },
}

/// One release under rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gate {
    pub release: ReleaseIdx,
    /// [`release_key`] of the release, what its buckets are drawn from.
    pub key: String,
    pub offer: Offer,
    /// With [`Offer::Ring`]: the groups whose terminals are offered the release whatever
    /// their bucket (the rings reached so far).
    pub groups: Vec<String>,
}

/// The rollouts of one catalog as planner input: at most [`RingGates::MAX`] releases under
/// rollout (rings complete in hours; more at once is refused by the center, which keeps the
/// oldest and holds the newer ones back whole).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RingGates {
    gates: Vec<Gate>,
    by_release: FxHashMap<ReleaseIdx, u8>,
}

impl RingGates {
    /// A terminal's withheld set is a 64-bit mask over the gates.
    pub const MAX: usize = 64;

    /// Gates for these releases; beyond [`RingGates::MAX`] (or a release named twice), the
    /// extra gates are withdrawn for everyone rather than dropped, so nothing is offered to a
    /// terminal outside its ring because of a limit.
    pub fn new(gates: Vec<Gate>) -> RingGates {
        let mut kept: Vec<Gate> = Vec::with_capacity(gates.len().min(Self::MAX));
        let mut by_release = FxHashMap::default();
        let mut overflow = Vec::new();
        for gate in gates {
            if by_release.contains_key(&gate.release) {
                continue;
            }
            if kept.len() < Self::MAX {
                by_release.insert(gate.release, kept.len() as u8);
                kept.push(gate);
            } else {
                overflow.push(gate.release);
            }
        }
        // Over the limit: the last gate becomes a withdrawal shared by the extra releases.
        if !overflow.is_empty() {
            let last = (Self::MAX - 1) as u8;
            for release in overflow {
                by_release.insert(release, last);
            }
            kept[Self::MAX - 1].offer = Offer::Withdrawn { revert: false };
        }
        RingGates {
            gates: kept,
            by_release,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.gates.is_empty()
    }

    pub fn gates(&self) -> &[Gate] {
        &self.gates
    }

    /// Bit `i` is set when gate `i`'s release is not offered to `terminal` (in `group`).
    pub fn withheld_mask(&self, terminal: &str, group: Option<&str>) -> u64 {
        let mut mask = 0u64;
        for (i, gate) in self.gates.iter().enumerate() {
            let withheld = match gate.offer {
                Offer::Ring { reach } => !in_ring(reach, &gate.groups, &gate.key, terminal, group),
                Offer::Withdrawn { .. } => true,
            };
            mask |= u64::from(withheld) << i;
        }
        mask
    }

    /// Whether `release` is withheld from a terminal with this mask.
    pub fn withholds(&self, mask: u64, release: ReleaseIdx) -> bool {
        mask != 0
            && self
                .by_release
                .get(&release)
                .is_some_and(|&i| mask & (1 << i) != 0)
    }

    /// Whether terminals running `release` are to be planned back to an earlier one.
    pub fn reverts(&self, release: ReleaseIdx) -> bool {
        self.by_release.get(&release).is_some_and(|&i| {
            matches!(
                self.gates[i as usize].offer,
                Offer::Withdrawn { revert: true }
            )
        })
    }
}

/// One ring of a rollout policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingSpec {
    pub name: String,
    /// How much of the fleet has been offered the release once this ring is reached
    /// (cumulative, basis points; the last ring is [`FULL_REACH`]; 0 for groups only).
    pub reach: u32,
    /// The groups offered the release once this ring is reached (cumulative, sorted).
    pub groups: Vec<String>,
    /// How long the ring must run without crossing the error threshold before promotion.
    pub soak_secs: u64,
    /// Successful installs (all rings so far) needed before promotion.
    pub min_successes: u64,
}

/// When a rollout is halted: bad reports are failed installs, faults attributed to the
/// release and terminals that stopped checking in after receiving it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Halt once this many bad reports arrived, whatever the successes.
    pub max_bad: u64,
    /// Halt once bad reports exceed this percentage of all reports, counted from
    /// [`Thresholds::min_reports`] reports on.
    pub max_bad_percent: u64,
    pub min_reports: u64,
}

/// Where a rollout stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Offered within the current ring, promoted when the ring's condition holds.
    Rolling,
    /// Held by an operator at its current ring: still offered within it, never promoted.
    Paused,
    /// Offered to everyone; nothing to decide any more.
    Complete,
    /// Halted (by the threshold or an operator) and reverted: offered to nobody, and the
    /// terminals that took it go back to the last good release.
    Reverted,
}

impl Phase {
    pub const ALL: [Phase; 4] = [
        Phase::Rolling,
        Phase::Paused,
        Phase::Complete,
        Phase::Reverted,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Rolling => "rolling",
            Phase::Paused => "paused",
            Phase::Complete => "complete",
            Phase::Reverted => "reverted",
        }
    }

    pub fn parse(text: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

/// What a rollout has counted so far (all rings).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub succeeded: u64,
    pub failed: u64,
    pub faults: u64,
    pub silent: u64,
}

impl Counts {
    pub fn bad(&self) -> u64 {
        self.failed + self.faults + self.silent
    }
}

/// A rollout's state: its phase, its ring (index into the policy's rings) since when, and
/// its counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RolloutState {
    pub phase: Phase,
    pub ring: usize,
    pub ring_started: i64,
    pub counts: Counts,
}

/// What the policy decides for a rollout at an instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Move to ring `ring` (the next one).
    Promote { ring: usize },
    /// The last ring's condition holds: offered to everyone.
    Complete,
    /// The error threshold is crossed: halt and revert, saying why.
    Halt { reason: String },
}

/// The rings and thresholds every rollout follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub rings: Vec<RingSpec>,
    pub thresholds: Thresholds,
}

impl Policy {
    /// What `state` calls for at `now`, if anything: a halt first (a spike stops a rollout
    /// whatever its ring's soak), then a promotion once the ring soaked and enough installs
    /// succeeded. Paused, complete and reverted rollouts change only by an operator.
    pub fn step(&self, state: &RolloutState, now: i64) -> Option<Step> {
        if state.phase != Phase::Rolling {
            return None;
        }
        let counts = state.counts;
        let t = self.thresholds;
        let reports = counts.succeeded + counts.bad();
        if counts.bad() >= t.max_bad {
            return Some(Step::Halt {
                reason: format!(
                    "{} bad reports ({} failed installs, {} faults, {} silent) reached the \
                     threshold of {}",
                    counts.bad(),
                    counts.failed,
                    counts.faults,
                    counts.silent,
                    t.max_bad
                ),
            });
        }
        if reports >= t.min_reports.max(1) && counts.bad() * 100 > t.max_bad_percent * reports {
            return Some(Step::Halt {
                reason: format!(
                    "{} of {} reports were bad, over the threshold of {} %",
                    counts.bad(),
                    reports,
                    t.max_bad_percent
                ),
            });
        }
        let ring = self.rings.get(state.ring)?;
        let soaked = now.saturating_sub(state.ring_started) >= ring.soak_secs as i64;
        if !soaked || counts.succeeded < ring.min_successes {
            return None;
        }
        if state.ring + 1 < self.rings.len() {
            Some(Step::Promote {
                ring: state.ring + 1,
            })
        } else {
            Some(Step::Complete)
        }
    }

    /// The groups a rollout in this state is offered to (its ring's, which include the
    /// earlier rings').
    pub fn groups(&self, state: &RolloutState) -> Vec<String> {
        match state.phase {
            Phase::Rolling | Phase::Paused => self
                .rings
                .get(state.ring)
                .map(|r| r.groups.clone())
                .unwrap_or_default(),
            Phase::Complete | Phase::Reverted => Vec::new(),
        }
    }

    /// What the planner is told of a rollout in this state.
    pub fn offer(&self, state: &RolloutState) -> Option<Offer> {
        match state.phase {
            Phase::Complete => None,
            Phase::Reverted => Some(Offer::Withdrawn { revert: true }),
            Phase::Rolling | Phase::Paused => Some(Offer::Ring {
                reach: self.rings.get(state.ring).map_or(FULL_REACH, |r| r.reach),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            rings: vec![
                RingSpec {
                    name: "canary".into(),
                    reach: 100,
                    groups: Vec::new(),
                    soak_secs: 60,
                    min_successes: 2,
                },
                RingSpec {
                    name: "early".into(),
                    reach: 1000,
                    groups: Vec::new(),
                    soak_secs: 60,
                    min_successes: 5,
                },
                RingSpec {
                    name: "broad".into(),
                    reach: FULL_REACH,
                    groups: Vec::new(),
                    soak_secs: 60,
                    min_successes: 5,
                },
            ],
            thresholds: Thresholds {
                max_bad: 3,
                max_bad_percent: 20,
                min_reports: 10,
            },
        }
    }

    fn rolling(ring: usize, counts: Counts) -> RolloutState {
        RolloutState {
            phase: Phase::Rolling,
            ring,
            ring_started: 1000,
            counts,
        }
    }

    #[test]
    fn rings_parse_and_bad_ones_are_named() {
        let rings =
            parse_rings("canary=1%/600s/5, early=10.5%/1800s/50, broad=100%/0s/0").expect("rings");
        assert_eq!(
            rings
                .iter()
                .map(|r| (r.name.as_str(), r.reach, r.soak_secs, r.min_successes))
                .collect::<Vec<_>>(),
            [
                ("canary", 100, 600, 5),
                ("early", 1050, 1800, 50),
                ("broad", 10_000, 0, 0)
            ]
        );
        assert!(parse_rings("").expect("no rings").is_empty());
        for (bad, says) in [
            ("canary=1%/600s/5", "must reach 100 %"),
            ("canary=1%/600/5, broad=100%/0s/0", "soak \"600\""),
            ("canary=1%/600s, broad=100%/0s/0", "name=PERCENT%"),
            (
                "canary=10%/1s/1, early=5%/1s/1, broad=100%/0s/0",
                "larger than ring 1",
            ),
            ("canary=0%/1s/1, broad=100%/0s/0", "more than 0 %"),
            ("canary=1.234%/1s/1, broad=100%/0s/0", "two decimals"),
            ("a b=1%/1s/1, broad=100%/0s/0", "not a ring name"),
            ("canary=1%/1s/1,, broad=100%/0s/0", "empty"),
            ("x=1%/1s/1, x=100%/0s/0", "named twice"),
        ] {
            let err = parse_rings(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn rings_by_group_parse_cumulatively_and_bad_ones_are_named() {
        let rings = parse_rings(
            "canary=group:it-staff/600s/5, early=group:qa + 10%/1800s/50, broad=100%/0s/0",
        )
        .expect("rings");
        assert_eq!(
            rings
                .iter()
                .map(|r| (r.name.as_str(), r.reach, r.groups.clone()))
                .collect::<Vec<_>>(),
            [
                ("canary", 0, vec!["it-staff".to_owned()]),
                ("early", 1000, vec!["it-staff".to_owned(), "qa".to_owned()]),
                (
                    "broad",
                    FULL_REACH,
                    vec!["it-staff".to_owned(), "qa".to_owned()]
                ),
            ]
        );
        // More groups at the same percentage is a larger ring.
        parse_rings("a=group:x/1s/1, b=group:y/1s/1, c=100%/0s/0").expect("groups only");
        for (bad, says) in [
            ("canary=group:/1s/1, broad=100%/0s/0", "group \"\""),
            ("canary=group:a b/1s/1, broad=100%/0s/0", "group \"a b\""),
            (
                "canary=group:x+group:x/1s/1, broad=100%/0s/0",
                "named twice",
            ),
            (
                "canary=1%+2%/1s/1, broad=100%/0s/0",
                "at most one percentage",
            ),
            ("canary=staff/1s/1, broad=100%/0s/0", "neither a percentage"),
            (
                "canary=group:x+5%/1s/1, early=group:x+5%/1s/1, broad=100%/0s/0",
                "larger than ring 1",
            ),
            (
                "canary=group:x/1s/1, early=group:x/1s/1, broad=100%/0s/0",
                "more groups",
            ),
            ("canary=group:x/1s/1", "must reach 100 %"),
        ] {
            let err = parse_rings(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    proptest::proptest! {
        /// Membership is a function of id, group, release and reach: a group ring holds
        /// exactly its groups' terminals (plus the percentage's), growing a ring never drops a
        /// terminal, and the whole fleet is in a full ring.
        #[test]
        fn ring_membership_by_group_is_exact_and_only_grows(
            id in "[a-z0-9-]{1,16}",
            group in proptest::option::of("[a-c]"),
            groups in proptest::collection::vec("[a-d]", 0..3),
            reach in 0u32..=FULL_REACH,
            more in 0u32..=FULL_REACH,
            extra in "[a-d]",
        ) {
            let key = "maker/p/2.0";
            let inside = in_ring(reach, &groups, key, &id, group.as_deref());
            let by_group = group.as_ref().is_some_and(|g| groups.contains(g));
            let by_bucket = reach > 0 && ring_bucket(key, &id) < reach;
            proptest::prop_assert_eq!(inside, by_group || by_bucket || reach == FULL_REACH);
            if group.is_none() {
                proptest::prop_assert_eq!(inside, in_ring(reach, &[], key, &id, None));
            }
            let mut wider = groups.clone();
            wider.push(extra);
            if inside {
                proptest::prop_assert!(in_ring(reach.max(more), &wider, key, &id, group.as_deref()));
            }
            proptest::prop_assert!(in_ring(FULL_REACH, &[], key, &id, group.as_deref()));
            // The gates agree with the function.
            let gates = RingGates::new(vec![Gate {
                release: ReleaseIdx(0),
                key: key.to_owned(),
                offer: Offer::Ring { reach },
                groups: groups.clone(),
            }]);
            proptest::prop_assert_eq!(gates.withheld_mask(&id, group.as_deref()) == 0, inside);
        }
    }

    #[test]
    fn a_group_ring_offers_the_release_to_its_group_only() {
        let p = Policy {
            rings: parse_rings("canary=group:it-staff/60s/1, broad=100%/0s/0").expect("rings"),
            ..policy()
        };
        let state = rolling(0, Counts::default());
        assert_eq!(p.offer(&state), Some(Offer::Ring { reach: 0 }));
        assert_eq!(p.groups(&state), ["it-staff"]);
        let gates = RingGates::new(vec![Gate {
            release: ReleaseIdx(0),
            key: "m/p/1".into(),
            offer: p.offer(&state).expect("gated"),
            groups: p.groups(&state),
        }]);
        for i in 0..200 {
            let id = format!("t-{i}");
            assert_eq!(gates.withheld_mask(&id, Some("it-staff")), 0, "{id}");
            assert_eq!(gates.withheld_mask(&id, Some("sales")), 1, "{id}");
            assert_eq!(gates.withheld_mask(&id, None), 1, "{id}");
        }
        let done = RolloutState {
            phase: Phase::Complete,
            ..state
        };
        assert!(p.groups(&done).is_empty());
    }

    #[test]
    fn promotion_waits_for_the_soak_and_the_successes() {
        let p = policy();
        let ok = Counts {
            succeeded: 2,
            ..Counts::default()
        };
        assert_eq!(p.step(&rolling(0, ok), 1059), None, "not soaked");
        assert_eq!(
            p.step(&rolling(0, Counts::default()), 1060),
            None,
            "too few successes"
        );
        assert_eq!(
            p.step(&rolling(0, ok), 1060),
            Some(Step::Promote { ring: 1 })
        );
        let more = Counts {
            succeeded: 5,
            ..Counts::default()
        };
        assert_eq!(p.step(&rolling(2, more), 1060), Some(Step::Complete));
    }

    #[test]
    fn the_threshold_halts_whatever_the_soak() {
        let p = policy();
        let bad = Counts {
            failed: 1,
            faults: 1,
            silent: 1,
            ..Counts::default()
        };
        assert!(matches!(
            p.step(&rolling(0, bad), 1000),
            Some(Step::Halt { .. })
        ));
        let two = Counts {
            failed: 2,
            ..Counts::default()
        };
        assert_eq!(p.step(&rolling(0, two), 1000), None, "under max_bad");
        // 2 bad of 9 reports: too few reports for the percentage.
        let few = Counts {
            succeeded: 7,
            failed: 2,
            ..Counts::default()
        };
        assert_eq!(p.step(&rolling(1, few), 1000), None);
        let ratio = Counts {
            succeeded: 8,
            failed: 2,
            ..Counts::default()
        };
        assert_eq!(
            p.step(&rolling(1, ratio), 1000),
            None,
            "20 % is not over 20 %"
        );
        let mut lenient = policy();
        lenient.thresholds.max_bad = 100;
        let over = Counts {
            succeeded: 7,
            failed: 3,
            ..Counts::default()
        };
        assert!(matches!(
            lenient.step(&rolling(1, over), 1000),
            Some(Step::Halt { .. })
        ));
    }

    #[test]
    fn only_rolling_rollouts_move_by_themselves() {
        let p = policy();
        let bad = Counts {
            failed: 9,
            ..Counts::default()
        };
        for phase in [Phase::Paused, Phase::Complete, Phase::Reverted] {
            let state = RolloutState {
                phase,
                ..rolling(0, bad)
            };
            assert_eq!(p.step(&state, 99_999), None, "{phase:?}");
        }
        assert_eq!(
            p.offer(&RolloutState {
                phase: Phase::Paused,
                ..rolling(1, bad)
            }),
            Some(Offer::Ring { reach: 1000 })
        );
        for phase in Phase::ALL {
            assert_eq!(Phase::parse(phase.as_str()), Some(phase));
        }
    }
}
