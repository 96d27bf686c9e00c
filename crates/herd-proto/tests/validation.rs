//! Bad input: every validation rule of the catalog and terminal formats refuses what it
//! should, naming the document, the JSON path and what is wrong — and reports every problem.

use herd_proto::catalog::parse_catalog;
use herd_proto::terminal::parse_terminals;
use serde_json::{Value, json};

fn good_catalog() -> Value {
    json!({
        "format": "herd.catalog/v1",
        "vendors": [{"id": "maker-a", "name": "A"}, {"id": "maker-b", "name": "B"}],
        "products": [
            {"id": "vaccine-a", "vendor": "maker-a", "name": "Vaccine a", "platforms": ["phone", "pc"]},
            {"id": "vaccine-b", "vendor": "maker-b", "name": "Vaccine b", "platforms": ["phone"]}
        ],
        "releases": [
            {"product": "vaccine-a", "version": "5.1", "pattern": "a-1101", "seq": 1101, "published": "2000-11-01T00:00:00Z",
             "packages": [{"platform": "phone", "format": "archive", "sha256": "ab".repeat(32), "size": 1234}]},
            {"product": "vaccine-b", "version": "7.0", "pattern": "b-1112", "seq": 1112, "published": "2000-11-12T00:00:00Z",
             "packages": [{"platform": "phone", "format": "deb", "name": "vaccine-b", "sha256": "cd".repeat(32), "size": 2345}]}
        ],
        "threats": [{"id": "virus-a", "name": "virus a", "danger": "high", "discovered": "2000-11-10"}],
        "coverage": [
            {"product": "vaccine-a", "threat": "virus-a", "since_seq": null, "covered_on": null, "expected": "2000-11-15"},
            {"product": "vaccine-b", "threat": "virus-a", "since_seq": 1112, "covered_on": "2000-11-12"}
        ]
    })
}

/// Applies `change` to a good catalog and returns the error text, which must contain every `expected` part.
fn refused(change: impl FnOnce(&mut Value), expected: &[&str]) {
    let mut catalog = good_catalog();
    change(&mut catalog);
    let err =
        parse_catalog("feed.json", &catalog.to_string()).expect_err("the catalog must be refused");
    let text = err.to_string();
    for part in expected {
        assert!(text.contains(part), "expected {part:?} in:\n{text}");
    }
    assert!(
        text.lines().all(|l| l.starts_with("feed.json: $")),
        "every line names the document and a path:\n{text}"
    );
}

#[test]
fn the_good_catalog_is_accepted() {
    let catalog = parse_catalog("feed.json", &good_catalog().to_string()).unwrap();
    assert_eq!(catalog.products.len(), 2);
    assert_eq!(catalog.platforms, ["pc", "phone"]);
}

#[test]
fn unknown_references() {
    refused(
        |c| c["products"][1]["vendor"] = json!("maker-z"),
        &["$.products[1].vendor: unknown vendor \"maker-z\""],
    );
    refused(
        |c| c["releases"][0]["product"] = json!("vaccine-z"),
        &["$.releases[0].product: unknown product \"vaccine-z\""],
    );
    refused(
        |c| c["coverage"][1]["threat"] = json!("virus-z"),
        &["$.coverage[1].threat: unknown threat \"virus-z\""],
    );
    refused(
        |c| c["coverage"][0]["product"] = json!("nope"),
        &["$.coverage[0].product: unknown product \"nope\""],
    );
    refused(
        |c| c["releases"][1]["packages"][0]["platform"] = json!("pc"),
        &[
            "$.releases[1].packages[0].platform",
            "not one of product \"vaccine-b\"'s platforms",
        ],
    );
}

