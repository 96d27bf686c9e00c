//! How `herd demo` talks to the person watching: numbered steps, short explanations, and one
//! line per expectation, ✓ when it held and ✗ (with what happened instead) when it did not.
//! The tally decides `herd demo --exit`'s exit code, so every ✓ printed is a check made.

use std::fmt;
use std::io::IsTerminal as _;

/// Prints the story and keeps the score.
pub struct Show {
    color: bool,
    /// Standard output, or a buffer in tests.
    sink: Box<dyn std::io::Write + Send>,
    /// Steps announced so far and whether every check in each held.
    steps: Vec<StepScore>,
    total_steps: usize,
}

#[derive(Debug)]
struct StepScore {
    title: String,
    checks: usize,
    failed: usize,
    /// The step stopped before its end (an error, or an interruption).
    aborted: bool,
}

/// ANSI styles, used only when stdout is a terminal.
const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

impl fmt::Debug for Show {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Show")
            .field("steps", &self.steps)
            .field("total_steps", &self.total_steps)
            .finish_non_exhaustive()
    }
}

/// Indentation of everything printed inside a step.
const INDENT: &str = "   ";

impl Show {
    /// Prints to standard output, in colour when it is a terminal (and NO_COLOR is unset).
    pub fn new(total_steps: usize) -> Show {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Show::with_sink(total_steps, color, Box::new(std::io::stdout()))
    }

    pub fn with_sink(
        total_steps: usize,
        color: bool,
        sink: Box<dyn std::io::Write + Send>,
    ) -> Show {
        Show {
            color,
            sink,
            steps: Vec::new(),
            total_steps,
        }
    }

