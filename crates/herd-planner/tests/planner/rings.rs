//! Rollout rings as planner input: ring membership is stable and proportional, a terminal
//! outside a release's rings plans as if the release did not exist, a withdrawn release is
//! offered to nobody, and a reverted one is planned back to the last good release.

use std::sync::Arc;

use herd_core::{Catalog, ReleaseIdx, Terminal, Timestamp};
use herd_planner::rings::{FULL_REACH, Gate, Offer, RingGates, release_key, ring_bucket};
use herd_planner::{Action, Planner};
use herd_proto::catalog::CatalogDoc;
use herd_proto::plan::PlanDoc;
use herd_proto::terminal::TerminalDoc;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::cases::expand_catalog;

/// maker-a's vaccine-a in two releases: 5.1 covers nothing, 5.2 covers virus-a.
fn catalog_value(with_new_release: bool) -> Value {
    let mut releases = vec![
        json!({"product": "vaccine-a", "version": "5.1", "pattern": "a-1101",
        "seq": 1101, "published": "2000-11-01T00:00:00Z", "packages": ["pc", "phone"]}),
    ];
    if with_new_release {
        releases.push(
            json!({"product": "vaccine-a", "version": "5.2", "pattern": "a-1102",
            "seq": 1102, "published": "2000-11-11T00:00:00Z", "packages": ["pc", "phone"]}),
        );
    }
    expand_catalog(json!({
        "vendors": [{"id": "maker-a", "name": "Maker-A"}],
        "products": [{"id": "vaccine-a", "vendor": "maker-a", "name": "vaccine-a",
                      "platforms": ["phone", "pc"]}],
        "releases": releases,
        "threats": [{"id": "virus-a", "name": "virus a", "danger": "high",
                     "discovered": "2000-11-10"}],
        "coverage": [{"product": "vaccine-a", "threat": "virus-a", "since_seq": 1102,
                      "covered_on": "2000-11-11"}]
    }))
}

fn catalog(with_new_release: bool) -> Catalog {
    let doc: CatalogDoc = serde_json::from_value(catalog_value(with_new_release)).expect("doc");
    doc.validate("rings").expect("valid")
}

fn now() -> Timestamp {
    Timestamp::parse("2000-11-13T08:00:00Z").expect("time")
}

fn terminal(catalog: &Catalog, id: &str, version: &str, seq: u64) -> Terminal {
    let doc: TerminalDoc = serde_json::from_value(json!({
        "id": id,
        "hardware": {"kind": "pc", "platform": "pc"},
        "installed": {"product": "vaccine-a", "version": version, "seq": seq,
                      "pattern": format!("a-{seq}"), "format": "archive"},
        "policy": {"apply": "latest-same-vendor"}
    }))
    .expect("terminal doc");
    doc.validate("terminal", catalog).expect("valid terminal")
}

fn new_release(catalog: &Catalog) -> ReleaseIdx {
    let product = catalog
        .products
        .iter()
        .position(|p| p.id == "vaccine-a")
        .expect("product");
    catalog
        .release_by_seq(herd_core::ProductIdx(product as u32), 1102)
        .expect("5.2")
}

fn gated(catalog: &Catalog, offer: Offer) -> Arc<RingGates> {
    let release = new_release(catalog);
    Arc::new(RingGates::new(vec![Gate {
        release,
        key: release_key(catalog, release),
        offer,
        groups: Vec::new(),
    }]))
}

fn plan(planner: &mut Planner<&Catalog>, terminal: &Terminal) -> PlanDoc {
    planner.plan_doc(terminal)
}

#[test]
fn release_keys_name_vendor_product_and_version() {
    let catalog = catalog(true);
    assert_eq!(
        release_key(&catalog, new_release(&catalog)),
        "maker-a/vaccine-a/5.2"
    );
}

#[test]
fn outside_its_ring_a_terminal_plans_as_if_the_release_did_not_exist() {
    let with = catalog(true);
    let without = catalog(false);
    let key = release_key(&with, new_release(&with));
    let mut gated_planner = Planner::new(&with, now());
    gated_planner.set_gates(gated(&with, Offer::Ring { reach: 1000 }));
    let mut plain = Planner::new(&with, now());
    let mut before = Planner::new(&without, now());
    let (mut inside, mut outside) = (0, 0);
    for i in 0..400 {
        let id = format!("t-{i}");
        let on_with = terminal(&with, &id, "5.1", 1101);
        let on_without = terminal(&without, &id, "5.1", 1101);
        let got = plan(&mut gated_planner, &on_with);
        if ring_bucket(&key, &id) < 1000 {
            inside += 1;
            assert_eq!(
                got,
                plan(&mut plain, &on_with),
                "{id} is in the canary ring"
            );
            assert_eq!(got.action, herd_proto::plan::Action::Update);
        } else {
            outside += 1;
            assert_eq!(
                got,
                plan(&mut before, &on_without),
                "{id} is outside the ring"
            );
            assert_eq!(got.action, herd_proto::plan::Action::Exposed);
        }
    }
    // 10 % of 400, within a wide margin: proportions are tested below on many terminals.
    assert!(
        (20..=60).contains(&inside),
        "{inside} inside, {outside} outside"
    );
}