#[test]
fn duplicate_ids() {
    refused(
        |c| c["vendors"][1]["id"] = json!("maker-a"),
        &["$.vendors[1].id: duplicate vendor id \"maker-a\""],
    );
    refused(
        |c| c["products"][1]["id"] = json!("vaccine-a"),
        &["$.products[1].id: duplicate product id \"vaccine-a\""],
    );
    refused(
        |c| {
            let t = c["threats"][0].clone();
            c["threats"].as_array_mut().unwrap().push(t);
        },
        &["$.threats[1].id: duplicate threat id \"virus-a\""],
    );
    refused(
        |c| {
            let s = c["coverage"][1].clone();
            c["coverage"].as_array_mut().unwrap().push(s);
        },
        &[
            "$.coverage[2].threat: a second coverage statement",
            "the first is $.coverage[1]",
        ],
    );
    refused(
        |c| c["products"][0]["platforms"] = json!(["phone", "phone"]),
        &["$.products[0].platforms[1]: duplicate platform"],
    );
}

#[test]
fn seq_not_ordered_by_published() {
    refused(
        |c| {
            c["releases"].as_array_mut().unwrap().push(
                json!({"product": "vaccine-a", "version": "5.2", "pattern": "a-1102", "seq": 1102,
                "published": "2000-10-01T00:00:00Z", "packages": []}),
            );
        },
        &[
            "$.releases[2].published",
            "not strictly ordered by published",
            "seq 1101",
        ],
    );
    refused(
        |c| {
            c["releases"].as_array_mut().unwrap().push(
                json!({"product": "vaccine-a", "version": "5.2", "pattern": "a-1101b", "seq": 1101,
                "published": "2000-11-02T00:00:00Z", "packages": []}),
            );
        },
        &["$.releases[2].seq: product \"vaccine-a\" has seq 1101 twice"],
    );
    refused(
        |c| {
            c["releases"].as_array_mut().unwrap().push(
                json!({"product": "vaccine-a", "version": "5.1", "pattern": "a-1102", "seq": 1102,
                "published": "2000-11-02T00:00:00Z", "packages": []}),
            );
        },
        &["$.releases[2].version: product \"vaccine-a\" has version \"5.1\" twice"],
    );
}

#[test]
fn unknown_enumerations() {
    refused(
        |c| c["threats"][0]["danger"] = json!("severe"),
        &["$.threats[0].danger: unknown danger \"severe\""],
    );
    refused(
        |c| c["releases"][0]["packages"][0]["format"] = json!("zip"),
        &["$.releases[0].packages[0].format: unknown package format \"zip\""],
    );
    refused(
        |c| c["format"] = json!("herd.catalog/v2"),
        &["$.format: unknown format \"herd.catalog/v2\""],
    );
    refused(
        |c| {
            c.as_object_mut().unwrap().remove("format");
        },
        &["$: missing field `format`"],
    );
}

#[test]
fn malformed_dates_and_times() {
    refused(
        |c| c["threats"][0]["discovered"] = json!("2000-02-30"),
        &[
            "$.threats[0].discovered",
            "day 30 does not exist in 2000-02",
        ],
    );
    refused(
        |c| c["releases"][0]["published"] = json!("2000-11-01"),
        &["$.releases[0].published", "expected 'T'"],
    );
    refused(
        |c| c["coverage"][1]["covered_on"] = json!("12/11/2000"),
        &["$.coverage[1].covered_on", "is not a valid date"],
    );
    refused(
        |c| c["coverage"][0]["expected"] = json!("soon"),
        &["$.coverage[0].expected"],
    );
    refused(
        |c| c["coverage"][0]["covered_on"] = json!("2000-11-12"),
        &["$.coverage[0].covered_on: covered_on is set but since_seq is null"],
    );
}

