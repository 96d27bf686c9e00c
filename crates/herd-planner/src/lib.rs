//! The planner of SPEC §5: for a terminal at time `now`, decide nothing, an update within the
//! installed product, a switch to another vendor's product, or that the terminal is exposed —
//! and say why in words a user understands.
//!
//! Pure: the catalog, the terminal and `now` are arguments; there is no I/O, no clock and no
//! randomness, so the same inputs give the same plan byte for byte (rule 10).
//!
//! [`Planner::new`] precomputes everything terminals share (see `index.rs`); [`Planner::plan`]
//! then costs a few lookups per terminal. Decisions are memoised by what they depend on
//! (installed product and seq, platform, package format, `min_danger`, `apply`), which is why
//! `plan` takes `&mut self`; the memo never changes a result, only how fast it comes.
//!
//! The tables stay valid from one instant that could change them to the next (a release's
//! publication, a UTC midnight): [`Planner::valid_until`] says until when, and
//! [`Planner::set_now`] moves the clock within that span without rebuilding anything, so a
//! long-lived server keeps its planner (and its memo) across check-ins.

mod index;
mod render;
pub mod rings;
pub mod script;

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use herd_core::{
    AllowedVendors, Apply, Catalog, Consent, Danger, PackageFormat, PlatformIdx, ProductIdx,
    ReleaseIdx, Terminal, Timestamp,
};
use rustc_hash::FxHashMap;

pub use herd_proto::plan::LISTED_THREATS;
use index::{GapIter, Index};
pub use index::{Ranked, Severity, TrackRecord};
use rings::RingGates;

/// What a plan does (SPEC §4 `action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    None,
    Update,
    Switch,
    Exposed,
}

impl From<Action> for herd_proto::plan::Action {
    fn from(action: Action) -> herd_proto::plan::Action {
        use herd_proto::plan::Action as Wire;
        match action {
            Action::None => Wire::None,
            Action::Update => Wire::Update,
            Action::Switch => Wire::Switch,
            Action::Exposed => Wire::Exposed,
        }
    }
}

/// The uncovered required threats of one product at one definitions seq (or of no product).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub product: Option<ProductIdx>,
    pub seq: u64,
    pub min_danger: Danger,
    pub severity: Severity,
}

/// The release a plan installs, with the package chosen for the terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub release: ReleaseIdx,
    /// Index into the release's `packages`.
    pub package: usize,
}

/// The part of a plan shared by every terminal with the same installed product and seq,
/// platform, package format and policy (`apply`, `min_danger`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub uncovered_now: Gap,
    pub uncovered_after: Gap,
    pub target: Option<Target>,
    pub install_script: Option<Arc<str>>,
    /// For `exposed`: candidates that would leave a smaller gap, best first.
    pub alternatives: Vec<Ranked>,
    /// What the reason sentence is made of; the sentence itself is written when the plan is
    /// rendered ([`Planner::reason`]), so that planning a fleet formats no text.
    pub apply: Apply,
    pub has_platform: bool,
    /// Whether the terminal's group allows only some vendors (the reason says so).
    pub restricted: bool,
    pub installed: Option<(ProductIdx, u64)>,
    /// The same-product update candidate (rule 5), if any.
    pub update: Option<Ranked>,
    /// The release the plan installs, with its gap severity.
    pub chosen: Option<Ranked>,
    /// The installed release was halted and reverted: `update` goes back to an earlier one.
    pub reverting: bool,
    /// The words of the plan (bounded threat lists, reason), written the first time a plan
    /// with this decision is rendered and shared by every later one: they depend on the
    /// decision and the tables only, never on the terminal or the exact `now`.
    text: TextCache,
}

/// A cache of what a decision's other fields determine, so two decisions compare equal
/// whether or not either has been rendered yet.
#[derive(Clone, Debug, Default)]
struct TextCache(OnceLock<render::DecisionText>);

impl PartialEq for TextCache {
    fn eq(&self, _: &TextCache) -> bool {
        true
    }
}

impl Eq for TextCache {}

/// The uninstall step of a plan: the script, and the signed target it was generated from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uninstall {
    pub script: Arc<str>,
    /// The package target (`herd_proto::distribution::package_target`) whose metadata gave the
    /// script's package-manager name, ProductCode or hook; `None` when the catalog has no
    /// package of the installed product's format for the terminal's platform.
    pub target: Option<Arc<str>>,
}

