//! The simulated fleet's world: a small generated catalog (three vendors, two threats) and the
//! inventory profiles terminals report, chosen so that the center's plans are an even mix of
//! `switch`, `update`, `none` and `exposed` under the default `latest-any-vendor` policy.
//!
//! Every id starts with `sim-` so that a simulation against an existing center neither
//! replaces a real vendor's feed nor collides with real products or threats.

use herd_proto::api::CheckinRequest;
use herd_proto::terminal::{HardwareDoc, InstalledDoc};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// The catalog feeds to publish, one per vendor: `(vendor id, feed JSON)`.
pub fn feeds() -> Vec<(&'static str, String)> {
    // Threat 1 (high) is covered by vaccine-b and vaccine-c but never by vaccine-a; threat 2
    // (medium) by vaccine-a from 5.2 and vaccine-b from 7.1. See `PROFILES` for what follows.
    let worm = json!({"id": "sim-worm-1", "name": "sim worm 1", "danger": "high", "discovered": "2000-11-10"});
    let trojan = json!({"id": "sim-trojan-2", "name": "sim trojan 2", "danger": "medium", "discovered": "2000-11-20"});
    vec![
        (
            "sim-maker-a",
            feed(
                ("sim-maker-a", "Simulated Maker A"),
                ("sim-vaccine-a", &["phone", "pc", "stb"]),
                &[("5.1", 1101, "2000-11-01"), ("5.2", 1130, "2000-11-30")],
                &[&worm, &trojan],
                vec![
                    json!({"product": "sim-vaccine-a", "threat": "sim-worm-1", "since_seq": null, "covered_on": null, "expected": "2001-01-15"}),
                    json!({"product": "sim-vaccine-a", "threat": "sim-trojan-2", "since_seq": 1130, "covered_on": "2000-11-30"}),
                ],
            ),
        ),
        (
            "sim-maker-b",
            feed(
                ("sim-maker-b", "Simulated Maker B"),
                ("sim-vaccine-b", &["phone", "pc"]),
                &[("7.0", 1112, "2000-11-12"), ("7.1", 1125, "2000-11-25")],
                &[&worm, &trojan],
                vec![
                    json!({"product": "sim-vaccine-b", "threat": "sim-worm-1", "since_seq": 1112, "covered_on": "2000-11-12"}),
                    json!({"product": "sim-vaccine-b", "threat": "sim-trojan-2", "since_seq": 1125, "covered_on": "2000-11-25"}),
                ],
            ),
        ),
        (
            "sim-maker-c",
            feed(
                ("sim-maker-c", "Simulated Maker C"),
                ("sim-vaccine-c", &["pc"]),
                &[("3.0", 1120, "2000-11-20")],
                &[&worm],
                vec![
                    json!({"product": "sim-vaccine-c", "threat": "sim-worm-1", "since_seq": 1120, "covered_on": "2000-11-20"}),
                ],
            ),
        ),
    ]
}

fn feed(
    (vendor, vendor_name): (&str, &str),
    (product, platforms): (&str, &[&str]),
    releases: &[(&str, u64, &str)],
    threats: &[&Value],
    coverage: Vec<Value>,
) -> String {
    let releases: Vec<Value> = releases
        .iter()
        .map(|&(version, seq, date)| {
            let packages: Vec<Value> = platforms
                .iter()
                .map(|platform| {
                    // Digests of a name: stable across runs, never a real package.
                    let digest = Sha256::digest(format!("{product} {version} {platform}"));
                    json!({"platform": platform, "format": "archive",
                           "sha256": hex::encode(digest), "size": 4096 + seq})
                })
                .collect();
            json!({"product": product, "version": version, "pattern": format!("{product}-{seq}"),
                   "seq": seq, "published": format!("{date}T00:00:00Z"), "packages": packages})
        })
        .collect();
    json!({
        "format": "herd.catalog/v1",
        "vendors": [{"id": vendor, "name": vendor_name}],
        "products": [{"id": product, "vendor": vendor, "name": product, "platforms": platforms}],
        "releases": releases,
        "threats": threats,
        "coverage": coverage,
    })
    .to_string()
}

/// What a simulated terminal runs, and the plan the generated catalog gives it.
#[derive(Debug)]
pub struct Profile {
    pub platform: &'static str,
    /// `(product, version, seq)`.
    pub installed: (&'static str, &'static str, u64),
    pub expected: Action,
}

