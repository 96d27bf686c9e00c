//! `herd sim rollout`: the content-update crash at fleet scale (SPEC §8 Safety). A release that
//! makes every terminal receiving it fault is published to 100,000 simulated terminals; the
//! report says how many received it before its rollout was halted (goal: at most 1 % of the
//! fleet), the time from the first fault report to the halt, and the time until the last
//! affected terminal was planned back to the previous release (goal: within one check-in
//! interval) and had installed it (`--install-secs` more: a polling terminal's next check-in
//! may be a whole interval after the halt, and its install comes on top).
//!
//! What is real and what is modelled: each check-in is planned by the real planner under the
//! real ring gates (`herd_planner::rings`: the stable hash of terminal and release), and the
//! center's decisions are the real rollout policy's (`Policy::step`, the same the center's
//! task runs every `--check-secs`). Time is simulated (a discrete-event clock in
//! milliseconds), and so are the network and the agents: a terminal checks in at its interval
//! from a random phase, again at once after a plan it carried out (the agent's follow-up
//! check-ins), and — with `--wake push` — whenever the center's change token moves
//! (the publication, a promotion, the halt), woken at `--wake-rate` check-ins per second as
//! the center's paced wakes answer them; an install takes `--install-secs`, the product
//! faults `--fault-secs` after activation and the fault report reaches the center
//! `--report-secs` later. The HTTP path itself is what `herd sim checkins` and the end-to-end
//! tests (`herd-server/tests/rollouts.rs`) measure and check.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use herd_core::{Catalog, ReleaseIdx, Terminal, Timestamp};
use herd_planner::Planner;
use herd_planner::rings::{
    Counts, Gate, Phase, Policy, RingGates, RolloutState, Step, Thresholds, parse_rings,
    release_key,
};
use herd_proto::catalog::CatalogDoc;
use herd_proto::terminal::TerminalDoc;

use crate::world::Rng;

/// How terminals learn that the center has something new for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RolloutWake {
    /// Terminals hold `GET /v1/wait`; a moved change token wakes them (paced).
    Push,
    /// Terminals only check in at their interval.
    Poll,
}

/// Simulate a release that makes every receiving terminal fault, rolled out in rings.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// Terminals to simulate.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    terminals: u32,
    /// Runs (each with its own random phases and release); the summary is their median.
    #[arg(long, default_value_t = 5, value_name = "N")]
    runs: u32,
    /// Seconds between a terminal's check-ins (the center's `checkin_interval_secs`).
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    interval_secs: u64,
    /// `push` or `poll`.
    #[arg(long, value_enum, default_value_t = RolloutWake::Push)]
    wake: RolloutWake,
    /// Woken terminals checking in per second (the center's paced wakes).
    #[arg(long, default_value_t = 5000, value_name = "N")]
    wake_rate: u64,
    /// The rings, as the center's `rollout_rings`.
    #[arg(
        long,
        default_value = "canary=1%/600s/5, early=10%/1800s/50, broad=100%/0s/0"
    )]
    rings: String,
    /// Puts this share of the terminals in a group, for rings by group (`NAME=PERCENT%`,
    /// repeatable; by a stable hash of the terminal id, the groups' shares side by side).
    #[arg(long = "group", value_name = "NAME=PERCENT%")]
    groups: Vec<String>,
    /// Bad reports that halt a rollout (`rollout_max_bad`).
    #[arg(long, default_value_t = 5, value_name = "N")]
    max_bad: u64,
    /// `rollout_max_bad_percent` and `rollout_min_reports`.
    #[arg(long, default_value_t = 20, value_name = "PERCENT")]
    max_bad_percent: u64,
    #[arg(long, default_value_t = 20, value_name = "N")]
    min_reports: u64,
    /// Seconds between two looks of the center at its rollouts (`rollout_check_secs`).
    #[arg(long, default_value_t = 2, value_name = "SECS")]
    check_secs: u64,
    /// Seconds a terminal takes to download and install a release.
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    install_secs: u64,
    /// Seconds after activation at which the bad release faults.
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    fault_secs: u64,
    /// Seconds a fault report takes to reach the center (the outbox's next send).
    #[arg(long, default_value_t = 1, value_name = "SECS")]
    report_secs: u64,
    /// Seed of the first run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print each run and the summary as JSON lines.
    #[arg(long)]
    json: bool,
}

