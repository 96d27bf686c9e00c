//! What every command writes to stdout: text, or pretty JSON for scripts (`--json`).

use std::io::Write as _;

use anyhow::{Context, anyhow};

/// Writes to stdout; a reader that went away (`| head`) ends the output quietly.
pub(super) fn print_out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow!("cannot write the output: {err}"))
        }
        _ => Ok(()),
    }
}

pub(super) fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value).context("cannot encode the output")?;
    text.push('\n');
    print_out(&text)
}