#[test]
fn a_withdrawn_release_is_offered_to_nobody_and_kept_where_it_runs() {
    let catalog = catalog(true);
    let mut planner = Planner::new(&catalog, now());
    planner.set_gates(gated(&catalog, Offer::Withdrawn { revert: false }));
    for i in 0..200 {
        let id = format!("t-{i}");
        let old = plan(&mut planner, &terminal(&catalog, &id, "5.1", 1101));
        assert_eq!(old.action, herd_proto::plan::Action::Exposed, "{id}");
        assert!(old.to.is_none());
        let on_new = plan(&mut planner, &terminal(&catalog, &id, "5.2", 1102));
        assert_eq!(
            on_new.action,
            herd_proto::plan::Action::None,
            "{id}: halted, not reverted"
        );
    }
}

#[test]
fn a_reverted_release_is_planned_back_to_the_last_good_one() {
    let catalog = catalog(true);
    let mut planner = Planner::new(&catalog, now());
    planner.set_gates(gated(&catalog, Offer::Withdrawn { revert: true }));
    let back = plan(&mut planner, &terminal(&catalog, "t-1", "5.2", 1102));
    assert_eq!(back.action, herd_proto::plan::Action::Update);
    let to = back.to.as_ref().expect("a target");
    assert_eq!((to.version.as_str(), to.seq), ("5.1", 1101));
    assert!(
        back.reason.contains("was withdrawn") && back.reason.contains("going back to"),
        "{}",
        back.reason
    );
    assert_eq!(
        back.uncovered_after,
        ["virus-a"],
        "the old release leaves the gap"
    );
    assert!(
        back.steps
            .iter()
            .any(|s| matches!(s, herd_proto::plan::Step::Uninstall { .. })),
        "the withdrawn version is removed"
    );
    // Terminals on the good release are left alone.
    let old = plan(&mut planner, &terminal(&catalog, "t-2", "5.1", 1101));
    assert_eq!(old.action, herd_proto::plan::Action::Exposed);
    // Gates lifted: the memo is forgotten and the release is offered again.
    planner.set_gates(Arc::default());
    let offered = plan(&mut planner, &terminal(&catalog, "t-2", "5.1", 1101));
    assert_eq!(offered.action, herd_proto::plan::Action::Update);
}

#[test]
fn full_reach_gates_change_no_plan() {
    let catalog = catalog(true);
    let mut planner = Planner::new(&catalog, now());
    planner.set_gates(gated(&catalog, Offer::Ring { reach: FULL_REACH }));
    let mut plain = Planner::new(&catalog, now());
    for i in 0..50 {
        let t = terminal(&catalog, &format!("t-{i}"), "5.1", 1101);
        assert_eq!(planner.withheld_mask(&t), 0);
        assert_eq!(plan(&mut planner, &t), plan(&mut plain, &t));
        assert_eq!(planner.plan(&t).decision.action, Action::Update);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// A ring of reach r holds about r / 10,000 of any fleet, for any release; the same
    /// (release, terminal) always falls in the same bucket; rings only grow.
    #[test]
    fn ring_membership_is_stable_and_proportional(release in "[a-z]{1,8}/[a-z]{1,8}/[0-9.]{1,6}",
                                                  reach in 1u32..FULL_REACH, prefix in "[a-z0-9-]{0,6}") {
        let fleet = 20_000u32;
        let mut inside = 0u32;
        for i in 0..fleet {
            let id = format!("{prefix}{i}");
            let bucket = ring_bucket(&release, &id);
            prop_assert!(bucket < FULL_REACH);
            prop_assert_eq!(bucket, ring_bucket(&release, &id));
            inside += u32::from(bucket < reach);
        }
        let expected = f64::from(fleet) * f64::from(reach) / f64::from(FULL_REACH);
        // Six standard deviations of a binomial, plus one for tiny rings.
        let sigma = (expected * (1.0 - f64::from(reach) / f64::from(FULL_REACH))).sqrt();
        prop_assert!((f64::from(inside) - expected).abs() <= 6.0 * sigma + 1.0,
            "{} inside a ring of {} bp, expected {:.0}", inside, reach, expected);
    }

    /// Whatever the ring, the release is planned for a terminal only inside it, and never
    /// once withdrawn.
    #[test]
    fn a_release_is_never_offered_outside_its_ring(reach in 0u32..=FULL_REACH, revert in any::<bool>(),
                                                   ids in proptest::collection::vec("[a-z0-9]{1,12}", 1..40)) {
        let catalog = catalog(true);
        let key = release_key(&catalog, new_release(&catalog));
        for offer in [Offer::Ring { reach }, Offer::Withdrawn { revert }] {
            let mut planner = Planner::new(&catalog, now());
            planner.set_gates(gated(&catalog, offer));
            for id in &ids {
                let doc = plan(&mut planner, &terminal(&catalog, id, "5.1", 1101));
                let offered = doc.to.as_ref().is_some_and(|to| to.version == "5.2");
                let allowed = matches!(offer, Offer::Ring { reach } if ring_bucket(&key, id) < reach);
                prop_assert_eq!(offered, allowed, "{} under {:?}", id, offer);
            }
        }
    }
}