#[test]
fn packages_need_digest_size_and_identity() {
    refused(
        |c| {
            c["releases"][0]["packages"][0]
                .as_object_mut()
                .unwrap()
                .remove("sha256");
        },
        &["$.releases[0].packages[0]", "missing field `sha256`"],
    );
    refused(
        |c| {
            c["releases"][0]["packages"][0]
                .as_object_mut()
                .unwrap()
                .remove("size");
        },
        &["$.releases[0].packages[0]", "missing field `size`"],
    );
    refused(
        |c| c["releases"][0]["packages"][0]["sha256"] = json!("xyz"),
        &["$.releases[0].packages[0].sha256", "64 hexadecimal digits"],
    );
    refused(
        |c| c["releases"][0]["packages"][0]["size"] = json!(0),
        &["$.releases[0].packages[0].size: a package size must be at least 1 byte"],
    );
    refused(
        |c| c["releases"][0]["packages"][0]["size"] = json!(-5),
        &["$.releases[0].packages[0].size"],
    );
    refused(
        |c| {
            c["releases"][1]["packages"][0]
                .as_object_mut()
                .unwrap()
                .remove("name");
        },
        &["$.releases[1].packages[0].name: a deb package needs the `name`"],
    );
    refused(
        |c| c["releases"][1]["packages"][0]["name"] = json!("Bad Name;rm"),
        &[
            "$.releases[1].packages[0].name",
            "not a valid deb package name",
        ],
    );
    refused(
        |c| c["releases"][0]["packages"][0]["post_install"] = json!("../../etc/evil"),
        &["$.releases[0].packages[0].post_install", "'..'"],
    );
    refused(
        |c| c["releases"][0]["packages"][0]["post_install"] = json!("/bin/sh"),
        &["$.releases[0].packages[0].post_install", "relative path"],
    );
    refused(
        |c| {
            c["releases"][1]["packages"][0] = json!({"platform": "phone", "format": "msi", "sha256": "cd".repeat(32), "size": 1, "product_code": "not-a-guid"});
        },
        &[
            "$.releases[1].packages[0].product_code",
            "not an MSI ProductCode",
        ],
    );
}

#[test]
fn hostile_ids_are_refused() {
    refused(
        |c| c["products"][0]["id"] = json!("../vaccine"),
        &["$.products[0].id", "must start with a letter or digit"],
    );
    refused(
        |c| c["releases"][0]["version"] = json!("5.1/../../x"),
        &["$.releases[0].version", "may not contain '/'"],
    );
    refused(
        |c| c["vendors"][0]["id"] = json!("maker a"),
        &["$.vendors[0].id", "may not contain ' '"],
    );
}

