//! Fault intake and investigation (SPEC §3.3.1–4, seed 002 S13–S20): a terminal's
//! `fault.report` events are checked with the rest of their batch (a terminal reports only
//! for itself; oversized or malformed reports refuse the batch), and once stored each is
//! bucketed by its signature and decided: a rule of the fault database names the cause and
//! remedy (`known`); else the replacement table's first usable alternative for the program and
//! platform — one the terminal already has (`use_alternative`, claim 17) before one to
//! distribute (`replace`, claim 16), in the table's order of preference; else `escalated`,
//! recorded on the bucket for operators. The terminal reads its verdicts
//! (`GET /v1/fault-verdicts`) and acts on them. The decision is [`decide`], a pure function.
//!
//! A replacement rolls out in rings like any release (SPEC §3.4, issue 14): the rollout of the
//! alternative's program release (`vendor/program/version`, the rollouts table's key, see
//! `rollouts.rs`) decides which faulting terminals may be sent it now; the others are told
//! `held` and decided again whenever the rollouts move ([`Center::redecide_held`]): `replace`
//! once their ring opens, `escalated` if the replacement was halted and withdrawn.
//!
//! Simplification: a rule added later does not re-decide faults already recorded; the next
//! fault of the bucket gets the new decision.

use herd_core::{Catalog, PackageFormat, ProductKind};
use herd_planner::rings::{Offer, RingGates, in_ring};
use herd_proto::api::events;
use herd_proto::distribution::package_target;
use herd_proto::fault::{
    Alternative, Decision, FaultBucket, FaultBucketDetail, FaultBucketList, FaultEntry, FaultKind,
    FaultReplaced, FaultReport, FaultRule, FaultVerdict, FaultVerdicts, MAX_REPORT_BYTES,
    ReplacementEntry,
};
use herd_store::{EventRow, FaultBucketKey, FaultBucketRow, FaultRow, FaultWrite};
use sha2::{Digest, Sha256};

use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::{Center, rfc3339};

/// How many verdicts a terminal reads at once (its newest).
pub const VERDICTS_LISTED: u32 = 20;
/// How many faults `herd faults show` lists for a bucket (its newest).
pub const FAULTS_SHOWN: u32 = 50;

/// The verdict on report `seq` (at `at`, in `bucket`) for what [`decide`] decided.
fn verdict_of(
    seq: u64,
    at: i64,
    report: &FaultReport,
    bucket: &str,
    decided: Decided<'_>,
) -> FaultVerdict {
    FaultVerdict {
        seq,
        at: rfc3339(at),
        program: report.program.clone(),
        bucket: bucket.to_owned(),
        decision: decided.decision,
        rule: decided.rule.map(|rule| rule.id.clone()),
        cause: decided.rule.map(|rule| rule.cause.clone()),
        remedy: decided.rule.map(|rule| rule.remedy.clone()),
        alternative: decided.alternative,
    }
}

/// Checks the data of a `fault.report` event sent by `terminal`; `at_path` names the event's
/// fields in errors.
pub(crate) fn check_report(
    terminal: &str,
    data: &serde_json::Value,
    at_path: &dyn Fn(&str) -> String,
) -> CenterResult<FaultReport> {
    let size = data.to_string().len();
    if size > MAX_REPORT_BYTES {
        return Err(CenterError::new(
            ErrorKind::TooLarge,
            format!(
                "{}: the fault report takes {size} bytes; at most {MAX_REPORT_BYTES}",
                at_path("data")
            ),
        ));
    }
    let report: FaultReport = serde_json::from_value(data.clone()).map_err(|err| {
        CenterError::new(
            ErrorKind::DocumentInvalid,
            format!("{}: not a fault report: {err}", at_path("data")),
        )
    })?;
    if let Err(err) = report.validate(&at_path("data")) {
        return Err(CenterError::invalid(
            ErrorKind::DocumentInvalid,
            err.to_string(),
            &err,
        ));
    }
    if let Some(named) = &report.terminal
        && named != terminal
    {
        return Err(CenterError::new(
            ErrorKind::DocumentInvalid,
            format!(
                "{}: the report is for terminal {named:?} but terminal {terminal:?} sent it; a \
                 terminal reports only its own faults",
                at_path("data.terminal")
            ),
        ));
    }
    Ok(report)
}

