//! Property tests of the executor's input path against hostile plans: whatever a stolen or
//! buggy center puts in a plan (non-ASCII, control characters, path separators, megabytes,
//! sizes at `u64::MAX`, steps in any order), preparing it never panics, and a plan the agent
//! cannot carry out safely is refused with a report before anything is downloaded.
//! Not a test of plans the planner writes: `tests.rs` and `tests/execute.rs` carry those out.

use std::fs;

use herd_proto::api::ReportOutcome;
use herd_proto::plan::{Action, PlanDoc, ReleaseRef, Step};
use proptest::prelude::*;

use super::*;

/// Strings a hostile center would try: plausible ids, traversal, separators, control and
/// terminal escape characters, multi-byte characters where a byte cut would land, any Unicode,
/// and lengths far beyond any identifier.
fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9][a-z0-9.]{0,6}",
        Just("b".to_owned()),
        Just("7.0".to_owned()),
        Just(String::new()),
        Just("..".to_owned()),
        Just("../../etc".to_owned()),
        Just("a/b".to_owned()),
        Just("\u{1b}[2J\u{7}".to_owned()),
        Just("b\u{0}".to_owned()),
        Just("é".repeat(13)),
        Just("🦀".repeat(5)),
        "\\PC{0,24}",
        ".{0,24}",
        (129usize..200_000).prop_map(|n| "x".repeat(n)),
    ]
}

fn hostile_size() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX / 2 + 1),
        any::<u64>()
    ]
}

fn hostile_sha() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("ab".repeat(32)),
        Just("AB".repeat(32)),
        hostile_string(),
        Just("é".repeat(32)),
    ]
}

fn hostile_format() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("archive".to_owned()),
        Just("msi".to_owned()),
        hostile_string()
    ]
}

fn hostile_step() -> impl Strategy<Value = Step> {
    let s = hostile_string;
    prop_oneof![
        (s(), s(), hostile_format(), hostile_sha(), hostile_size()).prop_map(
            |(product, version, format, sha256, size)| Step::Fetch {
                product,
                version,
                format,
                sha256,
                size,
                target: None
            }
        ),
        (s(), s(), hostile_format(), s()).prop_map(|(product, version, format, script)| {
            Step::Install {
                product,
                version,
                format,
                script,
            }
        }),
        (s(), s(), s()).prop_map(|(product, version, pattern)| Step::Verify {
            product,
            version,
            pattern,
        }),
        (s(), s(), hostile_format(), s()).prop_map(|(product, version, format, script)| {
            Step::Uninstall {
                product,
                version,
                format,
                script,
                target: None,
            }
        }),
    ]
}