    fn paint(&self, style: &str, text: &str) -> String {
        if self.color {
            format!("{style}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }

    fn out(&mut self, line: &str) {
        // A closed stdout (`herd demo | head`) must not stop the scenario half-way: the
        // center would be left running. Output is best effort; the exit code still counts.
        let _ = writeln!(self.sink, "{line}");
        let _ = self.sink.flush();
    }

    /// The demo's title and anything said before the first step.
    pub fn banner(&mut self, title: &str) {
        self.out(&self.paint(BOLD, title));
    }

    /// A plain line outside any step.
    pub fn line(&mut self, text: &str) {
        self.out(text);
    }

    /// Starts step `n` of the story.
    pub fn step(&mut self, title: &str) {
        self.steps.push(StepScore {
            title: title.to_owned(),
            checks: 0,
            failed: 0,
            aborted: false,
        });
        let number = format!("[{}/{}]", self.steps.len(), self.total_steps);
        self.out("");
        self.out(&self.paint(BOLD, &format!("{number} {title}")));
    }

    /// An explanation inside the current step.
    pub fn say(&mut self, text: &str) {
        for line in text.lines() {
            self.out(&format!("{INDENT}{line}"));
        }
    }

    /// Secondary detail (commands run, file names), dimmed on a terminal.
    pub fn detail(&mut self, text: &str) {
        for line in text.lines() {
            self.out(&format!("{INDENT}{}", self.paint(DIM, line)));
        }
    }

    /// Records and prints one expectation of the current step; returns whether it held.
    pub fn check(&mut self, held: bool, text: &str) -> bool {
        let step = self
            .steps
            .last_mut()
            .expect("checks are made inside a step");
        step.checks += 1;
        if !held {
            step.failed += 1;
        }
        let mark = if held {
            self.paint(GREEN, "✓")
        } else {
            self.paint(RED, "✗")
        };
        let mut lines = text.lines();
        if let Some(first) = lines.next() {
            self.out(&format!("{INDENT}{mark} {first}"));
        }
        for more in lines {
            self.out(&format!("{INDENT}  {more}"));
        }
        held
    }

    /// The current step could not go on: counted as a failed check and the step as aborted.
    pub fn abort_step(&mut self, why: &str) {
        self.check(false, why);
        if let Some(step) = self.steps.last_mut() {
            step.aborted = true;
        }
    }

    /// Steps whose every check held, and how many steps the story has.
    pub fn score(&self) -> (usize, usize) {
        let passed = self
            .steps
            .iter()
            .filter(|s| s.failed == 0 && !s.aborted && s.checks > 0)
            .count();
        (passed, self.total_steps)
    }

    /// True when every step of the story ran and every check held.
    pub fn all_passed(&self) -> bool {
        let (passed, total) = self.score();
        passed == total
    }

    /// The closing tally: steps as expected, and which were not.
    pub fn summary(&mut self) {
        let (passed, total) = self.score();
        let checks: usize = self.steps.iter().map(|s| s.checks).sum();
        let failed: usize = self.steps.iter().map(|s| s.failed).sum();
        let line = format!(
            "{passed}/{total} steps as expected ({} of {checks} checks held)",
            checks - failed
        );
        let mut lines = Vec::new();
        if passed == total {
            lines.push(self.paint(GREEN, &self.paint(BOLD, &line)));
        } else {
            lines.push(self.paint(RED, &self.paint(BOLD, &line)));
            for (i, step) in self.steps.iter().enumerate() {
                if step.failed > 0 || step.aborted {
                    lines.push(format!(
                        "{INDENT}✗ step {}: {} ({} of {} checks failed{})",
                        i + 1,
                        step.title,
                        step.failed,
                        step.checks,
                        if step.aborted { ", stopped early" } else { "" }
                    ));
                }
            }
            let not_run = total.saturating_sub(self.steps.len());
            if not_run > 0 {
                lines.push(format!("{INDENT}✗ {not_run} later step(s) did not run"));
            }
        }
        self.out("");
        for line in lines {
            self.out(&line);
        }
    }
}

/// Lays out rows under a header, each column as wide as its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let render = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let mut line = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = widths
                .get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        line.trim_end().to_owned()
    };
    let mut out = render(&mut header.iter().copied());
    for row in rows {
        out.push('\n');
        out.push_str(&render(&mut row.iter().map(String::as_str)));
    }
    out
}

/// `3f2a9c1e…` for a SHA-256: enough to recognise, short enough to read.
pub fn short_digest(sha256: &str) -> String {
    format!("{}…", &sha256[..sha256.len().min(12)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_trim_line_ends() {
        let rows = vec![
            vec!["phone-a".to_owned(), "switch".to_owned(), String::new()],
            vec!["pc-b".to_owned(), "exposed".to_owned(), "x".to_owned()],
        ];
        assert_eq!(
            table(&["id", "action", "n"], &rows),
            "id       action   n\nphone-a  switch\npc-b     exposed  x"
        );
    }

    /// A sink the test can read back.
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn a_step_passes_only_when_every_check_held_and_it_ran_to_its_end() {
        let buffer = Buffer::default();
        let mut show = Show::with_sink(3, false, Box::new(buffer.clone()));
        show.step("one");
        show.check(true, "fine");
        show.step("two");
        show.check(true, "fine");
        show.check(false, "not fine\nbut this happened");
        show.step("three");
        show.check(true, "fine");
        show.abort_step("stopped");
        assert_eq!(show.score(), (1, 3));
        assert!(!show.all_passed());
        show.summary();
        expect_test::expect![[r#"

            [1/3] one
               ✓ fine

            [2/3] two
               ✓ fine
               ✗ not fine
                 but this happened

            [3/3] three
               ✓ fine
               ✗ stopped

            1/3 steps as expected (3 of 5 checks held)
               ✗ step 2: two (1 of 2 checks failed)
               ✗ step 3: three (1 of 2 checks failed, stopped early)
        "#]]
        .assert_eq(&buffer.text());
    }

    #[test]
    fn steps_that_never_ran_count_against_the_score() {
        let buffer = Buffer::default();
        let mut show = Show::with_sink(2, false, Box::new(buffer.clone()));
        show.step("one");
        show.check(true, "fine");
        assert_eq!(show.score(), (1, 2));
        assert!(!show.all_passed());
        show.summary();
        assert!(buffer.text().contains("1/2 steps as expected"));
        assert!(buffer.text().contains("1 later step(s) did not run"));
        show.step("two");
        show.check(true, "fine");
        assert!(show.all_passed());
    }

    #[test]
    fn a_step_without_checks_does_not_count_as_passed() {
        let mut show = Show::with_sink(1, false, Box::new(Buffer::default()));
        show.step("silent");
        assert_eq!(show.score(), (0, 1));
    }
}
