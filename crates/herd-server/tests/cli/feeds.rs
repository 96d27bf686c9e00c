//! The example vendor feeds the README publishes (`examples/feeds/*.json`): each validates as a
//! `herd.catalog/v1` document on its own and describes only its vendor (what the center
//! demands of a feed), and together they are exactly the worked example of
//! `examples/seed/catalog.json`. The comparison is done on the documents themselves rather
//! than through the center's merge, which is a library of its own in the making.

use std::collections::BTreeSet;
use std::fs;

use serde_json::Value;

use super::repo;

const FEEDS: [(&str, &str); 2] = [
    ("maker-a", "examples/feeds/maker-a.json"),
    ("maker-b", "examples/feeds/maker-b.json"),
];

fn read(path: &str) -> (String, Value) {
    let text = fs::read_to_string(repo().join(path)).unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|err| panic!("{path}: {err}"));
    (text, value)
}

/// The entries of one array, each as canonical JSON (serde_json sorts object keys), so two
/// documents can be compared as sets whatever their order and layout.
fn entries(doc: &Value, key: &str) -> BTreeSet<String> {
    doc[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is not an array"))
        .iter()
        .map(|v| serde_json::to_string(v).unwrap())
        .collect()
}

#[test]
fn each_feed_validates_alone_and_describes_only_its_vendor() {
    for (vendor, path) in FEEDS {
        let (text, doc) = read(path);
        let catalog =
            herd_proto::catalog::parse_catalog(path, &text).unwrap_or_else(|err| panic!("{err}"));
        assert!(!catalog.releases.is_empty(), "{path}: no releases");
        assert_eq!(doc["format"], "herd.catalog/v1");
        let vendors: Vec<&str> = doc["vendors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            vendors,
            [vendor],
            "{path}: a feed describes its own vendor only"
        );
        for product in doc["products"].as_array().unwrap() {
            assert_eq!(product["vendor"], vendor, "{path}: {product}");
        }
    }
}

#[test]
fn together_the_feeds_are_the_worked_example() {
    let (_, seed) = read("examples/seed/catalog.json");
    let feeds: Vec<Value> = FEEDS.iter().map(|(_, path)| read(path).1).collect();
    for key in ["vendors", "products", "releases", "coverage"] {
        let union: BTreeSet<String> = feeds.iter().flat_map(|f| entries(f, key)).collect();
        let count: usize = feeds.iter().map(|f| f[key].as_array().unwrap().len()).sum();
        assert_eq!(union, entries(&seed, key), "{key}");
        assert_eq!(count, union.len(), "{key}: nothing is described twice");
    }
    // Threats are shared: each feed names the threats its coverage speaks of.
    let threat_ids = |doc: &Value| -> BTreeSet<String> {
        doc["threats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let union: BTreeSet<String> = feeds.iter().flat_map(threat_ids).collect();
    assert_eq!(union, threat_ids(&seed));
    // A shared threat is described the same way by each vendor here, so the merge has nothing
    // to reconcile.
    let threats: BTreeSet<String> = feeds.iter().flat_map(|f| entries(f, "threats")).collect();
    assert_eq!(threats, entries(&seed, "threats"));
}

#[test]
fn the_readme_publishes_files_that_exist() {
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    let published: Vec<&str> = readme
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("herd publish "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert!(published.len() >= 2, "{published:?}");
    for path in published {
        assert!(
            repo().join(path).is_file(),
            "README publishes {path}, which is missing"
        );
    }
}
