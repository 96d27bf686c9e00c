//! One agent and its cycle: enrol if needed, send the outbox, check in with the inventory, act
//! on the plan (record it, notify, ask for consent, wait for a window, or carry it out), send
//! the outbox again, and — when the plan changed what is installed — check in once more so the
//! center sees the new inventory at once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow};
use herd_client::Client;
use herd_proto::api::{
    CertificateRenewal, CheckinRequest, CheckinResponse, PlanReport, ReportOutcome, codes, events,
};
use herd_proto::consent::{ConsentAnswer, ConsentDecision, answered_by};
use herd_proto::plan::{Action, PlanDoc};
use serde_json::json;

use super::clock;
use super::consent::{self, ConsentFile, Decision};
use super::enrol::{self, Declared};
use super::fetcher::CenterFetcher;
use super::identity;
use super::interfaces;
use super::protect::{self, Look, Protection, Restore};
use super::push::Push;
use super::state::{
    self, AgentFile, PlanState, Progress, RefreshSummary, RefusalSummary, ReportSummary, StateDir,
    StatePaths, Waiting,
};
use super::upstreams::Upstreams;
use super::volumes::{self, MountWatch};
use super::{RunArgs, VERSION};
use crate::execute::{ExecError, Executor, ExecutorConfig, Fetcher};
use crate::outbox::{FlushError, Outbox};
use crate::trust::{
    DeltaFetcher, MirrorFetcher, Offers, Ours, Refusal, TrustClient, TrustStore, VerifiedPlan,
};

/// How many times one cycle checks in again after a plan changed what is installed.
const MAX_FOLLOW_UPS: usize = 2;

/// Why a cycle did not complete.
#[derive(Debug)]
pub(crate) enum CycleError {
    /// The center failed inside (5xx, 429) or refused the TLS handshake: back off and retry.
    Unreachable(anyhow::Error),
    /// The upstream did not answer at all (no connection, or the answer broke off): back off
    /// and retry, and after `--failover-after` of this try the next upstream.
    Silent(anyhow::Error),
    /// The center refused something, or a local step failed: retry later.
    Failed(anyhow::Error),
    /// Nothing helps without someone changing something (no token, enrolment refused, bad
    /// flags): stop.
    Fatal(anyhow::Error),
    /// The center no longer accepts this terminal's certificate. The cycle renews once with it
    /// (the center may hold a renewal whose answer was lost), and stops if that is refused too.
    CertificateRefused(anyhow::Error),
}

impl CycleError {
    pub(crate) fn into_error(self) -> anyhow::Error {
        match self {
            CycleError::Unreachable(e)
            | CycleError::Silent(e)
            | CycleError::Failed(e)
            | CycleError::Fatal(e)
            | CycleError::CertificateRefused(e) => e,
        }
    }

    fn error(&self) -> &anyhow::Error {
        match self {
            CycleError::Unreachable(e)
            | CycleError::Silent(e)
            | CycleError::Failed(e)
            | CycleError::Fatal(e)
            | CycleError::CertificateRefused(e) => e,
        }
    }
}

impl From<anyhow::Error> for CycleError {
    fn from(error: anyhow::Error) -> CycleError {
        CycleError::Failed(error)
    }
}

/// Why a renewal did not happen.
enum RenewFailure {
    /// The center refused the certificate that asked: it is no longer this terminal's.
    Refused(anyhow::Error),
    /// Anything else (the center unreachable, a local step failed): the certificate is as it
    /// was, and still works until it expires.
    Other(CycleError),
}

impl From<CycleError> for RenewFailure {
    fn from(error: CycleError) -> RenewFailure {
        RenewFailure::Other(error)
    }
}

/// When to check in next, as a cycle that completed sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Next {
    /// The center's interval (with its jitter).
    pub after: Duration,
    /// Earlier than that: when a maintenance window opens.
    pub until: Option<SystemTime>,
    /// Earlier still: after a short back-off (an interrupted download).
    pub soon: bool,
}

/// What acting on a plan did.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Acted {
    Nothing,
    /// A plan was carried out: what is installed changed.
    Changed,
    /// The plan waits for its maintenance window, which opens then.
    WaitingWindow(SystemTime),
    /// The plan could not finish for a passing reason (a download broke off): retry soon.
    RetrySoon,
}

pub(crate) struct Agent {
    args: RunArgs,
    state: StateDir,
    declared: Declared,
    token: Option<String>,
    /// `agent.json`; `None` until enrolled.
    identity: Option<AgentFile>,
    client: Option<Client>,
    executor: Executor,
    /// The product prefix (absolute).
    prefix: PathBuf,
    outbox: Outbox,
    progress: Progress,
    /// Plans whose notice this process printed (a daemon prints each once).
    notified: HashSet<String>,
    /// A plan was rolled back during this run.
    plan_failed: bool,
    /// Signed distribution: the upstream's repository and what it last verified; made at
    /// the first plan with steps (after enrolment), remade when the client is.
    trust: Option<TrustClient>,
    /// The upstreams and which one the agent talks to; known once enrolled.
    upstreams: Option<Upstreams>,
    /// The push connection, unless `--no-push` (or `--once`).
    push: Option<Push>,
    /// The mount table, watched for volumes coming and going (not with `--once`).
    mounts: Option<MountWatch>,
    /// The download directories that do not depend on a volume being mounted.
    fixed_download_dirs: Vec<PathBuf>,
    /// Self-protection: the product on probation and the release refused (`protect`).
    protection: Protection,
    limits: protect::Limits,
}

impl Agent {
    /// Takes the state directory, finishes an interrupted plan, records the start in the
    /// outbox; enrolment waits for the first cycle (it needs the center).
    pub(crate) fn start(args: &RunArgs) -> Result<Agent> {
        let state = StateDir::open(&args.state_dir)?;
        let paths = state.paths.clone();
        let identity: Option<AgentFile> = state::load_json(&paths.agent())?;
        let declared = Declared {
            id: args.id.clone(),
            user: args.user.clone(),
            kind: args.kind.clone(),
            platform: args.platform.clone(),
            model: args.model.clone(),
            tz: args.tz.clone(),
        };
        if let Some(identity) = &identity {
            check_flags_match(identity, &declared)?;
        }
        let prefix = args
            .prefix
            .clone()
            .or_else(|| identity.as_ref().map(|i| i.prefix.clone()))
            .unwrap_or_else(|| paths.default_prefix());
        // Kept in agent.json for `status`, which may run from another directory.
        let prefix = std::path::absolute(&prefix)
            .with_context(|| format!("cannot resolve the prefix {}", prefix.display()))?;
        let mut config = ExecutorConfig::new(&prefix, &paths.root);
        config
            .download_dirs
            .extend(args.download_dirs.iter().cloned());
        config.space_margin = args.space_margin;
        config.script_timeout = Duration::from_secs(args.script_timeout);
        config.hooks = args.hooks.policy().map_err(anyhow::Error::msg)?;
        let fixed_download_dirs = config.download_dirs.clone();
        let executor = Executor::new(config)?;
        let outbox = Outbox::open(&paths.outbox())?;
        let progress = match state::load_json::<Progress>(&paths.status()) {
            Ok(progress) => progress.unwrap_or_default(),
            Err(e) => {
                eprintln!("herd-agent: warning: {e:#}; starting afresh");
                Progress::default()
            }
        };
        let token = enrol::token(
            args.enrol_token.as_deref(),
            args.enrol_token_file.as_deref(),
        )?;
        let mut agent = Agent {
            args: args.clone(),
            state,
            declared,
            token,
            identity,
            client: None,
            executor,
            prefix,
            outbox,
            progress,
            notified: HashSet::new(),
            plan_failed: false,
            trust: None,
            upstreams: None,
            push: None,
            mounts: None,
            fixed_download_dirs,
            protection: Protection::load(&paths.root),
            limits: protect::Limits {
                faults: args.self_protect_after,
                window_secs: args.self_protect_window,
            },
        };
        if !args.once && !args.download_volumes.is_empty() {
            match MountWatch::open() {
                Ok(watch) => agent.mounts = Some(watch),
                Err(e) => eprintln!(
                    "herd-agent: warning: {e:#}; volumes are looked at only when the agent starts"
                ),
            }
        }
        agent.find_download_dirs();
        if !args.no_push && !args.once {
            agent.push = Some(Push::start()?);
        }
        agent.progress.pid = Some(std::process::id());

        match agent.executor.recover() {
            Ok(Some(report)) => {
                agent.say(&format!(
                    "finished plan {} that was interrupted",
                    short(&report.plan_id)
                ));
                agent.report(report)?;
            }
            Ok(None) => {}
            Err(e) => eprintln!("herd-agent: warning: recovering an interrupted plan: {e}"),
        }
        agent.outbox.push(
            events::AGENT_STARTED,
            json!({ "version": VERSION, "pid": std::process::id(), "once": args.once }),
        )?;
        if let Some(n) = args.emit_test_events {
            let events = (0..n)
                .map(|i| (events::TEST_EVENT.to_owned(), json!({ "n": i })))
                .collect();
            let seqs = agent.outbox.push_all(events)?;
            agent.say(&format!(
                "queued {n} test events (seq {} to {})",
                seqs.start,
                seqs.end.saturating_sub(1)
            ));
        }
        agent.save_progress();
        Ok(agent)
    }