#[test]
fn unknown_fields_and_bad_json() {
    refused(
        |c| c["coverage"][1]["sice_seq"] = json!(1),
        &["$.coverage[1]", "unknown field `sice_seq`"],
    );
    let err = parse_catalog(
        "feed.json",
        "{\"format\": \"herd.catalog/v1\", \"vendors\": [",
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("feed.json: $"), "{err}");
    assert!(err.to_string().contains("EOF"), "{err}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut catalog = good_catalog();
    catalog["threats"][0]["danger"] = json!("severe");
    catalog["products"][1]["vendor"] = json!("maker-z");
    catalog["coverage"][0]["threat"] = json!("virus-z");
    let err = parse_catalog("feed.json", &catalog.to_string()).unwrap_err();
    assert_eq!(err.problems.len(), 3, "{err}");
}

fn terminal() -> Value {
    json!({
        "id": "45a", "user": "user-a",
        "hardware": {"kind": "phone", "platform": "phone"},
        "installed": {"product": "vaccine-a", "version": "5.1", "seq": 1101, "pattern": "a-1101", "format": "archive"},
        "policy": {"apply": "latest-any-vendor", "min_danger": "low", "consent": "auto", "window": null}
    })
}

fn terminal_refused(change: impl FnOnce(&mut Value), expected: &str) {
    let catalog = parse_catalog("feed.json", &good_catalog().to_string()).unwrap();
    let mut t = terminal();
    change(&mut t);
    let results = parse_terminals("t.json", &t.to_string(), &catalog).unwrap();
    let err = results
        .into_iter()
        .next()
        .unwrap()
        .expect_err("the terminal must be refused")
        .to_string();
    assert!(err.contains(expected), "expected {expected:?} in:\n{err}");
    assert!(err.starts_with("t.json: $"), "{err}");
}

#[test]
fn terminal_records_are_validated() {
    terminal_refused(
        |t| t["installed"]["product"] = json!("vaccine-z"),
        "$.installed.product: unknown product \"vaccine-z\"",
    );
    terminal_refused(
        |t| t["installed"]["format"] = json!("exe"),
        "$.installed.format: unknown package format",
    );
    terminal_refused(
        |t| t["policy"]["apply"] = json!("latest"),
        "$.policy.apply: unknown policy \"latest\"",
    );
    terminal_refused(
        |t| t["policy"]["min_danger"] = json!("none"),
        "$.policy.min_danger: unknown danger",
    );
    terminal_refused(
        |t| t["policy"]["consent"] = json!("maybe"),
        "$.policy.consent: unknown consent",
    );
    terminal_refused(|t| t["policy"]["window"] = json!("1-5"), "$.policy.window");
    terminal_refused(|t| t["policy"]["window"] = json!("23:00-25:00"), "hour 25");
    terminal_refused(|t| t["policy"]["tz"] = json!("JST"), "$.policy.tz");
    terminal_refused(
        |t| t["policy"]["colour"] = json!("red"),
        "unknown field `colour`",
    );
    terminal_refused(
        |t| t["id"] = json!(""),
        "$.id: a terminal id must not be empty",
    );
    terminal_refused(
        |t| {
            t.as_object_mut().unwrap().remove("policy");
        },
        "missing field `policy`",
    );
}

#[test]
fn one_bad_record_in_an_array_does_not_spoil_the_others() {
    let catalog = parse_catalog("feed.json", &good_catalog().to_string()).unwrap();
    let mut bad = terminal();
    bad["policy"]["apply"] = json!("sometimes");
    let array = json!([terminal(), bad, terminal()]);
    let results = parse_terminals("fleet.json", &array.to_string(), &catalog).unwrap();
    assert!(results[0].is_ok() && results[2].is_ok());
    let err = results[1].as_ref().unwrap_err().to_string();
    assert!(
        err.starts_with("fleet.json: $[1].policy.apply: unknown policy"),
        "{err}"
    );
    let mut shape = terminal();
    shape["installed"]["seq"] = json!("1101");
    let results = parse_terminals(
        "fleet.json",
        &json!([terminal(), shape]).to_string(),
        &catalog,
    )
    .unwrap();
    let err = results[1].as_ref().unwrap_err().to_string();
    assert!(
        err.starts_with("fleet.json: $[1].installed.seq: invalid type"),
        "{err}"
    );
}

/// A deterministic stand-in for the fuzz target (`crates/herd-proto/fuzz`) that runs in every
/// test run: thousands of mutations of the worked example must each parse or be refused,
/// never panic.
#[test]
fn mutated_documents_never_panic() {
    let catalog = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/seed/catalog.json"
    ))
    .unwrap();
    let terminal = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/seed/terminals/46c-user-c-pc.json"
    ))
    .unwrap();
    let good = parse_catalog("seed", std::str::from_utf8(&catalog).unwrap()).unwrap();
    let mut state = 0x2000_1110_u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize
    };
    const BYTES: &[u8] = b"{}[]\",:0123456789-+.eEtrufalsn\\ \n\x00\xff";
    for round in 0..3000 {
        let (source, is_catalog) = if round % 2 == 0 {
            (&catalog, true)
        } else {
            (&terminal, false)
        };
        let mut doc = source.clone();
        for _ in 0..1 + next() % 4 {
            let at = next() % doc.len();
            match next() % 3 {
                0 => doc[at] = BYTES[next() % BYTES.len()],
                1 => {
                    doc.remove(at);
                }
                _ => doc.insert(at, BYTES[next() % BYTES.len()]),
            }
        }
        let Ok(text) = std::str::from_utf8(&doc) else {
            continue;
        };
        if is_catalog {
            let _ = parse_catalog("mutated", text);
        } else if let Ok(results) = parse_terminals("mutated", text, &good) {
            let mut planner = herd_planner_free_check(&good);
            for t in results.into_iter().flatten() {
                planner(&t);
            }
        }
    }
}

