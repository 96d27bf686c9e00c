//! Judging and describing what happened: the expectations of one check and what differed,
//! and the short phrases the demo prints for plans, reports, installed products and coverage.

use herd_proto::api::{
    CoverageCell, CoverageMatrix, PlanReport, ReportOutcome, StepStatus, TerminalDetail,
    TerminalSummary,
};
use herd_proto::plan::{Action, PlanDoc};
use herd_proto::terminal::InstalledDoc;

use super::procs::AgentRun;
use super::show::short_digest;
use super::story::{self, VACCINE_A, VACCINE_B, Vaccine};

/// A terminal as the center and its own prefix see it.
pub(super) struct Seen {
    pub(super) detail: TerminalDetail,
    /// What `<prefix>/current` points at, read from the disk.
    pub(super) installed: Option<InstalledDoc>,
}

/// The expectations of one check, and what differed.
#[derive(Debug, Default)]
pub(super) struct Expect {
    problems: Vec<String>,
}

impl Expect {
    pub(super) fn that(&mut self, held: bool, otherwise: impl FnOnce() -> String) {
        if !held {
            self.problems.push(otherwise());
        }
    }

    pub(super) fn held(&self) -> bool {
        self.problems.is_empty()
    }

    pub(super) fn exit_code(&mut self, run: &AgentRun, want: i32) {
        self.that(run.code() == Some(want), || {
            format!(
                "`{}` ended with {} instead of exit code {want}",
                run.command, run.status
            )
        });
    }

    /// The agent announced a plan with `action` towards `vaccine` and carried it out, and the
    /// center received the report: it succeeded, every step was ok, and `vaccine` is what
    /// runs afterwards. Returns the announced action and reason, for display.
    ///
    /// `earlier` is what the agent said in earlier runs: a plan refused once (a malicious
    /// mirror) was announced when it first arrived, not when it is finally carried out.
    pub(super) fn carried_out<'r>(
        &mut self,
        run: &'r AgentRun,
        earlier: &'r str,
        seen: &Seen,
        action: Action,
        vaccine: &Vaccine,
    ) -> Option<(&'r str, &'r str)> {
        let report = seen.detail.last_report.as_ref();
        let Some(report) = report else {
            self.that(false, || {
                "the center has no report of a plan being carried out".to_owned()
            });
            return None;
        };
        let announced =
            announced_plan(run, &report.plan_id).or_else(|| announced_in(earlier, &report.plan_id));
        self.that(
            announced.is_some_and(|(said, _)| said == action.as_str()),
            || match announced {
                Some((said, _)) => format!("the plan it carried out was {said}, not {action}"),
                None => format!(
                    "the agent did not announce plan {} (the one it reported on)",
                    short_id(&report.plan_id)
                ),
            },
        );
        self.that(
            report.outcome == ReportOutcome::Succeeded
                && report.steps.iter().all(|s| s.status == StepStatus::Ok),
            || {
                format!(
                    "the plan was not carried out: {}{}",
                    describe_report(Some(report)),
                    report
                        .message
                        .as_deref()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default()
                )
            },
        );
        self.that(
            report
                .installed
                .as_ref()
                .is_some_and(|i| i.product == vaccine.product && i.version == vaccine.version),
            || {
                format!(
                    "the center's report says it runs {}",
                    installed_label(report.installed.as_ref())
                )
            },
        );
        announced
    }

    /// The terminal's prefix runs this release.
    pub(super) fn runs(&mut self, installed: &Option<InstalledDoc>, vaccine: &Vaccine) {
        self.that(
            installed
                .as_ref()
                .is_some_and(|i| i.product == vaccine.product && i.version == vaccine.version),
            || {
                format!(
                    "its prefix runs {} instead of {} {}",
                    installed_label(installed.as_ref()),
                    vaccine.product,
                    vaccine.version
                )
            },
        );
    }

    /// What differed, as continuation lines; empty when every expectation held.
    pub(super) fn problems_only(&self) -> String {
        self.problems
            .iter()
            .map(|problem| format!("\nbut {problem}"))
            .collect()
    }

    /// What differed, then the end of the agent's output, as continuation lines; empty when
    /// every expectation held.
    pub(super) fn problems_text(&self, run: &AgentRun) -> String {
        if self.held() {
            return String::new();
        }
        let mut text = self.problems_only();
        text.push_str(&format!("\n`{}` printed:\n{}", run.command, run.tail()));
        text
    }
}

/// How the agent names a plan in what it prints: the first 12 digits of its id.
pub(super) fn short_id(plan_id: &str) -> &str {
    &plan_id[..plan_id.len().min(12)]
}

/// The action and reason of plan `plan_id` as the agent announced it when it received it
/// (`herd-agent: plan <id> <action>: <reason>`): the center keeps only a terminal's current
/// plan, and after carrying one out the agent checks in again and gets the next.
pub(super) fn announced_plan<'r>(run: &'r AgentRun, plan_id: &str) -> Option<(&'r str, &'r str)> {
    announced_in(&run.output, plan_id)
}

/// [`announced_plan`] in what an agent printed.
fn announced_in<'r>(said: &'r str, plan_id: &str) -> Option<(&'r str, &'r str)> {
    let opening = format!("herd-agent: plan {} ", short_id(plan_id));
    said.lines().find_map(|line| {
        let rest = line.strip_prefix(&opening)?;
        let (action, reason) = rest.split_once(": ")?;
        action.parse::<Action>().is_ok().then_some((action, reason))
    })
}