    pub(crate) fn state_root(&self) -> &Path {
        &self.state.paths.root
    }

    fn paths(&self) -> &StatePaths {
        &self.state.paths
    }

    /// The push connection, for the waker.
    pub(crate) fn push(&self) -> Option<&Push> {
        self.push.as_ref()
    }

    /// The watched mount table, for the waker.
    pub(crate) fn mounts(&self) -> Option<&MountWatch> {
        self.mounts.as_ref()
    }

    /// A volume came or went: the candidate download directories are looked for again. True
    /// when they changed and a plan waits (deferred, perhaps for want of room), so the caller
    /// checks in at once and the plan is tried where there is room now.
    pub(crate) fn volumes_changed(&mut self) -> bool {
        if let Some(mounts) = self.mounts.as_mut() {
            mounts.rearm();
        }
        let before = self.executor.download_dirs().to_vec();
        self.find_download_dirs();
        let changed = self.executor.download_dirs() != before.as_slice();
        if changed {
            self.say(&format!(
                "volumes changed; downloads go to the one with the most room of: {}",
                self.progress.downloads.clone().unwrap_or_default()
            ));
        }
        changed && self.progress.plan.is_some()
    }

    /// Sets the executor's candidate download directories from the fixed ones and the
    /// volumes mounted now, and says where they stand in `status.json`.
    fn find_download_dirs(&mut self) {
        let (dirs, problems) =
            volumes::candidates(&self.fixed_download_dirs, &self.args.download_volumes);
        for problem in problems {
            eprintln!("herd-agent: warning: {problem}");
        }
        self.progress.downloads = Some(volumes::describe(&dirs));
        self.executor.set_download_dirs(dirs);
        self.save_progress();
    }

    pub(crate) fn plan_failed(&self) -> bool {
        self.plan_failed
    }

