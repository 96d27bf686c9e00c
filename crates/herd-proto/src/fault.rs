//! Fault recovery's wire formats (SPEC §3.3, seed 002 S11–S20): the fault report an agent
//! sends through its outbox (`fault.report` events) when a supervised program crashes, hangs,
//! exits abnormally or restarts in a loop, or when a program reports its own fault; the
//! center's verdict on it; the fault database's rules and the replacement table. Pure: the
//! bucket signature, rule matching, version ranges and the redaction of secrets in definition
//! file excerpts are functions here, shared by the agent (which redacts before sending) and
//! the center (which redacts again before storing, and matches rules).

use serde::{Deserialize, Serialize};

use crate::ValidationError;
use crate::error::Problems;

/// The most stack frames a report carries (top first); the bucket uses the first
/// [`SIGNATURE_FRAMES`].
pub const MAX_FRAMES: usize = 32;
/// The longest frame, message, cause or remedy text (bytes).
pub const MAX_TEXT: usize = 1024;
/// The most definition files a report describes.
pub const MAX_DEFINITIONS: usize = 16;
/// The longest excerpt of one definition file (bytes, after redaction).
pub const MAX_EXCERPT: usize = 2048;
/// The most bytes a report's JSON may take: the center refuses anything bigger (`too_large`).
pub const MAX_REPORT_BYTES: usize = 64 * 1024;
/// How many top frames make a bucket's signature.
pub const SIGNATURE_FRAMES: usize = 5;
/// The most alternatives a replacement entry lists.
pub const MAX_ALTERNATIVES: usize = 16;

/// What happened to the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum FaultKind {
    /// Killed by a signal (SIGSEGV, SIGABRT, …).
    Crash,
    /// Exited with a non-zero status, or vanished (a watched process whose status the agent
    /// cannot read).
    Exit,
    /// Failed again and again within the restart window; the agent stopped restarting it.
    RestartLoop,
    /// No heartbeat within its limit; the agent killed it.
    Hang,
    /// The program reported its own fault (`herd-agent fault report`).
    Reported,
}

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::Exit => "exit",
            FaultKind::RestartLoop => "restart_loop",
            FaultKind::Hang => "hang",
            FaultKind::Reported => "reported",
        }
    }
}

/// One definition (configuration) file of the faulting program: its digest and a short,
/// redacted excerpt of its beginning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DefinitionFile {
    pub path: String,
    /// SHA-256 of the whole file (hex); absent when it could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub size: u64,
    /// The file's first bytes, secrets redacted ([`redact`]), at most [`MAX_EXCERPT`] bytes.
    #[serde(default)]
    pub excerpt: String,
    /// Whether the excerpt stops before the end of the file.
    #[serde(default)]
    pub truncated: bool,
}

/// A fault report: the data of a `fault.report` event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FaultReport {
    /// The reporting terminal, when the report names it: it must be the terminal sending it
    /// (a terminal reports only for itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal: Option<String>,
    pub program: String,
    pub vendor: String,
    pub version: String,
    /// The platform the program runs on (`linux-x86_64`…): what the replacement table is
    /// looked up by.
    pub platform: String,
    pub kind: FaultKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Stack frames from a crash report, top first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frames: Vec<String>,
    /// SHA-256 of the core dump or crash report (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub definitions: Vec<DefinitionFile>,
    /// Restarts within the window when the fault was detected.
    #[serde(default)]
    pub restarts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Approved alternatives already installed on the terminal (program names): the center
    /// may tell it to use one without distributing anything (claim 17).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternatives_present: Vec<String>,
}

