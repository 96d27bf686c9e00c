//! Properties of the planner over random small catalogs and terminals (SPEC §5).

use herd_core::{Apply, Catalog, Terminal, Timestamp};
use herd_planner::{Action, Planner};
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

prop_compose! {
    fn world()(products in proptest::collection::vec(product_spec(), 1..5),
               threats in proptest::collection::vec((0usize..4, 0i64..30), 0..7),
               coverage_bits in proptest::collection::vec(any::<(u8, u8)>(), 40),
               platform in 0usize..3, installed in any::<(u8, u8, bool)>(), apply in 0usize..3, min_danger in 0usize..4,
               now_day in 0i64..40)
        -> World {
        let mut releases = Vec::new();
        let mut product_docs = Vec::new();
        let mut seqs_of = Vec::new();
        for (p, (platforms, rels)) in products.iter().enumerate() {
            let id = format!("prod-{p}");
            product_docs.push(ProductDoc { id: id.clone(), vendor: format!("vendor-{}", p % 2), name: id.clone(), platforms: platforms.iter().map(|s| s.to_string()).collect() });
            let (mut seq, mut published) = (100u64, 0i64);
            let mut seqs = Vec::new();
            for (step, gap_days, pkg_platforms) in rels {
                seq += step;
                published += 1 + gap_days * 5;
                seqs.push(seq);
                releases.push(ReleaseDoc {
                    product: id.clone(), version: format!("1.{seq}"), pattern: format!("p{p}-{seq}"), seq,
                    published: day(published).to_string(),
                    packages: pkg_platforms.iter().filter(|q| platforms.contains(q)).map(|q| PackageDoc {
                        platform: q.to_string(), format: "archive".into(), sha256: format!("{:064x}", seq), size: 10,
                        name: None, product_code: None, post_install: None, pre_uninstall: None }).collect(),
                });
            }
            seqs_of.push(seqs);
        }
        let threat_docs: Vec<ThreatDoc> = threats.iter().enumerate().map(|(t, &(d, disc))| ThreatDoc {
            id: format!("threat-{t}"), name: format!("threat {t}"), danger: DANGERS[d].into(), discovered: day(disc).date().to_string() }).collect();
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
                installed, policy: PolicyDoc { apply: APPLIES[apply].into(), min_danger: Some(DANGERS[min_danger].into()), consent: None, window: None, tz: None } },
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
