//! Tables precomputed once per (catalog, `now`) and shared by every terminal's plan:
//! required threats, coverage by seq, candidates per product and platform, track records,
//! and candidates ranked per platform and `min_danger`.
//!
//! This is what makes planning a fleet cheap: a terminal's plan only looks values up here
//! (binary searches and array reads), it never walks the threats.

use std::cmp::Ordering;

use herd_core::{
    Catalog, Danger, Date, PlatformIdx, ProductIdx, ProductKind, ReleaseIdx, ThreatIdx, Timestamp,
};

/// Counts of uncovered threats by danger level, indexed by [`Danger::index`].
/// Ordered as SPEC §5 rule 2 says: fewer critical is better, then fewer high, and so on;
/// `Ord` puts the better (smaller) severity first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Severity(pub [u32; 4]);

impl Severity {
    pub fn count(&self, danger: Danger) -> u32 {
        self.0[danger.index()]
    }

    pub fn total(&self) -> u32 {
        self.0.iter().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }
}

impl Ord for Severity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.iter().rev().cmp(other.0.iter().rev())
    }
}

impl PartialOrd for Severity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A product's track record (SPEC §5 rule 8); `Ord` puts the better record first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackRecord {
    /// Twice the median days from discovery to coverage (twice, so that the mean of the two
    /// middle values of an even count stays an integer).
    pub median_days_x2: u64,
    /// Threats of the period it covers.
    pub covered: u32,
    /// Threats discovered in the period.
    pub threats: u32,
}

impl Ord for TrackRecord {
    fn cmp(&self, other: &Self) -> Ordering {
        self.median_days_x2
            .cmp(&other.median_days_x2)
            .then(other.covered.cmp(&self.covered))
    }
}

impl PartialOrd for TrackRecord {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A product's newest usable release, with the gap it leaves, for one platform and `min_danger`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ranked {
    pub product: ProductIdx,
    pub release: ReleaseIdx,
    pub severity: Severity,
}

/// Threats are grouped in blocks of this many (in required order) to skip covered stretches
/// quickly when listing a gap.
const BLOCK: usize = 64;

/// Coverage of one product, restricted to threats discovered by `now`.
#[derive(Debug)]
struct ProductCoverage {
    /// The distinct seqs from which threats are covered, ascending; `cumulative[k]` counts by
    /// danger the threats covered at the `k`-th of them (`cumulative[0]`: none).
    since_seqs: Vec<u64>,
    cumulative: Vec<[u32; 4]>,
    /// For each threat in required order, the seq it is covered from (`u64::MAX`: not covered).
    since_in_order: Vec<u64>,
    /// For each threat in required order, the date its coverage shipped, if the vendor said.
    covered_on_in_order: Vec<Option<Date>>,
    /// The largest `since_in_order` value of each block of [`BLOCK`] threats.
    block_max: Vec<u64>,
}

#[derive(Debug)]
pub struct Index {
    pub today: Date,
    /// The tables are the same for every `now` in `valid_from..valid_until` (see [`Index::new`]).
    pub valid_from: Timestamp,
    pub valid_until: Timestamp,
    /// Threats discovered by `now`, most dangerous first, then newest discovered first, then by
    /// id: the order gaps are listed in. Newest first so that a plan's bounded list (the first
    /// few of a gap) names the threats a terminal far behind has missed most recently, and
    /// comes from the front of the order without walking the rest.
    pub required_order: Vec<ThreatIdx>,
    /// `position[threat]`: where a threat stands in `required_order` (`u32::MAX`: not required yet).
    position: Vec<u32>,
    /// `required_end[d]`: threats with danger ≥ `d` are `required_order[..required_end[d]]`.
    required_end: [usize; 4],
    required_totals: [u32; 4],
    /// Threats discovered by `today` that Herd's own set covers at `now`, by danger (not required).
    herd_totals: [u32; 4],
    coverage: Vec<ProductCoverage>,
    pub track: Vec<TrackRecord>,
    /// `candidates[product][platform]`: its newest release published by `now` with a package for the platform.
    candidates: Vec<Vec<Option<ReleaseIdx>>>,
    /// `ranked[platform][min_danger]`: every candidate for the platform, best first by (severity, track record, id).
    ranked: Vec<[Vec<Ranked>; 4]>,
}

