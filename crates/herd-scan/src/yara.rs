//! YARA rules through the `yara-x` crate, behind the `yara` cargo feature (a cold debug build
//! of yara-x takes minutes on a 2-core machine, so default builds leave it out).
//!
//! Each `.yar`/`.yara` file is compiled on its own when loaded, so a bad file is reported with
//! its name and yara-x's message (which carries the line) and the others still load. A
//! matching rule is reported as `YARA.<rule>`; a rule tagged `suspicious` as
//! `Suspicious.YARA.<rule>`, which the agent treats as a sample rather than a verdict.

use std::sync::Arc;

use crate::error::{ParseErrorKind, ScanError};

/// Compiles one file of YARA source.
pub fn compile(source: &str) -> Result<yara_x::Rules, ParseErrorKind> {
    let mut compiler = yara_x::Compiler::new();
    compiler
        .add_source(source)
        .map_err(|e| ParseErrorKind::BadYara(e.to_string()))?;
    Ok(compiler.build())
}

/// The number of rules in a compiled set.
pub fn count(rules: &yara_x::Rules) -> usize {
    rules.iter().count()
}

/// The detection names of the rules in `rules` matching `data`.
pub fn scan(rules: &yara_x::Rules, data: &[u8], out: &mut Vec<Arc<str>>) -> Result<(), ScanError> {
    let mut scanner = yara_x::Scanner::new(rules);
    let results = scanner
        .scan(data)
        .map_err(|e| ScanError::Yara(e.to_string()))?;
    for rule in results.matching_rules() {
        let suspicious = rule.tags().any(|t| t.identifier() == "suspicious");
        let prefix = if suspicious {
            "Suspicious.YARA."
        } else {
            "YARA."
        };
        out.push(Arc::from(format!("{prefix}{}", rule.identifier())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_and_tags_mark_suspicious() {
        let rules = compile(
            r#"
            rule eicar { strings: $a = "EICAR-STANDARD-ANTIVIRUS-TEST-FILE" condition: $a }
            rule odd : suspicious { strings: $b = { 6F 64 64 ?? 21 } condition: $b }
            "#,
        )
        .unwrap();
        assert_eq!(count(&rules), 2);
        let mut out = Vec::new();
        scan(&rules, crate::EICAR, &mut out).unwrap();
        scan(&rules, b"an odd?! file", &mut out).unwrap();
        let names: Vec<&str> = out.iter().map(|n| &**n).collect();
        assert_eq!(names, ["YARA.eicar", "Suspicious.YARA.odd"]);
    }

    #[test]
    fn bad_rules_are_parse_errors() {
        let Err(ParseErrorKind::BadYara(message)) = compile("rule broken { condition: $missing }")
        else {
            panic!("expected an error");
        };
        assert!(message.contains("missing"), "{message}");
    }
}
