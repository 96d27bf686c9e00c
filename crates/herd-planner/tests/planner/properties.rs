//! Properties of the planner over random small catalogs and terminals (SPEC §5).

use std::path::PathBuf;
use std::sync::LazyLock;

use herd_core::{
    Apply, Catalog, Consent, DailyWindow, Danger, Terminal, ThreatIdx, Timestamp, TzOffset,
};
use herd_planner::{Action, LISTED_THREATS, Planner};
use herd_proto::catalog::{
    CatalogDoc, CoverageDoc, PackageDoc, ProductDoc, ReleaseDoc, ThreatDoc, VendorDoc,
};
use herd_proto::terminal::{HardwareDoc, InstalledDoc, PolicyDoc, TerminalDoc};
use proptest::prelude::*;

const PLATFORMS: [&str; 3] = ["phone", "pc", "stb"];
const DANGERS: [&str; 4] = ["low", "medium", "high", "critical"];
const APPLIES: [&str; 3] = ["latest-any-vendor", "latest-same-vendor", "pinned"];
const DAY: i64 = 86_400;
const EPOCH: i64 = 973_036_800; // 2000-11-01

#[derive(Debug, Clone)]
struct World {
    catalog: CatalogDoc,
    terminal: TerminalDoc,
    now: Timestamp,
}

fn day(d: i64) -> Timestamp {
    Timestamp::from_unix_seconds(EPOCH + d * DAY)
}

prop_compose! {
    fn product_spec()(platforms in proptest::sample::subsequence(PLATFORMS.to_vec(), 1..=3),
                      releases in proptest::collection::vec((1u64..4, 0i64..3, proptest::sample::subsequence(PLATFORMS.to_vec(), 0..=3)), 1..4))
        -> (Vec<&'static str>, Vec<(u64, i64, Vec<&'static str>)>) { (platforms, releases) }
}

fn world() -> impl Strategy<Value = World> {
    world_with(7)
}

prop_compose! {
    /// A small random catalog with up to `max_threats - 1` threats, and a terminal.
    fn world_with(max_threats: usize)(products in proptest::collection::vec(product_spec(), 1..5),
               threats in proptest::collection::vec((0usize..4, 0i64..30), 0..max_threats),
               coverage_bits in proptest::collection::vec(any::<(u8, u8)>(), 5 * max_threats),
               platform in 0usize..3, installed in any::<(u8, u8, bool)>(), apply in 0usize..3, min_danger in 0usize..4,
               now_day in 0i64..40)
        -> World {
        let mut releases = Vec::new();
        let mut product_docs = Vec::new();
        let mut seqs_of = Vec::new();
        for (p, (platforms, rels)) in products.iter().enumerate() {
            let id = format!("prod-{p}");
            product_docs.push(ProductDoc { id: id.clone(), vendor: format!("vendor-{}", p % 2), name: id.clone(), platforms: platforms.iter().map(|s| s.to_string()).collect(), kind: None });
            let (mut seq, mut published) = (100u64, 0i64);
            let mut seqs = Vec::new();
            for (step, gap_days, pkg_platforms) in rels {
                seq += step;
                published += 1 + gap_days * 5;
                seqs.push(seq);
                releases.push(ReleaseDoc {
                    product: id.clone(), version: format!("1.{seq}"), pattern: format!("p{p}-{seq}"), seq,
                    // Within the day, so that releases, not only midnights, bound a planner's tables.
                    published: day(published).plus_seconds((p as i64 * 5 * 3600 + seq as i64 * 601) % DAY).to_string(),
                    packages: pkg_platforms.iter().filter(|q| platforms.contains(q)).map(|q| PackageDoc {
                        platform: q.to_string(), format: "archive".into(), sha256: format!("{:064x}", seq), size: 10,
                        name: None, product_code: None, post_install: None, pre_uninstall: None }).collect(),
                });
            }
            seqs_of.push(seqs);
        }
        let threat_docs: Vec<ThreatDoc> = threats.iter().enumerate().map(|(t, &(d, disc))| ThreatDoc {
            id: format!("threat-{t}"), name: format!("threat {t}"), danger: DANGERS[d].into(), discovered: day(disc).date().to_string(), aliases: Vec::new(), herd_since: None }).collect();
        let mut coverage = Vec::new();
        let mut bits = coverage_bits.iter();
        for (p, seqs) in seqs_of.iter().enumerate() {
            for t in 0..threat_docs.len() {
                let &(kind, pick) = bits.next().unwrap_or(&(0, 0));
                match kind % 3 {
                    0 => {}
                    1 => coverage.push(CoverageDoc { product: format!("prod-{p}"), threat: format!("threat-{t}"), since_seq: None, covered_on: None, expected: None }),
                    _ => coverage.push(CoverageDoc { product: format!("prod-{p}"), threat: format!("threat-{t}"),
                        since_seq: Some(seqs[pick as usize % seqs.len()]), covered_on: None, expected: None }),
                }
            }
        }
        let (ip, is, none) = installed;
        let installed = (!none).then(|| {
            let p = ip as usize % seqs_of.len();
            let seq = seqs_of[p][is as usize % seqs_of[p].len()];
            InstalledDoc { product: format!("prod-{p}"), version: format!("1.{seq}"), seq, pattern: format!("p{p}-{seq}"), format: "archive".into() }
        });
        World {
            catalog: CatalogDoc { format: "herd.catalog/v1".into(), vendors: (0..2).map(|v| VendorDoc { id: format!("vendor-{v}"), name: format!("Vendor {v}") }).collect(),
                products: product_docs, releases, threats: threat_docs, coverage },
            terminal: TerminalDoc { id: "t1".into(), user: None, hardware: HardwareDoc { kind: "x".into(), platform: PLATFORMS[platform].into(), model: None },
                installed, policy: PolicyDoc { apply: APPLIES[apply].into(), min_danger: Some(DANGERS[min_danger].into()), consent: None, window: None, tz: None, vendors: None } },
            now: day(now_day),
        }
    }
}

