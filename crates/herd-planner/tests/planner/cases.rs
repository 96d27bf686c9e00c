//! Runs every `tests/cases/*.json` fixture and compares with its `.expected` plan text.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use herd_core::{Catalog, Terminal, Timestamp};
use herd_planner::Planner;
use herd_proto::plan::{PlanDoc, Step};
use serde_json::{Value, json};

pub fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases")
}

/// Expands the fixture shorthands into the real catalog format.
pub fn expand_catalog(mut catalog: Value) -> Value {
    let object = catalog.as_object_mut().expect("a catalog is an object");
    object.entry("format").or_insert(json!("herd.catalog/v1"));
    if let Some(releases) = object.get_mut("releases").and_then(Value::as_array_mut) {
        for (r, release) in releases.iter_mut().enumerate() {
            let Some(packages) = release.get_mut("packages").and_then(Value::as_array_mut) else {
                continue;
            };
            for (k, package) in packages.iter_mut().enumerate() {
                if let Value::String(short) = package {
                    let (platform, format) =
                        short.split_once('/').unwrap_or((short.as_str(), "archive"));
                    let mut full = json!({
                        "platform": platform,
                        "format": format,
                        "sha256": format!("{:064x}", 1000 * r + k),
                        "size": 1000 + 10 * r + k,
                    });
                    match format {
                        "deb" | "rpm" => full["name"] = json!(format!("vaccine-pkg-{r}")),
                        "apk" => full["name"] = json!(format!("com.example.vaccine{r}")),
                        "msi" => {
                            full["product_code"] =
                                json!(format!("{{{:08X}-0000-0000-0000-000000000000}}", r))
                        }
                        _ => {}
                    }
                    *package = full;
                }
            }
        }
    }
    catalog
}

pub fn load_case(path: &Path) -> (Catalog, Terminal, Timestamp) {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let case: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let now = Timestamp::parse(case["now"].as_str().expect("now")).expect("now parses");
    let catalog_text = expand_catalog(case["catalog"].clone()).to_string();
    let catalog =
        herd_proto::catalog::parse_catalog(&name, &catalog_text).unwrap_or_else(|e| panic!("{e}"));
    let terminal_text = case["terminal"].to_string();
    let mut terminals = herd_proto::terminal::parse_terminals(&name, &terminal_text, &catalog)
        .unwrap_or_else(|e| panic!("{e}"));
    let terminal = terminals.remove(0).unwrap_or_else(|e| panic!("{e}"));
    (catalog, terminal, now)
}

fn or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

