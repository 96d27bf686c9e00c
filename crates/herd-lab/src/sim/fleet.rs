//! The simulated fleet's world: a generated catalog (by default SPEC §8's 100,000 threats ×
//! 20 products, see [`crate::world`]) split into its vendors' feeds, groups for the policies
//! the fleet runs under with placement rules that put each terminal in its group, and for
//! each terminal what it reports and the plan the center must give it — computed here with
//! the same planner, so every answer is checked, not only counted.
//!
//! Every id starts with `sim-` so that a simulation against an existing center neither
//! replaces a real vendor's feed nor collides with real products or threats.

use herd_core::Timestamp;
use herd_planner::Planner;
use herd_proto::api::{CheckinRequest, GroupDoc, PlacementRule, PlacementRules};
use herd_proto::catalog::CatalogDoc;
/// A plan's action: the wire enum itself, so the simulator reads the names the center writes.
pub use herd_proto::plan::Action;
use herd_proto::terminal::TerminalDoc;

use crate::world::{self, POLICIES, Shape};

/// What every simulated id starts with.
pub const PREFIX: &str = "sim-";

/// The generated world of one simulation.
#[derive(Debug)]
pub struct World {
    pub shape: Shape,
    doc: CatalogDoc,
    catalog: herd_core::Catalog,
}

impl World {
    pub fn generate(shape: Shape) -> anyhow::Result<World> {
        let doc = world::catalog(&shape, PREFIX);
        let catalog = doc
            .validate("the generated catalog")
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        Ok(World {
            shape,
            doc,
            catalog,
        })
    }

    /// The feeds to publish, one per vendor: `(vendor id, feed JSON)`.
    pub fn feeds(&self) -> Vec<(String, String)> {
        herd_proto::merge::split_by_vendor(&self.doc)
            .into_iter()
            .map(|(vendor, feed)| {
                let json = serde_json::to_string(&feed).expect("a feed serialises");
                (vendor, json)
            })
            .collect()
    }

    /// One group per policy of the fleet.
    pub fn groups(&self) -> Vec<GroupDoc> {
        POLICIES
            .iter()
            .map(|mix| GroupDoc {
                id: format!("{PREFIX}{}", mix.name),
                description: format!("herd sim: terminals under the {} policy", mix.name),
                policy: mix.policy(),
                terminals: 0,
            })
            .collect()
    }

    /// Rules placing each terminal in its policy's group (terminals carry their policy's name
    /// as user).
    pub fn rules(&self) -> PlacementRules {
        PlacementRules {
            rules: POLICIES
                .iter()
                .map(|mix| PlacementRule {
                    group: format!("{PREFIX}{}", mix.name),
                    kind: None,
                    platform: None,
                    address: None,
                    user: Some(format!("{PREFIX}{}", mix.name)),
                })
                .collect(),
        }
    }

    /// Terminal `index` of the fleet, with `id` as its id.
    pub fn terminal(&self, index: usize, id: &str) -> TerminalDoc {
        let mut doc = world::terminal(&self.shape, &self.doc, PREFIX, index);
        doc.id = id.to_owned();
        doc
    }

    /// A planner over the world's catalog at `now`, to know the plan each terminal must get.
    pub fn planner(&self, now: Timestamp) -> Planner<&herd_core::Catalog> {
        Planner::new(&self.catalog, now)
    }

    /// The world after its first vendor published a new release of each of its products, as
    /// a vendor's weekly update does: a week after their last one, with new packages, now
    /// covering the threats these products only expected to cover. Returns the vendor, its
    /// changed feed (JSON) and the new world, whose planner gives the plans after the publish.
    pub fn next_release(&self) -> anyhow::Result<(String, String, World)> {
        let mut doc = self.doc.clone();
        let vendor = doc
            .vendors
            .first()
            .map(|v| v.id.clone())
            .ok_or_else(|| anyhow::anyhow!("the generated world has no vendor"))?;
        let mut rng = world::Rng(self.shape.seed ^ 0x6e65_7772_656c_6561);
        let mut new_releases = Vec::new();
        for product in doc.products.iter().filter(|p| p.vendor == vendor) {
            let last = doc
                .releases
                .iter()
                .filter(|r| r.product == product.id)
                .max_by_key(|r| r.seq)
                .ok_or_else(|| anyhow::anyhow!("{} has no release", product.id))?;
            let published = Timestamp::parse(&last.published)
                .map_err(|err| anyhow::anyhow!("{}: {err}", last.published))?
                .unix_seconds()
                + 7 * world::DAY;
            let seq = last.seq + 1;
            let mut release = last.clone();
            release.seq = seq;
            release.version = format!("{}.next", last.version);
            release.pattern = format!("{}-next", last.pattern);
            release.published = Timestamp::from_unix_seconds(published).to_string();
            for package in &mut release.packages {
                package.sha256 = hex::encode(rng.bytes(32));
                package.size = 1_000_000 + rng.below(50_000_000);
            }
            new_releases.push(release);
        }
        for coverage in &mut doc.coverage {
            let Some(release) = new_releases.iter().find(|r| r.product == coverage.product) else {
                continue;
            };
            if coverage.expected.take().is_some() {
                coverage.since_seq = Some(release.seq);
                let published = Timestamp::parse(&release.published)
                    .map_err(|err| anyhow::anyhow!("{}: {err}", release.published))?;
                coverage.covered_on = Some(published.date().to_string());
            }
        }
        doc.releases.extend(new_releases);
        let catalog = doc
            .validate("the generated catalog after a new release")
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        let next = World {
            shape: self.shape,
            doc,
            catalog,
        };
        let feed = next
            .feeds()
            .into_iter()
            .find(|(id, _)| *id == vendor)
            .map(|(_, feed)| feed)
            .ok_or_else(|| anyhow::anyhow!("no feed for {vendor}"))?;
        Ok((vendor, feed, next))
    }