fn validate(w: &World) -> (Catalog, Terminal) {
    let catalog = w
        .catalog
        .validate("generated")
        .expect("generated catalogs are valid");
    let terminal = w
        .terminal
        .validate("generated", &catalog)
        .expect("generated terminals are valid");
    (catalog, terminal)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// A group allowed only vendor-0 is never switched to, nor shown, another vendor's
    /// product; and one planner planning the same terminal under both policies, in either
    /// order, gives each the plan a fresh planner gives it (the memo keeps them apart).
    #[test]
    fn a_restricted_group_switches_only_to_allowed_vendors(w in world()) {
        let (catalog, free) = validate(&w);
        let mut restricted_doc = w.terminal.clone();
        restricted_doc.policy.vendors = Some(vec!["vendor-0".into()]);
        let restricted = restricted_doc.validate("generated", &catalog).expect("valid");
        let vendor_of = |product: herd_core::ProductIdx| catalog.vendors[catalog.product(product).vendor.get()].id.as_str();
        let mut planner = Planner::new(&catalog, w.now);
        let plan = planner.plan(&restricted);
        let d = &plan.decision;
        if d.action == Action::Switch {
            prop_assert_eq!(vendor_of(d.chosen.unwrap().product), "vendor-0");
        }
        for alternative in &d.alternatives {
            prop_assert_eq!(vendor_of(alternative.product), "vendor-0");
        }
        let fresh = |t: &Terminal| serde_json::to_string(&Planner::new(&catalog, w.now).plan_doc(t)).unwrap();
        let shared_free = serde_json::to_string(&planner.plan_doc(&free)).unwrap();
        let shared_restricted = serde_json::to_string(&planner.plan_doc(&restricted)).unwrap();
        prop_assert_eq!(shared_free, fresh(&free));
        prop_assert_eq!(shared_restricted, fresh(&restricted));
    }

    #[test]
    fn same_inputs_same_plan(w in world()) {
        let (catalog, terminal) = validate(&w);
        let a = serde_json::to_string(&Planner::new(&catalog, w.now).plan_doc(&terminal)).unwrap();
        let (catalog2, terminal2) = validate(&w.clone());
        let b = serde_json::to_string(&Planner::new(&catalog2, w.now).plan_doc(&terminal2)).unwrap();
        prop_assert_eq!(a, b);
    }

    #[test]
    fn a_switch_never_increases_gap_severity(w in world()) {
        let (catalog, terminal) = validate(&w);
        let mut planner = Planner::new(&catalog, w.now);
        let plan = planner.plan(&terminal);
        let d = &plan.decision;
        if matches!(d.action, Action::Switch | Action::Update) {
            prop_assert!(d.uncovered_after.severity <= d.uncovered_now.severity, "{:?}", d);
        }
        // From an installed product, a switch must be strictly better; a terminal with nothing
        // installed takes the best product even if it closes no gap.
        if d.action == Action::Switch && terminal.installed.is_some() {
            prop_assert!(d.uncovered_after.severity < d.uncovered_now.severity, "a switch must be strictly better: {:?}", d);
        }
    }

    #[test]
    fn a_plan_only_targets_products_for_the_platform(w in world()) {
        let (catalog, terminal) = validate(&w);
        let mut planner = Planner::new(&catalog, w.now);
        let plan = planner.plan(&terminal);
        if let Some(target) = plan.decision.target {
            let release = catalog.release(target.release);
            let platform = terminal.hardware.platform_idx.expect("a target needs a known platform");
            prop_assert!(catalog.product(release.product).platforms.contains(&platform));
            prop_assert_eq!(release.packages[target.package].platform, platform);
            prop_assert!(release.published <= w.now, "targets are published by now");
        }
    }

    #[test]
    fn pinned_never_changes_software(w in world()) {
        let (catalog, mut terminal) = validate(&w);
        terminal.policy.apply = Apply::Pinned;
        let mut planner = Planner::new(&catalog, w.now);
        let plan = planner.plan(&terminal);
        prop_assert!(matches!(plan.decision.action, Action::None | Action::Exposed));
        let doc = planner.render(&plan);
        prop_assert!(doc.steps.is_empty() && doc.to.is_none() && !doc.consent_required && doc.not_before.is_none());
    }
}

