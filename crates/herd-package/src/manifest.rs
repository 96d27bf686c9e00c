//! The package manifest, `herd-package.json` at the root of every `archive` package: what the
//! package is (product, vendor, version, definitions seq and pattern name, and its kind: a
//! vaccine product or another program), which engine loads its definitions, which files they
//! are, the test pattern they must detect, the health check a program must pass, and the hooks.
//!
//! A vaccine carries an engine, definitions and a test pattern, as every manifest written before
//! programs existed. A program (`"kind": "program"`) may carry them too; one that does not
//! declares a `health_check` instead, which the agent's verify step runs.
//!
//! Every path in a manifest becomes a path under the agent's product prefix and a word in a
//! generated script, so they are checked as strictly as identifiers: relative, `/`-separated,
//! no empty, `.` or `..` parts, no control characters or backslashes.

use herd_core::{ProductKind, check_identifier, check_version};
use herd_proto::{Problem, ValidationError};
use serde::{Deserialize, Serialize};

/// The manifest's file name, at the archive root (and so in the installed version directory).
pub const MANIFEST_FILE: &str = "herd-package.json";

/// The only manifest format this version understands.
pub const PACKAGE_FORMAT: &str = "herd.package/v1";

/// Herd's own scan engine (`herd-scan`) loading ClamAV-format definition files: the only
/// engine an `archive` package can name today.
pub const ENGINE: &str = "herd-scan/1";

/// Definition file types `herd-scan` loads without the `yara` feature.
pub const DEFINITION_EXTENSIONS: [&str; 8] =
    ["hdb", "hsb", "ndb", "ldb", "cdb", "fp", "sfp", "ign2"];

/// Longest path accepted inside a package (bytes): what one tar header's name field holds, so
/// no extended header (which tar readers apply differently) is ever needed for a name.
const MAX_PATH_LEN: usize = 100;

/// Longest time a health check may be given (milliseconds): the agent's script limit.
pub const MAX_HEALTH_CHECK_TIMEOUT_MS: u64 = 600_000;

/// Most arguments a health check command may have (after the program itself).
const MAX_HEALTH_CHECK_ARGS: usize = 32;

/// Longest argument, and longest expected output text, of a health check (bytes).
const MAX_HEALTH_CHECK_TEXT: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub product: String,
    pub vendor: String,
    pub version: String,
    /// The definitions release this package carries (orders a product's releases).
    pub seq: u64,
    /// The definitions release's display name ("pattern file name").
    pub pattern: String,
    /// `"vaccine"` (absent: the default) or `"program"`; see [`Manifest::kind`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The engine that loads the definitions: required for a vaccine; a program without
    /// definitions has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Definition files, relative to the package root, loaded in this order.
    #[serde(default)]
    pub definitions: Vec<String>,
    /// A file, relative to the package root, that the definitions must detect: required for a
    /// vaccine; a program without definitions has none and declares a health check instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_pattern: Option<String>,
    /// What the verify step runs to prove the installed program works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// A program only: how a supervisor starts it — an executable file of the package
    /// (relative to its root) and its arguments, run from the installed directory with no
    /// shell. What fault recovery's replacement switches to (`herd-agent supervise`); a program
    /// without it can be installed by a plan but not swapped in for a failing one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<Vec<String>>,
    /// Run from the version directory after unpacking, before the product becomes active.
    pub post_install: Option<String>,
    /// Run from the version directory before it is removed.
    pub pre_uninstall: Option<String>,
    /// Who the hooks run as. Absent: an unprivileged user the agent chooses (its `hook_user`,
    /// `nobody` by default). `"root"`: the package says its hooks need root; an agent runs
    /// them so only if its policy allows root hooks (`--allow-root-hooks`), and refuses the
    /// install otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks_run_as: Option<HooksRunAs>,
}