impl Index {
    /// The tables depend on `now` in exactly three ways, so they stay the same between two
    /// consecutive instants where either changes:
    /// - through the releases published by `now` (candidates, rule 3): they change at each
    ///   release's `published` instant;
    /// - through `today`, the UTC date of `now`: required threats are those discovered by
    ///   `today` (rule 1), track records count days up to `today` over the 365 days before it
    ///   and coverage shipped by `today` (rule 8), and reasons say "discovered by `today`";
    ///   they change at each UTC midnight;
    /// - through Herd's own set: a threat it covers since `herd_since` is not required from
    ///   that instant on.
    ///
    /// Nothing else reads `now` at precompute time, and per-plan values that do (a window's
    /// `not_before`) are computed per plan from the current `now`.
    pub fn new(catalog: &Catalog, now: Timestamp) -> Index {
        let today = now.date();
        let threats = &catalog.threats;
        let tomorrow = Date::from_days_since_epoch(today.days_since_epoch() + 1).start();
        let (mut valid_from, mut valid_until) = (today.start(), tomorrow);
        for release in &catalog.releases {
            if release.published <= now {
                valid_from = valid_from.max(release.published);
            } else {
                valid_until = valid_until.min(release.published);
            }
        }

        // Herd's own set is loaded on every terminal beside its vendor product: a threat it
        // covers by `now` is in no product's gap (rule 1 as Herd's set extends it), so the
        // tables also change when such coverage starts.
        for threat in threats {
            match threat.herd_since {
                Some(since) if since <= now => valid_from = valid_from.max(since),
                Some(since) => valid_until = valid_until.min(since),
                None => {}
            }
        }
        let mut required_order: Vec<ThreatIdx> = (0..threats.len() as u32)
            .map(ThreatIdx)
            .filter(|&t| {
                let threat = catalog.threat(t);
                threat.discovered <= today && !threat.herd_covers(now)
            })
            .collect();
        required_order.sort_unstable_by(|&a, &b| {
            let (ta, tb) = (catalog.threat(a), catalog.threat(b));
            tb.danger
                .cmp(&ta.danger)
                .then_with(|| tb.discovered.cmp(&ta.discovered))
                .then_with(|| ta.id.cmp(&tb.id))
        });
        let mut herd_totals = [0u32; 4];
        for threat in threats {
            if threat.discovered <= today && threat.herd_covers(now) {
                herd_totals[threat.danger.index()] += 1;
            }
        }
        let mut required_totals = [0u32; 4];
        for &t in &required_order {
            required_totals[catalog.threat(t).danger.index()] += 1;
        }
        let required_end =
            Danger::ALL.map(|d| required_order.partition_point(|&t| catalog.threat(t).danger >= d));
        let mut position = vec![u32::MAX; threats.len()];
        for (i, &t) in required_order.iter().enumerate() {
            position[t.get()] = i as u32;
        }

        let mut coverage: Vec<ProductCoverage> = (0..catalog.products.len())
            .map(|_| ProductCoverage {
                since_seqs: Vec::new(),
                cumulative: Vec::new(),
                since_in_order: vec![u64::MAX; required_order.len()],
                covered_on_in_order: vec![None; required_order.len()],
                block_max: Vec::new(),
            })
            .collect();
        let mut covered_pairs: Vec<Vec<(u64, u8)>> = vec![Vec::new(); catalog.products.len()];
        for c in &catalog.coverage {
            let (Some(since), pos) = (c.since_seq, position[c.threat.get()]) else {
                continue;
            };
            if pos == u32::MAX {
                continue;
            }
            coverage[c.product.get()].since_in_order[pos as usize] = since;
            coverage[c.product.get()].covered_on_in_order[pos as usize] = c.covered_on;
            covered_pairs[c.product.get()]
                .push((since, catalog.threat(c.threat).danger.index() as u8));
        }
        for (cov, mut pairs) in coverage.iter_mut().zip(covered_pairs) {
            // One entry per distinct seq (a product has far fewer releases than threats), so
            // that the binary search in `severity` stays within a few cache lines.
            pairs.sort_unstable();
            let mut running = [0u32; 4];
            cov.cumulative.push(running);
            for (k, &(since, danger)) in pairs.iter().enumerate() {
                running[danger as usize] += 1;
                if pairs.get(k + 1).is_none_or(|&(next, _)| next != since) {
                    cov.since_seqs.push(since);
                    cov.cumulative.push(running);
                }
            }
            cov.block_max = cov
                .since_in_order
                .chunks(BLOCK)
                .map(|b| b.iter().copied().max().unwrap_or(0))
                .collect();
        }

        let track = track_records(catalog, today);

        let candidates: Vec<Vec<Option<ReleaseIdx>>> = (0..catalog.products.len() as u32)
            .map(|p| {
                let product = ProductIdx(p);
                // A program is installed and replaced by fault recovery, never chosen to
                // protect a terminal: it is nobody's candidate.
                let vaccine = catalog.product(product).kind == ProductKind::Vaccine;
                (0..catalog.platforms.len() as u32)
                    .map(|platform| {
                        if !vaccine {
                            return None;
                        }
                        catalog.releases_of(product).rev().find(|&r| {
                            let release = catalog.release(r);
                            release.published <= now
                                && release
                                    .packages
                                    .iter()
                                    .any(|pkg| pkg.platform.0 == platform)
                        })
                    })
                    .collect()
            })
            .collect();

        let mut index = Index {
            today,
            valid_from,
            valid_until,
            required_order,
            position,
            required_end,
            required_totals,
            herd_totals,
            coverage,
            track,
            candidates,
            ranked: Vec::new(),
        };
        index.ranked = (0..catalog.platforms.len() as u32)
            .map(|platform| {
                Danger::ALL.map(|min_danger| {
                    let mut ranked: Vec<Ranked> = (0..catalog.products.len() as u32)
                        .filter_map(|p| {
                            let release = index.candidates[p as usize][platform as usize]?;
                            let severity = index.severity(
                                Some(ProductIdx(p)),
                                catalog.release(release).seq,
                                min_danger,
                            );
                            Some(Ranked {
                                product: ProductIdx(p),
                                release,
                                severity,
                            })
                        })
                        .collect();
                    ranked.sort_by(|a, b| index.rank_order(catalog, a, b));
                    ranked
                })
            })
            .collect();
        index
    }

