//! The planners a center process plans with: one per worker thread (building one precomputes
//! tables over the whole catalog), rebuilt only when the catalog snapshot changes or `now`
//! reaches the planner's `valid_until` (the next release's publication or the next UTC day).
//! Each keeps the plans it rendered as JSON, so terminals with the same inputs cost one render.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use herd_core::{Catalog, Terminal, Timestamp};
use herd_planner::Planner;
use herd_proto::api::GapThreat;
use herd_proto::plan::Action;

use crate::catalog::CatalogSnapshot;

/// What each worker thread keeps: its planner for one snapshot and second, and the plans it
/// rendered with it.
struct ThreadPlanner {
    revision: u64,
    planner: Planner<Arc<Catalog>>,
    rendered: RenderedPlans,
}

thread_local! {
    static PLANNER: RefCell<Option<ThreadPlanner>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's planner for `snapshot` at `now`, building it if needed.
fn with_thread_planner<R>(
    snapshot: &CatalogSnapshot,
    now: Timestamp,
    f: impl FnOnce(&mut ThreadPlanner) -> R,
) -> R {
    PLANNER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let same_catalog = matches!(&*slot, Some(state)
            if state.revision == snapshot.revision
                && std::ptr::eq(state.planner.catalog(), &*snapshot.catalog));
        // A planner's tables hold until the next instant that can change a decision (a
        // release's publication, a new day): until then it only moves its clock.
        let reusable = same_catalog && {
            let state = slot.as_mut().expect("matched above");
            if state.planner.now() == now {
                true
            } else if state.planner.set_now(now).is_ok() {
                state.rendered.forget_time_dependent();
                true
            } else {
                false
            }
        };
        if !reusable {
            *slot = Some(ThreadPlanner {
                revision: snapshot.revision,
                planner: planner_for(snapshot, now),
                rendered: RenderedPlans::default(),
            });
        }
        let state = slot.as_mut().expect("just filled");
        // Rollout gates change without the catalog: plans made under others are forgotten.
        let gates = snapshot.gates();
        if !Arc::ptr_eq(state.planner.gates(), &gates) {
            state.planner.set_gates(gates);
            state.rendered = RenderedPlans::default();
        }
        f(state)
    })
}

/// A planner for `snapshot` at `now` with its own memo, sharing the tables other threads built
/// for the same catalog and span of time (built here if none holds at `now`).
fn planner_for(snapshot: &CatalogSnapshot, now: Timestamp) -> Planner<Arc<Catalog>> {
    let mut tables = snapshot.planner_tables.lock().expect("planner tables");
    if let Some(shared) = tables.as_ref() {
        let mut planner = shared.share_tables();
        if planner.set_now(now).is_ok() {
            return planner;
        }
    }
    // Built under the lock: the other worker threads wait for these tables instead of
    // building their own copies at the same time.
    let planner = Planner::new(snapshot.catalog.clone(), now);
    *tables = Some(planner.share_tables());
    planner
}

/// A plan as JSON (`PlanDoc`, byte for byte what `serde_json::to_string` makes of it), with
/// what the check-in records about it.
#[derive(Debug, PartialEq, Eq)]
pub struct RenderedPlan {
    pub json: String,
    pub action: Action,
    /// How many required threats the installed product leaves uncovered now.
    pub uncovered: u64,
}

/// Plans of the terminal's inputs rendered once, as JSON without the terminal id.
///
/// A plan depends on the terminal's hardware, installed product and policy (and the catalog
/// and `now`, fixed for one planner); its id is only echoed in the first field. Fleets are
/// made of many terminals with the same inputs, so this thread renders and serialises each
/// combination once per planner and splices the id in for the others. Whether the id really
/// is only echoed is checked when an entry is made, by rendering the plan for a second id: an
/// input whose plan mentions the id anywhere else is rendered anew every time.
#[derive(Default)]
struct RenderedPlans {
    by_hash: HashMap<u64, Vec<RenderedEntry>>,
    entries: usize,
}