    /// A line for the user, on stdout.
    pub(crate) fn say(&self, line: &str) {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "herd-agent: {}", printable(line));
        let _ = out.flush();
    }

    /// One cycle: see the module documentation.
    pub(crate) fn cycle(&mut self) -> Result<Next, CycleError> {
        match self.cycle_with_identity() {
            Err(CycleError::CertificateRefused(refused)) => {
                // A renewal the center committed but whose answer never arrived (a connection
                // cut, a crash before the new pair was saved) leaves this certificate as the
                // previous one, with which the center still renews.
                self.renew().map_err(|failure| match failure {
                    RenewFailure::Refused(_) => self.identity_refused(refused),
                    RenewFailure::Other(error) => error,
                })?;
                match self.cycle_with_identity() {
                    Err(CycleError::CertificateRefused(refused)) => {
                        Err(self.identity_refused(refused))
                    }
                    other => other,
                }
            }
            other => other,
        }
    }

    fn cycle_with_identity(&mut self) -> Result<Next, CycleError> {
        self.ensure_enrolled()?;
        self.keep_identity()?;
        // A just-activated product that keeps failing is undone before anything else, its
        // faults counted before the outbox sends them.
        self.protect_self();
        // What queued up while the center was away goes first, in the order it happened.
        self.flush()?;
        let mut follow_ups = 0;
        loop {
            let response = self.check_in()?;
            if follow_ups == 0 {
                self.receive_messages(&response);
            }
            self.refresh_herd_set();
            let acted = self.act(&response);
            let flushed = self.flush();
            self.save_progress();
            let acted = acted?;
            flushed?;
            // The verdicts on fault reports just sent, for the supervisor and the status.
            if let Err(err) = self.take_verdicts() {
                eprintln!("herd-agent: warning: {err:#}");
            }
            // The center's interval is a hint from a party the agent does not fully trust.
            let (after, clamped) = clock::checkin_interval(response.next_checkin_secs);
            if let Some(note) = clamped {
                eprintln!("herd-agent: warning: {note}");
            }
            let next = |until, soon| Next { after, until, soon };
            match acted {
                Acted::Changed if follow_ups < MAX_FOLLOW_UPS => follow_ups += 1,
                Acted::Changed | Acted::Nothing => return Ok(next(None, false)),
                Acted::WaitingWindow(at) => return Ok(next(Some(at), false)),
                Acted::RetrySoon => return Ok(next(None, true)),
            }
        }
    }

    /// After a successful `--once` cycle: no next check-in is scheduled.
    pub(crate) fn finish_once(&mut self) {
        self.progress.next_checkin = None;
        self.save_progress();
    }

    /// Records a failed cycle in `status.json`.
    pub(crate) fn note_failure(&mut self, error: &CycleError, retry_at: Option<SystemTime>) {
        self.progress.last_error = Some(format!("{:#}", error.error()));
        self.progress.last_error_at = Some(clock::now_rfc3339());
        self.progress.next_checkin = retry_at.map(clock::rfc3339);
        self.save_progress();
    }

    pub(crate) fn set_next_checkin(&mut self, at: SystemTime) {
        self.progress.next_checkin = Some(clock::rfc3339(at));
        self.save_progress();
    }

    /// `error`, saying how many events wait in the outbox when any do.
    pub(crate) fn with_outbox_note(&self, error: anyhow::Error) -> anyhow::Error {
        match self.outbox.stats() {
            Ok(stats) if stats.pending > 0 => anyhow!(
                "{error:#}; {} event(s) wait in the outbox {} and are sent once the center answers",
                stats.pending,
                self.outbox.dir().display()
            ),
            _ => error,
        }
    }

    /// The plan whose consent question is unanswered on this terminal, which the check-in
    /// names so the center can answer with what the user said by e-mail.
    fn consent_waiting(&self) -> Option<String> {
        match consent::load(self.paths()) {
            Ok(Some(ConsentFile {
                plan_id,
                decision: None,
                ..
            })) => Some(plan_id),
            _ => None,
        }
    }

    /// Records the user's answer given by e-mail, unless the question was answered on the
    /// device first: whichever answer comes first wins.
    fn take_remote_consent(&mut self, answer: &ConsentAnswer) -> Result<()> {
        let paths = self.paths().clone();
        let _lock = consent::lock(&paths)?;
        let Some(mut file) = consent::load(&paths)? else {
            return Ok(());
        };
        if file.plan_id != answer.plan_id || file.decision.is_some() {
            return Ok(());
        }
        let decision = match answer.decision {
            ConsentDecision::Accepted => Decision::Accepted,
            ConsentDecision::Declined => Decision::Declined,
        };
        file.decision = Some(decision);
        file.decided_at = Some(answer.decided_at.clone());
        file.by = Some(answer.by.clone());
        consent::save(&paths, &file)?;
        self.say(&format!(
            "the user {} by {} to {} (plan {})",
            answer.decision.as_str(),
            printable(&answer.by),
            consent::describe_change(&file.plan),
            short(&file.plan_id)
        ));
        Ok(())
    }

    /// Whether the user answered the consent question the agent is waiting on.
    pub(crate) fn consent_answer_waiting(&self) -> bool {
        let Some(plan) = &self.progress.plan else {
            return false;
        };
        if plan.waiting != Some(Waiting::Consent) {
            return false;
        }
        matches!(
            consent::load(self.paths()),
            Ok(Some(ConsentFile { plan_id, decision: Some(_), .. })) if plan_id == plan.plan_id
        )
    }

    fn save_progress(&mut self) {
        self.progress.push = self.push.as_ref().map(Push::status);
        if let Err(e) = state::save_json(&self.paths().status(), &self.progress) {
            eprintln!("herd-agent: warning: {e:#}");
        }
    }

    // -----------------------------------------------------------------------------------------
    // Enrolment and the client.

    fn ensure_enrolled(&mut self) -> Result<(), CycleError> {
        if self.client.is_some() {
            return Ok(());
        }
        let paths = self.paths().clone();
        let mut identity = match self.identity.clone() {
            Some(identity) => identity,
            None => self.enrol()?,
        };
        identity.prefix = self.prefix.clone();
        if let Some(server) = &self.args.server
            && server.trim().trim_end_matches('/') != identity.server
        {
            // The terminal now talks to another server of the same center (a site server).
            identity.server = server.trim().trim_end_matches('/').to_owned();
        }
        let hardware = enrol::hardware(&self.declared, Some(&identity.hardware));
        let tz = enrol::tz(&self.declared, identity.tz.as_deref());
        if hardware != identity.hardware || tz != identity.tz {
            identity.hardware = hardware;
            identity.tz = tz;
        }
        if self.identity.as_ref() != Some(&identity) {
            state::save_json(&paths.agent(), &identity).map_err(CycleError::Fatal)?;
        }
        let upstreams = self.upstreams.get_or_insert_with(|| {
            let list = if !self.args.upstreams.is_empty() {
                self.args.upstreams.clone()
            } else if !identity.upstreams.is_empty() {
                identity.upstreams.clone()
            } else {
                vec![identity.server.clone()]
            };
            Upstreams::new(
                list,
                Duration::from_secs(self.args.failover_after.max(1)),
                Duration::from_secs(self.args.probe_preferred_every.max(1)),
            )
        });
        let server = upstreams.current().to_owned();
        self.progress.upstream = Some(server.clone());
        self.progress.upstreams = upstreams.list().to_vec();
        let client = self.client_for(&server)?;
        if let Some(push) = &self.push {
            push.follow(&client);
        }
        self.identity = Some(identity);
        self.client = Some(client);
        Ok(())
    }

    /// A client for `server` with this terminal's identity.
    fn client_for(&self, server: &str) -> Result<Client, CycleError> {
        let paths = self.paths();
        let ca_pem = std::fs::read_to_string(paths.ca())
            .with_context(|| format!("cannot read the center's CA {}", paths.ca().display()))
            .map_err(CycleError::Fatal)?;
        let key_pair = enrol::load_identity(paths).map_err(CycleError::Fatal)?;
        Client::new(server, &ca_pem, Some(&key_pair)).map_err(|e| CycleError::Fatal(anyhow!("{e}")))
    }

    // -----------------------------------------------------------------------------------------
    // Failover between upstreams.

    /// After a cycle failed with `error` at `now`: counts a silence of the current upstream and,
    /// once it has lasted `--failover-after`, moves to the next one (true: check in with it at
    /// once). An upstream that answered, even with a refusal, is not left.
    pub(crate) fn fail_over_if_silent(&mut self, error: &CycleError, now: SystemTime) -> bool {
        let Some(upstreams) = self.upstreams.as_mut() else {
            return false;
        };
        if !matches!(error, CycleError::Silent(_)) {
            upstreams.answered();
            return false;
        }
        let Some(next) = upstreams.silent(now) else {
            return false;
        };
        let from = upstreams.current().to_owned();
        upstreams.switch_to(next, now);
        let to = upstreams.current().to_owned();
        self.say(&format!(
            "{from} has not answered for {} s; checking in with {to}",
            self.args.failover_after
        ));
        self.use_current_upstream();
        true
    }

    /// When the current upstream will have been silent long enough to leave it.
    pub(crate) fn failover_at(&self) -> Option<SystemTime> {
        self.upstreams.as_ref().and_then(Upstreams::failover_at)
    }

    /// After a cycle that reached its upstream: while not on the preferred one, probes it when
    /// due and goes back when it answers (true: check in with it at once).
    pub(crate) fn return_to_preferred_if_back(&mut self, now: SystemTime) -> bool {
        let Some(upstreams) = self.upstreams.as_mut() else {
            return false;
        };
        upstreams.answered();
        if upstreams.on_preferred() || !upstreams.probe_due(now) {
            return false;
        }
        let preferred = upstreams.preferred().to_owned();
        let answered = self
            .client_for(&preferred)
            .ok()
            .is_some_and(|client| client.health().is_ok());
        let upstreams = self.upstreams.as_mut().expect("checked above");
        if !answered {
            upstreams.probed(now);
            return false;
        }
        let from = upstreams.current().to_owned();
        upstreams.switch_to(0, now);
        self.say(&format!(
            "{preferred} answers again; checking in with it instead of {from}"
        ));
        self.use_current_upstream();
        true
    }

    /// When to probe the preferred upstream next (while on another).
    pub(crate) fn next_probe(&self) -> Option<SystemTime> {
        self.upstreams.as_ref().and_then(Upstreams::next_probe)
    }

    /// Everything that talks upstream — check-ins, the outbox, trust refreshes, downloads, the
    /// push connection — follows the new current upstream from the next request.
    fn use_current_upstream(&mut self) {
        self.client = None;
        self.trust = None;
        // Another upstream may not have them (a site that has not relayed them yet).
        self.progress.interfaces_reported = None;
        self.save_progress();
    }

    fn enrol(&mut self) -> Result<AgentFile, CycleError> {
        let Some(token) = self.token.clone() else {
            return Err(CycleError::Fatal(anyhow!(
                "this agent is not enrolled yet: pass --enrol-token TOKEN (or --enrol-token-file \
                 FILE) with a token from your operator, with --server and --ca"
            )));
        };
        let Some(server) = self.args.server.clone() else {
            return Err(CycleError::Fatal(anyhow!(
                "--server URL is needed to enrol (the center's address, like https://center:8443)"
            )));
        };
        let Some(ca) = self.args.ca.clone() else {
            return Err(CycleError::Fatal(anyhow!(
                "--ca FILE is needed to enrol: the center's CA certificate (its <data-dir>/ca.pem)"
            )));
        };
        let ca_pem = std::fs::read_to_string(&ca)
            .with_context(|| format!("cannot read the CA certificate --ca {}", ca.display()))
            .map_err(CycleError::Fatal)?;
        let identity = enrol::enrol(
            self.paths(),
            &server,
            &ca_pem,
            &token,
            &self.declared,
            &self.prefix,
        )
        .map_err(|failure| {
            let error = failure.error.context("enrolment failed");
            if failure.retryable {
                CycleError::Unreachable(error)
            } else {
                CycleError::Fatal(error)
            }
        })?;
        self.say(&format!(
            "enrolled as terminal {} (group {}) with {}",
            identity.terminal, identity.group, identity.server
        ));
        Ok(identity)
    }

    /// Operators' messages since the last cycle, shown to the user; a failure is only noted
    /// (messages wait on the center for the next cycle).
    /// The operators' new messages: those the check-in answer carried, or, from an upstream
    /// whose answers do not carry them (`messages_through` absent), read apart.
    fn receive_messages(&mut self, response: &CheckinResponse) {
        let received = match response.messages_through {
            Some(through) => super::messages::keep(&self.state.paths, &response.messages, through),
            None => super::messages::receive(self.client(), &self.state.paths),
        };
        match received {
            Ok(new) => super::messages::notify(&new),
            Err(err) => eprintln!("herd-agent: warning: cannot read messages: {err:#}"),
        }
    }

    fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("ensure_enrolled runs first in every cycle")
    }

    fn server(&self) -> String {
        self.client().server().to_owned()
    }

    // -----------------------------------------------------------------------------------------
    // Talking to the center.

    /// Sends everything in the outbox.
    fn flush(&mut self) -> Result<(), CycleError> {
        let client = self.client().clone();
        let server = self.server();
        // Samples the center already has go as reports without their bytes.
        let flushed = self.outbox.flush(
            &mut |batch| {
                let mut held = |sha256: &str| {
                    client
                        .sample_held(sha256)
                        .is_ok_and(|presence| presence.held)
                };
                match crate::samples::without_held_bytes(batch, &mut held) {
                    Some(lighter) => client.send_events(&lighter),
                    None => client.send_events(batch),
                }
            },
            self.args.flush_batch,
        );
        match flushed {
            Ok(flushed) => {
                for (seq, why) in &flushed.refused {
                    eprintln!(
                        "herd-agent: warning: the center refused event {seq}; it was set aside \
                         in {}/refused: {why}",
                        self.outbox.dir().display()
                    );
                }
                for (name, why) in &flushed.corrupt {
                    eprintln!(
                        "herd-agent: warning: outbox file {name} was unreadable and set aside \
                         in {}/corrupt: {why}",
                        self.outbox.dir().display()
                    );
                }
                Ok(())
            }
            Err(FlushError::Send(err)) if err.is_retryable() => {
                Err(retry_later(err, "accept events from", &server))
            }
            Err(FlushError::Send(err)) if err.code() == Some(codes::CERT_REVOKED) => Err(
                CycleError::CertificateRefused(enrol::explain(err, "accept events from", &server)),
            ),
            Err(FlushError::Send(err)) => Err(CycleError::Failed(enrol::explain(
                err,
                "accept events from",
                &server,
            ))),
            Err(e) => Err(CycleError::Failed(e.into())),
        }
    }

    fn check_in(&mut self) -> Result<CheckinResponse, CycleError> {
        let identity = self
            .identity
            .as_ref()
            .expect("ensure_enrolled runs first in every cycle");
        // The network map: sent only when the interfaces changed since they were reported.
        let interfaces = match interfaces::current(self.args.interfaces_file.as_deref()) {
            Ok(list) => {
                let digest = interfaces::digest(&list);
                (self.progress.interfaces_reported.as_deref() != Some(digest.as_str()))
                    .then_some((list, digest))
            }
            Err(e) => {
                eprintln!("herd-agent: warning: {e:#}; the network map is not reported");
                None
            }
        };
        let request = CheckinRequest {
            terminal: Some(identity.terminal.clone()),
            installed: self.executor.installed(),
            hardware: Some(identity.hardware.clone()),
            tz: identity.tz.clone(),
            agent_version: Some(VERSION.to_owned()),
            interfaces: interfaces.as_ref().map(|(list, _)| list.clone()),
            tuf_timestamp_version: self.timestamp_to_offer(),
            consent_waiting: self.consent_waiting(),
            messages_after: super::messages::load(self.paths())
                .map(|file| file.last_id)
                .ok(),
            tuf_held: self.metadata_to_offer(),
        };
        let server = self.server();
        match self.client().checkin(&request) {
            Ok(mut response) => {
                // The refresh that follows uses the answer's timestamp instead of fetching one.
                if request.tuf_timestamp_version.is_some()
                    && let Some(trust) = self.trust.as_mut()
                {
                    trust.offer_timestamp(response.tuf_timestamp.take().map(String::into_bytes));
                    trust.offer_metadata(response.tuf_metadata.take());
                }
                if let Some((_, digest)) = interfaces {
                    self.progress.interfaces_reported = Some(digest);
                }
                self.progress.last_checkin = Some(clock::now_rfc3339());
                self.progress.last_error = None;
                self.progress.last_error_at = None;
                if let Some(answer) = &response.consent {
                    self.take_remote_consent(answer).map_err(|e| {
                        CycleError::Failed(e.context("recording the e-mailed consent"))
                    })?;
                }
                Ok(response)
            }
            Err(err) if err.is_retryable() => Err(retry_later(err, "check in", &server)),
            Err(err) if err.code() == Some(codes::CERT_REVOKED) => Err(
                CycleError::CertificateRefused(enrol::explain(err, "check in", &server)),
            ),
            Err(err) => Err(CycleError::Failed(enrol::explain(err, "check in", &server))),
        }
    }

    /// The version of the trusted `timestamp.json`, for the check-in to name, when the
    /// metadata comes from the check-in's own upstream (with `--mirror` it does not: the
    /// mirror may lag behind the upstream's timestamp).
    fn timestamp_to_offer(&self) -> Option<u64> {
        if self.args.mirror.is_some() {
            return None;
        }
        self.trust.as_ref()?.stored_timestamp_version()
    }

    /// The metadata versions the check-in names so that its answer carries the newer
    /// documents (`None` where the timestamp is not asked for either: a separate mirror).
    fn metadata_to_offer(&self) -> Option<std::collections::BTreeMap<String, u64>> {
        if self.args.mirror.is_some() {
            return None;
        }
        let held = self.trust.as_ref()?.held_versions();
        (!held.is_empty()).then_some(held)
    }

    /// The center no longer accepts this terminal's certificate: retrying cannot help, so
    /// the agent stops, saying how to recover (in its log and, through `status.json`, in
    /// `herd-agent status`).
    fn identity_refused(&self, error: anyhow::Error) -> CycleError {
        let terminal = self
            .identity
            .as_ref()
            .map(|i| i.terminal.as_str())
            .unwrap_or("ID");
        CycleError::Fatal(anyhow!(
            "{error:#}; {}",
            identity::recovery(terminal, &self.paths().root)
        ))
    }

    /// Stops with the way to recover when the certificate has expired, and renews it when
    /// less than a third of its lifetime (or 30 days) remains. A renewal that fails for a
    /// passing reason is tried again at the next cycle; the certificate still works.
    fn keep_identity(&mut self) -> Result<(), CycleError> {
        let paths = self.paths().clone();
        let terminal = self.terminal_id();
        let now = SystemTime::now();
        identity::check_not_expired(&paths, &terminal, now).map_err(CycleError::Fatal)?;
        let validity = identity::stored_validity(&paths).map_err(CycleError::Fatal)?;
        let forced = self
            .args
            .renew_when_left
            .is_some_and(|secs| validity.1 < clock::later(now, Duration::from_secs(secs)));
        if !forced && !identity::renewal_due(validity, now) {
            return Ok(());
        }
        match self.renew() {
            Ok(()) => Ok(()),
            Err(RenewFailure::Refused(error)) => Err(CycleError::CertificateRefused(error)),
            Err(RenewFailure::Other(error)) => {
                eprintln!(
                    "herd-agent: warning: {:#}; the certificate expires at {}, renewal is tried \
                     again at the next check-in",
                    error.error(),
                    clock::rfc3339(validity.1)
                );
                Ok(())
            }
        }
    }

    fn terminal_id(&self) -> String {
        self.identity
            .as_ref()
            .expect("ensure_enrolled runs first in every cycle")
            .terminal
            .clone()
    }

    /// Renews the certificate: a fresh key, a CSR, and the new pair saved as one before it is
    /// used, from the next connection on.
    fn renew(&mut self) -> Result<(), RenewFailure> {
        let paths = self.paths().clone();
        let terminal = self.terminal_id();
        let (_, expiring) = identity::stored_validity(&paths).map_err(CycleError::Fatal)?;
        let (key_pem, csr_pem) = herd_tls::new_key_and_csr(&terminal)
            .with_context(|| format!("cannot make a key for terminal {terminal:?}"))
            .map_err(CycleError::Failed)?;
        let server = self.server();
        let renewed = match self
            .client()
            .renew_certificate(&CertificateRenewal { csr_pem })
        {
            Ok(renewed) => renewed,
            Err(err) if err.code() == Some(codes::CERT_REVOKED) => {
                return Err(RenewFailure::Refused(enrol::explain(
                    err,
                    "renew the certificate of",
                    &server,
                )));
            }
            Err(err) if err.is_retryable() => {
                return Err(CycleError::Unreachable(enrol::explain(
                    err,
                    "renew the certificate of",
                    &server,
                ))
                .into());
            }
            Err(err) => {
                return Err(CycleError::Failed(enrol::explain(
                    err,
                    "renew the certificate of",
                    &server,
                ))
                .into());
            }
        };
        identity::save_pair(
            &paths,
            &herd_tls::KeyPairPem {
                cert_pem: renewed.certificate_pem,
                key_pem,
            },
            &renewed.ca_pem,
        )
        .map_err(CycleError::Fatal)?;
        // The next connection presents the new certificate.
        self.client = None;
        self.trust = None;
        self.ensure_enrolled()?;
        self.progress.certificate_renewed_at = Some(clock::now_rfc3339());
        self.save_progress();
        self.say(&format!(
            "renewed this terminal's certificate (it was to expire at {}); the new one expires \
             at {}",
            clock::rfc3339(expiring),
            printable(&renewed.expires_at)
        ));
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Acting on plans.

    fn act(&mut self, response: &CheckinResponse) -> Result<Acted> {
        let plan = &response.plan;
        let plan_id = response.plan_id.as_str();
        let action = plan.action.as_str();
        if self.progress.plan.as_ref().map(|p| p.plan_id.as_str()) != Some(plan_id) {
            self.progress.plan = Some(PlanState {
                plan_id: plan_id.to_owned(),
                action: action.to_owned(),
                reason: plan.reason.clone(),
                not_before: plan.not_before.clone(),
                received_at: clock::now_rfc3339(),
                waiting: None,
                deferral_reported: false,
                decline_reported: false,
                accept_reported: false,
            });
            self.outbox.push(
                events::PLAN_RECEIVED,
                json!({
                    "plan_id": plan_id,
                    "action": action,
                    "reason": plan.reason,
                    "consent_required": plan.consent_required,
                    "not_before": plan.not_before,
                }),
            )?;
            self.say(&format!(
                "plan {} {action}: {}",
                short(plan_id),
                plan.reason
            ));
        }
        if !(plan.consent_required && matches!(plan.action, Action::Update | Action::Switch)) {
            self.forget_stale_consent(plan_id)?;
        }
        match plan.action {
            Action::None => Ok(Acted::Nothing),
            Action::Exposed => {
                self.notify(plan_id, &exposed_notice(plan));
                Ok(Acted::Nothing)
            }
            Action::Update | Action::Switch => match self.refuse_again(plan_id, plan)? {
                Some(acted) => Ok(acted),
                None => self.carry_out(plan_id, plan),
            },
        }
    }

    fn carry_out(&mut self, plan_id: &str, plan: &PlanDoc) -> Result<Acted> {
        let change = consent::describe_change(plan);
        if plan.consent_required {
            match self.consent_for(plan_id, plan)? {
                Some((Decision::Accepted, by)) => {
                    let state = self.plan_state();
                    if !state.accept_reported {
                        state.accept_reported = true;
                        self.outbox.push(
                            events::CONSENT_ACCEPTED,
                            json!({ "plan_id": plan_id, "change": change, "by": by }),
                        )?;
                    }
                }
                Some((Decision::Declined, by)) => {
                    let state = self.plan_state();
                    state.waiting = None;
                    if !state.decline_reported {
                        state.decline_reported = true;
                        self.outbox.push(
                            events::CONSENT_DECLINED,
                            json!({ "plan_id": plan_id, "change": change, "by": by }),
                        )?;
                        self.report(self.unexecuted(
                            plan_id,
                            ReportOutcome::Declined,
                            format!("the user declined to {change}"),
                        ))?;
                    }
                    return Ok(Acted::Nothing);
                }
                None => {
                    let dir = self.state_root().display().to_string();
                    self.notify(
                        plan_id,
                        &format!(
                            "NOTICE: your operator wants to {change} on this terminal ({}). \
                             Run `herd-agent consent accept --state-dir {dir}` to allow it or \
                             `herd-agent consent decline --state-dir {dir}` to refuse.",
                            plan.reason
                        ),
                    );
                    self.defer(
                        plan_id,
                        Waiting::Consent,
                        format!("waiting for the user's consent to {change}"),
                    )?;
                    return Ok(Acted::Nothing);
                }
            }
        }
        if let Some(not_before) = &plan.not_before {
            let opens = clock::parse_rfc3339(not_before)
                .map_err(|e| anyhow!("the plan's not_before: {e}"))?;
            if opens > SystemTime::now() {
                self.defer(
                    plan_id,
                    Waiting::Window,
                    format!("waiting for the maintenance window, which opens at {not_before}"),
                )?;
                return Ok(Acted::WaitingWindow(opens));
            }
        }
        self.plan_state().waiting = None;
        self.execute(plan_id, plan, &change)
    }

    fn execute(&mut self, plan_id: &str, plan: &PlanDoc, change: &str) -> Result<Acted> {
        if let Some(last) = &self.progress.last_report
            && last.plan_id == plan_id
            && last.outcome == ReportOutcome::Succeeded
        {
            // Carried out and reported already; the center will plan anew from the inventory.
            return Ok(Acted::Nothing);
        }
        self.say(&format!("carrying out plan {}: {change}", short(plan_id)));
        // Nothing is downloaded before the signed metadata vouches for every step.
        let verified = if plan.steps.is_empty() {
            None
        } else {
            match self.verify(plan) {
                Ok(verified) => Some(verified),
                Err(refusal) => return self.refused(plan_id, &refusal),
            }
        };
        // Only the verified plan, with the scripts the agent generated, is carried out.
        let plan = verified.as_ref().map_or(plan, |v| &v.plan);
        let client = self.client().clone();
        let center = CenterFetcher { client: &client };
        // Definition deltas from the content this terminal keeps, where the verified metadata
        // lists one: looked up before anything is downloaded.
        let content_dir = self.executor.content_dir();
        let offers = match (verified.as_ref(), self.trust.as_mut()) {
            (Some(verified), Some(trust)) => {
                crate::trust::find_offers(trust, verified, &content_dir)
            }
            _ => Offers::new(),
        };
        // Packages come from the mirror when there is one, by their signed target names.
        let from_mirror = self.args.mirror.is_some();
        let mirror = mirror_fetcher(from_mirror, verified.as_ref(), self.trust.as_ref());
        let inner = mirror.as_ref().map_or(&center as &dyn Fetcher, |m| m);
        let deltas = delta_fetcher(inner, self.trust.as_ref(), &offers, &content_dir);
        let kept = self.keep_previous(plan);
        let first = self
            .executor
            .execute(plan_id, plan, deltas.as_ref().map_or(inner, |d| d));
        let report = match first {
            Err(ExecError::RecoveryPending { .. }) => {
                if let Some(recovered) = self.executor.recover()? {
                    self.report(recovered)?;
                }
                let mirror = mirror_fetcher(from_mirror, verified.as_ref(), self.trust.as_ref());
                let inner = mirror.as_ref().map_or(&center as &dyn Fetcher, |m| m);
                let deltas = delta_fetcher(inner, self.trust.as_ref(), &offers, &content_dir);
                self.executor
                    .execute(plan_id, plan, deltas.as_ref().map_or(inner, |d| d))
            }
            other => other,
        };
        let report = match report {
            Ok(report) => {
                self.begin_probation(plan, report.outcome, kept);
                report
            }
            Err(ExecError::Busy { path }) => {
                eprintln!(
                    "herd-agent: warning: another herd-agent process is carrying out a plan \
                     (it holds {}); trying again later",
                    path.display()
                );
                self.begin_probation(plan, ReportOutcome::Deferred, kept);
                return Ok(Acted::RetrySoon);
            }
            Err(e) => {
                self.begin_probation(plan, ReportOutcome::Deferred, kept);
                return Err(e.into());
            }
        };
        // Which way each package came, in the log as in the report: a definitions delta (and
        // the bytes it saved), or the full package and why not a delta.
        for step in report.steps.iter().filter(|s| s.kind == "fetch") {
            if let Some(detail) = step.detail.as_deref().filter(|d| d.contains("delta")) {
                self.say(&format!("step {} (fetch): {detail}", step.step));
            }
        }
        let outcome = report.outcome;
        // Bytes that are not the signed package are an attack on the way (a tampered mirror
        // or network), reported as such besides the plan's report.
        if let Some(detail) = self.executor.take_tampered() {
            let refusal = Refusal::new(herd_proto::api::trust_refusals::MISMATCH, None, detail);
            let event = serde_json::to_value(refusal.event(Some(plan_id)))
                .context("cannot encode a trust refusal")?;
            self.outbox.push(events::TRUST_REFUSED, event)?;
            eprintln!(
                "herd-agent: warning: refused a package of plan {}: {}",
                short(plan_id),
                printable(&refusal.to_string())
            );
            self.progress.trust.last_refusal = Some(RefusalSummary::now(&refusal, Some(plan_id)));
        }
        self.report(report)?;
        Ok(match outcome {
            ReportOutcome::Succeeded => Acted::Changed,
            ReportOutcome::RolledBack => {
                self.plan_failed = true;
                Acted::Nothing
            }
            ReportOutcome::Deferred => Acted::RetrySoon,
            ReportOutcome::Declined => Acted::Nothing,
        })
    }

    // -----------------------------------------------------------------------------------------
    // Self-protection (`protect`).

    /// Before a plan that installs a release: keeps the active product, so that it can be put
    /// back without the center if the new one keeps failing. Returns `current`'s link text.
    fn keep_previous(&self, plan: &PlanDoc) -> Option<String> {
        if !self.limits.enabled() || plan.to.is_none() || plan.steps.is_empty() {
            return None;
        }
        match protect::keep_previous(&self.prefix) {
            Ok(kept) => kept,
            Err(e) => {
                eprintln!(
                    "herd-agent: warning: {e:#}; the product this plan replaces cannot be \
                     restored without the center"
                );
                let _ = protect::discard_kept(&self.prefix);
                None
            }
        }
    }

    /// After a plan: a release now active puts itself on probation (when the product before
    /// it was kept); otherwise the kept copy goes.
    fn begin_probation(&mut self, plan: &PlanDoc, outcome: ReportOutcome, kept: Option<String>) {
        let Some(previous) = kept else {
            return;
        };
        let installed = self.executor.installed();
        let target = herd_package::current_target(&self.prefix).ok().flatten();
        let activated = match (&plan.to, &installed, &target) {
            (Some(to), Some(now), Some(target))
                if outcome == ReportOutcome::Succeeded
                    && to.product == now.product
                    && to.version == now.version
                    && target.as_os_str() != previous.as_str() =>
            {
                Some(target.display().to_string())
            }
            _ => None,
        };
        let outbox_after = self.outbox.stats().map(|s| s.next_seq.saturating_sub(1));
        match (activated, outbox_after, &plan.to) {
            (Some(target), Ok(outbox_after), Some(to)) => {
                let vendor = herd_package::installed_manifest(&self.prefix.join(&target))
                    .ok()
                    .map(|manifest| manifest.vendor);
                self.protection.probation = Some(protect::Probation {
                    product: to.product.clone(),
                    version: to.version.clone(),
                    vendor,
                    target,
                    previous,
                    activated_at: clock::unix_seconds(SystemTime::now()),
                    outbox_after,
                    faults: Vec::new(),
                    seen: Vec::new(),
                });
            }
            _ => {
                if let Err(e) = protect::discard_kept(&self.prefix) {
                    eprintln!("herd-agent: warning: {e:#}");
                }
                return;
            }
        }
        if let Err(e) = self.protection.save(self.state_root()) {
            eprintln!("herd-agent: warning: {e:#}");
        }
    }

    /// Counts the faults of the product on probation and undoes it when they reach the limit.
    fn protect_self(&mut self) {
        if let Err(e) = self.try_protect_self() {
            eprintln!("herd-agent: warning: self-protection: {e:#}");
        }
    }

    fn try_protect_self(&mut self) -> Result<()> {
        let Some(after) = self.protection.probation.as_ref().map(|p| p.outbox_after) else {
            return Ok(());
        };
        let pending = self.outbox.pending_of_kind(events::FAULT_REPORT, after)?;
        let now = clock::unix_seconds(SystemTime::now());
        match self.protection.look(&pending, self.limits, now) {
            Look::Nothing => {}
            Look::Trusted { product, version } => {
                protect::discard_kept(&self.prefix)?;
                self.say(&format!(
                    "{product} {version} ran {} s without failing {} times: trusted",
                    self.limits.window_secs, self.limits.faults
                ));
            }
            Look::Failing => {
                let probation = self
                    .protection
                    .probation
                    .clone()
                    .expect("failing means on probation");
                match protect::restore(&self.prefix, self.state_root(), &probation)? {
                    Restore::Busy => {}
                    Restore::Stale(why) => {
                        eprintln!(
                            "herd-agent: warning: {} {} keeps failing, but it cannot be undone \
                             here: {why}",
                            probation.product, probation.version
                        );
                        self.protection.probation = None;
                        protect::discard_kept(&self.prefix)?;
                    }
                    Restore::Done => {
                        let restored = self.executor.installed();
                        let (product, version) = restored
                            .as_ref()
                            .map_or(("?", "?"), |r| (r.product.as_str(), r.version.as_str()));
                        let event = protect::event(&probation, (product, version), self.limits);
                        self.say(&event.reason);
                        self.outbox.push(
                            events::SELF_PROTECTED,
                            serde_json::to_value(&event)
                                .context("cannot encode a self-protection event")?,
                        )?;
                        self.protection.probation = None;
                        self.protection.refused = Some(protect::Refused {
                            product: probation.product,
                            version: probation.version,
                            at: clock::now_rfc3339(),
                            reason: event.reason,
                            declined_plan: None,
                        });
                    }
                }
            }
        }
        self.protection.save(self.state_root())
    }

    /// A plan that installs the release this agent undid is declined (reported once per
    /// plan); a plan offering another release ends the refusal.
    fn refuse_again(&mut self, plan_id: &str, plan: &PlanDoc) -> Result<Option<Acted>> {
        let Some(refused) = self.protection.refused.as_ref() else {
            return Ok(None);
        };
        if !refused.is(plan.to.as_ref()) {
            self.protection.refused = None;
            self.protection.save(self.state_root())?;
            return Ok(None);
        }
        if refused.declined_plan.as_deref() != Some(plan_id) {
            let message = format!(
                "not installing {} {} again: {}",
                refused.product, refused.version, refused.reason
            );
            self.say(&message);
            self.report(self.unexecuted(plan_id, ReportOutcome::Declined, message))?;
            if let Some(refused) = self.protection.refused.as_mut() {
                refused.declined_plan = Some(plan_id.to_owned());
            }
            self.protection.save(self.state_root())?;
        }
        Ok(Some(Acted::Nothing))
    }

    /// Reads the verdicts on the fault reports just sent (when some are awaited), fetches the
    /// signed packages of the replacements they name, and saves both for the supervisor.
    fn take_verdicts(&mut self) -> Result<()> {
        use crate::supervise::verdicts;
        let faults = verdicts::FaultDirs::new(self.state_root());
        let Some(read) = verdicts::read(self.client(), &faults)? else {
            return Ok(());
        };
        let fetched = verdicts::fetch_programs(&faults, &read, &mut |alternative, incoming| {
            self.fetch_program(alternative, incoming)
        })?;
        verdicts::save(&faults, &read, &fetched)?;
        Ok(())
    }

    /// A replacement program's package: verified as the signed target its verdict names, then
    /// downloaded into `incoming` under its signed SHA-256. A refusal is reported as any other
    /// (`trust.refused`, the status's last refusal) and said to the supervisor.
    fn fetch_program(
        &mut self,
        alternative: &herd_proto::fault::Alternative,
        incoming: &std::path::Path,
    ) -> std::result::Result<crate::trust::SignedProgram, String> {
        let now = herd_core::Timestamp::from_unix_seconds(clock::unix_seconds(SystemTime::now()));
        let platform = self.platform();
        let result = (|| {
            self.ensure_trust(now)?;
            let trust = self.trust.as_mut().expect("made just above");
            trust.refresh(now)?;
            let signed = crate::trust::verify_program(trust, alternative, &platform)?;
            let dest = incoming.join(&signed.sha256);
            if !dest.exists() {
                crate::trust::download_program(trust.upstream(), &signed, &dest)?;
            }
            Ok::<_, Refusal>(signed)
        })();
        result.map_err(|refusal| {
            if let Ok(event) = serde_json::to_value(refusal.event(None))
                && let Err(err) = self.outbox.push(events::TRUST_REFUSED, event)
            {
                eprintln!("herd-agent: warning: cannot queue the refusal: {err:#}");
            }
            self.progress.trust.last_refusal = Some(RefusalSummary::now(&refusal, None));
            let said = format!(
                "refused {} {} as a replacement: {}",
                alternative.program,
                alternative.version,
                printable(&refusal.to_string())
            );
            eprintln!("herd-agent: warning: {said}");
            said
        })
    }

    // -----------------------------------------------------------------------------------------
    // Signed distribution.

    /// The platform the terminal enrolled with (what signed targets must be for).
    fn platform(&self) -> String {
        self.identity
            .as_ref()
            .expect("ensure_enrolled runs first in every cycle")
            .hardware
            .platform
            .clone()
    }

    /// Refreshes the signed metadata from the upstream and checks the plan against it.
    fn verify(&mut self, plan: &PlanDoc) -> Result<VerifiedPlan, Refusal> {
        let now = herd_core::Timestamp::from_unix_seconds(clock::unix_seconds(SystemTime::now()));
        let platform = self.platform();
        let installed = self.executor.installed();
        self.ensure_trust(now)?;
        let trust = self.trust.as_mut().expect("made just above");
        let refreshed = trust.refresh(now)?;
        self.progress.trust.last_refresh = Some(RefreshSummary {
            at: clock::now_rfc3339(),
            upstream: trust.upstream().base().to_owned(),
            bytes: refreshed.bytes,
            requests: refreshed.requests,
            root_version: refreshed.root_version,
            timestamp_version: refreshed.timestamp_version,
            snapshot_version: refreshed.snapshot_version,
        });
        crate::trust::verify_plan(
            trust,
            plan,
            &Ours {
                platform: &platform,
                installed: installed.as_ref(),
            },
        )
    }

    /// The trust client over the upstream (`--mirror`, else the center). An agent enrolled
    /// before signed distribution has no root yet: it takes the center's `root.json` over the
    /// pinned mutual-TLS connection, once (trust on first use, said in the log).
    fn ensure_trust(&mut self, now: herd_core::Timestamp) -> Result<(), Refusal> {
        use herd_proto::api::trust_refusals as kinds;
        if self.trust.is_some() {
            return Ok(());
        }
        let store = TrustStore::new(&self.paths().root);
        let store_error = |e: crate::trust::StoreError| {
            Refusal::new(kinds::INVALID, Some("root"), format!("{e}"))
        };
        if !store.has_root().map_err(store_error)? {
            let name = "root.json";
            let bytes = self
                .client()
                .repository()
                .get(
                    &format!("{}{name}", herd_proto::distribution::METADATA_PATH),
                    herd_client::ReadLimits::metadata(herd_tuf::client::MAX_ROOT_BYTES),
                )
                .map_err(|e| Refusal::of_read(&e, name))?;
            let set = herd_tuf::TrustedSet::new(&bytes, now).map_err(|e| Refusal::of_trust(&e))?;
            store.save("root", &bytes).map_err(store_error)?;
            self.say(&format!(
                "trusting the center's TUF root version {} on first use: this terminal enrolled \
                 before signed distribution, and took it over its pinned connection to {}",
                set.root_version(),
                self.server()
            ));
        }
        let upstream = match &self.args.mirror {
            Some(url) => herd_client::Repository::mirror(url)
                .map_err(|e| Refusal::new(kinds::UNAVAILABLE, None, format!("--mirror: {e}")))?,
            None => self.client().repository(),
        };
        self.trust = Some(TrustClient::new(store, upstream));
        Ok(())
    }

    /// A plan the signed metadata does not vouch for: reported (`trust.refused` and the
    /// plan's report), shown by `status`, and nothing changed. An upstream that is away or
    /// slow defers the plan (tried again soon); anything else fails it.
    fn refused(&mut self, plan_id: &str, refusal: &Refusal) -> Result<Acted> {
        // The same refusal of the same plan at every retry is said once upstream: a mirror
        // withholding for days must not fill the outbox.
        let repeated = self
            .progress
            .trust
            .last_refusal
            .as_ref()
            .is_some_and(|last| {
                last.plan_id.as_deref() == Some(plan_id)
                    && last.kind == refusal.kind
                    && last.detail == refusal.detail
            });
        if !repeated {
            let event = serde_json::to_value(refusal.event(Some(plan_id)))
                .context("cannot encode a trust refusal")?;
            self.outbox.push(events::TRUST_REFUSED, event)?;
        }
        self.progress.trust.last_refusal = Some(RefusalSummary::now(refusal, Some(plan_id)));
        eprintln!(
            "herd-agent: warning: refused plan {}: {}",
            short(plan_id),
            printable(&refusal.to_string())
        );
        let transient = refusal.is_transient();
        let (outcome, after) = if transient {
            (ReportOutcome::Deferred, "it is tried again later")
        } else {
            (
                ReportOutcome::RolledBack,
                "nothing was downloaded or changed",
            )
        };
        let message = format!(
            "the signed metadata does not vouch for this plan ({}): {}; {after}",
            refusal.kind, refusal.detail
        );
        if !repeated {
            self.report(self.unexecuted(plan_id, outcome, message))?;
        }
        Ok(if transient {
            Acted::RetrySoon
        } else {
            self.plan_failed = true;
            Acted::Nothing
        })
    }

    /// The user's answer for this plan, asking (writing `consent.json`, queuing
    /// `consent.requested`) when the question is new.
    fn consent_for(
        &mut self,
        plan_id: &str,
        plan: &PlanDoc,
    ) -> Result<Option<(Decision, &'static str)>> {
        let paths = self.paths().clone();
        let _lock = consent::lock(&paths)?;
        match consent::load(&paths) {
            Ok(Some(consent)) if consent.plan_id == plan_id => {
                let by = match consent.by.as_deref() {
                    Some(answered_by::EMAIL) => answered_by::EMAIL,
                    _ => answered_by::DEVICE,
                };
                return Ok(consent.decision.map(|d| (d, by)));
            }
            Ok(_) => {}
            Err(e) => eprintln!("herd-agent: warning: {e:#}; asking again"),
        }
        consent::save(
            &paths,
            &ConsentFile {
                plan_id: plan_id.to_owned(),
                plan: plan.clone(),
                requested_at: clock::now_rfc3339(),
                decision: None,
                decided_at: None,
                by: None,
            },
        )?;
        self.outbox.push(
            events::CONSENT_REQUESTED,
            json!({
                "plan_id": plan_id,
                "change": consent::describe_change(plan),
                "reason": plan.reason,
            }),
        )?;
        Ok(None)
    }

    /// Removes a consent question about a plan the center no longer wants carried out.
    fn forget_stale_consent(&mut self, plan_id: &str) -> Result<()> {
        let paths = self.paths().clone();
        if !paths.consent().exists() {
            return Ok(());
        }
        let _lock = consent::lock(&paths)?;
        if let Ok(Some(consent)) = consent::load(&paths)
            && consent.plan_id == plan_id
        {
            return Ok(());
        }
        match std::fs::remove_file(paths.consent()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => {
                Err(e).with_context(|| format!("cannot remove {}", paths.consent().display()))
            }
        }
    }

    /// Reports `deferred` once per wait.
    fn defer(&mut self, plan_id: &str, why: Waiting, message: String) -> Result<()> {
        let state = self.plan_state();
        if state.waiting == Some(why) && state.deferral_reported {
            return Ok(());
        }
        state.waiting = Some(why);
        state.deferral_reported = true;
        let report = self.unexecuted(plan_id, ReportOutcome::Deferred, message);
        self.report(report)
    }

    fn plan_state(&mut self) -> &mut PlanState {
        self.progress
            .plan
            .as_mut()
            .expect("act() records the plan before acting on it")
    }

    /// A report for a plan not carried out (yet).
    fn unexecuted(&self, plan_id: &str, outcome: ReportOutcome, message: String) -> PlanReport {
        PlanReport {
            plan_id: plan_id.to_owned(),
            outcome,
            steps: Vec::new(),
            installed: self.executor.installed(),
            message: Some(message),
        }
    }

    /// Queues a `plan.report` and tells the user.
    fn report(&mut self, report: PlanReport) -> Result<()> {
        let data = serde_json::to_value(&report).context("cannot encode a plan report")?;
        self.outbox.push(events::PLAN_REPORT, data)?;
        let at = clock::now_rfc3339();
        let what = match (report.outcome, &report.installed) {
            (ReportOutcome::Succeeded, Some(installed)) => format!(
                "{} {} ({}) is active",
                installed.product, installed.version, installed.pattern
            ),
            _ => report.message.clone().unwrap_or_default(),
        };
        self.say(&format!(
            "plan {} {}: {what}",
            short(&report.plan_id),
            state::outcome_name(report.outcome)
        ));
        self.progress.last_report = Some(ReportSummary::of(&report, at));
        Ok(())
    }

    /// The scanner `run` hosts (`--scan`), if asked for and not `--once`.
    pub(crate) fn scan_host(&self) -> Result<Option<super::scanner::ScanHost>> {
        if self.args.scan_dirs.is_empty() || self.args.once {
            return Ok(None);
        }
        let absolute = |p: &PathBuf| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        let mut excludes: Vec<PathBuf> = self.args.scan_excludes.iter().map(absolute).collect();
        excludes.push(absolute(&self.paths().root));
        excludes.push(absolute(&self.prefix));
        excludes.extend(self.fixed_download_dirs.iter().map(absolute));
        let daily_utc_minute = match &self.args.daily_scan {
            None => None,
            Some(local) => {
                let tz = enrol::tz(
                    &self.declared,
                    self.identity.as_ref().and_then(|i| i.tz.as_deref()),
                );
                let offset = tz
                    .as_deref()
                    .and_then(|tz| herd_core::TzOffset::parse(tz).ok())
                    .unwrap_or(herd_core::TzOffset::UTC);
                Some(
                    super::scanner::local_to_utc_minute(local, offset.minutes())
                        .map_err(|e| anyhow::anyhow!("--daily-scan: {e}"))?,
                )
            }
        };
        for dir in &self.args.scan_dirs {
            if !dir.is_dir() {
                anyhow::bail!("--scan {}: not a directory", dir.display());
            }
        }
        Ok(Some(super::scanner::ScanHost::new(
            super::scanner::ScanConfig {
                roots: self.args.scan_dirs.iter().map(absolute).collect(),
                excludes,
                daily_utc_minute,
                state_root: self.paths().root.clone(),
                prefix: self.prefix.clone(),
                outbox: self.paths().outbox(),
            },
        )))
    }

    /// Fetches Herd's own signature set when the signed `herd` role lists another one than the
    /// terminal holds (only where the agent scans). A failure is said and tried again at the
    /// next cycle: the scanner keeps the set it has.
    fn refresh_herd_set(&mut self) {
        if self.args.scan_dirs.is_empty() || self.args.once {
            return;
        }
        let now = herd_core::Timestamp::from_unix_seconds(clock::unix_seconds(SystemTime::now()));
        if let Err(refusal) = self.ensure_trust(now) {
            eprintln!(
                "herd-agent: warning: Herd's signature set: {}",
                refusal.detail
            );
            return;
        }
        let dir = super::scanner::herd_set_dir(&self.paths().root);
        let trust = self.trust.as_mut().expect("made just above");
        match super::scanner::fetch_herd_set(trust, now, &dir) {
            Ok(Some(update)) => {
                for why in &update.delta_failures {
                    eprintln!(
                        "herd-agent: warning: Herd's signature set: a delta was not used, the \
                         whole file was downloaded: {why}"
                    );
                }
                self.say(&update.said());
                // Told upstream with this cycle's flush: the center (and `herd sim protect
                // --verdict`) learns which set protects the terminal.
                let updated = herd_proto::api::HerdSetUpdated {
                    sha256: update.hash_set_sha256.clone().unwrap_or_default(),
                    signatures: update.signatures as u64,
                };
                let data = serde_json::to_value(&updated).expect("the event serialises");
                if let Err(err) = self.outbox.push(events::HERD_SET_UPDATED, data) {
                    eprintln!("herd-agent: warning: cannot queue the set's event: {err}");
                }
            }
            Ok(None) => {}
            Err(why) => eprintln!("herd-agent: warning: Herd's signature set: {why}"),
        }
    }

    /// Prints a notice once per plan in a running agent, every time with `--once`.
    fn notify(&mut self, plan_id: &str, text: &str) {
        if self.args.once || self.notified.insert(plan_id.to_owned()) {
            self.say(text);
        }
    }
}