/// Checks the data of a `fault.replaced` event; `at_path` names the event's fields in errors.
pub(crate) fn check_replaced(
    data: &serde_json::Value,
    at_path: &dyn Fn(&str) -> String,
) -> CenterResult<FaultReplaced> {
    let replaced: FaultReplaced = serde_json::from_value(data.clone()).map_err(|err| {
        CenterError::new(
            ErrorKind::DocumentInvalid,
            format!("{}: not a replacement's outcome: {err}", at_path("data")),
        )
    })?;
    replaced
        .validate(&at_path("data"))
        .map_err(|err| CenterError::invalid(ErrorKind::DocumentInvalid, err.to_string(), &err))?;
    Ok(replaced)
}

/// The bucket a report falls in: its signature and the signature's SHA-256 prefix.
pub fn bucket_of(report: &FaultReport) -> FaultBucketKey {
    let signature = report.signature();
    let digest = hex::encode(Sha256::digest(signature.as_bytes()));
    FaultBucketKey {
        id: digest[..16].to_owned(),
        program: report.program.clone(),
        version: report.version.clone(),
        kind: report.kind.as_str().to_owned(),
        signature,
    }
}

/// What the center decides about a report: the decision, the rule that named the cause,
/// and the alternative to switch to (for `replace`, with the signed target that installs it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decided<'a> {
    pub decision: Decision,
    pub rule: Option<&'a FaultRule>,
    pub alternative: Option<Alternative>,
}

/// Decides a report against the fault database (rules in id order, the first that matches)
/// and the replacement table; `signed_target` gives the signed target that installs an
/// alternative on a platform, if the catalog has it as a program release (see
/// [`program_target`]), and `ring_open` whether the rollout of that release has reached the
/// faulting terminal. Pure.
///
/// The first alternative, in the table's order, that the terminal has already (`use_alternative`)
/// or can be sent (`replace`) is chosen. When that alternative's rings have not reached the
/// terminal, the fault is `held` for it rather than sent a less preferred one (which would
/// make the less preferred program the one most faulting terminals get while the preferred
/// one rolls out) — unless a later alternative is already on the terminal: switching to it
/// distributes nothing, so no ring is at stake, and it ends the fault now rather than after
/// the rollout.
pub fn decide<'a>(
    report: &FaultReport,
    rules: &'a [FaultRule],
    replacements: &'a [ReplacementEntry],
    signed_target: &dyn Fn(&Alternative, &str) -> Option<String>,
    ring_open: &dyn Fn(&Alternative) -> bool,
) -> Decided<'a> {
    if let Some(rule) = rules.iter().find(|rule| rule.matches(report)) {
        return Decided {
            decision: Decision::Known,
            rule: Some(rule),
            alternative: None,
        };
    }
    let alternatives = replacements
        .iter()
        .find(|entry| entry.program == report.program && entry.platform == report.platform)
        .map(|entry| entry.alternatives.as_slice())
        .unwrap_or_default();
    let mut held: Option<Alternative> = None;
    for alternative in alternatives {
        if report.alternatives_present.contains(&alternative.program) {
            return Decided {
                decision: Decision::UseAlternative,
                rule: None,
                alternative: Some(alternative.clone()),
            };
        }
        if held.is_some() {
            continue;
        }
        if let Some(target) = signed_target(alternative, &report.platform) {
            let alternative = Alternative {
                target: Some(target),
                ..alternative.clone()
            };
            if !ring_open(&alternative) {
                held = Some(alternative);
                continue;
            }
            return Decided {
                decision: Decision::Replace,
                rule: None,
                alternative: Some(alternative),
            };
        }
    }
    if let Some(alternative) = held {
        return Decided {
            decision: Decision::Held,
            rule: None,
            alternative: Some(alternative),
        };
    }
    Decided {
        decision: Decision::Escalated,
        rule: None,
        alternative: None,
    }
}

/// The rollout key of an alternative's program release: `vendor/program/version`, what
/// [`herd_planner::rings::release_key`] gives for it, so its ring buckets are the release's.
pub fn alternative_key(alternative: &Alternative) -> String {
    format!(
        "{}/{}/{}",
        alternative.vendor, alternative.program, alternative.version
    )
}

/// Whether the rollout of `alternative`'s release, as `gates` say, reaches `terminal` (in
/// `group`): a release under no gate (complete, or rings off) reaches everyone; one
/// withdrawn reaches nobody. Pure: membership is the planner's [`in_ring`].
pub fn replacement_reaches(
    gates: &RingGates,
    alternative: &Alternative,
    terminal: &str,
    group: Option<&str>,
) -> bool {
    let key = alternative_key(alternative);
    match gates.gates().iter().find(|gate| gate.key == key) {
        None => true,
        Some(gate) => match gate.offer {
            Offer::Ring { reach } => in_ring(reach, &gate.groups, &key, terminal, group),
            Offer::Withdrawn { .. } => false,
        },
    }
}