/// The plan as the text a reviewer reads: every field, scripts summarised by their first line.
pub fn summarize(plan: &PlanDoc) -> String {
    let mut s = String::new();
    let release = |r: &Option<herd_proto::plan::ReleaseRef>| {
        r.as_ref().map_or("-".to_string(), |r| {
            format!("{} {} (seq {})", r.product, r.version, r.seq)
        })
    };
    let _ = writeln!(
        s,
        "action: {}",
        serde_json::to_value(plan.action).unwrap().as_str().unwrap()
    );
    let counts = |c: &herd_proto::plan::SeverityCounts, more: u64| {
        format!(
            "c{} h{} m{} l{}, {more} more",
            c.critical, c.high, c.medium, c.low
        )
    };
    let _ = writeln!(s, "uncovered_now: {}", or_dash(&plan.uncovered_now));
    let _ = writeln!(
        s,
        "uncovered_now_counts: {}",
        counts(&plan.uncovered_now_counts, plan.uncovered_now_more)
    );
    let _ = writeln!(s, "uncovered_after: {}", or_dash(&plan.uncovered_after));
    let _ = writeln!(
        s,
        "uncovered_after_counts: {}",
        counts(&plan.uncovered_after_counts, plan.uncovered_after_more)
    );
    let _ = writeln!(s, "from: {}", release(&plan.from));
    let _ = writeln!(s, "to: {}", release(&plan.to));
    let _ = writeln!(s, "consent_required: {}", plan.consent_required);
    let _ = writeln!(
        s,
        "not_before: {}",
        plan.not_before.as_deref().unwrap_or("-")
    );
    let steps: Vec<String> = plan
        .steps
        .iter()
        .map(|step| match step {
            Step::Fetch {
                product,
                version,
                format,
                size,
                ..
            } => format!("fetch {product} {version} {format} ({size} bytes)"),
            Step::Install {
                product,
                version,
                format,
                ..
            } => format!("install {product} {version} {format}"),
            Step::Verify {
                product, pattern, ..
            } => format!("verify {product} {pattern}"),
            Step::Uninstall {
                product,
                version,
                format,
                ..
            } => format!("uninstall {product} {version} {format}"),
        })
        .collect();
    let _ = writeln!(s, "steps: {}", or_dash(&steps));
    let alternatives: Vec<String> = plan
        .alternatives
        .iter()
        .map(|a| {
            let u = a.uncovered;
            format!(
                "{} {} (seq {}; uncovered c{} h{} m{} l{})",
                a.product, a.version, a.seq, u.critical, u.high, u.medium, u.low
            )
        })
        .collect();
    let _ = writeln!(s, "alternatives: {}", or_dash(&alternatives));
    let _ = writeln!(s, "reason: {}", plan.reason);
    s
}

pub fn plan_case(path: &Path) -> PlanDoc {
    let (catalog, terminal, now) = load_case(path);
    Planner::new(&catalog, now).plan_doc(&terminal)
}

#[test]
fn every_case_plans_as_expected() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("tests/cases exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 20,
        "the cases directory lost its fixtures: {}",
        paths.len()
    );
    let mut failures = Vec::new();
    for path in &paths {
        let actual = summarize(&plan_case(path));
        let expected_path = path.with_extension("expected");
        if update {
            std::fs::write(&expected_path, &actual).expect("write expected");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if actual != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- actual\n{actual}",
                path.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) differ (UPDATE_EXPECT=1 rewrites them):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn plans_are_byte_identical_across_planners_and_orders() {
    for entry in std::fs::read_dir(cases_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let (catalog, terminal, now) = load_case(&path);
        let mut first = Planner::new(&catalog, now);
        let a = serde_json::to_string(&first.plan_doc(&terminal)).unwrap();
        // Memoised the second time round; a fresh planner from scratch.
        let b = serde_json::to_string(&first.plan_doc(&terminal)).unwrap();
        let mut second = Planner::new(&catalog, now);
        let c = serde_json::to_string(&second.plan_doc(&terminal)).unwrap();
        assert_eq!(a, b, "{}", path.display());
        assert_eq!(a, c, "{}", path.display());
        // The direct rendering a check-in answer uses writes the same bytes.
        let mut direct = Vec::new();
        let plan = second.plan(&terminal);
        second.render_json(&plan, &mut direct);
        assert_eq!(String::from_utf8(direct).unwrap(), a, "{}", path.display());
    }
}

/// Herd's own set starting to cover a threat changes the plan at that instant: the tables
/// hold until then and a planner moved past it is refused (and a new one plans `none`).
#[test]
fn herd_set_coverage_starts_at_its_instant() {
    let (catalog, terminal, now) =
        load_case(&cases_dir().join("herd-set-coverage-after-now-still-switches.json"));
    let since = catalog.threats[0]
        .herd_since
        .expect("the case sets herd_since");
    let mut planner = Planner::new(&catalog, now);
    assert_eq!(planner.valid_until(), since);
    assert!(planner.set_now(since).is_err());
    let mut later = Planner::new(&catalog, since);
    let plan = later.plan_doc(&terminal);
    assert_eq!(
        serde_json::to_value(plan.action).unwrap(),
        json!("none"),
        "{plan:?}"
    );
}