/// The flags that cannot change after enrolment must match what was enrolled.
fn check_flags_match(identity: &AgentFile, declared: &Declared) -> Result<()> {
    if let Some(id) = &declared.id
        && id != &identity.terminal
    {
        anyhow::bail!(
            "this state directory belongs to terminal {}, not {id}; use another --state-dir to \
             enrol another terminal",
            identity.terminal
        );
    }
    if let Some(user) = &declared.user
        && Some(user) != identity.user.as_ref()
    {
        eprintln!(
            "herd-agent: warning: --user {user} is ignored: the user is given at enrolment ({})",
            identity.user.as_deref().unwrap_or("none")
        );
    }
    Ok(())
}

/// The notice for an exposed terminal: what it lacks and what would help.
fn exposed_notice(plan: &PlanDoc) -> String {
    // A plan lists a bounded number of threats and counts the rest.
    let threats = match (plan.uncovered_now.is_empty(), plan.uncovered_now_more) {
        (true, _) => "some threats".to_owned(),
        (false, 0) => plan.uncovered_now.join(", "),
        (false, more) => format!("{} and {more} more", plan.uncovered_now.join(", ")),
    };
    let running = match &plan.from {
        Some(from) => format!("{} {}", from.product, from.version),
        None => "no vaccine product".to_owned(),
    };
    let help = match plan.alternatives.first() {
        Some(alt) => {
            let left = alt.uncovered.critical
                + alt.uncovered.high
                + alt.uncovered.medium
                + alt.uncovered.low;
            if left == 0 {
                format!(
                    "{} {} ({}) would cover {threats}",
                    alt.product, alt.version, alt.vendor
                )
            } else {
                format!(
                    "{} {} ({}) would leave {left} uncovered",
                    alt.product, alt.version, alt.vendor
                )
            }
        }
        None => "no product covers them yet".to_owned(),
    };
    format!(
        "NOTICE: this terminal is exposed: {running} does not cover {threats}; {help}; ask your \
         operator"
    )
}