/// The signed target of the program release an alternative names (its `vendor`, `program` and
/// `version`) for `platform`: an `archive` package of a catalog product of kind `program`,
/// unless the release's rollout was reverted (`withdrawn`, release keys), which takes its
/// archive targets out of the signed metadata. `None`: the alternative can only be used where
/// a terminal already has it.
pub fn program_target(
    catalog: &Catalog,
    withdrawn: &[String],
    alternative: &Alternative,
    platform: &str,
) -> Option<String> {
    let product = catalog.product(catalog.product_by_id(&alternative.program)?);
    if product.kind != ProductKind::Program
        || catalog.vendors[product.vendor.get()].id != alternative.vendor
    {
        return None;
    }
    let key = alternative_key(alternative);
    if withdrawn.binary_search(&key).is_ok() {
        return None;
    }
    let platform_idx = catalog.platform_by_name(platform)?;
    let product_idx = catalog.product_by_id(&alternative.program)?;
    let release = catalog
        .product_releases(product_idx)
        .iter()
        .find(|release| release.version == alternative.version)?;
    release
        .packages
        .iter()
        .find(|package| {
            package.platform == platform_idx && package.format == PackageFormat::Archive
        })
        .map(|_| {
            package_target(
                &alternative.vendor,
                &alternative.program,
                &alternative.version,
                platform,
                PackageFormat::Archive.as_str(),
            )
        })
}

impl Center {
    /// Buckets and decides the fault reports among stored events (all of them, duplicates
    /// included: recording is idempotent by (terminal, seq), so a report whose batch was
    /// stored but not decided — a crash between the two — is decided when it is sent again).
    pub(crate) async fn take_faults(&self, terminal: &str, rows: &[EventRow]) -> CenterResult<()> {
        let reports: Vec<(&EventRow, FaultReport)> = rows
            .iter()
            .filter(|row| row.kind == events::FAULT_REPORT)
            .filter_map(|row| {
                // Checked by `check_report` before the batch was stored.
                let report: FaultReport = serde_json::from_str(&row.data).ok()?;
                Some((row, report.redacted()))
            })
            .collect();
        if reports.is_empty() {
            return Ok(());
        }
        let rules = self.fault_rule_docs().await?;
        let replacements = self.replacement_docs().await?;
        let catalog = self.catalog();
        let withdrawn = self.withdrawn_releases();
        let signed_target = |alternative: &Alternative, platform: &str| {
            program_target(&catalog.catalog, &withdrawn, alternative, platform)
        };
        // Rollout rings may reach a terminal by its group.
        let group = self.store.terminal(terminal).await?.map(|row| row.group);
        let gates = catalog.gates();
        let ring_open = |alternative: &Alternative| {
            replacement_reaches(&gates, alternative, terminal, group.as_deref())
        };
        for (row, report) in reports {
            let decided = decide(&report, &rules, &replacements, &signed_target, &ring_open);
            let bucket = bucket_of(&report);
            let verdict = verdict_of(row.seq, row.at, &report, &bucket.id, decided.clone());
            let recorded = self
                .store
                .fault_record(&FaultWrite {
                    terminal: terminal.to_owned(),
                    seq: row.seq,
                    at: row.at,
                    bucket: bucket.clone(),
                    decision: decided.decision.as_str().to_owned(),
                    report: serde_json::to_string(&report).expect("a report serialises"),
                    verdict: serde_json::to_string(&verdict).expect("a verdict serialises"),
                })
                .await?;
            if !recorded {
                continue;
            }
            if decided.decision == Decision::Held {
                // Decided under the gates this process has installed, which a rollout round
                // may be replacing right now: the next round looks at the held faults again.
                *self.rollouts.held_decided_under.lock().expect("held gates") = None;
            }
            // Rollout rings: a fault on a terminal running a release still rolling out counts
            // towards halting that release, and so does a fault of a program release (a
            // replacement) still rolling out.
            if let Err(err) = self.on_fault(terminal, Some(&report), row.at).await {
                tracing::warn!(%err, terminal, "cannot attribute a fault to a rollout");
            }
            if decided.decision == Decision::Escalated {
                self.escalated(terminal, &bucket.id, &report);
            }
        }
        Ok(())
    }