/// Every threat a product misses at `seq`, straight from SPEC §5 rules 1–2 and the ordering of
/// SPEC §4 (most dangerous, then newest, then id), without the planner's tables.
fn gap_by_the_rules(
    catalog: &Catalog,
    installed: Option<(herd_core::ProductIdx, u64)>,
    min_danger: Danger,
    now: Timestamp,
) -> Vec<String> {
    let mut gap: Vec<&herd_core::Threat> = (0..catalog.threats.len() as u32)
        .map(|t| catalog.threat(ThreatIdx(t)))
        .filter(|t| t.danger >= min_danger && t.discovered <= now.date())
        .filter(|t| {
            !installed.is_some_and(|(product, seq)| {
                catalog.coverage.iter().any(|c| {
                    c.product == product
                        && catalog.threat(c.threat).id == t.id
                        && c.since_seq.is_some_and(|since| since <= seq)
                })
            })
        })
        .collect();
    gap.sort_by(|a, b| {
        b.danger
            .cmp(&a.danger)
            .then(b.discovered.cmp(&a.discovered))
            .then(a.id.cmp(&b.id))
    });
    gap.into_iter().map(|t| t.id.clone()).collect()
}

/// The policies a terminal may have, beyond the generated one: each apply and `min_danger`,
/// with and without a window (in several offsets, so `not_before` depends on the exact
/// instant) and consent.
fn variants(terminal: &Terminal) -> Vec<Terminal> {
    let windows = [None, Some("01:00-05:00"), Some("22:30-02:00")];
    let offsets = ["+00:00", "+09:00", "-05:00"];
    let mut out = Vec::new();
    for apply in [
        Apply::LatestAnyVendor,
        Apply::LatestSameVendor,
        Apply::Pinned,
    ] {
        for min_danger in Danger::ALL {
            for (k, window) in windows.iter().enumerate() {
                let mut t = terminal.clone();
                t.policy.apply = apply;
                t.policy.min_danger = min_danger;
                t.policy.window = window.map(|w| DailyWindow::parse(w).expect("a window"));
                t.policy.tz = TzOffset::parse(offsets[k]).expect("an offset");
                t.policy.consent = if k == 1 { Consent::Ask } else { Consent::Auto };
                out.push(t);
            }
        }
    }
    out
}