/// A plan that is planner-shaped in its order half of the time (so the checks past the order
/// are reached), with hostile values everywhere.
fn hostile_plan() -> impl Strategy<Value = PlanDoc> {
    // Mostly plausible names here, so that a good share of plans passes the checks and
    // reaches what comes after them (sizes summed, the executor's download).
    let name = || prop_oneof![3 => "[a-z0-9][a-z0-9.]{0,6}", 1 => hostile_string()];
    let shaped = (
        prop::option::of(hostile_step()),
        name(),
        name(),
        name(),
        (hostile_size(), hostile_size()),
    )
        .prop_map(|(extra, product, version, pattern, (size, other_size))| {
            let mut steps = vec![
                Step::Fetch {
                    product: product.clone(),
                    version: version.clone(),
                    format: "archive".into(),
                    sha256: "ab".repeat(32),
                    size,
                    target: None,
                },
                Step::Fetch {
                    product: "other".into(),
                    version: "1".into(),
                    format: "archive".into(),
                    sha256: "cd".repeat(32),
                    size: other_size,
                    target: None,
                },
                Step::Install {
                    product: product.clone(),
                    version: version.clone(),
                    format: "archive".into(),
                    script: "true".into(),
                },
                Step::Verify {
                    product,
                    version,
                    pattern,
                },
            ];
            steps.extend(extra);
            steps
        });
    let steps = prop_oneof![shaped, prop::collection::vec(hostile_step(), 0..6)];
    (
        steps,
        hostile_string(),
        hostile_string(),
        hostile_string(),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(|(steps, terminal, reason, threat, seq, take_first)| {
            // `to` names the release the steps install, or something else entirely.
            let to = match steps.first() {
                Some(Step::Fetch {
                    product, version, ..
                }) if take_first => ReleaseRef {
                    product: product.clone(),
                    version: version.clone(),
                    seq,
                },
                _ => ReleaseRef {
                    product: threat.clone(),
                    version: reason.clone(),
                    seq,
                },
            };
            PlanDoc {
                terminal,
                action: Action::Switch,
                uncovered_now: vec![threat.clone()],
                uncovered_now_counts: Default::default(),
                uncovered_now_more: u64::MAX,
                uncovered_after: vec![threat],
                uncovered_after_counts: Default::default(),
                uncovered_after_more: 0,
                from: None,
                to: Some(to),
                consent_required: false,
                not_before: None,
                steps,
                alternatives: vec![],
                reason,
            }
        })
}

/// Every name a checked plan hands the executor is one that is safe as a path component.
fn assert_safe(shape: &shape::Shape) {
    let names = std::iter::once((&shape.product, &shape.version))
        .chain(shape.fetches.iter().map(|f| (&f.product, &f.version)))
        .chain(shape.uninstalls.iter().map(|u| (&u.product, &u.version)));
    for (product, version) in names {
        assert!(herd_core::check_identifier(product).is_ok(), "{product:?}");
        assert!(herd_core::check_version(version).is_ok(), "{version:?}");
    }
    // `products/<product>/<version>` and nothing else: no component climbs out or hides.
    let target = shape.link_target();
    let parts: Vec<&str> = target.split('/').collect();
    assert_eq!(parts.len(), 3, "{target}");
    assert!(
        parts
            .iter()
            .all(|p| !p.is_empty() && *p != ".." && *p != "."),
        "{target}"
    );
    assert!(
        herd_package::manifest::check_pattern_name(&shape.pattern).is_ok(),
        "{:?}",
        shape.pattern
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// What turns a check-in answer into the executor's input: never a panic, and what it
    /// accepts holds only safe names; what it refuses it refuses in words.
    #[test]
    fn hostile_plans_are_refused_or_safe_never_panicked_on(plan in hostile_plan()) {
        match shape::check(&plan) {
            Ok(None) => prop_assert!(plan.steps.is_empty()),
            Ok(Some(shape)) => {
                assert_safe(&shape);
                // Sizes summed from the center are checked against the disk, not overflowed.
                let dir = tempfile::tempdir().unwrap();
                let _ = space::choose_download_dir(
                    &[dir.path().to_owned()],
                    &shape.wanted(),
                    u64::MAX,
                );
            }
            Err(why) => {
                prop_assert!(!why.is_empty());
                // A refusal quotes what it refuses, but never megabytes of it.
                prop_assert!(why.len() < 4096, "{} bytes", why.len());
            }
        }
    }
}

proptest! {
    // Each case opens a state directory and writes a report: fewer cases, same attack.
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The whole executor, given a hostile plan and a hostile plan id, ends in a report (or a
    /// typed error) and changes nothing on the terminal: no package could be fetched, so
    /// nothing may be installed or made current.
    #[test]
    fn a_hostile_plan_is_reported_not_panicked_on(plan in hostile_plan(), plan_id in hostile_string()) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ExecutorConfig::new(dir.path().join("prefix"), dir.path().join("state"));
        config.download_dirs = vec![dir.path().join("downloads")];
        config.space_margin = 0;
        let executor = Executor::new(config).unwrap();
        let fetcher = DirFetcher::new(dir.path().join("no-packages"));
        if let Ok(report) = executor.execute(&plan_id, &plan, &fetcher)
            && !plan.steps.is_empty()
        {
            prop_assert_ne!(report.outcome, ReportOutcome::Succeeded);
        }
        prop_assert!(!dir.path().join("prefix/current").exists());
        let products = dir.path().join("prefix/products");
        let installed = fs::read_dir(&products).map(|d| d.count()).unwrap_or(0);
        prop_assert_eq!(installed, 0);
    }
}