    /// Tells operators about an escalated fault (an alert, and the log).
    fn escalated(&self, terminal: &str, bucket: &str, report: &FaultReport) {
        self.alerts.raise(crate::alerts::AlertEvent::new(
            crate::alerts::AlertKind::FaultEscalated,
            bucket.to_owned(),
            format!(
                "{} {} ({}) fails with no known cause and no usable replacement, \
                 first on terminal {terminal}",
                report.program,
                report.version,
                report.kind.as_str()
            ),
        ));
        tracing::warn!(
            bucket, program = %report.program, version = %report.version,
            terminal, kind = report.kind.as_str(),
            "fault escalated: no rule of the fault database names its cause and the \
             replacement table has no usable alternative"
        );
    }

    /// Decides the held faults again under the rollouts `rows` (called by the rollout task
    /// and an operator's action after they stored a transition and before the gates are
    /// installed and the terminals woken, so a woken terminal finds its new verdict): a fault
    /// whose replacement's ring now reaches its terminal becomes `replace`; one whose
    /// replacement was halted and withdrawn becomes `escalated` — the replacement is known to
    /// fail, so waiting (`held`) would promise what will not come, and operators must look at
    /// the fault (the alert says so) — unless the table names another usable alternative.
    /// Each is written only while still held, so processes racing write one verdict. The
    /// held faults are read only when the gates moved since this process last did, or a
    /// fault was held since (it may have been decided under the gates being replaced). Returns
    /// how many changed.
    pub(crate) async fn redecide_held(&self, rows: &[herd_store::RolloutRow]) -> usize {
        match self.try_redecide_held(rows).await {
            Ok(changed) => changed,
            Err(err) => {
                tracing::warn!(%err, "cannot decide the held faults again");
                // Tried again at the next round.
                *self.rollouts.held_decided_under.lock().expect("held gates") = None;
                0
            }
        }
    }

    async fn try_redecide_held(&self, rows: &[herd_store::RolloutRow]) -> CenterResult<usize> {
        // Rings off: every release, a replacement included, reaches everyone at once.
        let gates = self.replacement_gates(rows).unwrap_or_default();
        // Only when the gates moved (or a fault was held since the last time, possibly under
        // the gates before): a held fault's decision depends on nothing else that moves here.
        let under = &self.rollouts.held_decided_under;
        if under.lock().expect("held gates").as_ref() == Some(&gates) {
            return Ok(0);
        }
        *under.lock().expect("held gates") = Some(gates.clone());
        let held: Vec<FaultRow> = self.store.faults_held(0).await?;
        if held.is_empty() {
            return Ok(0);
        }
        let rules = self.fault_rule_docs().await?;
        let replacements = self.replacement_docs().await?;
        let catalog = self.catalog();
        let mut withdrawn: Vec<String> = rows
            .iter()
            .filter(|row| row.phase == herd_planner::rings::Phase::Reverted.as_str())
            .map(|row| row.release.clone())
            .collect();
        withdrawn.sort();
        let signed_target = |alternative: &Alternative, platform: &str| {
            program_target(&catalog.catalog, &withdrawn, alternative, platform)
        };
        let mut groups: std::collections::HashMap<String, Option<String>> = Default::default();
        let mut changed = 0;
        for fault in held {
            let report: FaultReport = parse_stored(&fault.report, "report")?;
            let before: FaultVerdict = parse_stored(&fault.verdict, "verdict")?;
            if !groups.contains_key(&fault.terminal) {
                let group = self.store.terminal(&fault.terminal).await?.map(|t| t.group);
                groups.insert(fault.terminal.clone(), group);
            }
            let group = groups[&fault.terminal].as_deref();
            let ring_open = |alternative: &Alternative| {
                replacement_reaches(&gates, alternative, &fault.terminal, group)
            };
            let decided = decide(&report, &rules, &replacements, &signed_target, &ring_open);
            let verdict = verdict_of(fault.seq, fault.at, &report, &fault.bucket, decided);
            if verdict == before {
                continue;
            }
            let text = serde_json::to_string(&verdict).expect("a verdict serialises");
            if !self
                .store
                .fault_redecide(&fault.terminal, fault.seq, verdict.decision.as_str(), &text)
                .await?
            {
                continue;
            }
            changed += 1;
            tracing::info!(
                terminal = %fault.terminal, seq = fault.seq, program = %report.program,
                decision = verdict.decision.as_str(),
                "a held fault was decided again as its replacement's rollout moved"
            );
            if verdict.decision == Decision::Escalated {
                self.escalated(&fault.terminal, &fault.bucket, &report);
            }
        }
        Ok(changed)
    }