/// Each terminal's plan as JSON, checking on the way that the direct rendering writes the
/// document's bytes.
fn json_plans(planner: &mut Planner<&Catalog>, terminals: &[Terminal]) -> Vec<String> {
    terminals
        .iter()
        .map(|t| {
            let plan = planner.plan(t);
            let doc = serde_json::to_string(&planner.render(&plan)).expect("a plan serialises");
            let mut direct = Vec::new();
            planner.render_json(&plan, &mut direct);
            assert_eq!(String::from_utf8(direct).expect("UTF-8"), doc);
            doc
        })
        .collect()
}

/// Plans at `t1`, moves to an instant before `valid_until` and checks the plans against a
/// fresh planner's there; then checks the clock cannot move past what the tables hold.
fn check_set_now(
    catalog: &Catalog,
    terminals: &[Terminal],
    t1: Timestamp,
    fraction: f64,
) -> Result<(), TestCaseError> {
    let catalog: &'static Catalog = Box::leak(Box::new(catalog.clone()));
    let mut planner = Planner::new(catalog, t1);
    let until = planner.valid_until();
    prop_assert!(until > t1);
    prop_assert!(planner.valid_from() <= t1);
    // The memo and the decisions' words are made at t1 and must serve t2 unchanged.
    let at_t1 = json_plans(&mut planner, terminals);
    let span = until.unix_seconds() - t1.unix_seconds();
    // Somewhere in the span, then its last second, where a late bound would show.
    let t2 = t1.plus_seconds(((span as f64 * fraction) as i64).min(span - 1));
    let mut t2 = t2;
    for at in [t2, until.plus_seconds(-1)] {
        prop_assert!(planner.set_now(at).is_ok());
        prop_assert_eq!(planner.now(), at);
        let moved = json_plans(&mut planner, terminals);
        let fresh = json_plans(&mut Planner::new(catalog, at), terminals);
        prop_assert_eq!(&moved, &fresh, "planned at {} then moved to {}", t1, at);
        // A planner sharing these tables (another thread's) plans the same.
        let shared = json_plans(&mut planner.share_tables(), terminals);
        prop_assert_eq!(&shared, &fresh, "shared tables at {}", at);
        if at == t1 {
            prop_assert_eq!(&at_t1, &fresh);
        }
        t2 = at;
    }
    // At valid_until (a release published, or midnight) and before valid_from, the tables
    // may be wrong: refused, and the clock stays where it was.
    let refused = planner.set_now(until);
    prop_assert!(
        refused.is_err(),
        "moving to valid_until {} is refused",
        until
    );
    prop_assert!(
        planner
            .set_now(planner.valid_from().plus_seconds(-1))
            .is_err()
    );
    prop_assert_eq!(planner.now(), t2);
    Ok(())
}