/// `switch → vaccine-b 7.0`, `exposed`, `none`.
pub(super) fn describe_plan(plan: Option<&PlanDoc>) -> String {
    match plan {
        None => "none yet".to_owned(),
        Some(plan) => match &plan.to {
            Some(to) => format!("{} → {} {}", plan.action, to.product, to.version),
            None => plan.action.to_string(),
        },
    }
}

/// `fetch ok · install ok · verify ok` from a plan report.
pub(super) fn describe_report(report: Option<&PlanReport>) -> String {
    let Some(report) = report else {
        return "no report".to_owned();
    };
    if report.steps.is_empty() {
        return format!("report: {:?}", report.outcome).to_lowercase();
    }
    report
        .steps
        .iter()
        .map(|s| format!("{} {}", s.kind, step_status(s.status)))
        .collect::<Vec<_>>()
        .join(" · ")
}

pub(super) fn step_status(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Ok => "ok",
        StepStatus::Failed => "FAILED",
        StepStatus::Skipped => "skipped",
        StepStatus::Undone => "undone",
    }
}

pub(super) fn installed_label(installed: Option<&InstalledDoc>) -> String {
    match installed {
        Some(i) => format!("{} {} ({})", i.product, i.version, i.pattern),
        None => "nothing".to_owned(),
    }
}

/// Whether the coverage matrix says what the story needs after maker B published: vaccine-a
/// does not cover virus a, vaccine-b does since its seq 1112; and the check line saying so.
pub(super) fn virus_a_coverage(coverage: &CoverageMatrix) -> (bool, String) {
    let cell = |product: &str| {
        let column = coverage.products.iter().position(|p| p.id == product)?;
        coverage
            .threats
            .iter()
            .find(|row| row.threat == story::THREAT)?
            .cells
            .get(column)
            .cloned()
    };
    let (a, b) = (cell(VACCINE_A.product), cell(VACCINE_B.product));
    let held = a.as_ref().is_some_and(|c| !c.covered)
        && b.as_ref()
            .is_some_and(|c| c.covered && c.since_seq == Some(VACCINE_B.seq));
    let text = format!(
        "the center's coverage of {} (catalog revision {}): vaccine-a {}, vaccine-b {}",
        story::THREAT,
        coverage.revision,
        a.as_ref().map_or("missing".to_owned(), describe_cell),
        b.as_ref().map_or("missing".to_owned(), describe_cell),
    );
    (held, text)
}

/// `8d26c760d0f0…` in place of every 64-digit SHA-256 in a text.
pub(super) fn shorten_digests(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let run = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
        if run == 64 {
            out.push_str(&short_digest(&rest[..run]));
            rest = &rest[run..];
        } else if run > 0 {
            out.push_str(&rest[..run]);
            rest = &rest[run..];
        } else {
            let next = rest.chars().next().map_or(1, char::len_utf8);
            out.push_str(&rest[..next]);
            rest = &rest[next..];
        }
    }
    out
}

pub(super) fn describe_cell(cell: &CoverageCell) -> String {
    match (
        cell.covered,
        cell.since_seq,
        &cell.covered_on,
        &cell.expected,
    ) {
        (true, Some(seq), Some(on), _) => format!("covered since seq {seq} ({on})"),
        (true, Some(seq), None, _) => format!("covered since seq {seq}"),
        (true, None, _, _) => "covered".to_owned(),
        (false, _, _, Some(expected)) => format!("not covered (expected {expected})"),
        (false, _, _, None) => "not covered".to_owned(),
    }
}

pub(super) fn terminal_row(t: &TerminalSummary) -> Vec<String> {
    vec![
        t.id.clone(),
        t.user.clone().unwrap_or_default(),
        t.hardware.kind.clone(),
        t.group.clone(),
        t.installed
            .as_ref()
            .map(|i| format!("{} {}", i.product, i.version))
            .unwrap_or_else(|| "nothing".to_owned()),
        t.action.clone().unwrap_or_else(|| "-".to_owned()),
        t.uncovered.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_in_step_details_are_shortened_and_the_rest_kept() {
        let digest = "ab8deff613ac8f74c1118a8abec05b3fb02a7db189254e93079eddd513a48d73";
        assert_eq!(
            shorten_digests(&format!("514 bytes in downloads/{digest} (café)")),
            "514 bytes in downloads/ab8deff613ac… (café)"
        );
        assert_eq!(shorten_digests("seq 1112, deadbeef"), "seq 1112, deadbeef");
    }

    fn run_with(output: &str) -> AgentRun {
        use std::os::unix::process::ExitStatusExt as _;
        AgentRun {
            command: "herd-agent run --once".to_owned(),
            status: std::process::ExitStatus::from_raw(0),
            output: output.to_owned(),
        }
    }

    #[test]
    fn the_announced_plan_is_found_by_the_short_id_the_agent_prints() {
        let run = run_with(
            "herd-agent: plan 339e86d724c7 switch: no vaccine product is installed\n\
             herd-agent: carrying out plan 339e86d724c7: install vaccine-a 5.1\n\
             herd-agent: plan b341e8130448 exposed: vaccine-a 5.1 (a-1101) does not cover virus-a\n",
        );
        assert_eq!(
            announced_plan(&run, "339e86d724c7554629a08bcb0386d37b"),
            Some(("switch", "no vaccine product is installed"))
        );
        assert_eq!(
            announced_plan(&run, "b341e8130448ffff"),
            Some(("exposed", "vaccine-a 5.1 (a-1101) does not cover virus-a"))
        );
        assert_eq!(announced_plan(&run, "000000000000"), None);
    }
}