impl FaultReport {
    /// Checks bounds and identifiers; every problem with its JSON path. Excerpts are not
    /// refused for secrets: the center redacts them again ([`FaultReport::redacted`]).
    pub fn validate(&self, document: &str) -> Result<(), ValidationError> {
        let mut problems = Problems::default();
        for (field, value) in [
            ("program", &self.program),
            ("vendor", &self.vendor),
            ("platform", &self.platform),
        ] {
            if let Err(why) = herd_core::check_identifier(value) {
                problems.add(format!("$.{field}"), why);
            }
        }
        if let Err(why) = herd_core::check_version(&self.version) {
            problems.add("$.version", why);
        }
        if let Some(terminal) = &self.terminal
            && let Err(why) = herd_core::check_identifier(terminal)
        {
            problems.add("$.terminal", why);
        }
        if self.kind == FaultKind::Crash && self.signal.is_none() {
            problems.add("$.signal", "a crash names the signal");
        }
        if self.frames.len() > MAX_FRAMES {
            problems.add(
                "$.frames",
                format!("{} frames; at most {MAX_FRAMES}", self.frames.len()),
            );
        }
        for (i, frame) in self.frames.iter().enumerate() {
            check_text(&mut problems, format!("$.frames[{i}]"), frame, MAX_TEXT);
        }
        if let Some(digest) = &self.dump_sha256 {
            check_sha256(&mut problems, "$.dump_sha256".into(), digest);
        }
        if self.definitions.len() > MAX_DEFINITIONS {
            problems.add(
                "$.definitions",
                format!(
                    "{} files; at most {MAX_DEFINITIONS}",
                    self.definitions.len()
                ),
            );
        }
        for (i, file) in self.definitions.iter().enumerate() {
            check_text(
                &mut problems,
                format!("$.definitions[{i}].path"),
                &file.path,
                MAX_TEXT,
            );
            if file.path.is_empty() {
                problems.add(format!("$.definitions[{i}].path"), "must not be empty");
            }
            if let Some(digest) = &file.sha256 {
                check_sha256(&mut problems, format!("$.definitions[{i}].sha256"), digest);
            }
            if file.excerpt.len() > MAX_EXCERPT {
                problems.add(
                    format!("$.definitions[{i}].excerpt"),
                    format!("{} bytes; at most {MAX_EXCERPT}", file.excerpt.len()),
                );
            }
        }
        if let Some(message) = &self.message {
            check_text(&mut problems, "$.message".into(), message, MAX_TEXT);
        }
        if self.alternatives_present.len() > MAX_ALTERNATIVES {
            problems.add(
                "$.alternatives_present",
                format!("at most {MAX_ALTERNATIVES}"),
            );
        }
        for (i, name) in self.alternatives_present.iter().enumerate() {
            if let Err(why) = herd_core::check_identifier(name) {
                problems.add(format!("$.alternatives_present[{i}]"), why);
            }
        }
        problems.finish(document, || ())
    }

    /// The report with every excerpt redacted (again) and cut to [`MAX_EXCERPT`].
    pub fn redacted(mut self) -> FaultReport {
        for file in &mut self.definitions {
            let (excerpt, cut) = excerpt_of(&file.excerpt);
            file.excerpt = excerpt;
            file.truncated |= cut;
        }
        self
    }

    /// The bucket signature: program, version, kind, exit status or signal and the normalised
    /// top frames, one line each — faults with the same signature are the same fault.
    pub fn signature(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\nexit={}\nsignal={}",
            self.program,
            self.version,
            self.kind.as_str(),
            self.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            self.signal.map(|s| s.to_string()).unwrap_or_default(),
        );
        for frame in self.frames.iter().take(SIGNATURE_FRAMES) {
            text.push('\n');
            text.push_str(&normalise_frame(frame));
        }
        text
    }
}