/// The TUF target path of a release's package (`herd_proto::distribution::package_target`).
pub fn package_target(
    catalog: &Catalog,
    release: &herd_core::Release,
    package: &herd_core::Package,
) -> String {
    let product = catalog.product(release.product);
    herd_proto::distribution::package_target(
        &catalog.vendors[product.vendor.get()].id,
        &product.id,
        &release.version,
        &catalog.platforms[package.platform.get()],
        &package.format.to_string(),
    )
}

/// A terminal's plan. Serialise it with [`Planner::render`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan<'t> {
    pub terminal: &'t Terminal,
    pub decision: Arc<Decision>,
    /// The removal of what the terminal runs now, when the plan replaces it.
    pub uninstall: Option<Uninstall>,
    pub consent_required: bool,
    /// The start of the terminal's next maintenance window, when `now` is outside it.
    pub not_before: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct DecisionKey {
    installed: Option<(ProductIdx, u64)>,
    platform: Option<PlatformIdx>,
    format: Option<PackageFormat>,
    min_danger: Danger,
    apply: Apply,
    /// The group's vendor allow-list: it changes which switches and alternatives exist. A
    /// shared set, so a key of a restricted group costs a reference count, not a copy.
    vendors: Option<AllowedVendors>,
    /// The releases under rollout withheld from the terminal ([`RingGates::withheld_mask`]):
    /// the decision is made as if they did not exist yet.
    withheld: u64,
}

/// Uninstall scripts depend on the installed version too; it is matched within the entry so
/// that looking a script up never allocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct UninstallKey {
    product: ProductIdx,
    seq: u64,
    platform: Option<PlatformIdx>,
    format: PackageFormat,
}

/// `set_now` was asked to move the planner's clock past what its tables hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaleTables {
    /// The instant asked for.
    pub now: Timestamp,
    /// The tables hold for `valid_from <= now < valid_until`.
    pub valid_from: Timestamp,
    pub valid_until: Timestamp,
}

impl std::fmt::Display for StaleTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the planner's tables hold from {} until {}, not at {}; build a new planner",
            self.valid_from, self.valid_until, self.now
        )
    }
}

impl std::error::Error for StaleTables {}

/// Plans terminals against one catalog at one instant.
///
/// `C` is how the planner holds its catalog: a borrow (`Planner::new(&catalog, now)`) for a
/// one-shot run, or an `Arc<Catalog>` for a long-lived server that keeps a planner per thread
/// and replaces it when a new catalog is published.
#[derive(Debug)]
pub struct Planner<C: Deref<Target = Catalog> = &'static Catalog> {
    catalog: C,
    /// The tables, which planners on other threads may share ([`Planner::share_tables`]).
    index: Arc<Index>,
    /// The instant plans are made at, within the tables' `valid_from..valid_until`.
    now: Timestamp,
    decisions: FxHashMap<DecisionKey, Arc<Decision>>,
    install_scripts: FxHashMap<(ReleaseIdx, usize), Arc<str>>,
    uninstall_scripts: FxHashMap<UninstallKey, Vec<(String, Uninstall)>>,
    /// The releases under rollout and how far each is offered (empty: every release is
    /// offered to every terminal, as before rings).
    gates: Arc<RingGates>,
}

impl<C: Deref<Target = Catalog>> Planner<C> {
    /// Precomputes the tables every terminal's plan shares.
    pub fn new(catalog: C, now: Timestamp) -> Planner<C> {
        Planner {
            index: Arc::new(Index::new(&catalog, now)),
            now,
            catalog,
            decisions: FxHashMap::default(),
            install_scripts: FxHashMap::default(),
            uninstall_scripts: FxHashMap::default(),
            gates: Arc::default(),
        }
    }

    /// Plans from now on under these rollouts (of this planner's catalog: gates name its
    /// release indices). The memoised decisions are forgotten when the gates differ; the
    /// tables and scripts are kept.
    pub fn set_gates(&mut self, gates: Arc<RingGates>) {
        if *self.gates != *gates {
            self.decisions.clear();
        }
        self.gates = gates;
    }

    pub fn gates(&self) -> &Arc<RingGates> {
        &self.gates
    }