    /// Keeps what a terminal did with a replacement verdict on the fault it answers (checked
    /// with its batch); a fault the center does not know (deleted since) is left alone.
    pub(crate) async fn take_replaced(&self, terminal: &str, row: &EventRow) {
        let Ok(replaced) = serde_json::from_str::<FaultReplaced>(&row.data) else {
            return;
        };
        match self
            .store
            .fault_outcome(terminal, replaced.seq, &row.data)
            .await
        {
            Ok(true) => {
                // The verdict it answers is among the terminal's newest: those are the
                // verdicts an agent reads and acts on.
                let verdict = self
                    .store
                    .faults(Some(terminal), None, VERDICTS_LISTED)
                    .await
                    .ok()
                    .and_then(|faults| faults.into_iter().find(|f| f.seq == replaced.seq))
                    .and_then(|fault| serde_json::from_str::<FaultVerdict>(&fault.verdict).ok());
                if let Some(verdict) = verdict {
                    self.count_replaced(&replaced, &verdict).await;
                }
            }
            Ok(false) => tracing::warn!(
                terminal,
                seq = replaced.seq,
                "a replacement's outcome names no recorded fault"
            ),
            Err(err) => tracing::warn!(%err, terminal, "cannot keep a replacement's outcome"),
        }
    }

    /// The calling terminal's latest verdicts, newest first; `held` ones only when the reader
    /// asks for them (an agent older than the decision would refuse the whole answer).
    pub async fn fault_verdicts(&self, terminal: &str, held: bool) -> CenterResult<FaultVerdicts> {
        // A site decides no fault: its terminals' verdicts are the center's.
        let mut verdicts = match self.site() {
            Some(site) => site.fault_verdicts_of(terminal).await?,
            None => FaultVerdicts {
                verdicts: self
                    .store
                    .faults(Some(terminal), None, VERDICTS_LISTED)
                    .await?
                    .into_iter()
                    .map(|row| parse_stored::<FaultVerdict>(&row.verdict, "verdict"))
                    .collect::<CenterResult<_>>()?,
            },
        };
        if !held {
            verdicts
                .verdicts
                .retain(|verdict| verdict.decision != Decision::Held);
        }
        Ok(verdicts)
    }

    /// Every bucket, most recently seen first.
    pub async fn fault_buckets(&self) -> CenterResult<FaultBucketList> {
        let buckets = self
            .store
            .fault_buckets()
            .await?
            .into_iter()
            .map(bucket_doc)
            .collect::<CenterResult<_>>()?;
        Ok(FaultBucketList { buckets })
    }

    /// One bucket (by its id or an unambiguous prefix of it) with its latest faults.
    pub async fn fault_bucket(&self, id: &str) -> CenterResult<FaultBucketDetail> {
        let mut found: Vec<FaultBucketRow> = self
            .store
            .fault_buckets()
            .await?
            .into_iter()
            .filter(|bucket| !id.is_empty() && bucket.key.id.starts_with(id))
            .collect();
        let row = match found.len() {
            0 => return Err(CenterError::not_found(format!("no fault bucket {id:?}"))),
            1 => found.remove(0),
            n => {
                return Err(CenterError::new(
                    ErrorKind::Conflict,
                    format!("{n} fault buckets start with {id:?}; give more of the id"),
                ));
            }
        };
        let faults = self
            .store
            .faults(None, Some(&row.key.id), FAULTS_SHOWN)
            .await?
            .into_iter()
            .map(|fault| {
                Ok(FaultEntry {
                    terminal: fault.terminal,
                    report: parse_stored(&fault.report, "report")?,
                    verdict: parse_stored(&fault.verdict, "verdict")?,
                    outcome: fault
                        .outcome
                        .as_deref()
                        .map(|outcome| parse_stored(outcome, "outcome"))
                        .transpose()?,
                })
            })
            .collect::<CenterResult<_>>()?;
        Ok(FaultBucketDetail {
            bucket: bucket_doc(row)?,
            faults,
        })
    }
}

