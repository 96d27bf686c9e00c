//! Validation errors: every problem found in a document, each with its JSON path.

use std::fmt;

/// One thing wrong with a document, at a JSON path like `$.releases[2].packages[0].sha256`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

/// Why a document was refused: its name (usually a file path) and every problem found.
/// A refused document changes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    pub document: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(
                f,
                "{}: {}: {}",
                self.document, problem.path, problem.message
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationError {}

/// Collects problems while walking a document.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub(crate) Vec<Problem>);

impl Problems {
    pub(crate) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Records the error of a field parser, if any, and passes its value on.
    pub(crate) fn check<T>(
        &mut self,
        path: impl FnOnce() -> String,
        result: Result<T, String>,
    ) -> Option<T> {
        result.map_err(|message| self.add(path(), message)).ok()
    }

    pub(crate) fn finish<T>(
        self,
        document: &str,
        value: impl FnOnce() -> T,
    ) -> Result<T, ValidationError> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(ValidationError {
                document: document.to_string(),
                problems: self.0,
            })
        }
    }
}

/// Parses JSON into `T`, turning a syntax or shape error into a [`ValidationError`] whose
/// path says where (serde's own message carries the line and column).
pub(crate) fn parse_json<'de, T: serde::Deserialize<'de>>(
    document: &str,
    text: &'de str,
) -> Result<T, ValidationError> {
    let deserializer = &mut serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = json_path(&err.path().to_string());
        ValidationError {
            document: document.to_string(),
            problems: vec![Problem {
                path,
                message: err.into_inner().to_string(),
            }],
        }
    })?;
    Ok(value)
}

/// `releases[0].sha256` → `$.releases[0].sha256`; serde's `.` (the root) → `$`.
pub(crate) fn json_path(serde_path: &str) -> String {
    match serde_path {
        "" | "." => "$".to_string(),
        path if path.starts_with('[') => format!("${path}"),
        path => format!("$.{path}"),
    }
}
