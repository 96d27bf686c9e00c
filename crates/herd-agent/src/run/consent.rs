//! Consent (SPEC §3.1 step 6, policy `consent: ask`): a plan that changes software waits for
//! the user. The agent writes the plan to `<state>/consent.json` and prints a notice;
//! `herd-agent consent accept|decline` records the answer there. A running agent watches the
//! file (inotify) and acts on the answer at once; otherwise the next `herd-agent run` does.
//!
//! An answer is bound to one plan id: if the center's plan changes before the user answers
//! (a newer release, another policy), the new plan needs its own consent.

use std::path::PathBuf;

use anyhow::{Result, bail};
use herd_fs::LockFile;
use herd_proto::plan::{Action, PlanDoc};
use serde::{Deserialize, Serialize};

use super::clock;
use super::state::{self, StatePaths};

/// `consent.json`: the plan waiting for the user, and the answer once given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ConsentFile {
    pub plan_id: String,
    pub plan: PlanDoc,
    pub requested_at: String,
    #[serde(default)]
    pub decision: Option<Decision>,
    #[serde(default)]
    pub decided_at: Option<String>,
    /// Where the answer was given: `device` (absent: the device, as before e-mail answers
    /// existed) or `email` (the center's signed link, carried by a check-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Decision {
    Accepted,
    Declined,
}

/// Holds `consent.lock` so the agent and the consent command never overwrite each other.
pub(crate) fn lock(paths: &StatePaths) -> Result<LockFile> {
    Ok(LockFile::acquire(&paths.consent_lock())?)
}

pub(crate) fn load(paths: &StatePaths) -> Result<Option<ConsentFile>> {
    state::load_json(&paths.consent())
}

pub(crate) fn save(paths: &StatePaths, consent: &ConsentFile) -> Result<()> {
    state::save_json(&paths.consent(), consent)
}

/// What a plan changes, in words: `switch from vaccine-a 5.1 to vaccine-b 7.0`.
pub(crate) fn describe_change(plan: &PlanDoc) -> String {
    let release = |r: &herd_proto::plan::ReleaseRef| format!("{} {}", r.product, r.version);
    match (&plan.action, &plan.from, &plan.to) {
        (_, None, Some(to)) => format!("install {}", release(to)),
        (Action::Update, Some(from), Some(to)) => {
            format!("update {} to {}", release(from), to.version)
        }
        (Action::Switch, Some(from), Some(to)) => {
            format!("switch from {} to {}", release(from), release(to))
        }
        (action, _, _) => format!("{action:?}").to_lowercase(),
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum ConsentCommand {
    /// Allow the change waiting for your consent: a running agent carries it out at once,
    /// otherwise the next `herd-agent run` does.
    Accept(ConsentArgs),
    /// Refuse the change waiting for your consent; the center is told.
    Decline(ConsentArgs),
    /// Show the change waiting for your consent, if any.
    Show(ConsentArgs),
}

#[derive(Debug, clap::Args)]
pub struct ConsentArgs {
    /// The agent's state directory (as given to `herd-agent run`).
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// Answer only if the plan waiting has this id (or an id starting with it).
    #[arg(long, value_name = "ID")]
    plan: Option<String>,
}

pub fn run(command: &ConsentCommand) -> Result<u8> {
    let (args, decision) = match command {
        ConsentCommand::Accept(args) => (args, Some(Decision::Accepted)),
        ConsentCommand::Decline(args) => (args, Some(Decision::Declined)),
        ConsentCommand::Show(args) => (args, None),
    };
    let paths = StatePaths::new(&args.state_dir);
    if !paths.agent().exists() {
        bail!(
            "{} is not the state directory of an enrolled agent (it has no agent.json)",
            args.state_dir.display()
        );
    }
    let _lock = lock(&paths)?;
    let Some(mut consent) = load(&paths)? else {
        println!("herd-agent: no change is waiting for your consent");
        return Ok(if decision.is_some() { 1 } else { 0 });
    };
    let change = describe_change(&consent.plan);
    let short = super::agent::short(&consent.plan_id);
    if let Some(wanted) = &args.plan
        && !consent.plan_id.starts_with(wanted.as_str())
    {
        bail!(
            "the change waiting for consent is plan {short}… ({change}), not plan {wanted}; \
             nothing was recorded"
        );
    }
    let Some(decision) = decision else {
        let answer = match consent.decision {
            None => "waiting for your answer".to_owned(),
            Some(d) => format!(
                "{} at {}",
                decision_name(d),
                consent.decided_at.as_deref().unwrap_or("?")
            ),
        };
        println!("plan:      {short}… ({change})");
        println!(
            "reason:    {}",
            super::agent::printable(&consent.plan.reason)
        );
        println!("requested: {}", consent.requested_at);
        println!("answer:    {answer}");
        return Ok(0);
    };
    let previous = consent.decision.replace(decision);
    consent.decided_at = Some(clock::now_rfc3339());
    consent.by = Some(herd_proto::consent::answered_by::DEVICE.to_owned());
    save(&paths, &consent)?;
    let running = state::running_pid(&paths);
    let when = match (decision, running) {
        (Decision::Accepted, Some(pid)) => {
            format!("the running agent (pid {pid}) carries it out now")
        }
        (Decision::Accepted, None) => {
            "it is carried out at the agent's next check-in (`herd-agent run`)".to_owned()
        }
        (Decision::Declined, Some(pid)) => {
            format!("the running agent (pid {pid}) tells the center now")
        }
        (Decision::Declined, None) => "the center is told at the agent's next check-in".to_owned(),
    };
    let changed = match previous {
        Some(p) if p != decision => format!(" (changed from {})", decision_name(p)),
        _ => String::new(),
    };
    println!(
        "herd-agent: {}{changed}: {change} (plan {short}…); {when}",
        decision_name(decision)
    );
    Ok(0)
}

fn decision_name(decision: Decision) -> &'static str {
    match decision {
        Decision::Accepted => "accepted",
        Decision::Declined => "declined",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(action: Action, from: Option<(&str, &str)>, to: (&str, &str)) -> PlanDoc {
        let release = |(product, version): (&str, &str)| herd_proto::plan::ReleaseRef {
            product: product.into(),
            version: version.into(),
            seq: 1,
        };
        PlanDoc {
            terminal: "45a".into(),
            action,
            uncovered_now: vec![],
            uncovered_now_counts: Default::default(),
            uncovered_now_more: 0,
            uncovered_after: vec![],
            uncovered_after_counts: Default::default(),
            uncovered_after_more: 0,
            from: from.map(release),
            to: Some(release(to)),
            consent_required: true,
            not_before: None,
            steps: vec![],
            alternatives: vec![],
            reason: "because".into(),
        }
    }

    #[test]
    fn changes_are_described_in_words() {
        assert_eq!(
            describe_change(&plan(
                Action::Switch,
                Some(("vaccine-a", "5.1")),
                ("vaccine-b", "7.0")
            )),
            "switch from vaccine-a 5.1 to vaccine-b 7.0"
        );
        assert_eq!(
            describe_change(&plan(
                Action::Update,
                Some(("vaccine-a", "5.1")),
                ("vaccine-a", "5.2")
            )),
            "update vaccine-a 5.1 to 5.2"
        );
        assert_eq!(
            describe_change(&plan(Action::Switch, None, ("vaccine-b", "7.0"))),
            "install vaccine-b 7.0"
        );
    }
}