/// herd-proto cannot depend on the planner; validated terminals are checked for their invariants instead.
fn herd_planner_free_check(catalog: &herd_core::Catalog) -> impl FnMut(&herd_core::Terminal) + '_ {
    move |t| {
        if let Some(installed) = &t.installed {
            assert!(installed.product.get() < catalog.products.len());
        }
        assert!(!t.id.is_empty());
    }
}

#[test]
fn a_catalog_made_back_into_a_document_validates_to_the_same_catalog() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed/catalog.json"),
    )
    .unwrap();
    let doc: herd_proto::catalog::CatalogDoc = serde_json::from_str(&text).unwrap();
    let catalog = doc.validate("seed").unwrap();
    let again = herd_proto::catalog::CatalogDoc::from_model(&catalog);
    // Same content: the seed lists releases in the catalog's order already.
    assert_eq!(again.vendors, doc.vendors);
    // Platforms come back in the catalog's order of platforms.
    let sorted = |products: &[herd_proto::catalog::ProductDoc]| {
        let mut products = products.to_vec();
        for p in &mut products {
            p.platforms.sort();
        }
        products
    };
    assert_eq!(sorted(&again.products), sorted(&doc.products));
    assert_eq!(again.threats, doc.threats);
    assert_eq!(again.coverage, doc.coverage);
    assert_eq!(again.releases.len(), doc.releases.len());
    for (a, b) in again.releases.iter().zip(&doc.releases) {
        assert_eq!(
            (&a.product, &a.version, a.seq),
            (&b.product, &b.version, b.seq)
        );
        assert_eq!(a.packages, b.packages);
    }
    // And a fixed point: validating it again and back gives the same document.
    let twice = herd_proto::catalog::CatalogDoc::from_model(&again.validate("again").unwrap());
    assert_eq!(twice, again);
}

#[test]
fn a_product_is_a_vaccine_unless_it_says_it_is_a_program() {
    let catalog = parse_catalog("feed.json", &good_catalog().to_string()).unwrap();
    assert!(
        catalog
            .products
            .iter()
            .all(|p| p.kind == herd_core::ProductKind::Vaccine)
    );
    let mut doc = good_catalog();
    doc["products"].as_array_mut().unwrap().push(json!(
        {"id": "middleware-a", "vendor": "maker-a", "name": "Middleware a", "platforms": ["pc"], "kind": "program"}
    ));
    doc["products"][0]["kind"] = json!("vaccine");
    let catalog = parse_catalog("feed.json", &doc.to_string()).unwrap();
    let kinds: Vec<_> = catalog.products.iter().map(|p| p.kind.as_str()).collect();
    assert_eq!(kinds, ["vaccine", "vaccine", "program"]);
    // Written back, a vaccine says nothing (old readers see the document they know).
    let back = serde_json::to_value(herd_proto::catalog::CatalogDoc::from_model(&catalog)).unwrap();
    assert!(back["products"][0].get("kind").is_none(), "{back}");
    assert_eq!(back["products"][2]["kind"], "program");
}

#[test]
fn a_product_kind_is_vaccine_or_program_and_programs_state_no_coverage() {
    refused(
        |c| c["products"][0]["kind"] = json!("middleware"),
        &[
            "$.products[0].kind: unknown product kind \"middleware\"; expected \"vaccine\" or \"program\"",
        ],
    );
    refused(
        |c| c["products"][1]["kind"] = json!("program"),
        &["$.coverage[1].product: \"vaccine-b\" is a program, not a vaccine product"],
    );
}

#[test]
fn threat_aliases_and_herd_coverage_are_checked() {
    refused(
        |c| c["threats"][0]["aliases"] = json!(["sha256:ABC"]),
        &[
            "$.threats[0].aliases[0]",
            "a file alias is \"sha256:\" and 64 lower-case hex digits",
        ],
    );
    refused(
        |c| c["threats"][0]["aliases"] = json!(["virus b"]),
        &["$.threats[0].aliases[0]", "alias \"virus b\""],
    );
    refused(
        |c| c["threats"][0]["herd_since"] = json!("2000-11-10"),
        &["$.threats[0].herd_since", "expected 'T'"],
    );
}