    /// The releases under rollout withheld from `terminal`, as a mask over the gates: two
    /// terminals with the same inputs and mask get the same plan.
    pub fn withheld_mask(&self, terminal: &Terminal) -> u64 {
        if self.gates.is_empty() {
            0
        } else {
            self.gates
                .withheld_mask(&terminal.id, terminal.group.as_deref())
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// A planner with the same tables and clock and an empty memo: the tables (tens of MB for
    /// SPEC §8's catalog) are shared, not copied, so a server can give each worker thread its
    /// own planner (the memo needs `&mut`) for the price of one.
    pub fn share_tables(&self) -> Planner<C>
    where
        C: Clone,
    {
        Planner {
            catalog: self.catalog.clone(),
            index: self.index.clone(),
            now: self.now,
            decisions: FxHashMap::default(),
            install_scripts: FxHashMap::default(),
            uninstall_scripts: FxHashMap::default(),
            gates: self.gates.clone(),
        }
    }

    /// The first instant after `now` at which a precomputed table could change, so a planner
    /// built at `now` must not plan at or after it: the earliest release published after
    /// `now` (it becomes a candidate, rule 3) or the next UTC midnight (threats discovered
    /// that day become required, rule 1; track records move on a day, rule 8; reasons say
    /// "discovered by" that date), whichever comes first.
    pub fn valid_until(&self) -> Timestamp {
        self.index.valid_until
    }

    /// The last instant at or before `now` at which a table could have changed (the latest
    /// release published by `now`, or the UTC midnight starting `now`'s day): the planner may
    /// move back to it, not before.
    pub fn valid_from(&self) -> Timestamp {
        self.index.valid_from
    }

    /// Moves the planner's clock to `now` without rebuilding its tables or forgetting its
    /// memo, when the tables hold at `now` (`valid_from() <= now < valid_until()`); refused
    /// otherwise, leaving the planner as it was, so a stale table never gives a wrong plan.
    ///
    /// Plans made after this are byte-identical to those of `Planner::new(catalog, now)`: the
    /// memoised decisions and their words depend only on the tables, and what depends on the
    /// exact instant (a window's `not_before`) is computed per plan from the current `now`.
    pub fn set_now(&mut self, now: Timestamp) -> Result<(), StaleTables> {
        if self.index.valid_from <= now && now < self.index.valid_until {
            self.now = now;
            Ok(())
        } else {
            Err(StaleTables {
                now,
                valid_from: self.index.valid_from,
                valid_until: self.index.valid_until,
            })
        }
    }

    /// How many distinct decisions have been made (and memoised) so far.
    pub fn distinct_decisions(&self) -> usize {
        self.decisions.len()
    }

    /// The track record of a product at `now` (SPEC §5 rule 8).
    pub fn track_record(&self, product: ProductIdx) -> TrackRecord {
        self.index.track[product.get()]
    }

    /// Plans one terminal (validated against this planner's catalog).
    pub fn plan<'t>(&mut self, terminal: &'t Terminal) -> Plan<'t> {
        let policy = &terminal.policy;
        let key = DecisionKey {
            installed: terminal.installed.as_ref().map(|i| (i.product, i.seq)),
            platform: terminal.hardware.platform_idx,
            format: terminal.installed.as_ref().map(|i| i.format),
            min_danger: policy.min_danger,
            apply: policy.apply,
            vendors: policy.vendors.clone(),
            withheld: self.withheld_mask(terminal),
        };
        let decision = match self.decisions.get(&key) {
            Some(decision) => decision.clone(),
            None => {
                let decision = Arc::new(self.decide(&key));
                self.decisions.insert(key, decision.clone());
                decision
            }
        };
        let changes_software = matches!(decision.action, Action::Update | Action::Switch);
        let uninstall = if changes_software {
            self.uninstall_for(terminal, &decision)
        } else {
            None
        };
        let not_before = match policy.window {
            Some(window) if changes_software => window.next_start(self.now, policy.tz),
            _ => None,
        };
        Plan {
            terminal,
            decision,
            uninstall,
            consent_required: changes_software && policy.consent == Consent::Ask,
            not_before,
        }
    }