/// Terminal `i` runs `PROFILES[i % PROFILES.len()]`.
pub const PROFILES: [Profile; 4] = [
    // vaccine-a misses the high-danger worm even after its update; vaccine-b covers all.
    Profile {
        platform: "phone",
        installed: ("sim-vaccine-a", "5.1", 1101),
        expected: Action::Switch,
    },
    // vaccine-b 7.1 closes the gap; vaccine-a 5.2 would not be better than that.
    Profile {
        platform: "phone",
        installed: ("sim-vaccine-b", "7.0", 1112),
        expected: Action::Update,
    },
    Profile {
        platform: "phone",
        installed: ("sim-vaccine-b", "7.1", 1125),
        expected: Action::None,
    },
    // Only vaccine-a runs on set-top boxes, and it does not cover the worm.
    Profile {
        platform: "stb",
        installed: ("sim-vaccine-a", "5.2", 1130),
        expected: Action::Exposed,
    },
];

pub fn profile(terminal: usize) -> &'static Profile {
    &PROFILES[terminal % PROFILES.len()]
}

impl Profile {
    pub fn hardware(&self) -> HardwareDoc {
        HardwareDoc {
            kind: self.platform.to_owned(),
            platform: self.platform.to_owned(),
            model: Some("herd-sim".to_owned()),
        }
    }

    /// The check-in body this profile sends, serialised once and reused for every request.
    pub fn checkin_body(&self) -> Vec<u8> {
        let (product, version, seq) = self.installed;
        let request = CheckinRequest {
            terminal: None,
            installed: Some(InstalledDoc {
                product: product.to_owned(),
                version: version.to_owned(),
                seq,
                pattern: format!("{product}-{seq}"),
                format: "archive".to_owned(),
            }),
            hardware: None,
            tz: None,
            agent_version: Some(concat!("herd-sim/", env!("CARGO_PKG_VERSION")).to_owned()),
        };
        serde_json::to_vec(&request).expect("a check-in request serialises")
    }
}

/// A plan's `action`, as the check-in answer spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    Update,
    Switch,
    Exposed,
}

impl Action {
    pub const ALL: [Action; 4] = [
        Action::None,
        Action::Update,
        Action::Switch,
        Action::Exposed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::None => "none",
            Action::Update => "update",
            Action::Switch => "switch",
            Action::Exposed => "exposed",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The action of a check-in answer, found without parsing the whole document: the
    /// answer is `{"plan_id":"<hex>","plan":{"terminal":"<id>","action":"…",…}` and neither
    /// a hex digest nor a terminal id can contain a quote, so the first `"action":"` is the
    /// plan's.
    pub fn find_in(answer: &[u8]) -> Option<Action> {
        const KEY: &[u8] = b"\"action\":\"";
        let at = answer.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
        let rest = &answer[at..];
        let end = rest.iter().position(|&b| b == b'"')?;
        Action::ALL
            .into_iter()
            .find(|action| action.name().as_bytes() == &rest[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_feed_is_a_valid_catalog_and_they_merge() {
        let mut docs = Vec::new();
        for (vendor, text) in feeds() {
            herd_proto::catalog::parse_catalog(vendor, &text).expect("the feed validates");
            docs.push(serde_json::from_str(&text).expect("the feed parses"));
        }
        herd_proto::merge::merge(docs.iter())
            .validate("merged")
            .expect("the merged catalog validates");
    }

    #[test]
    fn each_profile_gets_the_plan_it_is_meant_to() {
        let docs: Vec<herd_proto::catalog::CatalogDoc> = feeds()
            .iter()
            .map(|(_, text)| serde_json::from_str(text).expect("the feed parses"))
            .collect();
        let catalog = herd_proto::merge::merge(docs.iter())
            .validate("merged")
            .expect("the merged catalog validates");
        let now = herd_core::Timestamp::parse("2026-01-01T00:00:00Z").expect("a timestamp");
        let mut planner = herd_planner::Planner::new(&catalog, now);
        for (i, profile) in PROFILES.iter().enumerate() {
            let request: CheckinRequest =
                serde_json::from_slice(&profile.checkin_body()).expect("the body parses");
            let doc = herd_proto::terminal::TerminalDoc {
                id: format!("sim-{i}"),
                user: None,
                hardware: profile.hardware(),
                installed: request.installed,
                policy: herd_proto::terminal::PolicyDoc {
                    apply: "latest-any-vendor".to_owned(),
                    min_danger: None,
                    consent: None,
                    window: None,
                    tz: None,
                },
            };
            let terminal = doc.validate("profile", &catalog).expect("validates");
            let plan = planner.plan_doc(&terminal);
            let answer = serde_json::to_vec(&serde_json::json!({"plan_id": "00ff", "plan": plan}))
                .expect("serialises");
            assert_eq!(
                Action::find_in(&answer),
                Some(profile.expected),
                "profile {i}: {}",
                String::from_utf8_lossy(&answer)
            );
        }
    }

    #[test]
    fn an_answer_without_a_known_action_is_not_read_as_one() {
        assert_eq!(Action::find_in(b"{\"plan\":{\"action\":\"reboot\"}}"), None);
        assert_eq!(Action::find_in(b"{\"plan\":{\"action\":\"none"), None);
        assert_eq!(Action::find_in(b"{}"), None);
    }
}