impl RenderedPlans {
    /// Drops the plans that depend on the exact time: a terminal with a maintenance window
    /// gets `not_before`, the start of its next window, which moves with `now`. Every other
    /// plan depends on the planner's tables only, which outlive a second.
    fn forget_time_dependent(&mut self) {
        let mut dropped = 0;
        self.by_hash.retain(|_, entries| {
            let before = entries.len();
            entries.retain(|entry| entry.inputs.policy.window.is_none());
            dropped += before - entries.len();
            !entries.is_empty()
        });
        self.entries -= dropped;
    }
}

/// Enough for every combination of a large, varied fleet; beyond it plans are rendered
/// one by one until the next planner (a second later) starts afresh.
const MAX_RENDERED_PLANS: usize = 4096;

struct RenderedEntry {
    /// The releases under rollout withheld from the terminal the entry was made for.
    withheld: u64,
    /// The terminal the entry was made for, standing for its inputs (id and user ignored).
    inputs: Terminal,
    /// The plan's JSON after `{"terminal":"<id>"`; `None` when the plan depends on the id.
    rest: Option<String>,
    action: Action,
    uncovered: u64,
}

/// Opening of every plan's JSON: the terminal id is the first field (the order of `PlanDoc`'s
/// fields is part of the wire contract).
const PLAN_OPENING: &str = "{\"terminal\":";

fn same_inputs(a: &Terminal, b: &Terminal) -> bool {
    a.hardware == b.hardware && a.installed == b.installed && a.policy == b.policy
}

fn inputs_hash(terminal: &Terminal) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let hardware = &terminal.hardware;
    (&hardware.kind, &hardware.platform, &hardware.model).hash(&mut hasher);
    if let Some(installed) = &terminal.installed {
        (installed.product.get(), &installed.version, installed.seq).hash(&mut hasher);
        (&installed.pattern, installed.format).hash(&mut hasher);
    }
    let policy = &terminal.policy;
    (
        policy.apply,
        policy.min_danger,
        policy.consent,
        policy.window,
        policy.tz,
        &policy.vendors,
    )
        .hash(&mut hasher);
    hasher.finish()
}

/// The JSON string of `id` after [`PLAN_OPENING`], and everything that follows, if `json`
/// has that shape.
fn split_after_id<'j>(json: &'j str, id: &str) -> Option<&'j str> {
    let rest = json.strip_prefix(PLAN_OPENING)?;
    let quoted = serde_json::to_string(id).ok()?;
    rest.strip_prefix(quoted.as_str())
}

/// Renders `terminal`'s plan at `now` with this thread's planner for `snapshot`.
pub fn render_plan(
    snapshot: &CatalogSnapshot,
    now: Timestamp,
    terminal: &Terminal,
) -> RenderedPlan {
    with_thread_planner(snapshot, now, |state| {
        // Under rollout rings the plan depends on the terminal's rings too (its id, hashed
        // per release), which the mask of withheld releases stands for.
        let withheld = state.planner.withheld_mask(terminal);
        let hash = inputs_hash(terminal) ^ withheld.rotate_left(17);
        let known = state.rendered.by_hash.get(&hash).and_then(|entries| {
            entries
                .iter()
                .find(|e| e.withheld == withheld && same_inputs(&e.inputs, terminal))
        });
        if let Some(entry) = known {
            if let Some(rest) = &entry.rest {
                let mut json =
                    String::with_capacity(PLAN_OPENING.len() + terminal.id.len() + 2 + rest.len());
                json.push_str(PLAN_OPENING);
                push_json_string(&mut json, &terminal.id);
                json.push_str(rest);
                return RenderedPlan {
                    json,
                    action: entry.action,
                    uncovered: entry.uncovered,
                };
            }
            return render_uncached(&mut state.planner, terminal);
        }
        let rendered = render_uncached(&mut state.planner, terminal);
        if state.rendered.entries < MAX_RENDERED_PLANS {
            // The same inputs under another id: equal remainders show the id is only echoed.
            // Under rollout rings the other id must fall in the same rings, or its plan says
            // nothing of this entry: a few are tried (a ring of 1 % rarely has one, and its
            // terminals are then rendered one by one, which costs 1 % of check-ins).
            let mut other = terminal.clone();
            let mut other_json = String::new();
            for suffix in ["-x", "-y", "-z", "-w", "-v", "-u", "-t", "-s"] {
                other.id.truncate(terminal.id.len());
                other.id.push_str(suffix);
                if state.planner.withheld_mask(&other) == withheld {
                    other_json = render_uncached(&mut state.planner, &other).json;
                    break;
                }
            }
            let rest = split_after_id(&rendered.json, &terminal.id)
                .filter(|&rest| split_after_id(&other_json, &other.id) == Some(rest))
                .map(str::to_owned);
            state.rendered.entries += 1;
            state
                .rendered
                .by_hash
                .entry(hash)
                .or_default()
                .push(RenderedEntry {
                    withheld,
                    inputs: terminal.clone(),
                    rest,
                    action: rendered.action,
                    uncovered: rendered.uncovered,
                });
        }
        rendered
    })
}

