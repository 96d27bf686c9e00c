//! `herd-agent status`: what the agent in a state directory is, runs, waits for and last did,
//! read from its state files (it needs neither the center nor the running agent).

use std::path::PathBuf;

use anyhow::{Result, bail};
use serde_json::json;

use super::agent::short;
use super::consent;
use super::state::{self, AgentFile, Progress, StatePaths, Waiting};
use crate::outbox::Outbox;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The agent's state directory (as given to `herd-agent run`).
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &StatusArgs) -> Result<u8> {
    let paths = StatePaths::new(&args.state_dir);
    if !paths.root.is_dir() {
        bail!(
            "{} is not an agent state directory (it does not exist)",
            paths.root.display()
        );
    }
    let agent: Option<AgentFile> = state::load_json(&paths.agent())?;
    let progress: Progress = state::load_json(&paths.status())?.unwrap_or_default();
    let consent = consent::load(&paths)?;
    let messages = super::messages::load(&paths)?;
    let outbox = if paths.outbox().is_dir() {
        Some(Outbox::open(&paths.outbox())?.stats()?)
    } else {
        None
    };
    let prefix = agent
        .as_ref()
        .map(|a| a.prefix.clone())
        .unwrap_or_else(|| paths.default_prefix());
    let installed = herd_package::installed_product(&prefix);
    let running = state::running_pid(&paths);
    // What the hosted scanner found lately (`run --scan`), newest last.
    let detections: Vec<herd_proto::api::Detection> =
        state::load_json(&paths.root.join(super::scanner::DETECTIONS_FILE))?.unwrap_or_default();
    // What `status` says about the certificate: when it expires, or that it has and how to
    // recover; nothing before enrolment.
    let certificate = agent
        .as_ref()
        .map(|a| match super::identity::stored_validity(&paths) {
            Ok((_, not_after)) if not_after <= std::time::SystemTime::now() => format!(
                "EXPIRED at {}; {}",
                super::clock::rfc3339(not_after),
                super::identity::recovery(&a.terminal, &paths.root)
            ),
            Ok((_, not_after)) => format!(
                "expires at {}{}",
                super::clock::rfc3339(not_after),
                progress
                    .certificate_renewed_at
                    .as_deref()
                    .map(|at| format!(" (renewed at {at})"))
                    .unwrap_or_default()
            ),
            Err(e) => format!("unreadable: {e:#}"),
        });

    let fault_dirs = crate::supervise::verdicts::FaultDirs::new(&paths.root);
    let faults = crate::supervise::verdicts::load(&fault_dirs)?;
    let replacements = crate::supervise::verdicts::load_outcomes(&fault_dirs)?;
    // Self-protection: the release on probation, and the one undone and refused.
    let protection = super::protect::Protection::load(&paths.root);

    if args.json {
        let (installed_json, installed_error) = match &installed {
            Ok(doc) => (json!(doc), None),
            Err(e) => (serde_json::Value::Null, Some(e.to_string())),
        };
        let document = json!({
            "enrolled": agent.is_some(),
            "certificate": certificate,
            "agent": agent,
            "running": running.is_some(),
            "pid": running,
            "prefix": prefix,
            "installed": installed_json,
            "installed_error": installed_error,
            "progress": progress,
            "consent": consent.as_ref().map(|c| json!({
                "plan_id": c.plan_id,
                "change": consent::describe_change(&c.plan),
                "reason": c.plan.reason,
                "requested_at": c.requested_at,
                "decision": c.decision,
                "decided_at": c.decided_at,
            })),
            "outbox": outbox,
            "faults": faults.verdicts,
            "replacements": replacements,
            "self_protection": protection,
            "detections": detections,
            "messages": messages.messages,
        });
        println!("{}", serde_json::to_string_pretty(&document)?);
        return Ok(0);
    }

    let line = |label: &str, value: String| println!("{:<15}{value}", format!("{label}:"));
    match &agent {
        Some(a) => line(
            "terminal",
            format!(
                "{} (group {}, {} {}) with {}",
                a.terminal, a.group, a.hardware.kind, a.hardware.platform, a.server
            ),
        ),
        None => line("terminal", "not enrolled yet".to_owned()),
    }
    if let Some(certificate) = &certificate {
        line("certificate", certificate.clone());
    }
    line(
        "agent",
        match running {
            Some(pid) => format!("running (pid {pid})"),
            None => "not running".to_owned(),
        },
    );
    line(
        "installed",
        match &installed {
            Ok(Some(i)) => format!(
                "{} {} ({}) in {}",
                i.product,
                i.version,
                i.pattern,
                prefix.display()
            ),
            Ok(None) => format!("no vaccine product in {}", prefix.display()),
            Err(e) => format!("broken: {e}"),
        },
    );
    if let Some(probation) = &protection.probation {
        line(
            "probation",
            format!(
                "{} {} since {}: {} fault(s) attributed to it so far{}; the previous product \
                 is kept to be put back",
                probation.product,
                probation.version,
                super::clock::rfc3339(
                    std::time::UNIX_EPOCH
                        + std::time::Duration::from_secs(probation.activated_at.max(0) as u64)
                ),
                probation.faults.len(),
                if probation.seen.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", probation.seen.join(", "))
                }
            ),
        );
    }
    if let Some(refused) = &protection.refused {
        line(
            "refused",
            format!(
                "{} {} since {}, undone by the agent itself: {}",
                refused.product, refused.version, refused.at, refused.reason
            ),
        );
    }
    if let Some(upstream) = &progress.upstream {
        let others: Vec<&str> = progress
            .upstreams
            .iter()
            .map(String::as_str)
            .filter(|u| u != upstream)
            .collect();
        let preferred = progress.upstreams.first() == Some(upstream);
        line(
            "upstream",
            format!(
                "{upstream}{}{}",
                if preferred || progress.upstreams.len() < 2 {
                    ""
                } else {
                    " (failed over; the preferred one is probed)"
                },
                if others.is_empty() {
                    String::new()
                } else {
                    format!("; also {}", others.join(", "))
                }
            ),
        );
    }
    if running.is_some()
        && let Some(push) = &progress.push
    {
        line("push", push.clone());
    }
    if let Some(downloads) = &progress.downloads {
        line("downloads", downloads.clone());
    }
    if let Some(latest) = messages.messages.last() {
        line(
            "messages",
            format!(
                "{} from the operators, the latest at {}: {} (`herd-agent messages`)",
                messages.messages.len(),
                latest.at,
                super::agent::printable(&latest.text)
            ),
        );
    }
    line(
        "last check-in",
        progress
            .last_checkin
            .clone()
            .unwrap_or_else(|| "never".to_owned()),
    );
    if let Some(error) = &progress.last_error {
        line(
            "last error",
            format!(
                "{} at {}",
                error,
                progress.last_error_at.as_deref().unwrap_or("?")
            ),
        );
    }
    if running.is_some()
        && let Some(next) = &progress.next_checkin
    {
        line("next check-in", next.clone());
    }
    if let Some(plan) = &progress.plan {
        let waiting = match plan.waiting {
            Some(Waiting::Consent) => " — waiting for your consent".to_owned(),
            Some(Waiting::Window) => format!(
                " — waiting for the maintenance window at {}",
                plan.not_before.as_deref().unwrap_or("?")
            ),
            None => String::new(),
        };
        line(
            "plan",
            format!(
                "{} {}{waiting}: {}",
                short(&plan.plan_id),
                plan.action,
                plan.reason
            ),
        );
    }
    if let Some(c) = &consent {
        let answer = match c.decision {
            None => format!(
                "waiting for your answer: `herd-agent consent accept|decline --state-dir {}`",
                paths.root.display()
            ),
            Some(consent::Decision::Accepted) => "accepted".to_owned(),
            Some(consent::Decision::Declined) => "declined".to_owned(),
        };
        line(
            "consent",
            format!(
                "{} (plan {}): {answer}",
                consent::describe_change(&c.plan),
                short(&c.plan_id)
            ),
        );
    }
    if let Some(report) = &progress.last_report {
        line(
            "last report",
            format!(
                "plan {} {} at {}{}",
                short(&report.plan_id),
                state::outcome_name(report.outcome),
                report.at,
                report
                    .message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
        );
    }
    // The center's newest verdict on each program's faults, newest first, a line each (a
    // program failing again and again does not hide the others).
    let mut shown = std::collections::BTreeSet::new();
    let newest_of_each = faults
        .verdicts
        .iter()
        .filter(|verdict| shown.insert(verdict.program.as_str()));
    for verdict in newest_of_each.take(8) {
        line("fault", crate::supervise::describe_verdict(verdict));
        if let Some(outcome) = replacements.get(&verdict.seq) {
            line("replacement", outcome.message.clone());
        }
    }
    if let Some(refresh) = &progress.trust.last_refresh {
        line(
            "metadata",
            format!(
                "root v{}, timestamp v{}, snapshot v{} from {} at {} ({} bytes in {} requests)",
                refresh.root_version,
                refresh.timestamp_version,
                refresh.snapshot_version,
                refresh.upstream,
                refresh.at,
                refresh.bytes,
                refresh.requests
            ),
        );
    }
    if let Some(refusal) = &progress.trust.last_refusal {
        line(
            "last refusal",
            format!(
                "{} at {}{}: {}",
                refusal.kind,
                refusal.at,
                refusal
                    .plan_id
                    .as_deref()
                    .map(|p| format!(" (plan {})", short(p)))
                    .unwrap_or_default(),
                super::agent::printable(&refusal.detail)
            ),
        );
    }
    for d in &detections {
        line(
            "detection",
            format!(
                "{} is infected ({}): {}{}",
                super::agent::printable(&d.path),
                d.signatures.join(", "),
                d.action,
                d.quarantine_id
                    .as_deref()
                    .map(|id| format!(
                        " as {id} (herd-agent quarantine restore {id} --dir {})",
                        paths.root.join(super::scanner::QUARANTINE_DIR).display()
                    ))
                    .unwrap_or_default()
            ),
        );
    }
    if let Some(stats) = &outbox {
        line(
            "outbox",
            format!(
                "{} event(s) waiting; the center acknowledged through seq {}",
                stats.pending, stats.acked_through
            ),
        );
    }
    Ok(0)
}