fn bucket_doc(row: FaultBucketRow) -> CenterResult<FaultBucket> {
    let kind: FaultKind = serde_json::from_value(serde_json::Value::String(row.key.kind.clone()))
        .map_err(|_| {
        CenterError::internal(format!(
            "fault bucket {} has an unknown kind {:?}",
            row.key.id, row.key.kind
        ))
    })?;
    let decision = Decision::parse(&row.decision).ok_or_else(|| {
        CenterError::internal(format!(
            "fault bucket {} has an unknown decision {:?}",
            row.key.id, row.decision
        ))
    })?;
    Ok(FaultBucket {
        id: row.key.id,
        program: row.key.program,
        version: row.key.version,
        kind,
        signature: row.key.signature,
        faults: row.faults,
        terminals: row.terminals,
        first_seen: rfc3339(row.first_seen),
        last_seen: rfc3339(row.last_seen),
        decision,
        escalated_at: row.escalated_at.map(rfc3339),
    })
}

/// A JSON document the center stored itself; unreadable means the database is damaged.
pub(crate) fn parse_stored<T: serde::de::DeserializeOwned>(
    text: &str,
    what: &str,
) -> CenterResult<T> {
    serde_json::from_str(text)
        .map_err(|err| CenterError::internal(format!("a stored fault {what} is corrupt: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_proto::fault::FaultKind;

    fn report(program: &str, present: &[&str]) -> FaultReport {
        FaultReport {
            terminal: None,
            program: program.into(),
            vendor: "company-a".into(),
            version: "1.0".into(),
            platform: "linux-x86_64".into(),
            kind: FaultKind::Exit,
            exit_code: Some(3),
            signal: None,
            frames: vec![],
            dump_sha256: None,
            definitions: vec![],
            restarts: 0,
            message: None,
            alternatives_present: present.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn alternative(program: &str) -> Alternative {
        Alternative {
            program: program.into(),
            vendor: "company-b".into(),
            version: "2.0".into(),
            package_sha256: None,
            package_size: None,
            target: None,
        }
    }

    /// Every replacement's rings reach every terminal (no rollout, or a complete one).
    fn open(_: &Alternative) -> bool {
        true
    }

    /// Only mw-b is published as a signed program release, for linux-x86_64.
    fn signed(alternative: &Alternative, platform: &str) -> Option<String> {
        (alternative.program == "mw-b" && platform == "linux-x86_64")
            .then(|| "packages/company-b/mw-b/2.0/linux-x86_64.archive".to_owned())
    }

    #[test]
    fn known_before_alternatives_present_before_distributed_else_escalated() {
        let rule = FaultRule {
            id: "exit-3".into(),
            program: "mw-a".into(),
            version_from: None,
            version_below: None,
            kinds: vec![],
            exit_codes: vec![3],
            signals: vec![],
            frame_pattern: None,
            definition_pattern: None,
            cause: "c".into(),
            remedy: "r".into(),
        };
        let table = vec![ReplacementEntry {
            program: "mw-a".into(),
            platform: "linux-x86_64".into(),
            alternatives: vec![
                alternative("mw-c"),
                alternative("mw-b"),
                alternative("mw-d"),
            ],
        }];
        let rules = [rule];
        assert_eq!(
            decide(&report("mw-a", &[]), &rules, &table, &signed, &open).decision,
            Decision::Known
        );
        let none: [FaultRule; 0] = [];
        let distributed = decide(&report("mw-a", &[]), &none, &table, &signed, &open);
        assert_eq!(distributed.decision, Decision::Replace);
        let b = distributed.alternative.unwrap();
        assert_eq!(b.program, "mw-b");
        assert_eq!(
            b.target.as_deref(),
            Some("packages/company-b/mw-b/2.0/linux-x86_64.archive")
        );
        // Present and preferred over the distributed one: nothing to download.
        let present = decide(&report("mw-a", &["mw-c"]), &none, &table, &signed, &open);
        assert_eq!(present.decision, Decision::UseAlternative);
        let c = present.alternative.unwrap();
        assert_eq!((c.program.as_str(), c.target), ("mw-c", None));
        // Present but less preferred than a distributable one: the table's order wins.
        let later = decide(&report("mw-a", &["mw-d"]), &none, &table, &signed, &open);
        assert_eq!(later.alternative.unwrap().program, "mw-b");
        // No signed release for the terminal's platform: nothing to distribute, escalated.
        let mut elsewhere = report("mw-a", &[]);
        elsewhere.platform = "phone".into();
        let table_elsewhere = vec![ReplacementEntry {
            platform: "phone".into(),
            ..table[0].clone()
        }];
        assert_eq!(
            decide(&elsewhere, &none, &table_elsewhere, &signed, &open).decision,
            Decision::Escalated
        );
        assert_eq!(
            decide(&report("mw-x", &[]), &none, &table, &signed, &open).decision,
            Decision::Escalated
        );
    }

    #[test]
    fn a_replacement_outside_its_open_rings_is_held_unless_an_alternative_is_here() {
        let table = vec![ReplacementEntry {
            program: "mw-a".into(),
            platform: "linux-x86_64".into(),
            alternatives: vec![alternative("mw-b"), alternative("mw-d")],
        }];
        let none: [FaultRule; 0] = [];
        let closed = |_: &Alternative| false;
        let held = decide(&report("mw-a", &[]), &none, &table, &signed, &closed);
        assert_eq!(held.decision, Decision::Held);
        // The verdict names what it waits for, with the signed target it will install.
        let b = held.alternative.unwrap();
        assert_eq!(
            (b.program.as_str(), b.target.as_deref()),
            (
                "mw-b",
                Some("packages/company-b/mw-b/2.0/linux-x86_64.archive")
            )
        );
        // A less preferred alternative already on the terminal ends the fault now.
        let here = decide(&report("mw-a", &["mw-d"]), &none, &table, &signed, &closed);
        assert_eq!(here.decision, Decision::UseAlternative);
        assert_eq!(here.alternative.unwrap().program, "mw-d");
        // A known cause needs no replacement, whatever the rings.
        let rule = FaultRule {
            id: "any".into(),
            program: "mw-a".into(),
            version_from: None,
            version_below: None,
            kinds: vec![],
            exit_codes: vec![],
            signals: vec![],
            frame_pattern: None,
            definition_pattern: None,
            cause: "c".into(),
            remedy: "r".into(),
        };
        assert_eq!(
            decide(&report("mw-a", &[]), &[rule], &table, &signed, &closed).decision,
            Decision::Known
        );
    }

    /// Ring membership for a replacement is the planner's: by the bucket of terminal and
    /// release key, or the group; no gate reaches everyone, a withdrawn one nobody.
    #[test]
    fn a_replacement_reaches_the_terminals_of_its_rollouts_rings() {
        let b = alternative("mw-b");
        let key = alternative_key(&b);
        assert_eq!(key, "company-b/mw-b/2.0");
        let gate = |offer: Offer, groups: &[&str]| {
            RingGates::new(vec![herd_planner::rings::Gate {
                release: herd_core::ReleaseIdx(0),
                key: key.clone(),
                offer,
                groups: groups.iter().map(|g| g.to_string()).collect(),
            }])
        };
        let ids: Vec<String> = (0..400).map(|i| format!("t{i}")).collect();
        let half = gate(Offer::Ring { reach: 5000 }, &[]);
        let reached: Vec<&String> = ids
            .iter()
            .filter(|id| replacement_reaches(&half, &b, id, None))
            .collect();
        assert!((150..250).contains(&reached.len()), "{}", reached.len());
        for id in &ids {
            let expected = herd_planner::rings::ring_bucket(&key, id) < 5000;
            assert_eq!(replacement_reaches(&half, &b, id, None), expected, "{id}");
        }
        let staff = gate(Offer::Ring { reach: 0 }, &["it-staff"]);
        assert!(replacement_reaches(&staff, &b, "t1", Some("it-staff")));
        assert!(!replacement_reaches(&staff, &b, "t1", Some("others")));
        let withdrawn = gate(Offer::Withdrawn { revert: true }, &[]);
        assert!(
            ids.iter()
                .all(|id| !replacement_reaches(&withdrawn, &b, id, None))
        );
        // Another release's gate says nothing about this one.
        assert!(replacement_reaches(
            &withdrawn,
            &alternative("mw-c"),
            "t1",
            None
        ));
        assert!(replacement_reaches(&RingGates::default(), &b, "t1", None));
    }

    #[test]
    fn an_alternative_is_distributed_only_as_a_program_release_of_its_vendor() {
        let doc = serde_json::json!({
            "format": "herd.catalog/v1",
            "vendors": [{"id": "company-b", "name": "B"}, {"id": "maker-v", "name": "V"}],
            "products": [
                {"id": "mw-b", "vendor": "company-b", "name": "Middleware B",
                 "platforms": ["linux-x86_64"], "kind": "program"},
                {"id": "vaccine-v", "vendor": "maker-v", "name": "Vaccine V",
                 "platforms": ["linux-x86_64"]}
            ],
            "releases": [
                {"product": "mw-b", "version": "2.0", "pattern": "mw-b 2.0", "seq": 20,
                 "published": "2026-01-01T00:00:00Z",
                 "packages": [{"platform": "linux-x86_64", "format": "archive",
                               "sha256": "a".repeat(64), "size": 10}]},
                {"product": "vaccine-v", "version": "1.0", "pattern": "v-1", "seq": 1,
                 "published": "2026-01-01T00:00:00Z",
                 "packages": [{"platform": "linux-x86_64", "format": "archive",
                               "sha256": "b".repeat(64), "size": 10}]}
            ],
            "threats": [], "coverage": []
        });
        let catalog = herd_proto::catalog::parse_catalog("c", &doc.to_string()).unwrap();
        let b = alternative("mw-b");
        assert_eq!(
            program_target(&catalog, &[], &b, "linux-x86_64").as_deref(),
            Some("packages/company-b/mw-b/2.0/linux-x86_64.archive")
        );
        // Another platform, version or vendor, a vaccine, a withdrawn release: not distributed.
        assert_eq!(program_target(&catalog, &[], &b, "phone"), None);
        let other_version = Alternative {
            version: "2.1".into(),
            ..b.clone()
        };
        assert_eq!(
            program_target(&catalog, &[], &other_version, "linux-x86_64"),
            None
        );
        let other_vendor = Alternative {
            vendor: "maker-v".into(),
            ..b.clone()
        };
        assert_eq!(
            program_target(&catalog, &[], &other_vendor, "linux-x86_64"),
            None
        );
        let vaccine = Alternative {
            program: "vaccine-v".into(),
            vendor: "maker-v".into(),
            version: "1.0".into(),
            ..b.clone()
        };
        assert_eq!(
            program_target(&catalog, &[], &vaccine, "linux-x86_64"),
            None
        );
        let withdrawn = ["company-b/mw-b/2.0".to_owned()];
        assert_eq!(
            program_target(&catalog, &withdrawn, &b, "linux-x86_64"),
            None
        );
    }

    #[test]
    fn a_replacements_outcome_is_checked_naming_the_field() {
        let path = |field: &str| format!("$.events[2].{field}");
        let good = serde_json::json!({"program": "mw-a", "alternative": "mw-b", "seq": 4,
            "replaced": false, "failed_step": "fetch", "message": "refused"});
        assert_eq!(check_replaced(&good, &path).unwrap().seq, 4);
        // As agents sent it before the type: an explicit null for no failed step.
        let older = serde_json::json!({"program": "mw-a", "alternative": "mw-b", "seq": 4,
            "replaced": true, "failed_step": null, "message": "replaced by mw-b 2.0"});
        assert!(check_replaced(&older, &path).is_ok());
        let mut bad = good.clone();
        bad["failed_step"] = "reboot".into();
        let err = check_replaced(&bad, &path).unwrap_err();
        assert!(
            err.to_string().contains("$.events[2].data: $.failed_step"),
            "{err}"
        );
        let mut bad = good.clone();
        bad["replaced"] = true.into();
        let err = check_replaced(&bad, &path).unwrap_err();
        assert!(err.to_string().contains("exactly when"), "{err}");
        let mut bad = good.clone();
        bad["message"] = "x".repeat(2000).into();
        let err = check_replaced(&bad, &path).unwrap_err();
        assert!(err.to_string().contains("$.message: 2000 bytes"), "{err}");
        let err = check_replaced(&serde_json::json!({"seq": "x"}), &path).unwrap_err();
        assert!(
            err.to_string().contains("not a replacement's outcome"),
            "{err}"
        );
    }

    #[test]
    fn a_report_for_another_terminal_or_oversized_is_refused() {
        let path = |field: &str| format!("$.events[0].{field}");
        let mut other = report("mw-a", &[]);
        other.terminal = Some("t2".into());
        let data = serde_json::to_value(&other).unwrap();
        let err = check_report("t1", &data, &path).unwrap_err();
        assert!(err.to_string().contains("reports only its own"), "{err}");
        let mut big = report("mw-a", &[]);
        big.message = Some("x".repeat(MAX_REPORT_BYTES));
        let err = check_report("t1", &serde_json::to_value(&big).unwrap(), &path).unwrap_err();
        assert_eq!(err.code(), "too_large");
        let err = check_report("t1", &serde_json::json!({"program": 1}), &path).unwrap_err();
        assert!(err.to_string().contains("$.events[0].data"), "{err}");
    }
}