/// One run's figures (milliseconds of simulated time from the publication).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RolloutRun {
    pub terminals: u32,
    /// Terminals that were planned the bad release (before and after the halt: none after).
    pub received: u32,
    pub first_fault_ms: u64,
    pub halt_ms: u64,
    /// The last terminal that received it was planned back to the previous release (the
    /// check-in that got the revert).
    pub last_revert_planned_ms: u64,
    /// The last terminal that received it was back on the previous release (that revert
    /// installed: `--install-secs` later).
    pub last_revert_ms: u64,
    /// Terminals still on the bad release when the simulation ended (0 expected).
    pub not_reverted: u32,
    pub check_ins: u64,
}

impl RolloutRun {
    pub fn received_percent(&self) -> f64 {
        100.0 * f64::from(self.received) / f64::from(self.terminals.max(1))
    }
}

pub fn run(args: RolloutArgs) -> anyhow::Result<()> {
    if args.terminals == 0 || args.runs == 0 {
        bail!("--terminals and --runs must be at least 1");
    }
    if args.interval_secs == 0 || args.check_secs == 0 || args.wake_rate == 0 {
        bail!("--interval-secs, --check-secs and --wake-rate must be at least 1");
    }
    let rings = parse_rings(&args.rings).map_err(|err| anyhow::anyhow!("--rings: {err}"))?;
    parse_groups(&args.groups).map_err(|err| anyhow::anyhow!("--group: {err}"))?;
    let policy = Policy {
        rings,
        thresholds: Thresholds {
            max_bad: args.max_bad.max(1),
            max_bad_percent: args.max_bad_percent,
            min_reports: args.min_reports,
        },
    };
    let mut runs = Vec::new();
    for r in 0..args.runs {
        let started = std::time::Instant::now();
        let run = simulate(&args, &policy, args.seed + u64::from(r))?;
        if args.json {
            println!("{}", serde_json::to_string(&run)?);
        } else {
            println!(
                "run {}: {} of {} terminals received it ({:.3} %), first fault {:.1} s, halt {:.1} s \
                 (+{:.1} s), last revert planned {:.1} s (+{:.1} s after the halt) and installed \
                 {:.1} s (+{:.1} s), {} not reverted, \
                 {} check-ins ({:.1} s of real time)",
                r + 1,
                run.received,
                run.terminals,
                run.received_percent(),
                secs(run.first_fault_ms),
                secs(run.halt_ms),
                secs(run.halt_ms.saturating_sub(run.first_fault_ms)),
                secs(run.last_revert_planned_ms),
                secs(run.last_revert_planned_ms.saturating_sub(run.halt_ms)),
                secs(run.last_revert_ms),
                secs(run.last_revert_ms.saturating_sub(run.halt_ms)),
                run.not_reverted,
                run.check_ins,
                started.elapsed().as_secs_f64()
            );
        }
        runs.push(run);
    }
    let median = |f: &dyn Fn(&RolloutRun) -> u64| {
        let mut values: Vec<u64> = runs.iter().map(f).collect();
        values.sort_unstable();
        values[values.len() / 2]
    };
    let received = median(&|r| u64::from(r.received));
    let to_halt = median(&|r| r.halt_ms.saturating_sub(r.first_fault_ms));
    let to_planned = median(&|r| r.last_revert_planned_ms.saturating_sub(r.halt_ms));
    let to_revert = median(&|r| r.last_revert_ms.saturating_sub(r.halt_ms));
    let not_reverted: u32 = runs.iter().map(|r| r.not_reverted).sum();
    let interval_ms = args.interval_secs * 1000;
    // The goal is the center's part: every affected terminal is planned back within one
    // check-in interval of the halt (a polling terminal's next check-in is up to an interval
    // away); its own install of the revert then takes `--install-secs` more, reported beside.
    let within = runs.iter().all(|r| {
        r.last_revert_planned_ms.saturating_sub(r.halt_ms) <= interval_ms && r.not_reverted == 0
    });
    let share = 100.0 * received as f64 / f64::from(args.terminals);
    if args.json {
        println!(
            "{}",
            serde_json::json!({"median_received": received, "median_received_percent": share,
                "median_first_fault_to_halt_ms": to_halt,
                "median_halt_to_last_revert_planned_ms": to_planned,
                "median_halt_to_last_revert_ms": to_revert,
                "not_reverted": not_reverted, "goal_received": share <= 1.0,
                "goal_reverted_within_interval": within})
        );
    } else {
        println!(
            "median of {} runs ({} wake, interval {} s): {} terminals received it ({:.3} %, goal \
             <= 1 %: {}), first fault to halt {:.1} s, halt to the last terminal planned back \
             {:.1} s (goal within one interval: {}), its revert installed {:.1} s after the halt",
            runs.len(),
            match args.wake {
                RolloutWake::Push => "push",
                RolloutWake::Poll => "poll",
            },
            args.interval_secs,
            received,
            share,
            if share <= 1.0 { "met" } else { "MISSED" },
            secs(to_halt),
            secs(to_planned),
            if within { "met" } else { "MISSED" },
            secs(to_revert),
        );
    }
    Ok(())
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// The catalog: one product in a good release and the bad one published at `now`.
fn catalog(now: Timestamp, run: u64) -> anyhow::Result<Catalog> {
    let published = Timestamp::from_unix_seconds(now.unix_seconds() - 86_400);
    let doc: CatalogDoc = serde_json::from_value(serde_json::json!({
        "format": "herd.catalog/v1",
        "vendors": [{"id": "acme", "name": "Acme"}],
        "products": [{"id": "acme-av", "vendor": "acme", "name": "Acme AV", "platforms": ["linux"]}],
        "releases": [
            {"product": "acme-av", "version": "1.0", "pattern": "acme-1", "seq": 1,
             "published": published.to_string(),
             "packages": [{"platform": "linux", "format": "archive", "sha256": format!("{:064x}", 1), "size": 1000}]},
            {"product": "acme-av", "version": format!("2.{run}"), "pattern": "acme-2", "seq": 2,
             "published": now.to_string(),
             "packages": [{"platform": "linux", "format": "archive", "sha256": format!("{:064x}", 2), "size": 1000}]}
        ],
        "threats": [],
        "coverage": []
    }))?;
    Ok(doc.validate("sim rollout")?)
}

fn terminal(catalog: &Catalog, version: &str, seq: u64) -> anyhow::Result<Terminal> {
    let doc: TerminalDoc = serde_json::from_value(serde_json::json!({
        "id": "template",
        "hardware": {"kind": "linux", "platform": "linux"},
        "installed": {"product": "acme-av", "version": version, "seq": seq,
                      "pattern": format!("acme-{seq}"), "format": "archive"},
        "policy": {"apply": "latest-same-vendor"}
    }))?;
    doc.validate("sim terminal", catalog)
        .context("the simulated terminal")
}

/// `--group NAME=PERCENT%` values: each group's name and share in basis points, in order;
/// the shares add up to at most 100 %.
fn parse_groups(values: &[String]) -> Result<Vec<(String, u32)>, String> {
    let mut shares: Vec<(String, u32)> = Vec::new();
    for value in values {
        let (name, percent) = value
            .split_once('=')
            .ok_or_else(|| format!("{value:?}: write NAME=PERCENT%, e.g. it-staff=2%"))?;
        // A one-ring policy parses the share with the rings' own rules.
        let rings = parse_rings(&format!("g=group:{name}+{percent}/0s/0, all=100%/0s/0"))
            .map_err(|err| format!("{value:?}: {err}"))?;
        let share = rings[0].reach;
        if share == 0 || shares.iter().any(|(n, _)| n == name) {
            return Err(format!(
                "{value:?}: give each group once, with a share above 0 %"
            ));
        }
        shares.push((name.to_owned(), share));
    }
    if shares.iter().map(|(_, s)| s).sum::<u32>() > herd_planner::rings::FULL_REACH {
        return Err("the groups' shares add up to more than 100 %".to_owned());
    }
    Ok(shares)
}

/// The group of terminal `id` under these shares: by its bucket of a fixed key, the groups'
/// shares side by side from 0.
fn group_of(shares: &[(String, u32)], id: &str) -> Option<String> {
    let bucket = herd_planner::rings::ring_bucket("sim/groups", id);
    let mut upto = 0;
    for (name, share) in shares {
        upto += share;
        if bucket < upto {
            return Some(name.clone());
        }
    }
    None
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// The center looks at its rollouts.
    Tick,
    /// A fault report of the bad release reaches the center.
    Fault,
    /// A terminal's install (of the bad release, or back to the good one) is done.
    Installed { terminal: u32, bad: bool },
    /// A terminal checks in (`periodic`: its interval's, else woken by the change token).
    CheckIn { terminal: u32, periodic: bool },
}

#[derive(Clone, Copy, Debug, Default)]
struct TerminalState {
    /// The center's change token (its generation) at the terminal's last check-in: a terminal
    /// that was busy installing when the token moved sees the move at its next wait, once the
    /// install is done, and checks in at once (push).
    seen: u32,
    /// Runs the bad release.
    on_bad: bool,
    /// An install is under way (a plan is being carried out).
    busy: bool,
    received: bool,
}

fn simulate(args: &RolloutArgs, policy: &Policy, seed: u64) -> anyhow::Result<RolloutRun> {
    let now = Timestamp::parse("2026-01-01T00:00:00Z").expect("a time");
    let catalog = Arc::new(catalog(now, seed)?);
    let bad = ReleaseIdx(1);
    let key = release_key(&catalog, bad);
    let mut planner = Planner::new(catalog.clone(), now);
    let on_good = terminal(&catalog, "1.0", 1)?;
    let on_bad = terminal(&catalog, &catalog.release(bad).version, 2)?;
    let ids: Vec<String> = (0..args.terminals)
        .map(|i| format!("t-{seed}-{i}"))
        .collect();
    let shares = parse_groups(&args.groups).map_err(|err| anyhow::anyhow!("--group: {err}"))?;
    let groups: Vec<Option<String>> = ids.iter().map(|id| group_of(&shares, id)).collect();
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let interval = args.interval_secs * 1000;
    let mut queue: BinaryHeap<Reverse<(u64, Event)>> = BinaryHeap::new();
    for t in 0..args.terminals {
        let phase = rng.below(interval);
        queue.push(Reverse((
            phase,
            Event::CheckIn {
                terminal: t,
                periodic: true,
            },
        )));
    }
    queue.push(Reverse((args.check_secs * 1000, Event::Tick)));
    let mut state = RolloutState {
        phase: Phase::Rolling,
        ring: 0,
        ring_started: 0,
        counts: Counts::default(),
    };
    let gates_of = |state: &RolloutState| -> Arc<RingGates> {
        Arc::new(RingGates::new(
            policy
                .offer(state)
                .map(|offer| Gate {
                    release: bad,
                    key: key.clone(),
                    offer,
                    groups: policy.groups(state),
                })
                .into_iter()
                .collect(),
        ))
    };
    planner.set_gates(gates_of(&state));
    let mut terminals = vec![TerminalState::default(); args.terminals as usize];
    let mut run = RolloutRun {
        terminals: args.terminals,
        ..RolloutRun::default()
    };
    // Moves with every change of the gates (the publication is generation 0).
    let mut generation: u32 = 0;
    let mut first_fault: Option<u64> = None;
    let mut halt: Option<u64> = None;
    let wake_all = |queue: &mut BinaryHeap<Reverse<(u64, Event)>>, rng: &mut Rng, at: u64| {
        if args.wake != RolloutWake::Push {
            return;
        }
        // Paced: woken in the order they waited (random here), `wake_rate` a second.
        let mut order: Vec<u32> = (0..args.terminals).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for (k, t) in order.into_iter().enumerate() {
            queue.push(Reverse((
                at + k as u64 * 1000 / args.wake_rate,
                Event::CheckIn {
                    terminal: t,
                    periodic: false,
                },
            )));
        }
    };
    // The publication moves the change token.
    wake_all(&mut queue, &mut rng, 0);
    let end = 3 * interval;
    while let Some(Reverse((at, event))) = queue.pop() {
        if at > end {
            break;
        }
        match event {
            Event::Tick => {
                let seconds = (at / 1000) as i64;
                if let Some(step) = policy.step(&state, seconds) {
                    match step {
                        Step::Promote { ring } => {
                            state.ring = ring;
                            state.ring_started = seconds;
                        }
                        Step::Complete => state.phase = Phase::Complete,
                        Step::Halt { .. } => {
                            state.phase = Phase::Reverted;
                            halt = Some(at);
                        }
                    }
                    planner.set_gates(gates_of(&state));
                    generation += 1;
                    wake_all(&mut queue, &mut rng, at);
                }
                let settled = halt.is_some() && terminals.iter().all(|t| !t.on_bad && !t.busy);
                if !settled {
                    queue.push(Reverse((at + args.check_secs * 1000, Event::Tick)));
                }
            }
            Event::Fault => {
                first_fault.get_or_insert(at);
                if state.phase == Phase::Rolling || state.phase == Phase::Paused {
                    state.counts.faults += 1;
                }
            }
            Event::Installed { terminal, bad } => {
                let t = &mut terminals[terminal as usize];
                t.busy = false;
                t.on_bad = bad;
                // The agent checks in again at once after a plan it carried out (its follow-up
                // check-ins), polling or not; pushed, it would also see a moved token then.
                if args.wake == RolloutWake::Poll || t.seen != generation {
                    queue.push(Reverse((
                        at,
                        Event::CheckIn {
                            terminal,
                            periodic: false,
                        },
                    )));
                }
                if bad {
                    queue.push(Reverse((
                        at + (args.fault_secs + args.report_secs) * 1000,
                        Event::Fault,
                    )));
                } else {
                    run.last_revert_ms = run.last_revert_ms.max(at);
                }
            }
            Event::CheckIn { terminal, periodic } => {
                if periodic {
                    queue.push(Reverse((
                        at + interval,
                        Event::CheckIn {
                            terminal,
                            periodic: true,
                        },
                    )));
                }
                let t = terminals[terminal as usize];
                if t.busy {
                    continue;
                }
                run.check_ins += 1;
                terminals[terminal as usize].seen = generation;
                let mut asking = if t.on_bad {
                    on_bad.clone()
                } else {
                    on_good.clone()
                };
                asking.id.clone_from(&ids[terminal as usize]);
                asking.group.clone_from(&groups[terminal as usize]);
                let plan = planner.plan(&asking);
                let Some(target) = plan.decision.target else {
                    continue;
                };
                let to_bad = target.release == bad;
                if t.on_bad && !to_bad {
                    run.last_revert_planned_ms = run.last_revert_planned_ms.max(at);
                }
                let entry = &mut terminals[terminal as usize];
                if to_bad && !entry.received {
                    entry.received = true;
                    run.received += 1;
                }
                entry.busy = true;
                queue.push(Reverse((
                    at + args.install_secs * 1000,
                    Event::Installed {
                        terminal,
                        bad: to_bad,
                    },
                )));
            }
        }
    }
    run.first_fault_ms = first_fault.unwrap_or(0);
    run.halt_ms = halt.unwrap_or(u64::MAX);
    run.not_reverted = terminals.iter().filter(|t| t.on_bad).count() as u32;
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(wake: RolloutWake) -> RolloutArgs {
        RolloutArgs {
            terminals: 5000,
            runs: 1,
            interval_secs: 600,
            wake,
            wake_rate: 5000,
            rings: "canary=1%/600s/5, early=10%/1800s/50, broad=100%/0s/0".into(),
            groups: Vec::new(),
            max_bad: 5,
            max_bad_percent: 20,
            min_reports: 20,
            check_secs: 2,
            install_secs: 5,
            fault_secs: 5,
            report_secs: 1,
            seed: 7,
            json: false,
        }
    }

    fn policy(args: &RolloutArgs) -> Policy {
        Policy {
            rings: parse_rings(&args.rings).expect("rings"),
            thresholds: Thresholds {
                max_bad: args.max_bad,
                max_bad_percent: args.max_bad_percent,
                min_reports: args.min_reports,
            },
        }
    }

    /// A canary ring of one group: the bad release reaches that group's terminals only (2 % of
    /// the fleet here) before it is halted, and is gone from them within an interval.
    #[test]
    fn a_crashing_release_in_a_group_ring_stays_in_the_group() {
        let mut args = args(RolloutWake::Push);
        args.rings = "canary=group:it-staff/600s/5, broad=100%/0s/0".into();
        args.groups = vec!["it-staff=2%".into(), "sales=50%".into()];
        let run = simulate(&args, &policy(&args), 7).expect("simulated");
        let staff = (0..args.terminals)
            .filter(|i| {
                group_of(&parse_groups(&args.groups).unwrap(), &format!("t-7-{i}")).as_deref()
                    == Some("it-staff")
            })
            .count() as u32;
        assert!(
            (50..=150).contains(&staff),
            "{staff} of 5000 in a 2 % group"
        );
        assert!(run.received >= 5 && run.received <= staff, "{run:?}");
        assert_eq!(run.not_reverted, 0, "{run:?}");
        for bad in [
            vec!["staff".to_owned()],
            vec!["a=0%".to_owned()],
            vec!["a=60%".to_owned(), "b=50%".to_owned()],
            vec!["a=1%".to_owned(), "a=2%".to_owned()],
            vec!["a b=1%".to_owned()],
        ] {
            assert!(parse_groups(&bad).is_err(), "{bad:?}");
        }
    }

    /// The bad release stays in its canary ring, is halted after `max_bad` faults and is gone
    /// from every terminal within an interval, pushed or polled.
    #[test]
    fn a_crashing_release_is_halted_in_its_canary_ring_and_reverted() {
        for wake in [RolloutWake::Push, RolloutWake::Poll] {
            let args = args(wake);
            let run = simulate(&args, &policy(&args), 7).expect("simulated");
            assert!(run.received >= 5, "{wake:?}: {run:?}");
            assert!(run.received_percent() <= 1.0 + 0.5, "{wake:?}: {run:?}");
            assert!(run.halt_ms >= run.first_fault_ms, "{wake:?}: {run:?}");
            assert!(
                run.halt_ms - run.first_fault_ms <= 600_000,
                "{wake:?}: {run:?}"
            );
            assert_eq!(run.not_reverted, 0, "{wake:?}: {run:?}");
            // Planned back within an interval; installed `install_secs` after that at most.
            assert!(
                run.last_revert_planned_ms - run.halt_ms <= args.interval_secs * 1000,
                "{wake:?}: {run:?}"
            );
            assert!(
                run.last_revert_ms - run.last_revert_planned_ms <= args.install_secs * 1000,
                "{wake:?}: {run:?}"
            );
        }
    }
}