/// The whole gaps of `terminal`'s plan at `now` (what its plan lists the first of), with
/// this thread's planner for `snapshot`.
pub fn full_gap(
    snapshot: &CatalogSnapshot,
    now: Timestamp,
    terminal: &Terminal,
) -> (Vec<GapThreat>, Vec<GapThreat>) {
    with_thread_planner(snapshot, now, |state| {
        let gap = state.planner.full_gap(terminal);
        let wire = |threat: &herd_core::Threat| GapThreat {
            id: threat.id.clone(),
            name: threat.name.clone(),
            danger: threat.danger.to_string(),
            discovered: threat.discovered.to_string(),
        };
        (gap.now.map(wire).collect(), gap.after.map(wire).collect())
    })
}

fn render_uncached(planner: &mut Planner<Arc<Catalog>>, terminal: &Terminal) -> RenderedPlan {
    let plan = planner.plan(terminal);
    let mut json = Vec::with_capacity(8 * 1024);
    planner.render_json(&plan, &mut json);
    RenderedPlan {
        json: String::from_utf8(json).expect("the planner writes UTF-8 JSON"),
        action: plan.decision.action.into(),
        uncovered: u64::from(plan.decision.uncovered_now.severity.total()),
    }
}

/// Appends `text` as a JSON string, escaped exactly as serde_json does.
fn push_json_string(out: &mut String, text: &str) {
    let plain = text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    if plain {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(text).expect("a string serialises"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_proto::catalog::CatalogDoc;
    use herd_proto::terminal::TerminalDoc;

    const SEED_CATALOG: &str = include_str!("../../../examples/seed/catalog.json");

    fn seed_snapshot() -> CatalogSnapshot {
        let doc: CatalogDoc = serde_json::from_str(SEED_CATALOG).expect("the seed catalog parses");
        let catalog = doc.validate("seed").expect("the seed catalog validates");
        CatalogSnapshot::new(7, Arc::new(catalog))
    }

    fn terminal(snapshot: &CatalogSnapshot, id: &str, platform: &str, policy: &str) -> Terminal {
        let doc: TerminalDoc = serde_json::from_str(&format!(
            r#"{{"id": "{id}", "hardware": {{"kind": "{platform}", "platform": "{platform}"}},
                "installed": {{"product": "vaccine-a", "version": "5.1", "seq": 1101, "pattern": "a-1101", "format": "archive"}},
                "policy": {policy}}}"#
        ))
        .expect("a terminal record");
        doc.validate("test", &snapshot.catalog).expect("validates")
    }

    #[test]
    fn plans_spliced_for_another_id_are_the_plans_rendered_for_it() {
        let snapshot = seed_snapshot();
        let now = Timestamp::parse("2000-11-13T08:00:00+09:00").expect("a time");
        let policies = [
            r#"{"apply": "latest-any-vendor"}"#,
            r#"{"apply": "latest-same-vendor", "consent": "ask"}"#,
            r#"{"apply": "latest-any-vendor", "window": "01:00-05:00", "tz": "+09:00"}"#,
        ];
        for platform in ["phone", "pda", "pc"] {
            for policy in policies {
                for id in ["first", "second", "third.with-dots_and-dashes"] {
                    let terminal = terminal(&snapshot, id, platform, policy);
                    let mut fresh = Planner::new(snapshot.catalog.clone(), now);
                    let expected = serde_json::to_string(&fresh.plan_doc(&terminal)).expect("json");
                    let rendered = render_plan(&snapshot, now, &terminal);
                    assert_eq!(rendered.json, expected, "{id} on {platform} under {policy}");
                    let plan: herd_proto::plan::PlanDoc =
                        serde_json::from_str(&expected).expect("a plan");
                    assert_eq!(rendered.action, plan.action);
                    assert_eq!(rendered.uncovered, plan.uncovered_now_counts.total());
                }
            }
        }
        // One entry per combination of inputs, whatever the number of terminals.
        PLANNER.with(|cell| {
            let state = cell.borrow();
            let state = state.as_ref().expect("a planner");
            assert_eq!(state.rendered.entries, 9);
            assert!(
                state
                    .rendered
                    .by_hash
                    .values()
                    .flatten()
                    .all(|entry| entry.rest.is_some())
            );
        });
    }

    #[test]
    fn under_rollout_rings_each_terminal_gets_the_plan_of_its_own_rings() {
        use herd_planner::rings::{Gate, Offer, RingGates, release_key, ring_bucket};
        let snapshot = seed_snapshot();
        let now = Timestamp::parse("2000-11-13T08:00:00+09:00").expect("a time");
        let catalog = &snapshot.catalog;
        let b = (0..catalog.releases.len() as u32)
            .map(herd_core::ReleaseIdx)
            .find(|&r| catalog.product(catalog.release(r).product).id == "vaccine-b")
            .expect("vaccine-b 7.0");
        let key = release_key(catalog, b);
        let gates = Arc::new(RingGates::new(vec![Gate {
            release: b,
            key: key.clone(),
            offer: Offer::Ring { reach: 5000 },
            groups: Vec::new(),
        }]));
        snapshot.set_gates(gates.clone());
        let (mut inside, mut outside) = (0, 0);
        for i in 0..80 {
            let id = format!("ringed-{i}");
            let terminal = terminal(&snapshot, &id, "phone", r#"{"apply": "latest-any-vendor"}"#);
            let mut fresh = Planner::new(snapshot.catalog.clone(), now);
            fresh.set_gates(gates.clone());
            let expected = serde_json::to_string(&fresh.plan_doc(&terminal)).expect("json");
            let rendered = render_plan(&snapshot, now, &terminal);
            assert_eq!(rendered.json, expected, "{id}");
            let switched = rendered.action == Action::Switch;
            assert_eq!(switched, ring_bucket(&key, &id) < 5000, "{id}");
            if switched { inside += 1 } else { outside += 1 }
        }
        assert!(
            inside > 10 && outside > 10,
            "{inside} inside, {outside} outside"
        );
    }

    #[test]
    fn a_plan_is_split_after_the_terminal_id_only_when_it_opens_with_it() {
        let json = r#"{"terminal":"t-1","action":"none"}"#;
        assert_eq!(split_after_id(json, "t-1"), Some(r#","action":"none"}"#));
        assert_eq!(split_after_id(json, "t-2"), None);
        assert_eq!(
            split_after_id(r#"{"action":"none","terminal":"t-1"}"#, "t-1"),
            None
        );
        let mut out = String::new();
        push_json_string(&mut out, "a\"b\\c\u{1}");
        assert_eq!(out, serde_json::to_string("a\"b\\c\u{1}").expect("json"));
    }
}
