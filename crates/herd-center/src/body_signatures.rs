//! Analysts' body signatures in Herd's own set (issue 13, SPEC §3.2.3: "a broader one when the
//! analyst writes it"): ClamAV `.ndb` and `.ldb` lines and YARA files that an analyst (or an
//! operator) adds, lists and removes through `/v1/herd-set/body-signatures`.
//!
//! Every line is checked with the scan engine's own parser (`herd_scan::Database::load`, the
//! one agents load the set with): whatever it refuses is refused with the line number and its
//! reason, every bad line at once, and nothing is stored. An `.ndb`/`.ldb` signature's name
//! must start with `Herd.Immunity.` so agents report it, and the center tells it from a vendor's
//! detection, as Herd's own (`Detection::only_herd`); a name is unique in the set. A YARA file
//! is one entry, under a name the analyst gives, and is compiled together with the set's other
//! YARA rules (a duplicate rule name would break the whole `herd.yar`); YARA needs the center
//! built with the `yara` feature (off by default, like the agent's), and is refused by the
//! parser's own message otherwise.
//!
//! The rows (migration 0022) become `herd.ndb`, `herd.ldb` and `herd.yar` beside the `.hsb` in
//! the signed `herd` role ([`file_text`], deterministic: sorted by name), signed at once like a
//! verdict, so every scanning agent loads them with its next refresh.

use herd_proto::api::{ApiProblem, BodySignatureDoc, BodySignaturesDoc, BodySignaturesOutcome};
use herd_proto::distribution::{
    HERD_LDB_TARGET, HERD_NDB_TARGET, HERD_SIGNATURE_PREFIX, HERD_YARA_TARGET,
};
use herd_store::HerdBodySignatureRow;

use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::{Center, rfc3339, unix_now};

/// The formats, as `BodySignaturesDoc::format` names them.
pub const NDB: &str = "ndb";
pub const LDB: &str = "ldb";
pub const YARA: &str = "yar";

/// The most signatures one document adds.
pub const MAX_SIGNATURES_PER_DOCUMENT: usize = 10_000;

/// The format whose file `target` is, `None` for the `.hsb` of exact hashes.
pub fn format_of_target(target: &str) -> Option<&'static str> {
    match target {
        HERD_NDB_TARGET => Some(NDB),
        HERD_LDB_TARGET => Some(LDB),
        HERD_YARA_TARGET => Some(YARA),
        _ => None,
    }
}

/// The text of the set's file of `format`: each row's line (`ndb`, `ldb`), or each YARA file
/// under a comment naming it, in the order given (the store's: by name). Pure.
pub fn file_text(rows: &[HerdBodySignatureRow], format: &str) -> String {
    let mut text = String::new();
    for row in rows.iter().filter(|r| r.format == format) {
        if format == YARA {
            text.push_str(&format!("// {}\n", row.name));
        }
        text.push_str(&row.body);
        if !row.body.ends_with('\n') {
            text.push('\n');
        }
    }
    text
}

/// A YARA file's name: 1-64 of A-Z, a-z, 0-9, '.', '-', '_'.
fn check_yara_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a name for YARA rules (1-64 of A-Z, a-z, 0-9, '.', '-', '_')"
        ))
    }
}