/// A frame without what differs between two runs of the same code: hexadecimal addresses
/// and offsets (`0x7f3a…`, `+0x1c`) become `?`, and runs of whitespace one space.
pub fn normalise_frame(frame: &str) -> String {
    let mut out = String::with_capacity(frame.len());
    let mut rest = frame.trim();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("0x").or_else(|| rest.strip_prefix("0X")) {
            let digits = after
                .find(|c: char| !c.is_ascii_hexdigit())
                .unwrap_or(after.len());
            if digits > 0 {
                out.push('?');
                rest = &after[digits..];
                continue;
            }
        }
        let c = rest.chars().next().expect("not empty");
        if c.is_whitespace() {
            if !out.ends_with(' ') {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Names of `key = value` / `key: value` settings whose values are secrets.
const SECRET_NAMES: [&str; 8] = [
    "password",
    "passwd",
    "secret",
    "token",
    "key",
    "credential",
    "auth",
    "private",
];

/// `text` with secrets replaced: every PEM block (`-----BEGIN …-----` to its `-----END …-----`,
/// or to the end when cut off) becomes `[redacted PEM block]`, and the value of every
/// `name = value` or `name: value` line whose name contains one of [`SECRET_NAMES`] (any case)
/// becomes `[redacted]`.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_pem = false;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let ending = &line[body.len()..];
        if in_pem {
            if body.trim_start().starts_with("-----END ") {
                in_pem = false;
            }
            continue;
        }
        if body.trim_start().starts_with("-----BEGIN ") {
            in_pem = !body.contains("-----END ");
            out.push_str("[redacted PEM block]");
            out.push_str(ending);
            continue;
        }
        let separator = body.find(['=', ':']);
        match separator {
            Some(at)
                if {
                    let name = body[..at].trim().to_ascii_lowercase();
                    !name.is_empty() && SECRET_NAMES.iter().any(|secret| name.contains(secret))
                } && !body[at + 1..].trim().is_empty() =>
            {
                out.push_str(&body[..=at]);
                out.push_str(" [redacted]");
                out.push_str(ending);
            }
            _ => out.push_str(line),
        }
    }
    out
}

/// The redacted excerpt of a file's beginning, at most [`MAX_EXCERPT`] bytes (cut at a
/// character boundary), and whether it was cut. Redaction comes first, so a secret is never
/// half cut and half kept.
pub fn excerpt_of(text: &str) -> (String, bool) {
    let mut redacted = redact(text);
    if redacted.len() <= MAX_EXCERPT {
        return (redacted, false);
    }
    let mut end = MAX_EXCERPT;
    while !redacted.is_char_boundary(end) {
        end -= 1;
    }
    redacted.truncate(end);
    (redacted, true)
}

fn check_text(problems: &mut Problems, path: String, text: &str, max: usize) {
    if text.len() > max {
        problems.add(path, format!("{} bytes; at most {max}", text.len()));
    } else if text.chars().any(|c| c.is_control() && c != '\t') {
        problems.add(path, "contains control characters");
    }
}

fn check_sha256(problems: &mut Problems, path: String, digest: &str) {
    if digest.len() != 64
        || !digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        problems.add(
            path,
            format!("{digest:?} is not a SHA-256 (64 lowercase hex digits)"),
        );
    }
}

/// Compares dotted versions part by part, numerically where both parts are numbers
/// (`1.10` > `1.9`), as text otherwise.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let mut left = a.split(['.', '-', '+', '~']);
    let mut right = b.split(['.', '-', '+', '~']);
    loop {
        match (left.next(), right.next()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => x.cmp(y),
                };
                if order.is_ne() {
                    return order;
                }
            }
        }
    }
}

/// A list of 32-bit whole numbers, written as JSON integers or as floats with no fraction
/// (`13209.0`), as JSON Schema's `integer` allows.
fn whole_i32s<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<i32>, D::Error> {
    use serde::de::Error as _;
    Vec::<serde_json::Number>::deserialize(d)?
        .iter()
        .map(|n| {
            let whole = match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => i32::try_from(i).ok(),
                (None, Some(f))
                    if f.fract() == 0.0 && (i32::MIN as f64..=i32::MAX as f64).contains(&f) =>
                {
                    Some(f as i32)
                }
                _ => None,
            };
            whole.ok_or_else(|| {
                D::Error::custom(format!("{n} is not a whole number from -2^31 to 2^31 - 1"))
            })
        })
        .collect()
}

/// A rule of the fault database: which faults it recognises and what it says of them. Every
/// condition given must hold; patterns are plain substrings (case-sensitive), not regular
/// expressions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FaultRule {
    pub id: String,
    pub program: String,
    /// The lowest version the rule applies to (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_from: Option<String>,
    /// The first version it no longer applies to (exclusive): the fixed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_below: Option<String>,
    /// Kinds of fault (any when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<FaultKind>,
    /// Exit statuses (any when empty).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "whole_i32s"
    )]
    pub exit_codes: Vec<i32>,
    /// Signals (any when empty).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "whole_i32s"
    )]
    pub signals: Vec<i32>,
    /// A substring one of the top frames contains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_pattern: Option<String>,
    /// A substring one of the definition files' excerpts contains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition_pattern: Option<String>,
    pub cause: String,
    pub remedy: String,
}