/// `text` with its control characters escaped (`\u{1b}`), for a terminal: plan reasons, ids
/// and product names come from the center, and an escape sequence in them must not rewrite
/// what the user sees or hide a line.
pub(crate) fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// `inner` with the definition deltas `offers` names, rebuilt from the trust client's
/// upstream; `None` without signed metadata (a plan without steps).
fn delta_fetcher<'a>(
    inner: &'a dyn Fetcher,
    trust: Option<&'a TrustClient>,
    offers: &'a Offers,
    content_dir: &'a Path,
) -> Option<DeltaFetcher<'a>> {
    trust.map(|trust| DeltaFetcher {
        inner,
        upstream: trust.upstream(),
        offers,
        content_dir,
    })
}

/// The executor's source of packages when they come from a mirror (`--mirror`).
fn mirror_fetcher<'a>(
    from_mirror: bool,
    verified: Option<&'a VerifiedPlan>,
    trust: Option<&'a TrustClient>,
) -> Option<MirrorFetcher<'a>> {
    match (from_mirror, verified, trust) {
        (true, Some(verified), Some(trust)) => Some(MirrorFetcher {
            upstream: trust.upstream(),
            targets: &verified.targets,
        }),
        _ => None,
    }
}

/// A retryable failure to talk to the upstream: [`CycleError::Silent`] when it did not answer
/// at all (what failover counts), else [`CycleError::Unreachable`].
fn retry_later(err: herd_client::ClientError, doing: &str, server: &str) -> CycleError {
    let silent = matches!(
        err,
        herd_client::ClientError::Unreachable { .. } | herd_client::ClientError::Interrupted { .. }
    );
    let error = enrol::explain(err, doing, server);
    if silent {
        CycleError::Silent(error)
    } else {
        CycleError::Unreachable(error)
    }
}