/// One problem of a refused document.
fn problem(path: &str, message: impl Into<String>) -> ApiProblem {
    ApiProblem {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Checks `doc` against the set's current body signatures `existing` and returns the rows to
/// add (`added_by`, `added_at` as given), or every problem found. Pure: the scan engine's parser
/// is a function of the text.
pub fn check(
    doc: &BodySignaturesDoc,
    existing: &[HerdBodySignatureRow],
    added_by: &str,
    added_at: i64,
) -> Result<Vec<HerdBodySignatureRow>, Vec<ApiProblem>> {
    let row = |name: String, body: String| HerdBodySignatureRow {
        name,
        format: doc.format.clone(),
        body,
        added_by: added_by.to_owned(),
        added_at,
    };
    let taken = |name: &str| existing.iter().any(|r| r.name == name);
    match doc.format.as_str() {
        NDB | LDB => {
            if doc.name.is_some() {
                return Err(vec![problem(
                    "$.name",
                    "only YARA rules are given a name; an .ndb or .ldb line is named by its \
                     first field",
                )]);
            }
            let file = format!("herd.{}", doc.format);
            let mut rows: Vec<HerdBodySignatureRow> = Vec::new();
            // The line each row came from.
            let mut row_lines: Vec<usize> = Vec::new();
            let mut problems = Vec::new();
            let mut lines = 0;
            for (index, line) in doc.text.lines().enumerate() {
                let number = index + 1;
                let line = line.trim_end_matches('\r');
                // What the engine's loader skips is not a signature, and not stored either.
                if line.trim().is_empty() || line.starts_with('#') {
                    continue;
                }
                lines += 1;
                let mut db = herd_scan::Database::new();
                if let Some(error) = db.load(&file, line.as_bytes()).into_iter().next() {
                    problems.push(problem("$.text", format!("line {number}: {}", error.kind)));
                    continue;
                }
                let name: &str = match doc.format.as_str() {
                    NDB => db.bodies.first().map(|b| &*b.name),
                    _ => db.logicals.first().map(|l| &*l.name),
                }
                .expect("a line that loads is one signature");
                if !name.starts_with(HERD_SIGNATURE_PREFIX)
                    || name.len() == HERD_SIGNATURE_PREFIX.len()
                {
                    problems.push(problem(
                        "$.text",
                        format!(
                            "line {number}: the signature name {name:?} must start with \
                             {HERD_SIGNATURE_PREFIX:?} and go on (agents report Herd's own \
                             signatures by it)"
                        ),
                    ));
                    continue;
                }
                if let Some(first) = rows.iter().position(|r| r.name == name) {
                    problems.push(problem(
                        "$.text",
                        format!(
                            "line {number}: the signature name {name:?} is given twice (also \
                             on line {})",
                            row_lines[first]
                        ),
                    ));
                    continue;
                }
                if taken(name) {
                    problems.push(problem(
                        "$.text",
                        format!(
                            "line {number}: Herd's set already has a signature named {name:?}; \
                             remove it first or choose another name"
                        ),
                    ));
                    continue;
                }
                rows.push(row(name.to_owned(), line.to_owned()));
                row_lines.push(number);
            }
            if lines == 0 {
                problems.push(problem(
                    "$.text",
                    "no signature: every line is empty or a comment",
                ));
            }
            if lines > MAX_SIGNATURES_PER_DOCUMENT {
                problems.push(problem(
                    "$.text",
                    format!(
                        "{lines} signatures; add at most {MAX_SIGNATURES_PER_DOCUMENT} at a time"
                    ),
                ));
            }
            if problems.is_empty() {
                Ok(rows)
            } else {
                Err(problems)
            }
        }
        YARA => {
            let Some(name) = &doc.name else {
                return Err(vec![problem(
                    "$.name",
                    "YARA rules are added under a name (the CLI gives the file's), by which \
                     they are listed and removed",
                )]);
            };
            check_yara_name(name).map_err(|why| vec![problem("$.name", why)])?;
            if taken(name) {
                return Err(vec![problem(
                    "$.name",
                    format!("Herd's set already has signatures named {name:?}; remove them first"),
                )]);
            }
            if doc.text.trim().is_empty() {
                return Err(vec![problem("$.text", "no YARA rules: the text is empty")]);
            }
            let mut db = herd_scan::Database::new();
            if let Some(error) = db.load("herd.yar", doc.text.as_bytes()).into_iter().next() {
                return Err(vec![problem("$.text", error.kind.to_string())]);
            }
            // Compiled with the set's other rules too, as agents will compile `herd.yar`.
            let others = file_text(existing, YARA);
            if !others.is_empty() {
                let together = format!("{others}{}", doc.text);
                let mut db = herd_scan::Database::new();
                if let Some(error) = db.load("herd.yar", together.as_bytes()).into_iter().next() {
                    return Err(vec![problem(
                        "$.text",
                        format!("with the set's other YARA rules: {}", error.kind),
                    )]);
                }
            }
            Ok(vec![row(name.clone(), doc.text.clone())])
        }
        other => Err(vec![problem(
            "$.format",
            format!("{other:?} is not a body signature format ({NDB:?}, {LDB:?} or {YARA:?})"),
        )]),
    }
}

fn body_doc(row: HerdBodySignatureRow) -> BodySignatureDoc {
    BodySignatureDoc {
        name: row.name,
        format: row.format,
        text: row.body,
        added_by: row.added_by,
        added_at: rfc3339(row.added_at),
    }
}

impl Center {
    /// Adds an analyst's (or operator's, `by`) body signatures to Herd's set and signs the
    /// repository at once; nothing is stored when any line is refused.
    pub async fn add_body_signatures(
        &self,
        doc: BodySignaturesDoc,
        by: &str,
    ) -> CenterResult<BodySignaturesOutcome> {
        let existing = self.store.herd_body_signatures().await?;
        let rows = check(&doc, &existing, by, unix_now()).map_err(|problems| {
            let count = problems.len();
            let listed: Vec<String> = problems.iter().map(|p| p.message.clone()).collect();
            CenterError {
                kind: ErrorKind::DocumentInvalid,
                message: format!(
                    "the body signatures ({}): {count} problem(s), nothing was added: {}",
                    doc.format,
                    listed.join("; ")
                ),
                problems,
            }
        })?;
        // The store refuses a name another request took meanwhile, adding nothing.
        self.store.herd_body_signatures_add(&rows).await?;
        tracing::info!(format = %doc.format, added = rows.len(), by, "body signatures added to Herd's set");
        self.sign_herd_set().await?;
        Ok(BodySignaturesOutcome {
            added: rows.into_iter().map(|r| r.name).collect(),
            body_signatures: self.store.herd_body_signatures().await?.len() as u64,
        })
    }

    /// The analysts' body signatures of Herd's set, by format, then name.
    pub async fn body_signatures(&self) -> CenterResult<Vec<BodySignatureDoc>> {
        let rows = self.store.herd_body_signatures().await?;
        Ok(rows.into_iter().map(body_doc).collect())
    }

    /// Removes a body signature from Herd's set and signs the repository at once.
    pub async fn remove_body_signature(&self, name: &str) -> CenterResult<()> {
        if !self.store.herd_body_signature_remove(name).await? {
            return Err(CenterError::not_found(format!(
                "Herd's set has no body signature named {name:?}"
            )));
        }
        tracing::info!(name, "body signature removed from Herd's set");
        self.sign_herd_set().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(format: &str, text: &str) -> BodySignaturesDoc {
        BodySignaturesDoc {
            format: format.into(),
            text: text.into(),
            name: None,
        }
    }

    fn messages(result: Result<Vec<HerdBodySignatureRow>, Vec<ApiProblem>>) -> Vec<String> {
        result
            .unwrap_err()
            .into_iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect()
    }

    #[test]
    fn good_lines_become_rows_named_by_their_first_field() {
        let text = "# Worm X's loader\n\
                    Herd.Immunity.WormX:0:*:deadbeefcafe\r\n\
                    \n\
                    Herd.Immunity.WormX.Dropper:0:0:6869206d6f6d\n";
        let rows = check(&doc(NDB, text), &[], "analyst", 7).unwrap();
        let names: Vec<_> = rows
            .iter()
            .map(|r| (r.name.as_str(), r.body.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                (
                    "Herd.Immunity.WormX",
                    "Herd.Immunity.WormX:0:*:deadbeefcafe"
                ),
                (
                    "Herd.Immunity.WormX.Dropper",
                    "Herd.Immunity.WormX.Dropper:0:0:6869206d6f6d"
                )
            ]
        );
        assert!(
            rows.iter()
                .all(|r| r.format == NDB && r.added_by == "analyst")
        );
        let ldb = "Herd.Immunity.L;Target:0;0&1;6162636465;666768696a\n";
        let rows = check(&doc(LDB, ldb), &[], "operator", 7).unwrap();
        assert_eq!(rows[0].name, "Herd.Immunity.L");
    }

    #[test]
    fn every_bad_line_is_named_by_its_number_and_nothing_is_kept() {
        let existing = check(&doc(NDB, "Herd.Immunity.Old:0:*:00112233\n"), &[], "a", 1).unwrap();
        let text = "Herd.Immunity.A:0:*:zz\n\
                    Vendor.Name:0:*:00112233\n\
                    Herd.Immunity.B:0:*:00112233\n\
                    Herd.Immunity.B:0:*:44556677\n\
                    Herd.Immunity.Old:0:*:8899aabb\n\
                    Herd.Immunity.C:9\n";
        let found = messages(check(&doc(NDB, text), &existing, "a", 2));
        assert_eq!(found.len(), 5, "{found:#?}");
        assert!(found[0].starts_with("$.text: line 1: "), "{found:?}");
        assert!(found[1].starts_with("$.text: line 2: the signature name \"Vendor.Name\" must start with \"Herd.Immunity.\""), "{found:?}");
        assert!(
            found[2].starts_with(
                "$.text: line 4: the signature name \"Herd.Immunity.B\" is given twice"
            ),
            "{found:?}"
        );
        assert!(
            found[3].starts_with(
                "$.text: line 5: Herd's set already has a signature named \"Herd.Immunity.Old\""
            ),
            "{found:?}"
        );
        assert!(found[4].starts_with("$.text: line 6: "), "{found:?}");
        assert_eq!(
            messages(check(&doc(NDB, "# nothing\n\n"), &[], "a", 1)),
            ["$.text: no signature: every line is empty or a comment"]
        );
        assert!(messages(check(&doc("hdb", "x"), &[], "a", 1))[0].starts_with("$.format: "));
        let mut named = doc(NDB, "Herd.Immunity.A:0:*:00112233");
        named.name = Some("x".into());
        assert!(messages(check(&named, &[], "a", 1))[0].starts_with("$.name: "));
        let mut yara = doc(YARA, "rule a { condition: true }");
        assert!(
            messages(check(&yara, &[], "a", 1))[0]
                .starts_with("$.name: YARA rules are added under a name")
        );
        yara.name = Some("bad name".into());
        assert!(
            messages(check(&yara, &[], "a", 1))[0]
                .starts_with("$.name: \"bad name\" is not a name")
        );
    }

    #[cfg(not(feature = "yara"))]
    #[test]
    fn yara_is_refused_by_a_center_built_without_it() {
        let mut yara = doc(YARA, "rule a { condition: true }");
        yara.name = Some("worm-rules".into());
        let found = messages(check(&yara, &[], "a", 1));
        assert_eq!(
            found,
            [
                "$.text: YARA rules need herd-scan's `yara` cargo feature, which this build does not have"
            ]
        );
    }

    #[test]
    fn the_files_are_sorted_rows_one_line_each() {
        let rows = check(
            &doc(
                NDB,
                "Herd.Immunity.A:0:*:00112233\nHerd.Immunity.B:0:*:44556677",
            ),
            &[],
            "a",
            1,
        )
        .unwrap();
        assert_eq!(
            file_text(&rows, NDB),
            "Herd.Immunity.A:0:*:00112233\nHerd.Immunity.B:0:*:44556677\n"
        );
        assert_eq!(file_text(&rows, LDB), "");
        assert_eq!(format_of_target(HERD_YARA_TARGET), Some(YARA));
        assert_eq!(
            format_of_target(herd_proto::distribution::HERD_SET_TARGET),
            None
        );
    }
}