/// Every fixture case, loaded once.
static FIXTURES: LazyLock<Vec<(PathBuf, Catalog, Terminal, Timestamp)>> = LazyLock::new(|| {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(crate::cases::cases_dir())
        .expect("tests/cases exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let (catalog, terminal, now) = crate::cases::load_case(&path);
            (path, catalog, terminal, now)
        })
        .collect()
});

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// SPEC §4: a plan lists at most LISTED_THREATS ids, the head of the gap in its order,
    /// with counts of the whole gap and how many more there are; the full gap is the gap of
    /// rules 1–2.
    #[test]
    fn listed_gaps_are_the_head_of_the_full_gap(w in world_with(60)) {
        let (catalog, terminal) = validate(&w);
        let mut planner = Planner::new(&catalog, w.now);
        let doc = planner.plan_doc(&terminal);
        let full = planner.full_gap(&terminal);
        let full_now: Vec<String> = full.now.map(|t| t.id.clone()).collect();
        let full_after: Vec<String> = full.after.map(|t| t.id.clone()).collect();
        let expected_now = gap_by_the_rules(
            &catalog,
            terminal.installed.as_ref().map(|i| (i.product, i.seq)),
            terminal.policy.min_danger,
            w.now,
        );
        prop_assert_eq!(&full_now, &expected_now);
        for (listed, counts, more, full) in [
            (&doc.uncovered_now, doc.uncovered_now_counts, doc.uncovered_now_more, &full_now),
            (&doc.uncovered_after, doc.uncovered_after_counts, doc.uncovered_after_more, &full_after),
        ] {
            prop_assert!(listed.len() <= LISTED_THREATS);
            prop_assert_eq!(counts.total(), listed.len() as u64 + more);
            prop_assert_eq!(counts.total(), full.len() as u64);
            prop_assert_eq!(&listed[..], &full[..listed.len()]);
            prop_assert_eq!(listed.len(), full.len().min(LISTED_THREATS));
        }
    }

    /// `render_json` writes exactly the bytes of the rendered document, for every policy.
    #[test]
    fn render_json_writes_the_documents_bytes(w in world_with(30)) {
        let (catalog, terminal) = validate(&w);
        let mut planner = Planner::new(&catalog, w.now);
        for t in variants(&terminal) {
            let plan = planner.plan(&t);
            let doc = serde_json::to_vec(&planner.render(&plan)).expect("serialises");
            let mut direct = b"[previous]".to_vec();
            planner.render_json(&plan, &mut direct);
            prop_assert_eq!(&direct[..10], b"[previous]", "it appends");
            prop_assert_eq!(String::from_utf8_lossy(&direct[10..]), String::from_utf8_lossy(&doc));
        }
    }

    /// Moving a planner's clock within its tables' validity plans exactly like a planner
    /// built there, whatever terminals were planned before.
    #[test]
    fn set_now_plans_as_a_fresh_planner(w in world(), offset in 0i64..2 * DAY, fraction in 0.0f64..1.0) {
        let (catalog, terminal) = validate(&w);
        check_set_now(&catalog, &variants(&terminal), w.now.plus_seconds(offset), fraction)?;
    }

    /// The same over the fixtures, at random instants around their `now`.
    #[test]
    fn set_now_plans_as_a_fresh_planner_for_the_fixtures(
        case in 0usize..1000, offset in -3 * DAY..3 * DAY, fraction in 0.0f64..1.0
    ) {
        let (_, catalog, terminal, now) = &FIXTURES[case % FIXTURES.len()];
        check_set_now(catalog, &variants(terminal), now.plus_seconds(offset), fraction)?;
    }
}

/// A release published later the same day bounds the tables' validity: until then the
/// planner moves its clock and plans as before; at its publication it must be rebuilt, and a
/// new planner then switches to it.
#[test]
fn a_release_published_later_today_ends_the_tables_validity() {
    let path = crate::cases::cases_dir().join("release-published-after-now-is-ignored.json");
    let text = std::fs::read_to_string(&path)
        .expect("the fixture")
        .replace("2000-11-14T00:00:00Z", "2000-11-13T15:30:00Z");
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let moved = tmp.path().join("release-at-15-30.json");
    std::fs::write(&moved, text).expect("written");
    let (catalog, terminal, now) = crate::cases::load_case(&moved);
    let at = |s: &str| Timestamp::parse(s).expect("an instant");
    assert_eq!(now, at("2000-11-13T08:00:00Z"));

    let mut planner = Planner::new(&catalog, now);
    assert_eq!(planner.valid_until(), at("2000-11-13T15:30:00Z"));
    assert_eq!(planner.valid_from(), at("2000-11-13T00:00:00Z"));
    assert_eq!(planner.plan(&terminal).decision.action, Action::Exposed);
    planner
        .set_now(at("2000-11-13T15:29:59Z"))
        .expect("the tables still hold");
    let before = planner.plan_doc(&terminal);
    assert_eq!(
        before,
        Planner::new(&catalog, at("2000-11-13T15:29:59Z")).plan_doc(&terminal)
    );
    let refused = planner
        .set_now(at("2000-11-13T15:30:00Z"))
        .expect_err("the release is published at 15:30");
    assert_eq!(refused.valid_until, at("2000-11-13T15:30:00Z"));
    assert_eq!(planner.now(), at("2000-11-13T15:29:59Z"));

    let mut rebuilt = Planner::new(&catalog, at("2000-11-13T15:30:00Z"));
    assert_eq!(rebuilt.plan(&terminal).decision.action, Action::Switch);
    // After the last release, the next UTC midnight bounds it.
    assert_eq!(rebuilt.valid_until(), at("2000-11-14T00:00:00Z"));
    assert_eq!(rebuilt.valid_from(), at("2000-11-13T15:30:00Z"));
}