    /// Rules 1–8 for one decision key.
    fn decide(&mut self, key: &DecisionKey) -> Decision {
        let catalog = &*self.catalog;
        let index = &self.index;
        let (installed_product, installed_seq) = match key.installed {
            Some((product, seq)) => (Some(product), seq),
            None => (None, 0),
        };
        let gap_of = |product: Option<ProductIdx>, seq: u64| Gap {
            product,
            seq,
            min_danger: key.min_danger,
            severity: index.severity(product, seq, key.min_danger),
        };
        let current = gap_of(installed_product, installed_seq);
        let gates = &*self.gates;
        let now = self.now;
        // Under rollout rings a withheld release does not exist for this terminal: each
        // product's candidate is its newest release the terminal may be offered.
        let withheld = |release: ReleaseIdx| gates.withholds(key.withheld, release);
        let offered = |product: ProductIdx, platform: PlatformIdx| -> Option<ReleaseIdx> {
            let newest = index.candidate(product, platform)?;
            if !withheld(newest) {
                return Some(newest);
            }
            catalog.releases_of(product).rev().find(|&r| {
                let release = catalog.release(r);
                release.published <= now
                    && !withheld(r)
                    && release.packages.iter().any(|p| p.platform == platform)
            })
        };
        let all_ranked = key
            .platform
            .map_or(&[][..], |platform| index.ranked(platform, key.min_danger));
        let regated: Vec<Ranked>;
        let ranked = match key.platform {
            Some(platform) if all_ranked.iter().any(|r| withheld(r.release)) => {
                let mut list: Vec<Ranked> = all_ranked
                    .iter()
                    .filter_map(|r| {
                        if !withheld(r.release) {
                            return Some(*r);
                        }
                        let release = offered(r.product, platform)?;
                        Some(Ranked {
                            product: r.product,
                            release,
                            severity: index.severity(
                                Some(r.product),
                                catalog.release(release).seq,
                                key.min_danger,
                            ),
                        })
                    })
                    .collect();
                list.sort_by(|a, b| index.rank_order(catalog, a, b));
                regated = list;
                &regated[..]
            }
            _ => all_ranked,
        };
        // A release halted and reverted: a terminal running it goes back to the newest
        // release of its product it may be offered, even an older one.
        let reverting = installed_product
            .and_then(|product| catalog.release_by_seq(product, installed_seq))
            .is_some_and(|release| gates.reverts(release));
        // A group's allow-list removes other vendors' products from what a terminal may switch
        // to and from the alternatives it is shown; the installed product's updates stay.
        let allowed = |candidate: &Ranked| match &key.vendors {
            None => true,
            Some(vendors) => vendors.contains(catalog.product(candidate.product).vendor),
        };

        // Rule 5: a newer release of the installed product for this platform.
        let update = match (installed_product, key.platform) {
            (Some(product), Some(platform)) => offered(product, platform)
                .filter(|&r| reverting || catalog.release(r).seq > installed_seq)
                .map(|release| Ranked {
                    product,
                    release,
                    severity: index.severity(
                        Some(product),
                        catalog.release(release).seq,
                        key.min_danger,
                    ),
                }),
            _ => None,
        };
        // Rule 6: the best other product, only if strictly better than the update (or what runs now).
        let baseline = update.map_or(current.severity, |u| u.severity);
        let best_other = ranked
            .iter()
            .find(|r| Some(r.product) != installed_product && allowed(r))
            .copied();
        // A terminal with no product at all is worse off than with any product, even one
        // whose gap is as large (it still brings an engine and every older definition), so
        // under latest-any-vendor it gets the best candidate whatever its gap.
        let switch = match key.apply {
            Apply::LatestAnyVendor if installed_product.is_none() => best_other,
            Apply::LatestAnyVendor => best_other.filter(|s| s.severity < baseline),
            Apply::LatestSameVendor | Apply::Pinned => None,
        };

        // Rules 4 and 7.
        let (action, chosen) = match (key.apply, switch, update) {
            (Apply::Pinned, _, _) => (
                if current.severity.is_empty() {
                    Action::None
                } else {
                    Action::Exposed
                },
                None,
            ),
            (_, Some(s), _) => (Action::Switch, Some(s)),
            (_, None, Some(u)) => (Action::Update, Some(u)),
            (_, None, None) if current.severity.is_empty() => (Action::None, None),
            (_, None, None) => (Action::Exposed, None),
        };
        let alternatives: Vec<Ranked> = if action == Action::Exposed {
            ranked
                .iter()
                .filter(|r| r.severity < current.severity && allowed(r))
                .copied()
                .collect()
        } else {
            Vec::new()
        };
        let uncovered_after = chosen.map_or(current, |c| {
            gap_of(Some(c.product), catalog.release(c.release).seq)
        });
        let target = chosen.map(|c| Target {
            release: c.release,
            package: choose_package(
                catalog,
                c.release,
                key.platform.expect("a chosen release has a platform"),
                key.format,
            ),
        });
        let install_script = target.map(|t| self.install_script(t));
        Decision {
            action,
            uncovered_now: current,
            uncovered_after,
            target,
            install_script,
            alternatives,
            apply: key.apply,
            has_platform: key.platform.is_some(),
            restricted: key.vendors.is_some(),
            installed: key.installed,
            update,
            chosen,
            reverting: reverting && chosen.is_some_and(|c| Some(c.product) == installed_product),
            text: TextCache::default(),
        }
    }