    /// The action the center must plan for `terminal`.
    pub fn expected(
        &self,
        planner: &mut Planner<&herd_core::Catalog>,
        terminal: &TerminalDoc,
    ) -> Action {
        let model = terminal
            .validate("a generated terminal", &self.catalog)
            .expect("generated terminals fit their catalog");
        planner.plan(&model).decision.action.into()
    }
}

/// The check-in body a terminal sends, serialised once and reused for every request.
pub fn checkin_body(terminal: &TerminalDoc) -> Vec<u8> {
    let request = CheckinRequest {
        terminal: None,
        installed: terminal.installed.clone(),
        hardware: None,
        tz: None,
        agent_version: Some(concat!("herd-sim/", env!("CARGO_PKG_VERSION")).to_owned()),
        interfaces: None,
        tuf_timestamp_version: None,
        consent_waiting: None,
        messages_after: None,
        tuf_held: None,
    };
    serde_json::to_vec(&request).expect("a check-in request serialises")
}

/// The action of a check-in answer, found without parsing the whole document: the answer is
/// `{"plan_id":"<hex>","plan":{"terminal":"<id>","action":"…",…}` and neither a hex digest
/// nor a terminal id can contain a quote, so the first `"action":"` is the plan's.
pub fn find_action(answer: &[u8]) -> Option<Action> {
    const KEY: &[u8] = b"\"action\":\"";
    let at = answer.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = &answer[at..];
    let end = rest.iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_world() -> World {
        World::generate(Shape {
            threats: 400,
            products: 6,
            releases: 20,
            seed: 11,
        })
        .expect("a world")
    }

    #[test]
    fn every_feed_is_a_valid_catalog_and_they_merge_into_the_world() {
        let world = small_world();
        let mut docs = Vec::new();
        for (vendor, text) in world.feeds() {
            herd_proto::catalog::parse_catalog(&vendor, &text).expect("the feed validates");
            docs.push(serde_json::from_str::<CatalogDoc>(&text).expect("the feed parses"));
        }
        let merged = herd_proto::merge::merge(docs.iter());
        merged
            .validate("merged")
            .expect("the merged catalog validates");
        assert_eq!(merged.threats.len(), world.doc.threats.len());
        assert_eq!(merged.coverage.len(), world.doc.coverage.len());
        assert_eq!(merged.releases, world.doc.releases);
    }

    #[test]
    fn the_fleet_gets_plans_of_several_kinds() {
        let world = small_world();
        let now = Timestamp::parse("2026-01-01T00:00:00Z").expect("a timestamp");
        let mut planner = world.planner(now);
        let mut seen = [0usize; 4];
        for index in 0..2000 {
            let terminal = world.terminal(index, &format!("sim-{index}"));
            seen[world.expected(&mut planner, &terminal).index()] += 1;
        }
        // In a generated world every product leaves a few threats uncovered for good, so
        // `none` is rare; switches, updates and exposures are all there.
        assert!(
            seen[1..].iter().all(|&n| n > 100),
            "plan mix (none, update, switch, exposed) {seen:?}"
        );
    }

    #[test]
    fn a_new_release_changes_one_vendors_feed_and_some_plans() {
        let world = small_world();
        let (vendor, feed, next) = world.next_release().expect("a new release");
        herd_proto::catalog::parse_catalog(&vendor, &feed).expect("the changed feed validates");
        let before: Vec<(String, String)> = world.feeds();
        let after: Vec<(String, String)> = next.feeds();
        assert_eq!(before.len(), after.len());
        for ((id, old), (same_id, new)) in before.iter().zip(&after) {
            assert_eq!(id, same_id);
            assert_eq!(old != new, *id == vendor, "feed of {id}");
        }
        assert_eq!(next.doc.releases.len(), world.doc.releases.len() + 2);
        let now = Timestamp::parse("2026-01-01T00:00:00Z").expect("a timestamp");
        let (mut old_planner, mut new_planner) = (world.planner(now), next.planner(now));
        let changed = (0..2000)
            .filter(|&index| {
                let terminal = world.terminal(index, &format!("sim-{index}"));
                world.expected(&mut old_planner, &terminal)
                    != next.expected(&mut new_planner, &terminal)
            })
            .count();
        assert!(changed > 0, "the new release changed no plan");
    }

    #[test]
    fn an_answer_without_a_known_action_is_not_read_as_one() {
        assert_eq!(find_action(b"{\"plan\":{\"action\":\"reboot\"}}"), None);
        assert_eq!(find_action(b"{\"plan\":{\"action\":\"none"), None);
        assert_eq!(find_action(b"{}"), None);
    }
}
