//! The package manifest, `herd-package.json` at the root of every `archive` package: what the
//! package is (product, vendor, version, definitions seq and pattern name), which engine loads
//! its definitions, which files they are, the test pattern they must detect, and the hooks.
//!
//! Every path in a manifest becomes a path under the agent's product prefix and a word in a
//! generated script, so they are checked as strictly as identifiers: relative, `/`-separated,
//! no empty, `.` or `..` parts, no control characters or backslashes.

use herd_core::{check_identifier, check_version};
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
    pub engine: String,
    /// Definition files, relative to the package root, loaded in this order.
    pub definitions: Vec<String>,
    /// A file, relative to the package root, that the definitions must detect.
    pub test_pattern: String,
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
        if self.engine != ENGINE {
            add(
                "$.engine",
                format!(
                    "unknown engine {:?}; this agent loads \"{ENGINE}\" definitions",
                    self.engine
                ),
            );
        }
        if self.definitions.is_empty() {
            add(
                "$.definitions",
                "a package must carry at least one definition file".to_owned(),
            );
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
                "names who the hooks run as, but the package has no hooks".to_owned(),
            );
        }
        if let Err(why) = check_package_path(&self.test_pattern) {
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
        files.push(("$.test_pattern", &self.test_pattern));
        if let Some(hook) = &self.post_install {
            files.push(("$.post_install", hook));
        }
        if let Some(hook) = &self.pre_uninstall {
            files.push(("$.pre_uninstall", hook));
        }
        files
    }

    /// The hooks, which must be executable files in the package.
    pub fn hooks(&self) -> impl Iterator<Item = &str> {
        self.post_install
            .iter()
            .chain(self.pre_uninstall.iter())
            .map(String::as_str)
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
            engine: ENGINE.to_owned(),
            definitions: vec!["defs/b.ndb".to_owned()],
            test_pattern: "test/b.txt".to_owned(),
            post_install: Some("bin/post-install".to_owned()),
            pre_uninstall: None,
            hooks_run_as: None,
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
        m.engine = "clamav".to_owned();
        m.definitions = vec![
            "defs/../../x.ndb".to_owned(),
            "defs/b.cvd".to_owned(),
            "defs/b.cvd".to_owned(),
        ];
        m.test_pattern = "/etc/passwd".to_owned();
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