impl FaultRule {
    pub fn validate(&self, document: &str) -> Result<(), ValidationError> {
        let mut problems = Problems::default();
        if let Err(why) = herd_core::check_identifier(&self.id) {
            problems.add("$.id", why);
        }
        if let Err(why) = herd_core::check_identifier(&self.program) {
            problems.add("$.program", why);
        }
        for (field, version) in [
            ("version_from", &self.version_from),
            ("version_below", &self.version_below),
        ] {
            if let Some(version) = version
                && let Err(why) = herd_core::check_version(version)
            {
                problems.add(format!("$.{field}"), why);
            }
        }
        for (field, text) in [("cause", &self.cause), ("remedy", &self.remedy)] {
            if text.trim().is_empty() {
                problems.add(format!("$.{field}"), "must not be empty");
            }
            check_text(&mut problems, format!("$.{field}"), text, MAX_TEXT);
        }
        for (field, pattern) in [
            ("frame_pattern", &self.frame_pattern),
            ("definition_pattern", &self.definition_pattern),
        ] {
            if let Some(pattern) = pattern {
                if pattern.is_empty() {
                    problems.add(format!("$.{field}"), "must not be empty");
                }
                check_text(&mut problems, format!("$.{field}"), pattern, MAX_TEXT);
            }
        }
        problems.finish(document, || ())
    }

    /// Whether the rule recognises `report`.
    pub fn matches(&self, report: &FaultReport) -> bool {
        self.program == report.program
            && self
                .version_from
                .as_deref()
                .is_none_or(|from| compare_versions(&report.version, from).is_ge())
            && self
                .version_below
                .as_deref()
                .is_none_or(|below| compare_versions(&report.version, below).is_lt())
            && (self.kinds.is_empty() || self.kinds.contains(&report.kind))
            && (self.exit_codes.is_empty()
                || report
                    .exit_code
                    .is_some_and(|c| self.exit_codes.contains(&c)))
            && (self.signals.is_empty() || report.signal.is_some_and(|s| self.signals.contains(&s)))
            && self.frame_pattern.as_deref().is_none_or(|pattern| {
                report
                    .frames
                    .iter()
                    .take(SIGNATURE_FRAMES)
                    .any(|f| f.contains(pattern))
            })
            && self.definition_pattern.as_deref().is_none_or(|pattern| {
                report
                    .definitions
                    .iter()
                    .any(|file| file.excerpt.contains(pattern))
            })
    }
}

/// An approved alternative to a program.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Alternative {
    pub program: String,
    pub vendor: String,
    pub version: String,
    /// Superseded: an unsigned blob uploaded to the center. Entries stored before signed
    /// replacement still parse (their alternative is then used only where a terminal has it);
    /// the center refuses new ones. An alternative is distributed when `program`, `vendor` and
    /// `version` name a program release of the catalog (see `target`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_sha256: Option<String>,
    /// Superseded with `package_sha256`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::api::whole_number::option"
    )]
    pub package_size: Option<u64>,
    /// Set by the center, never in an entry put: in a `replace` verdict (and in the table as
    /// listed, where the catalog has the release today), the signed TUF target that installs
    /// the alternative on the faulting terminal's platform, `packages/<vendor>/<program>/
    /// <version>/<platform>.archive`, of the catalog's program release named by `vendor`,
    /// `program` and `version`. The agent installs nothing the verified metadata does not list
    /// under this name with a matching `custom.herd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// An entry of the replacement table: for a program on a platform, the approved alternatives
/// in order of preference (same vendor or another).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplacementEntry {
    pub program: String,
    pub platform: String,
    pub alternatives: Vec<Alternative>,
}