    fn install_script(&mut self, target: Target) -> Arc<str> {
        let catalog = &*self.catalog;
        self.install_scripts
            .entry((target.release, target.package))
            .or_insert_with(|| {
                let release = catalog.release(target.release);
                let package = &release.packages[target.package];
                script::install_script(&script::InstallSpec {
                    product: &catalog.product(release.product).id,
                    version: &release.version,
                    pattern: &release.pattern,
                    format: package.format,
                    sha256: package.sha256,
                    size: package.size,
                    name: package.name.as_deref(),
                    product_code: package.product_code.as_deref(),
                    post_install: package.hooks.post_install.as_deref(),
                })
                .into()
            })
            .clone()
    }

    /// The uninstall step of a plan that changes software: the old product on a switch; on an
    /// update, the old version when it lives beside the new one (an `archive`) or when the new
    /// release comes in another package format. Package managers upgrade in place otherwise.
    fn uninstall_for(&mut self, terminal: &Terminal, decision: &Decision) -> Option<Uninstall> {
        let installed = terminal.installed.as_ref()?;
        let target = decision.target?;
        let catalog = &*self.catalog;
        let release = catalog.release(target.release);
        let new_format = release.packages[target.package].format;
        let needed = match decision.action {
            Action::Switch => true,
            Action::Update => {
                new_format != installed.format
                    || (new_format == PackageFormat::Archive
                        && release.version != installed.version)
            }
            Action::None | Action::Exposed => false,
        };
        if !needed {
            return None;
        }
        let key = UninstallKey {
            product: installed.product,
            seq: installed.seq,
            platform: terminal.hardware.platform_idx,
            format: installed.format,
        };
        let known = self.uninstall_scripts.get(&key).and_then(|by_version| {
            by_version
                .iter()
                .find(|(version, _)| *version == installed.version)
                .map(|(_, uninstall)| uninstall.clone())
        });
        if known.is_some() {
            return known;
        }
        // The package-manager name, ProductCode or hook come from the catalog's package of
        // the installed release; failing that, from the newest release with such a package.
        let releases = catalog.product_releases(installed.product);
        let (format, platform) = (installed.format, key.platform);
        fn of_release(
            r: &herd_core::Release,
            format: PackageFormat,
            platform: Option<PlatformIdx>,
        ) -> Option<(&herd_core::Release, &herd_core::Package)> {
            r.packages
                .iter()
                .find(|p| p.format == format && Some(p.platform) == platform)
                .map(|p| (r, p))
        }
        let found = catalog
            .release_by_seq(installed.product, installed.seq)
            .and_then(|r| of_release(catalog.release(r), format, platform))
            .or_else(|| {
                releases
                    .iter()
                    .rev()
                    .find_map(|r| of_release(r, format, platform))
            });
        let package = found.map(|(_, p)| p);
        let script: Arc<str> = script::uninstall_script(&script::UninstallSpec {
            product: &catalog.product(installed.product).id,
            version: &installed.version,
            format: installed.format,
            name: package.and_then(|p| p.name.as_deref()),
            product_code: package.and_then(|p| p.product_code.as_deref()),
            pre_uninstall: package.and_then(|p| p.hooks.pre_uninstall.as_deref()),
        })
        .into();
        let uninstall = Uninstall {
            script,
            target: found.map(|(r, p)| package_target(catalog, r, p).into()),
        };
        self.uninstall_scripts
            .entry(key)
            .or_default()
            .push((installed.version.clone(), uninstall.clone()));
        Some(uninstall)
    }