    /// The order of candidates, best first: by severity, then track record, then product id.
    pub fn rank_order(&self, catalog: &Catalog, a: &Ranked, b: &Ranked) -> Ordering {
        a.severity
            .cmp(&b.severity)
            .then_with(|| self.track[a.product.get()].cmp(&self.track[b.product.get()]))
            .then_with(|| {
                catalog
                    .product(a.product)
                    .id
                    .cmp(&catalog.product(b.product).id)
            })
    }

    /// How many threats with danger `min_danger` or above Herd's own set covers (and so are
    /// not required).
    pub fn herd_covered(&self, min_danger: Danger) -> u32 {
        Danger::ALL
            .iter()
            .filter(|d| **d >= min_danger)
            .map(|d| self.herd_totals[d.index()])
            .sum()
    }

    /// The gap severity of `product` at definitions `seq` (no product: every required threat is a gap).
    pub fn severity(&self, product: Option<ProductIdx>, seq: u64, min_danger: Danger) -> Severity {
        let covered = match product {
            Some(p) => {
                let cov = &self.coverage[p.get()];
                cov.cumulative[cov.since_seqs.partition_point(|&s| s <= seq)]
            }
            None => [0; 4],
        };
        let mut counts = [0u32; 4];
        for d in Danger::ALL {
            if d >= min_danger {
                counts[d.index()] = self.required_totals[d.index()] - covered[d.index()];
            }
        }
        Severity(counts)
    }

    /// The threats of a gap in listing order (most dangerous, then newest discovered, then by id).
    pub fn gap(&self, product: Option<ProductIdx>, seq: u64, min_danger: Danger) -> GapIter<'_> {
        GapIter {
            order: &self.required_order[..self.required_end[min_danger.index()]],
            coverage: product.map(|p| &self.coverage[p.get()]),
            seq,
            at: 0,
            remaining: self.severity(product, seq, min_danger).total() as usize,
        }
    }

    pub fn candidate(&self, product: ProductIdx, platform: PlatformIdx) -> Option<ReleaseIdx> {
        self.candidates[product.get()][platform.get()]
    }

    pub fn ranked(&self, platform: PlatformIdx, min_danger: Danger) -> &[Ranked] {
        &self.ranked[platform.get()][min_danger.index()]
    }

    /// The seq from which `product` covers a required `threat`, and the date that coverage shipped.
    pub fn covered_since(
        &self,
        product: ProductIdx,
        threat: ThreatIdx,
    ) -> Option<(u64, Option<Date>)> {
        let at = *self.position.get(threat.get())? as usize;
        let cov = &self.coverage[product.get()];
        let since = *cov.since_in_order.get(at)?;
        (since != u64::MAX).then(|| (since, cov.covered_on_in_order[at]))
    }
}

/// Iterates a gap without visiting every threat: blocks whose threats are all covered are
/// skipped, and iteration stops as soon as the gap's known size has been reached.
#[derive(Debug, Clone)]
pub struct GapIter<'i> {
    order: &'i [ThreatIdx],
    coverage: Option<&'i ProductCoverage>,
    seq: u64,
    at: usize,
    /// Threats of the gap not yet returned (its size is known from the prefix counts).
    remaining: usize,
}

impl Iterator for GapIter<'_> {
    type Item = ThreatIdx;

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }

    fn next(&mut self) -> Option<ThreatIdx> {
        if self.remaining == 0 {
            return None;
        }
        let found = self.find_next();
        debug_assert!(found.is_some(), "the prefix counts promised another threat");
        self.remaining -= usize::from(found.is_some());
        found
    }
}