impl ReplacementEntry {
    pub fn validate(&self, document: &str) -> Result<(), ValidationError> {
        let mut problems = Problems::default();
        for (field, value) in [("program", &self.program), ("platform", &self.platform)] {
            if let Err(why) = herd_core::check_identifier(value) {
                problems.add(format!("$.{field}"), why);
            }
        }
        if self.alternatives.is_empty() || self.alternatives.len() > MAX_ALTERNATIVES {
            problems.add(
                "$.alternatives",
                format!("list 1 to {MAX_ALTERNATIVES} alternatives"),
            );
        }
        for (i, alternative) in self.alternatives.iter().enumerate() {
            for (field, value) in [
                ("program", &alternative.program),
                ("vendor", &alternative.vendor),
            ] {
                if let Err(why) = herd_core::check_identifier(value) {
                    problems.add(format!("$.alternatives[{i}].{field}"), why);
                }
            }
            if let Err(why) = herd_core::check_version(&alternative.version) {
                problems.add(format!("$.alternatives[{i}].version"), why);
            }
            if alternative.program == self.program {
                problems.add(
                    format!("$.alternatives[{i}].program"),
                    "a program is not its own alternative",
                );
            }
            if alternative.package_sha256.is_some() || alternative.package_size.is_some() {
                problems.add(
                    format!("$.alternatives[{i}].package_sha256"),
                    "an unsigned package is no longer distributed: publish the alternative as \
                     a program release of its vendor's catalog feed (a signed target), and name \
                     it here by program, vendor and version",
                );
            }
            if alternative.target.is_some() {
                problems.add(
                    format!("$.alternatives[{i}].target"),
                    "the center names the signed target in its verdicts; the table names the \
                     release by program, vendor and version",
                );
            }
        }
        problems.finish(document, || ())
    }
}

/// What the center decided about a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Decision {
    /// A rule of the fault database names the cause and the remedy.
    Known,
    /// Unknown cause: replace the program with the alternative, distributed as a signed
    /// target (claim 16).
    Replace,
    /// Unknown cause: switch to the alternative the terminal already has (claim 17).
    UseAlternative,
    /// Unknown cause and no approved alternative: escalated to operators.
    Escalated,
    /// Unknown cause, and the alternative to distribute is still rolling out in rings that
    /// have not reached this terminal (SPEC §3.4): nothing to do yet. The center decides the
    /// fault again when the replacement's rollout moves, and the verdict of the same `seq`
    /// then becomes `replace` (its ring opened) or `escalated` (the replacement was halted
    /// and withdrawn), which the terminal acts on then. Listed only to readers that ask
    /// (`GET /v1/fault-verdicts?held=true`): an older agent would refuse the whole answer.
    Held,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Known => "known",
            Decision::Replace => "replace",
            Decision::UseAlternative => "use_alternative",
            Decision::Escalated => "escalated",
            Decision::Held => "held",
        }
    }

    pub fn parse(text: &str) -> Option<Decision> {
        [
            Decision::Known,
            Decision::Replace,
            Decision::UseAlternative,
            Decision::Escalated,
            Decision::Held,
        ]
        .into_iter()
        .find(|d| d.as_str() == text)
    }
}

/// The center's verdict on one fault report, for the terminal and for operators.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FaultVerdict {
    /// The seq of the `fault.report` event.
    pub seq: u64,
    /// When the fault happened (RFC 3339).
    pub at: String,
    pub program: String,
    /// The bucket (hex SHA-256 prefix of the signature).
    pub bucket: String,
    pub decision: Decision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
    /// The alternative to replace the program with (`replace`, `use_alternative`), or the one
    /// whose rollout the terminal waits for (`held`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternative: Option<Alternative>,
}

/// A terminal's latest verdicts, newest first (`GET /v1/faults/verdicts`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FaultVerdicts {
    pub verdicts: Vec<FaultVerdict>,
}

/// A bucket as operators see it (`herd faults list`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FaultBucket {
    pub id: String,
    pub program: String,
    pub version: String,
    pub kind: FaultKind,
    /// The signature the bucket stands for, one line per part.
    pub signature: String,
    pub faults: u64,
    pub terminals: u64,
    pub first_seen: String,
    pub last_seen: String,
    /// The decision on its latest fault.
    pub decision: Decision,
    /// When it was first escalated, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_at: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FaultBucketList {
    pub buckets: Vec<FaultBucket>,
}

