//! The planner's integration tests: data-driven cases (one fixture per SPEC §5 rule or corner),
//! golden scripts (SPEC §6), and properties (proptest).
//!
//! A case is `tests/cases/NAME.json`: `{"now": …, "catalog": …, "terminal": …}` in the real
//! formats, with two shorthands to keep fixtures short — `format` may be left out of the
//! catalog, and a package may be written as `"platform"` or `"platform/format"`.
//! Its expected plan, as readable text, is `tests/cases/NAME.expected`.
//! Run with `UPDATE_EXPECT=1` to write the expected files from the current output, then read the diff.

mod cases;
mod properties;
mod rings;
mod scripts;
