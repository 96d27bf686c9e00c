//! Shell completions and man pages for `herd` and `herd-agent`, generated from their clap
//! definitions at run time, so they can never disagree with the program that prints them.
//!
//! Both programs offer the same two commands (`completions SHELL` and `man [--out DIR]`) with
//! the same help, through [`CompletionsArgs`] and [`ManArgs`] and [`completions`] and [`man`],
//! which write to standard output (and the directory named by `--out`); this crate is the one
//! home of that behaviour. The pure parts, [`completion_script`], [`man_page`] and
//! [`write_pages`], are what the tests use.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// Print a completion script for your shell to standard output.
///
/// Load it for the current session, or install it where your shell looks for completions.
#[derive(Debug, clap::Args)]
#[command(after_long_help = COMPLETIONS_HELP)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

/// How each shell loads a script; `{bin}` stands for the program's name.
const COMPLETIONS_HELP: &str = "\
Examples (replace herd with herd-agent for the agent):
  bash        source <(herd completions bash)
              herd completions bash > ~/.local/share/bash-completion/completions/herd
  zsh         herd completions zsh > ~/.zfunc/_herd   (with fpath+=(~/.zfunc) before compinit)
  fish        herd completions fish > ~/.config/fish/completions/herd.fish
  elvish      herd completions elvish >> ~/.config/elvish/rc.elv
  powershell  herd completions powershell >> $PROFILE";

/// Write the manual pages: one for the program and one per subcommand.
///
/// Without `--out`, the program's own page is printed to standard output (try
/// `herd man | man -l -`).
#[derive(Debug, clap::Args)]
#[command(after_long_help = MAN_HELP)]
pub struct ManArgs {
    /// Write every page into this directory (created if missing) and list the files written.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

const MAN_HELP: &str = "\
Examples:
  herd man | man -l -
  herd man --out ~/.local/share/man/man1 && man herd-serve
Pages are named after the command line: herd.1, herd-serve.1, herd-package-build.1, ...";

/// `completions SHELL`: prints the script to standard output.
pub fn completions(cmd: clap::Command, args: &CompletionsArgs) -> io::Result<()> {
    print(&completion_script(cmd, args.shell))
}

/// `man [--out DIR]`: prints the program's page, or writes every page into `DIR` and lists
/// the files written, one per line.
pub fn man(cmd: clap::Command, args: &ManArgs) -> io::Result<()> {
    match &args.out {
        None => print(&man_page(cmd)?),
        Some(dir) => {
            let mut list = String::new();
            for path in write_pages(cmd, dir)? {
                list.push_str(&path.display().to_string());
                list.push('\n');
            }
            print(list.as_bytes())
        }
    }
}

/// The completion script of `cmd` for `shell`. Rendered into memory because the generator
/// panics on a failed write, and a closed pipe (`| head`) is not a reason to panic.
pub fn completion_script(mut cmd: clap::Command, shell: Shell) -> Vec<u8> {
    let name = cmd.get_name().to_owned();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    script
}

/// The program's own page (roff).
pub fn man_page(cmd: clap::Command) -> io::Result<Vec<u8>> {
    render(clap_mangen::Man::new(prepare(cmd)))
}

/// Renders a page with every non-ASCII character (the help's "…" and "—") written as a groff
/// `\[uXXXX]` escape: troff reads its input as Latin-1 unless `man` runs it through preconv,
/// and the escape reads the same everywhere (groff, mandoc).
fn render(man: clap_mangen::Man) -> io::Result<Vec<u8>> {
    let mut page = Vec::new();
    man.render(&mut page)?;
    let page = String::from_utf8(page).map_err(io::Error::other)?;
    let mut ascii = String::with_capacity(page.len());
    for c in page.chars() {
        if c.is_ascii() {
            ascii.push(c);
        } else {
            ascii.push_str(&format!("\\[u{:04X}]", u32::from(c)));
        }
    }
    Ok(ascii.into_bytes())
}

fn print(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        // A closed stdout ends the output; it is not a failure of the command.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// The command as the pages describe it: built, so each subcommand knows its full name
/// (`herd-package-build`), and without the `help` subcommand, which has no page of its own.
fn prepare(cmd: clap::Command) -> clap::Command {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// Every page of `cmd` rendered into `dir`, each through a temporary file and a rename, so an
/// interrupted run never leaves a truncated page where `man` would find it.
pub fn write_pages(cmd: clap::Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).map_err(|e| with_path(e, dir))?;
    let mut written = Vec::new();
    let mut pending = vec![prepare(cmd)];
    while let Some(cmd) = pending.pop() {
        let mut subcommands: Vec<clap::Command> = cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .cloned()
            .collect();
        // Reversed so the stack hands subcommands out in their declared order.
        subcommands.reverse();
        pending.extend(subcommands);
        let man = clap_mangen::Man::new(cmd);
        let path = dir.join(man.get_filename());
        let page = render(man)?;
        write_atomically(&path, &page).map_err(|e| with_path(e, &path))?;
        written.push(path);
    }
    Ok(written)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".{}.tmp", std::process::id()));
    let temp = PathBuf::from(temp);
    let result = fs::write(&temp, bytes).and_then(|()| fs::rename(&temp, path));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

fn with_path(err: io::Error, path: &Path) -> io::Error {
    io::Error::new(err.kind(), format!("{}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd() -> clap::Command {
        clap::Command::new("tool")
            .about("A tool.")
            .subcommand(
                clap::Command::new("outer")
                    .about("Outer things.")
                    .subcommand(clap::Command::new("inner").about("Inner things.")),
            )
            .subcommand(clap::Command::new("hidden").hide(true))
    }

    #[test]
    fn every_visible_command_gets_a_page_named_after_its_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_pages(cmd(), dir.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["tool.1", "tool-outer.1", "tool-outer-inner.1"]);
        let page = fs::read_to_string(dir.path().join("tool.1")).unwrap();
        assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{page}");
        assert!(page.contains(".TH tool 1"), "{page}");
        assert!(page.contains("tool\\-outer(1)"), "{page}");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            3,
            "no temporary files"
        );
    }

    #[test]
    fn pages_are_ascii_with_escapes_for_everything_else() {
        let page = man_page(clap::Command::new("tool").about("Waits… then acts — once.")).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.is_ascii());
        assert!(
            page.contains("Waits\\[u2026] then acts \\[u2014] once."),
            "{page}"
        );
    }

    #[test]
    fn completions_name_the_subcommands() {
        let script = String::from_utf8(completion_script(cmd(), Shell::Bash)).unwrap();
        assert!(script.contains("outer"), "{script}");
        assert!(script.contains("complete -F _tool"), "{script}");
    }
}
