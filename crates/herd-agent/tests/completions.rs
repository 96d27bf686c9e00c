//! `herd-agent completions SHELL` and `herd-agent man` with the real binary: the same commands
//! as `herd`'s (both come from herd-cli-docs), here checked against the agent's own
//! subcommands.

use std::process::{Command, Output};

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herd-agent"))
        .args(args)
        .output()
        .expect("herd-agent runs")
}

const SUBCOMMANDS: [&str; 10] = [
    "run",
    "status",
    "consent",
    "scan",
    "watch",
    "quarantine",
    "apply",
    "completions",
    "man",
    "help",
];

#[test]
fn bash_completes_every_subcommand_and_the_script_parses() {
    let out = agent(&["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0));
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("complete -F _herd__agent"), "{script}");
    // The words offered after the program's name: the first non-empty `opts=` line.
    let top = script
        .lines()
        .find(|l| l.trim_start().starts_with("opts=\"-"))
        .expect("an opts line");
    for name in SUBCOMMANDS {
        assert!(
            top.split(['"', ' ']).any(|word| word == name),
            "{name} not completed: {top}"
        );
    }
    let syntax = Command::new("bash")
        .args(["-n", "-c", &script])
        .output()
        .expect("bash runs");
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    let out = agent(&["completions", "zsh"]);
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .starts_with("#compdef herd-agent")
    );
}

#[test]
fn man_writes_a_page_per_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent(&["man", "--out", dir.path().to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(dir.path().join("herd-agent.1")).unwrap();
    assert!(page.contains(".TH herd-agent 1"), "{page}");
    for name in SUBCOMMANDS.iter().filter(|n| **n != "help") {
        let file = dir.path().join(format!("herd-agent-{name}.1"));
        assert!(file.is_file(), "{} missing", file.display());
    }
    assert!(dir.path().join("herd-agent-quarantine-list.1").is_file());
}