/// A program's health check: a command from the package, run from the installed version
/// directory (as the hooks are, under the same privilege rules) with a time limit, and what it
/// must give: an exit status, a text its standard output must contain, or both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// The program (an executable file of the package, relative to its root) and its
    /// arguments; no shell is involved.
    pub command: Vec<String>,
    /// How long it may run (milliseconds, 1 to 600,000); it is killed, and fails, after that.
    pub timeout_ms: u64,
    /// The exit status it must end with (0 to 255).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    /// A text its standard output must contain (within its first 64 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_contains: Option<String>,
}

impl HealthCheck {
    /// The program the check runs, relative to the package root.
    pub fn program(&self) -> Option<&str> {
        self.command.first().map(String::as_str)
    }

    /// Every problem of the check, as (JSON path, message).
    fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut add = |path: &str, message: String| {
            problems.push((format!("$.health_check{path}"), message));
        };
        match self.command.split_first() {
            None => add(
                ".command",
                "name the program to run (a file of the package) and its arguments".to_owned(),
            ),
            Some((program, args)) => {
                if let Err(why) = check_package_path(program) {
                    add(".command[0]", why);
                }
                if args.len() > MAX_HEALTH_CHECK_ARGS {
                    add(
                        ".command",
                        format!(
                            "at most {MAX_HEALTH_CHECK_ARGS} arguments; found {}",
                            args.len()
                        ),
                    );
                }
                for (i, arg) in args.iter().enumerate() {
                    if let Err(why) = check_text(arg) {
                        add(&format!(".command[{}]", i + 1), why);
                    }
                }
            }
        }
        if !(1..=MAX_HEALTH_CHECK_TIMEOUT_MS).contains(&self.timeout_ms) {
            add(
                ".timeout_ms",
                format!(
                    "a health check's time limit is 1 to {MAX_HEALTH_CHECK_TIMEOUT_MS} ms; found {}",
                    self.timeout_ms
                ),
            );
        }
        if let Some(status) = self.exit_status
            && !(0..=255).contains(&status)
        {
            add(
                ".exit_status",
                format!("an exit status is 0 to 255; found {status}"),
            );
        }
        match &self.output_contains {
            Some(text) if text.is_empty() => add(
                ".output_contains",
                "an empty text is contained in any output; name the text the program prints"
                    .to_owned(),
            ),
            Some(text) => {
                if let Err(why) = check_text(text) {
                    add(".output_contains", why);
                }
            }
            None if self.exit_status.is_none() => add(
                "",
                "say what the check must give: an exit_status, an output_contains, or both"
                    .to_owned(),
            ),
            None => {}
        }
        problems
    }
}

/// A health check's argument or expected text: at most 1024 bytes, without NUL (which no
/// argument can hold).
fn check_text(text: &str) -> Result<(), String> {
    if text.len() > MAX_HEALTH_CHECK_TEXT {
        return Err(format!(
            "at most {MAX_HEALTH_CHECK_TEXT} bytes; found {}",
            text.len()
        ));
    }
    if text.contains('\0') {
        return Err("may not contain a NUL character".to_owned());
    }
    Ok(())
}

/// The privilege a package asks for its hooks (the manifest's `hooks_run_as`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HooksRunAs {
    /// The hooks need root (to touch system files): allowed only by the agent's policy.
    Root,
}