/// One fault as stored: which terminal, the report, the verdict, and what the terminal did
/// with a `replace` or `use_alternative` verdict (once it said).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FaultEntry {
    pub terminal: String,
    pub report: FaultReport,
    pub verdict: FaultVerdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<FaultReplaced>,
}

/// What a terminal did with a replacement verdict: the data of a `fault.replaced` event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FaultReplaced {
    /// The program that failed.
    pub program: String,
    /// The alternative it was to be replaced by.
    pub alternative: String,
    /// The seq of the `fault.report` event whose verdict this carries out.
    pub seq: u64,
    /// Whether the alternative runs now; false: the old program was restored.
    pub replaced: bool,
    /// The step that failed: `fetch`, `install`, `health_check` or `switch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    /// What happened, in words (at most [`MAX_TEXT`] bytes).
    pub message: String,
}

impl FaultReplaced {
    /// Checks what serde cannot; `document` names the event's data in errors.
    pub fn validate(&self, document: &str) -> Result<(), ValidationError> {
        let mut problems = Problems::default();
        for (field, value) in [
            ("program", &self.program),
            ("alternative", &self.alternative),
        ] {
            if let Err(why) = herd_core::check_identifier(value) {
                problems.add(format!("$.{field}"), why);
            }
        }
        if let Some(step) = &self.failed_step
            && !["fetch", "install", "health_check", "switch"].contains(&step.as_str())
        {
            problems.add(
                "$.failed_step",
                format!("{step:?} is not a step (fetch, install, health_check, switch)"),
            );
        }
        if self.replaced == self.failed_step.is_some() {
            problems.add(
                "$.failed_step",
                "name the failed step exactly when the replacement failed",
            );
        }
        if self.message.len() > MAX_TEXT {
            problems.add(
                "$.message",
                format!("{} bytes; at most {MAX_TEXT}", self.message.len()),
            );
        }
        problems.finish(document, || ())
    }
}