/// The first 12 hex digits of a plan id, as people read it. The id comes from the center (and
/// from state files), so it is cut at a character boundary, never inside a multi-byte one.
pub(crate) fn short(plan_id: &str) -> &str {
    match plan_id.char_indices().nth(12) {
        Some((end, _)) => &plan_id[..end],
        None => plan_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_proto::plan::{Alternative, ReleaseRef, SeverityCounts};

    #[test]
    fn non_ascii_ids_are_reported_not_panicked_on() {
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
        assert_eq!(short(""), "");
        // Twelve bytes would end inside the fifth `é` (two bytes each) or a four-byte emoji.
        assert_eq!(short("éééééééééééééé"), "éééééééééééé");
        assert_eq!(short("abcdefghijk🦀🦀"), "abcdefghijk🦀");
        assert_eq!(short("\u{7}\u{1b}[2J"), "\u{7}\u{1b}[2J");
        assert_eq!(printable("ok\u{1b}[2Jé\n"), "ok\\u{1b}[2Jé\\n");
        assert_eq!(printable("vaccine-b 7.0"), "vaccine-b 7.0");
    }

    proptest::proptest! {
        /// Whatever a center sends as a plan id or reason, cutting and printing it cannot panic,
        /// and what is printed is one line without control characters.
        #[test]
        fn any_id_or_reason_from_a_center_is_cut_and_printed_safely(text in "\\PC*|.*|[\\x00-\\x1f]*") {
            let cut = short(&text);
            proptest::prop_assert!(text.starts_with(cut));
            proptest::prop_assert!(cut.chars().count() <= 12);
            proptest::prop_assert!(!printable(&text).chars().any(char::is_control));
        }
    }

    #[test]
    fn the_exposed_notice_names_the_gap_and_the_way_out() {
        let plan = PlanDoc {
            terminal: "45b".into(),
            action: Action::Exposed,
            uncovered_now: vec!["virus-a".into()],
            uncovered_now_counts: SeverityCounts {
                high: 1,
                ..SeverityCounts::default()
            },
            uncovered_now_more: 0,
            uncovered_after: vec!["virus-a".into()],
            uncovered_after_counts: SeverityCounts {
                high: 1,
                ..SeverityCounts::default()
            },
            uncovered_after_more: 0,
            from: Some(ReleaseRef {
                product: "vaccine-a".into(),
                version: "5.1".into(),
                seq: 1101,
            }),
            to: None,
            consent_required: false,
            not_before: None,
            steps: vec![],
            alternatives: vec![Alternative {
                product: "vaccine-b".into(),
                vendor: "maker-b".into(),
                version: "7.0".into(),
                seq: 1112,
                pattern: "b-1112".into(),
                uncovered: SeverityCounts::default(),
            }],
            reason: "…".into(),
        };
        assert_eq!(
            exposed_notice(&plan),
            "NOTICE: this terminal is exposed: vaccine-a 5.1 does not cover virus-a; vaccine-b \
             7.0 (maker-b) would cover virus-a; ask your operator"
        );
        let far_behind = PlanDoc {
            uncovered_now_more: 4998,
            ..plan
        };
        assert!(
            exposed_notice(&far_behind)
                .contains("vaccine-a 5.1 does not cover virus-a and 4998 more;"),
            "{}",
            exposed_notice(&far_behind)
        );
    }
}