impl Manifest {
    /// Parses and validates manifest text; `document` names it in errors.
    pub fn parse(document: &str, bytes: &[u8]) -> Result<Manifest, ValidationError> {
        // Another format version has other fields: saying "unknown field" about them would
        // hide the one thing that is wrong, so the format is checked before the shape.
        if let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(bytes)
            && let Some(format) = object.get("format")
            && format.as_str() != Some(PACKAGE_FORMAT)
        {
            return Err(ValidationError {
                document: document.to_owned(),
                problems: vec![Problem {
                    path: "$.format".to_owned(),
                    message: format!(
                        "unknown format {format}; this version of Herd reads \"{PACKAGE_FORMAT}\""
                    ),
                }],
            });
        }
        let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
        let manifest: Manifest = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let path = match err.path().to_string().as_str() {
                "" | "." | "?" => "$".to_owned(),
                path => format!("$.{path}"),
            };
            ValidationError {
                document: document.to_owned(),
                problems: vec![Problem {
                    path,
                    message: {
                        let inner = err.into_inner();
                        // serde's "expected ident at line 1 column 2" does not say the
                        // manifest is not JSON at all; a syntax error is named as one.
                        if inner.is_syntax() || inner.is_eof() {
                            format!("not valid JSON: {inner}")
                        } else {
                            inner.to_string()
                        }
                    },
                }],
            }
        })?;
        manifest.validate(document)?;
        Ok(manifest)
    }

    /// Checks every rule of the format and reports every problem, each with its JSON path.
    pub fn validate(&self, document: &str) -> Result<(), ValidationError> {
        let mut problems = Vec::new();
        let mut add = |path: &str, message: String| {
            problems.push(Problem {
                path: path.to_owned(),
                message,
            })
        };
        if self.format != PACKAGE_FORMAT {
            add(
                "$.format",
                format!(
                    "unknown format {:?}; expected \"{PACKAGE_FORMAT}\"",
                    self.format
                ),
            );
        }
        if let Err(why) = check_identifier(&self.product) {
            add("$.product", why);
        }
        if let Err(why) = check_identifier(&self.vendor) {
            add("$.vendor", why);
        }
        if let Err(why) = check_version(&self.version) {
            add("$.version", why);
        }
        if let Err(why) = check_pattern_name(&self.pattern) {
            add("$.pattern", why);
        }
        // An unknown kind is the one problem to report: what else is required depends on it.
        let kind = match self.kind.as_deref().map(ProductKind::parse) {
            None => Some(ProductKind::Vaccine),
            Some(Ok(kind)) => Some(kind),
            Some(Err(why)) => {
                add("$.kind", why);
                None
            }
        };
        // A vaccine is its definitions; a program carries them (all three parts) or not at all.
        let scans = kind == Some(ProductKind::Vaccine)
            || self.engine.is_some()
            || !self.definitions.is_empty()
            || self.test_pattern.is_some();
        if scans {
            match &self.engine {
                Some(engine) if engine == ENGINE => {}
                Some(engine) => add(
                    "$.engine",
                    format!("unknown engine {engine:?}; this agent loads \"{ENGINE}\" definitions"),
                ),
                None => add(
                    "$.engine",
                    format!(
                        "a package with definitions names their engine (\"{ENGINE}\"); a program \
                         without definitions carries no engine, definitions or test pattern"
                    ),
                ),
            }
            if self.definitions.is_empty() {
                add(
                    "$.definitions",
                    "a package must carry at least one definition file".to_owned(),
                );
            }
            if self.test_pattern.is_none() {
                add(
                    "$.test_pattern",
                    "a package with definitions carries a test pattern they must detect".to_owned(),
                );
            }
        } else if self.health_check.is_none() && kind.is_some() {
            add(
                "$.health_check",
                "a program without a test pattern declares a health check: the verify step has \
                 nothing else to prove it works"
                    .to_owned(),
            );
        }
        if let Some(check) = &self.health_check {
            for (path, message) in check.problems() {
                add(&path, message);
            }
        }
        if let Some(run) = &self.run {
            if kind == Some(ProductKind::Vaccine) {
                add(
                    "$.run",
                    "only a program (\"kind\": \"program\") says how it is run".to_owned(),
                );
            }
            match run.split_first() {
                None => add(
                    "$.run",
                    "name the program to start (a file of the package) and its arguments"
                        .to_owned(),
                ),
                Some((program, args)) => {
                    if let Err(why) = check_package_path(program) {
                        add("$.run[0]", why);
                    }
                    if args.len() > MAX_HEALTH_CHECK_ARGS {
                        add(
                            "$.run",
                            format!(
                                "at most {MAX_HEALTH_CHECK_ARGS} arguments; found {}",
                                args.len()
                            ),
                        );
                    }
                    for (i, arg) in args.iter().enumerate() {
                        if let Err(why) = check_text(arg) {
                            add(&format!("$.run[{}]", i + 1), why);
                        }
                    }
                }
            }
        }
        for (i, path) in self.definitions.iter().enumerate() {
            let at = format!("$.definitions[{i}]");
            if let Err(why) = check_package_path(path) {
                add(&at, why);
                continue;
            }
            let ext = path
                .rsplit_once('.')
                .map(|(_, ext)| ext.to_ascii_lowercase())
                .unwrap_or_default();
            if !DEFINITION_EXTENSIONS.contains(&ext.as_str()) {
                add(
                    &at,
                    format!(
                        "{path:?} is not a definition file {ENGINE} loads (.hdb, .hsb, .ndb, .ldb, .cdb, .fp, .sfp or .ign2)"
                    ),
                );
            }
            if self.definitions[..i].contains(path) {
                add(&at, format!("{path:?} is listed twice"));
            }
        }
        if self.hooks_run_as.is_some() && self.hooks().next().is_none() {
            add(
                "$.hooks_run_as",
                "names who the hooks run as, but the package has no hooks or health check"
                    .to_owned(),
            );
        }
        if let Some(test_pattern) = &self.test_pattern
            && let Err(why) = check_package_path(test_pattern)
        {
            add("$.test_pattern", why);
        }
        for (field, hook) in [
            ("$.post_install", &self.post_install),
            ("$.pre_uninstall", &self.pre_uninstall),
        ] {
            if let Some(path) = hook
                && let Err(why) = check_package_path(path)
            {
                add(field, why);
            }
        }
        for (field, path) in self.files() {
            if path == MANIFEST_FILE {
                add(
                    field,
                    format!("{MANIFEST_FILE} is the manifest, not a package file"),
                );
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ValidationError {
                document: document.to_owned(),
                problems,
            })
        }
    }

    /// Every file the manifest names, with the JSON path of the field naming it.
    pub fn files(&self) -> Vec<(&'static str, &str)> {
        let mut files: Vec<(&'static str, &str)> = self
            .definitions
            .iter()
            .map(|d| ("$.definitions", d.as_str()))
            .collect();
        if let Some(test_pattern) = &self.test_pattern {
            files.push(("$.test_pattern", test_pattern));
        }
        if let Some(program) = self.health_check.as_ref().and_then(HealthCheck::program)
            && check_package_path(program).is_ok()
        {
            files.push(("$.health_check.command[0]", program));
        }
        if let Some(hook) = &self.post_install {
            files.push(("$.post_install", hook));
        }
        if let Some(hook) = &self.pre_uninstall {
            files.push(("$.pre_uninstall", hook));
        }
        if let Some(program) = self.run_program()
            && check_package_path(program).is_ok()
        {
            files.push(("$.run[0]", program));
        }
        files
    }

    /// The file a supervisor starts (`run[0]`), relative to the package root.
    pub fn run_program(&self) -> Option<&str> {
        self.run
            .as_ref()
            .and_then(|run| run.first())
            .map(String::as_str)
    }

    /// The hooks and the health check's program: executable files in the package, run under
    /// the agent's hook policy (`hooks_run_as`).
    pub fn hooks(&self) -> impl Iterator<Item = &str> {
        self.post_install
            .iter()
            .chain(self.pre_uninstall.iter())
            .map(String::as_str)
            .chain(self.health_check.as_ref().and_then(HealthCheck::program))
    }

    /// What the package describes: a vaccine product unless it says it is a program (an
    /// unknown kind is refused by validation).
    pub fn kind(&self) -> ProductKind {
        self.kind
            .as_deref()
            .and_then(|kind| ProductKind::parse(kind).ok())
            .unwrap_or_default()
    }

    /// The manifest as written into packages: indented JSON with a final newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut text =
            serde_json::to_vec_pretty(self).expect("a manifest always serialises to JSON");
        text.push(b'\n');
        text
    }
}