/// A bucket with its latest faults (`herd faults show`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FaultBucketDetail {
    pub bucket: FaultBucket,
    pub faults: Vec<FaultEntry>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FaultRuleList {
    pub rules: Vec<FaultRule>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplacementList {
    pub entries: Vec<ReplacementEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> FaultReport {
        FaultReport {
            terminal: None,
            program: "middleware-a".into(),
            vendor: "company-a".into(),
            version: "2.4.1".into(),
            platform: "linux-x86_64".into(),
            kind: FaultKind::Crash,
            exit_code: None,
            signal: Some(11),
            frames: vec!["parse_config+0x1c at 0x7f3a00001000".into(), "main".into()],
            dump_sha256: None,
            definitions: vec![DefinitionFile {
                path: "/etc/mw/a.conf".into(),
                sha256: None,
                size: 10,
                excerpt: "mode = fast\n".into(),
                truncated: false,
            }],
            restarts: 0,
            message: None,
            alternatives_present: vec![],
        }
    }

    #[test]
    fn secrets_are_redacted_and_the_rest_kept() {
        let text = "host = db1\npassword = hunter2\nApi_Key: abc\nkeyboard=\n\
                    -----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\nafter = 1\n\
                    -----BEGIN CERTIFICATE-----\ncut off";
        let out = redact(text);
        assert_eq!(
            out,
            "host = db1\npassword = [redacted]\nApi_Key: [redacted]\nkeyboard=\n\
             [redacted PEM block]\nafter = 1\n[redacted PEM block]\n"
        );
        assert!(!out.contains("hunter2") && !out.contains("MIIB") && !out.contains("cut off"));
    }

    #[test]
    fn an_excerpt_is_bounded_at_a_character_boundary() {
        let (excerpt, cut) = excerpt_of(&"é".repeat(MAX_EXCERPT));
        assert!(cut && excerpt.len() <= MAX_EXCERPT && excerpt.len() >= MAX_EXCERPT - 1);
        assert_eq!(excerpt_of("short"), ("short".to_owned(), false));
    }

    #[test]
    fn signatures_ignore_addresses_and_differ_by_exit() {
        let mut other = report();
        other.frames[0] = "parse_config+0x2f at   0x7f3b00002000".into();
        assert_eq!(report().signature(), other.signature());
        other.signal = Some(6);
        assert_ne!(report().signature(), other.signature());
    }

    #[test]
    fn rules_match_on_every_condition_given() {
        let rule = FaultRule {
            id: "a-parse".into(),
            program: "middleware-a".into(),
            version_from: Some("2.0".into()),
            version_below: Some("2.10".into()),
            kinds: vec![FaultKind::Crash],
            exit_codes: vec![],
            signals: vec![11],
            frame_pattern: Some("parse_config".into()),
            definition_pattern: Some("mode = fast".into()),
            cause: "c".into(),
            remedy: "r".into(),
        };
        assert!(rule.matches(&report()));
        let mut newer = report();
        newer.version = "2.10.0".into();
        assert!(!rule.matches(&newer));
        let mut other_config = report();
        other_config.definitions[0].excerpt = "mode = slow".into();
        assert!(!rule.matches(&other_config));
    }

    #[test]
    fn exit_codes_and_signals_may_be_whole_floats_but_nothing_else() {
        let rule = |numbers: &str| {
            serde_json::from_str::<FaultRule>(&format!(
                r#"{{"id":"r","program":"p","cause":"c","remedy":"r","signals":{numbers},"exit_codes":{numbers}}}"#
            ))
        };
        let parsed = rule("[11, 13209.0, -6]").unwrap();
        assert_eq!(parsed.signals, [11, 13209, -6]);
        assert_eq!(parsed.exit_codes, [11, 13209, -6]);
        for bad in ["[1.5]", "[2147483648]", "[3e12]", "[\"9\"]"] {
            let err = rule(bad).unwrap_err().to_string();
            assert!(!err.is_empty(), "{bad} must be refused");
        }
    }

    #[test]
    fn bad_reports_are_refused_naming_the_field() {
        let mut bad = report();
        bad.program = "../x".into();
        bad.signal = None;
        bad.frames = vec!["f".into(); MAX_FRAMES + 1];
        bad.dump_sha256 = Some("XYZ".into());
        let err = bad.validate("fault report").unwrap_err().to_string();
        for path in ["$.program", "$.signal", "$.frames", "$.dump_sha256"] {
            assert!(err.contains(path), "{err}");
        }
    }

    /// Verdicts and listings are answers: a field a newer center adds (to an alternative, a
    /// verdict, a rollout) must not make an older agent or CLI refuse the whole answer.
    #[test]
    fn answers_accept_fields_a_newer_center_adds() {
        let verdicts = serde_json::json!({"verdicts": [{
            "seq": 3, "at": "2026-12-06T20:00:00Z", "program": "mw-a", "bucket": "0123",
            "decision": "held", "ring_opens": "later",
            "alternative": {"program": "mw-b", "vendor": "company-b", "version": "2.0",
                            "rollout": "company-b/mw-b/2.0"}}],
            "next": null});
        let read: FaultVerdicts = serde_json::from_value(verdicts).unwrap();
        assert_eq!(read.verdicts[0].decision, Decision::Held);
        assert_eq!(
            read.verdicts[0].alternative.as_ref().unwrap().program,
            "mw-b"
        );
        let summary = serde_json::json!({
            "release": "company-b/mw-b/2.0", "product": "mw-b", "version": "2.0", "seq": 20,
            "phase": "rolling", "ring": "canary", "ring_index": 0, "reach_bp": 100,
            "started_at": "x", "ring_started_at": "x", "updated_at": "x", "reason": null,
            "succeeded": 0, "failed": 0, "faults": 0, "silent": 0, "replacement": true,
            "added_later": {"a": 1}});
        let read: crate::api::RolloutSummary = serde_json::from_value(summary).unwrap();
        assert!(read.replacement);
        // A request stays strict: a report with a field the center does not know is refused.
        let mut sent = serde_json::to_value(report()).unwrap();
        sent["surprise"] = serde_json::json!(1);
        assert!(serde_json::from_value::<FaultReport>(sent).is_err());
        assert_eq!(Decision::parse("held"), Some(Decision::Held));
        assert_eq!(Decision::Held.as_str(), "held");
    }
}