    /// Every threat of a gap, in listing order: most dangerous first, then newest discovered
    /// first, then by id. It costs what is listed: covered stretches are skipped, and it
    /// stops at the gap's known size.
    pub fn gap_threats(&self, gap: &Gap) -> GapThreats<'_> {
        GapThreats {
            catalog: &self.catalog,
            ids: self.index.gap(gap.product, gap.seq, gap.min_danger),
        }
    }

    /// The full gaps of a terminal's plan, unbounded, for the API that lists them (a plan
    /// lists only the first [`LISTED_THREATS`] of each): the required threats the installed
    /// product does not cover, and those still uncovered once the plan is carried out, in the
    /// plan's listing order, so the first ids are the plan's own.
    pub fn full_gap(&mut self, terminal: &Terminal) -> FullGap<'_> {
        let decision = self.plan(terminal).decision;
        let this: &Self = self;
        FullGap {
            now: this.gap_threats(&decision.uncovered_now),
            after: this.gap_threats(&decision.uncovered_after),
        }
    }

    /// The plan's `reason`: why this decision, in words a user understands.
    pub fn reason(&self, decision: &Decision) -> String {
        self.decision_text(decision).reason.clone()
    }

    /// The words of a decision, written once and shared by every plan with it.
    fn decision_text<'d>(&self, decision: &'d Decision) -> &'d render::DecisionText {
        decision
            .text
            .0
            .get_or_init(|| render::decision_text(self, decision))
    }

    fn write_reason(&self, decision: &Decision) -> String {
        render::reason(
            self,
            &render::ReasonFacts {
                apply: decision.apply,
                has_platform: decision.has_platform,
                restricted: decision.restricted,
                installed: decision.installed,
                action: decision.action,
                current: &decision.uncovered_now,
                update: decision.update.as_ref(),
                chosen: decision.chosen.as_ref(),
                after: &decision.uncovered_after,
                alternatives: &decision.alternatives,
                reverting: decision.reverting,
            },
        )
    }

    /// Plans one terminal and renders the plan, in one call.
    pub fn plan_doc(&mut self, terminal: &Terminal) -> herd_proto::plan::PlanDoc {
        let plan = self.plan(terminal);
        self.render(&plan)
    }

    /// Renders a plan as the wire document of SPEC §4.
    pub fn render(&self, plan: &Plan<'_>) -> herd_proto::plan::PlanDoc {
        render::plan_doc(self, plan)
    }

    /// Appends a plan's JSON to `out`: exactly the bytes `serde_json::to_writer(out,
    /// &self.render(plan))` writes, without building the document. What every plan with the
    /// same decision shares (threat lists, `to`, the install steps and their script,
    /// alternatives, reason) is serialised once per decision and copied; only the terminal's
    /// own fields are written per plan. This is what a check-in answer should use.
    pub fn render_json(&self, plan: &Plan<'_>, out: &mut Vec<u8>) {
        render::plan_json(self, plan, out)
    }
}

/// The threats of one gap in listing order (see [`Planner::gap_threats`]); it knows how many
/// remain.
#[derive(Debug, Clone)]
pub struct GapThreats<'p> {
    catalog: &'p Catalog,
    ids: GapIter<'p>,
}

impl<'p> Iterator for GapThreats<'p> {
    type Item = &'p herd_core::Threat;

    fn next(&mut self) -> Option<&'p herd_core::Threat> {
        self.ids.next().map(|t| self.catalog.threat(t))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.ids.size_hint()
    }
}

impl ExactSizeIterator for GapThreats<'_> {}

/// A terminal's two gaps in full (see [`Planner::full_gap`]).
#[derive(Debug, Clone)]
pub struct FullGap<'p> {
    /// What the installed product does not cover (the plan's `uncovered_now`, unbounded).
    pub now: GapThreats<'p>,
    /// What stays uncovered once the plan is carried out (`uncovered_after`, unbounded).
    pub after: GapThreats<'p>,
}

/// The package of `release` for `platform`: the one in the terminal's current format if there
/// is one, else the first in format order (archive, deb, rpm, msi, apk).
fn choose_package(
    catalog: &Catalog,
    release: ReleaseIdx,
    platform: PlatformIdx,
    format: Option<PackageFormat>,
) -> usize {
    let packages = &catalog.release(release).packages;
    let for_platform = || {
        packages
            .iter()
            .enumerate()
            .filter(|(_, p)| p.platform == platform)
    };
    for_platform()
        .find(|(_, p)| Some(p.format) == format)
        .or_else(|| for_platform().min_by_key(|(_, p)| p.format))
        .map(|(i, _)| i)
        .expect("a candidate release has a package for the platform")
}