impl ExactSizeIterator for GapIter<'_> {}

impl GapIter<'_> {
    fn find_next(&mut self) -> Option<ThreatIdx> {
        let Some(cov) = self.coverage else {
            let t = self.order.get(self.at).copied();
            self.at += 1;
            return t;
        };
        while self.at < self.order.len() {
            if self.at % BLOCK == 0 && cov.block_max[self.at / BLOCK] <= self.seq {
                self.at += BLOCK;
                continue;
            }
            let at = self.at;
            self.at += 1;
            if cov.since_in_order[at] > self.seq {
                return Some(self.order[at]);
            }
        }
        None
    }
}

/// Track records of every product at `today` (SPEC §5 rule 8): over the threats discovered in
/// the 365 days up to `today`, the median days from discovery to coverage, counting a threat
/// still uncovered as its days since discovery.
///
/// A threat counts as covered at `today` when its statement has a `covered_on` date by then,
/// or, without `covered_on`, when the first release carrying its `since_seq` was published by then.
fn track_records(catalog: &Catalog, today: Date) -> Vec<TrackRecord> {
    let period_start = Date::from_days_since_epoch(today.days_since_epoch() - 365);
    let in_period = |t: ThreatIdx| {
        let d = catalog.threat(t).discovered;
        d >= period_start && d <= today
    };
    let period: Vec<ThreatIdx> = (0..catalog.threats.len() as u32)
        .map(ThreatIdx)
        .filter(|&t| in_period(t))
        .collect();
    let mut days_by_product: Vec<Vec<u64>> = vec![Vec::new(); catalog.products.len()];
    let mut period_covered: Vec<Vec<bool>> = Vec::new();
    period_covered.resize_with(catalog.products.len(), || {
        vec![false; catalog.threats.len()]
    });
    for c in &catalog.coverage {
        if !in_period(c.threat) {
            continue;
        }
        let Some(since) = c.since_seq else { continue };
        let date = c.covered_on.or_else(|| {
            let releases = catalog.product_releases(c.product);
            releases
                .get(releases.partition_point(|r| r.seq < since))
                .map(|r| r.published.date())
        });
        let Some(date) = date.filter(|&d| d <= today) else {
            continue;
        };
        let discovered = catalog.threat(c.threat).discovered;
        days_by_product[c.product.get()].push(discovered.days_until(date).max(0) as u64);
        period_covered[c.product.get()][c.threat.get()] = true;
    }
    days_by_product
        .into_iter()
        .enumerate()
        .map(|(p, mut days)| {
            // So far `days` holds one entry per covered threat of the period.
            let covered = days.len() as u32;
            for &t in &period {
                if !period_covered[p][t.get()] {
                    days.push(catalog.threat(t).discovered.days_until(today).max(0) as u64);
                }
            }
            let median_days_x2 = median_x2(&mut days);
            TrackRecord {
                median_days_x2,
                covered,
                threats: period.len() as u32,
            }
        })
        .collect()
}

/// Twice the median (the sum of the two middle values for an even count); 0 for no values.
fn median_x2(values: &mut [u64]) -> u64 {
    let n = values.len();
    if n == 0 {
        return 0;
    }
    let (_, &mut upper, _) = values.select_nth_unstable(n / 2);
    if n % 2 == 1 {
        2 * upper
    } else {
        let lower = *values[..n / 2]
            .iter()
            .max()
            .expect("n is even and positive");
        lower + upper
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_compares_critical_first() {
        let one_critical = Severity([0, 0, 0, 1]);
        let many_high = Severity([9, 9, 9, 0]);
        assert!(many_high < one_critical);
        assert!(Severity([0, 0, 1, 0]) < Severity([0, 0, 2, 0]));
        assert!(Severity([5, 0, 1, 0]) < Severity([0, 1, 1, 0]));
    }

    #[test]
    fn track_record_prefers_faster_then_broader() {
        let fast = TrackRecord {
            median_days_x2: 2,
            covered: 1,
            threats: 3,
        };
        let slow = TrackRecord {
            median_days_x2: 4,
            covered: 3,
            threats: 3,
        };
        let fast_broad = TrackRecord {
            median_days_x2: 2,
            covered: 2,
            threats: 3,
        };
        assert!(fast < slow);
        assert!(fast_broad < fast);
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median_x2(&mut []), 0);
        assert_eq!(median_x2(&mut [7]), 14);
        assert_eq!(median_x2(&mut [9, 1, 5]), 10);
        assert_eq!(median_x2(&mut [4, 1, 3, 2]), 5);
    }
}