/// A pattern name is display text, but it also appears in reports and script comments: it must
/// be non-empty, at most 128 characters, without control characters.
pub fn check_pattern_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the pattern name must not be empty".to_owned());
    }
    if name.chars().count() > 128 {
        return Err(format!(
            "a pattern name is at most 128 characters; found {}",
            name.chars().count()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!(
            "a pattern name may not contain control characters: {name:?}"
        ));
    }
    Ok(())
}

/// A path inside a package: relative, `/`-separated, without empty, `.` or `..` parts, without
/// control characters or backslashes, at most 100 bytes.
pub fn check_package_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("a package path must not be empty".to_owned());
    }
    if path.starts_with('/') {
        return Err(format!(
            "a package path is relative to the package root, found {path:?}"
        ));
    }
    if path.len() > MAX_PATH_LEN {
        return Err(format!(
            "a package path is at most {MAX_PATH_LEN} bytes; found {} in {path:?}",
            path.len()
        ));
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return Err(format!(
            "a package path may not contain control characters or backslashes: {path:?}"
        ));
    }
    if path
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(format!(
            "a package path may not contain empty, '.' or '..' parts: {path:?}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            format: PACKAGE_FORMAT.to_owned(),
            product: "vaccine-b".to_owned(),
            vendor: "maker-b".to_owned(),
            version: "7.0".to_owned(),
            seq: 1112,
            pattern: "b-1112".to_owned(),
            kind: None,
            engine: Some(ENGINE.to_owned()),
            definitions: vec!["defs/b.ndb".to_owned()],
            test_pattern: Some("test/b.txt".to_owned()),
            health_check: None,
            post_install: Some("bin/post-install".to_owned()),
            pre_uninstall: None,
            hooks_run_as: None,
            run: None,
        }
    }

    #[test]
    fn a_good_manifest_round_trips_with_explicit_nulls() {
        let m = manifest();
        let text = m.to_json();
        let json = String::from_utf8(text.clone()).unwrap();
        assert!(json.contains("\"pre_uninstall\": null"), "{json}");
        assert_eq!(Manifest::parse("m", &text).unwrap(), m);
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let mut m = manifest();
        m.format = "herd.package/v9".to_owned();
        m.product = "../etc".to_owned();
        m.version = "7 0".to_owned();
        m.pattern = "b\n1112".to_owned();
        m.engine = Some("clamav".to_owned());
        m.definitions = vec![
            "defs/../../x.ndb".to_owned(),
            "defs/b.cvd".to_owned(),
            "defs/b.cvd".to_owned(),
        ];
        m.test_pattern = Some("/etc/passwd".to_owned());
        m.post_install = Some("bin//hook".to_owned());
        m.pre_uninstall = Some(MANIFEST_FILE.to_owned());
        let err = m.validate("pkg").unwrap_err();
        let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "$.format",
                "$.product",
                "$.version",
                "$.pattern",
                "$.engine",
                "$.definitions[0]",
                "$.definitions[1]",
                "$.definitions[2]",
                "$.definitions[2]",
                "$.test_pattern",
                "$.post_install",
                "$.pre_uninstall",
            ],
            "{err}"
        );
        assert!(err.to_string().starts_with("pkg: $.format: unknown format"));
    }

    #[test]
    fn unknown_fields_and_bad_json_name_the_place() {
        let text = br#"{"format":"herd.package/v1","product":"p","colour":"red"}"#;
        let err = Manifest::parse("m.json", text).unwrap_err();
        assert_eq!(err.problems[0].path, "$.colour");
        let err = Manifest::parse("m.json", b"{").unwrap_err();
        assert_eq!(err.problems[0].path, "$");
    }

    #[test]
    fn another_format_version_is_named_before_its_unknown_fields() {
        let text = br#"{"format":"herd.package/v2","product":"p","layers":[]}"#;
        let err = Manifest::parse("m.json", text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "m.json: $.format: unknown format \"herd.package/v2\"; this version of Herd reads \"herd.package/v1\""
        );
    }

    /// Company A's middleware: a program without definitions, proved by its health check.
    fn program() -> Manifest {
        Manifest {
            kind: Some("program".to_owned()),
            engine: None,
            definitions: vec![],
            test_pattern: None,
            health_check: Some(HealthCheck {
                command: vec!["bin/middleware".to_owned(), "--health".to_owned()],
                timeout_ms: 5000,
                exit_status: Some(0),
                output_contains: Some("ready".to_owned()),
            }),
            post_install: None,
            ..manifest()
        }
    }

    #[test]
    fn a_manifest_written_before_programs_existed_still_parses_as_a_vaccine() {
        // Byte for byte what `herd package build` wrote before kinds and health checks.
        let text = br#"{
  "format": "herd.package/v1",
  "product": "vaccine-b",
  "vendor": "maker-b",
  "version": "7.0",
  "seq": 1112,
  "pattern": "b-1112",
  "engine": "herd-scan/1",
  "definitions": [
    "defs/b.ndb"
  ],
  "test_pattern": "test/b.txt",
  "post_install": "bin/post-install",
  "pre_uninstall": null
}
"#;
        let m = Manifest::parse("old.json", text).unwrap();
        assert_eq!(m, manifest());
        assert_eq!(m.kind(), ProductKind::Vaccine);
        // And a vaccine is written as it always was, so rebuilt packages keep their digests.
        assert_eq!(m.to_json(), text);
    }

    #[test]
    fn a_program_round_trips_with_its_health_check() {
        let m = program();
        let text = m.to_json();
        let json = String::from_utf8(text.clone()).unwrap();
        assert!(json.contains("\"kind\": \"program\""), "{json}");
        assert!(!json.contains("engine"), "{json}");
        assert_eq!(Manifest::parse("m", &text).unwrap(), m);
        assert_eq!(m.kind(), ProductKind::Program);
        let files: Vec<_> = m.files().into_iter().map(|(_, path)| path).collect();
        assert_eq!(files, ["bin/middleware"]);
        assert_eq!(m.hooks().collect::<Vec<_>>(), ["bin/middleware"]);
        // The program a supervisor starts is a file of the package too, but no hook.
        let mut m = m;
        m.run = Some(vec!["bin/middleware".to_owned(), "--serve".to_owned()]);
        m.validate("m").unwrap();
        assert_eq!(m.run_program(), Some("bin/middleware"));
        let files: Vec<_> = m.files().into_iter().map(|(field, _)| field).collect();
        assert_eq!(files, ["$.health_check.command[0]", "$.run[0]"]);
    }

    #[test]
    fn a_program_with_definitions_carries_all_of_them_and_may_add_a_health_check() {
        let mut m = manifest();
        m.kind = Some("program".to_owned());
        m.health_check = program().health_check;
        m.validate("m").unwrap();
        m.test_pattern = None;
        let err = m.validate("m").unwrap_err();
        assert_eq!(
            err.to_string(),
            "m: $.test_pattern: a package with definitions carries a test pattern they must detect"
        );
    }

    #[test]
    fn kinds_and_health_checks_are_refused_with_their_paths() {
        let refused = |change: &dyn Fn(&mut Manifest), expected: &[&str]| {
            let mut m = program();
            change(&mut m);
            let err = m.validate("m").unwrap_err();
            let text = err.to_string();
            for part in expected {
                assert!(text.contains(part), "expected {part:?} in:\n{text}");
            }
            assert_eq!(err.problems.len(), expected.len(), "{text}");
        };
        refused(
            &|m| m.kind = Some("middleware".to_owned()),
            &["$.kind: unknown product kind \"middleware\""],
        );
        refused(
            &|m| m.health_check = None,
            &["$.health_check: a program without a test pattern declares a health check"],
        );
        refused(
            &|m| m.kind = None,
            &[
                "$.engine: a package with definitions names their engine",
                "$.definitions: a package must carry at least one definition file",
                "$.test_pattern: a package with definitions carries a test pattern",
            ],
        );
        refused(
            &|m| m.health_check.as_mut().unwrap().command.clear(),
            &["$.health_check.command: name the program to run"],
        );
        refused(
            &|m| m.health_check.as_mut().unwrap().command[0] = "/bin/true".to_owned(),
            &["$.health_check.command[0]: a package path is relative"],
        );
        refused(
            &|m| m.health_check.as_mut().unwrap().command[0] = "../x".to_owned(),
            &["$.health_check.command[0]: a package path may not contain"],
        );
        refused(
            &|m| m.health_check.as_mut().unwrap().command[1] = "a\0b".to_owned(),
            &["$.health_check.command[1]: may not contain a NUL"],
        );
        refused(
            &|m| {
                let check = m.health_check.as_mut().unwrap();
                check
                    .command
                    .extend(std::iter::repeat_n("x".to_owned(), 40));
                check.command.push("y".repeat(2000));
            },
            &[
                "$.health_check.command: at most 32 arguments; found 42",
                "$.health_check.command[42]: at most 1024 bytes",
            ],
        );
        refused(
            &|m| m.run = Some(vec![]),
            &["$.run: name the program to start"],
        );
        refused(
            &|m| m.run = Some(vec!["/usr/bin/mw".to_owned(), "a\0b".to_owned()]),
            &[
                "$.run[0]: a package path is relative",
                "$.run[1]: may not contain a NUL",
            ],
        );
        refused(
            &|m| {
                *m = manifest();
                m.run = Some(vec!["bin/hook".to_owned()]);
            },
            &["$.run: only a program (\"kind\": \"program\") says how it is run"],
        );
        refused(
            &|m| m.health_check.as_mut().unwrap().timeout_ms = 0,
            &["$.health_check.timeout_ms: a health check's time limit is 1 to 600000 ms; found 0"],
        );
        refused(
            &|m| m.health_check.as_mut().unwrap().timeout_ms = 600_001,
            &["$.health_check.timeout_ms: a health check's time limit is 1 to 600000 ms"],
        );
        refused(
            &|m| m.health_check.as_mut().unwrap().exit_status = Some(256),
            &["$.health_check.exit_status: an exit status is 0 to 255; found 256"],
        );
        refused(
            &|m| m.health_check.as_mut().unwrap().exit_status = Some(-1),
            &["$.health_check.exit_status: an exit status is 0 to 255; found -1"],
        );
        refused(
            &|m| m.health_check.as_mut().unwrap().output_contains = Some(String::new()),
            &["$.health_check.output_contains: an empty text is contained in any output"],
        );
        refused(
            &|m| {
                let check = m.health_check.as_mut().unwrap();
                check.exit_status = None;
                check.output_contains = None;
            },
            &["$.health_check: say what the check must give"],
        );
        // The health check runs under the hook policy, so it is what `hooks_run_as` is about.
        let mut m = program();
        m.hooks_run_as = Some(HooksRunAs::Root);
        m.validate("m").unwrap();
    }

    #[test]
    fn a_health_check_with_unknown_fields_or_the_wrong_types_names_the_place() {
        let mut json: serde_json::Value = serde_json::from_slice(&program().to_json()).unwrap();
        json["health_check"]["shell"] = serde_json::json!(true);
        let err = Manifest::parse("m.json", json.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.problems[0].path, "$.health_check.shell");
        let mut json: serde_json::Value = serde_json::from_slice(&program().to_json()).unwrap();
        json["health_check"]["timeout_ms"] = serde_json::json!("5s");
        let err = Manifest::parse("m.json", json.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.problems[0].path, "$.health_check.timeout_ms");
    }

    #[test]
    fn package_paths_stay_inside_the_package() {
        for bad in ["", "/abs", "a/../b", "./a", "a/", "a\\b", "a\u{7}b", ".."] {
            assert!(check_package_path(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "defs/main.ndb", "bin/post-install", "x/y/z.ldb", "..a"] {
            assert!(check_package_path(good).is_ok(), "{good:?} refused");
        }
        assert!(check_package_path(&"a".repeat(256)).is_err());
    }
}
