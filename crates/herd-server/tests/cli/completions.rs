//! `herd completions SHELL` and `herd man [--out DIR]` with the real binary: every top-level
//! subcommand `herd --help` lists is completed and has its page, the scripts parse, and the
//! pages are roff that groff reads without a warning (when groff is installed).

use std::fs;
use std::path::Path;
use std::process::Command;

use super::herd;

/// The subcommands `herd --help` lists, so a new command is covered without editing this test.
fn top_level_subcommands() -> Vec<String> {
    let help = String::from_utf8(herd(&["--help"]).stdout).unwrap();
    let names: Vec<String> = help
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        // Entries are indented two spaces; wrapped descriptions are indented further.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    for expected in ["serve", "plan", "package", "publish", "completions", "man"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    names
}

#[test]
fn every_shell_gets_a_script_and_bash_completes_every_subcommand() {
    let subcommands = top_level_subcommands();
    let out = herd(&["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0));
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("complete -F _herd"), "{script}");
    // The words offered after the program's name: the first non-empty `opts=` line.
    let top = script
        .lines()
        .find(|l| l.trim_start().starts_with("opts=\"-"))
        .expect("an opts line");
    for name in &subcommands {
        assert!(
            top.split(['"', ' ']).any(|word| word == name),
            "{name} not completed: {top}"
        );
    }
    // From a file: one argument may not exceed 128 KiB (MAX_ARG_STRLEN), and the script is larger.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herd.bash");
    std::fs::write(&file, &script).unwrap();
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .expect("bash runs");
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );

    for (shell, marker) in [
        ("zsh", "#compdef herd"),
        ("fish", "complete -c herd"),
        ("elvish", "edit:completion:arg-completer[herd]"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = herd(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: {marker:?} missing");
        assert!(script.contains("package"), "{shell}");
    }

    let out = herd(&["completions", "tcsh"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values: bash"));
}

#[test]
fn man_writes_one_valid_page_per_command() {
    let subcommands = top_level_subcommands();
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    let out = herd(&["man", "--out", pages.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8(out.stdout).unwrap();
    let main_page = fs::read_to_string(pages.join("herd.1")).unwrap();
    assert!(
        listed.lines().next().unwrap().ends_with("/herd.1"),
        "{listed}"
    );
    for name in &subcommands {
        let file = format!("herd-{name}.1");
        assert!(pages.join(&file).is_file(), "{file} missing");
        assert!(listed.contains(&file), "{file} not listed");
        // roff escapes the hyphens of the cross-reference.
        let reference = format!("herd\\-{}(1)", name.replace('-', "\\-"));
        assert!(main_page.contains(&reference), "{reference} not in herd.1");
    }
    assert!(
        pages.join("herd-package-build.1").is_file(),
        "nested subcommands have pages too"
    );
    for entry in fs::read_dir(&pages).unwrap() {
        let path = entry.unwrap().path();
        check_roff(&path);
    }

    let stdout = herd(&["man"]);
    assert_eq!(stdout.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(stdout.stdout).unwrap(),
        main_page,
        "without --out, herd.1 is printed"
    );
}

/// A page has a title and a NAME section naming its command, and groff, when installed, reads
/// it with every warning enabled and says nothing.
fn check_roff(path: &Path) {
    let page = fs::read_to_string(path).unwrap();
    let stem = path.file_stem().unwrap().to_str().unwrap();
    let title = page.lines().find(|l| l.starts_with(".TH ")).unwrap_or("");
    assert!(
        title.starts_with(&format!(".TH {stem} 1")),
        "{stem}: {title}"
    );
    assert!(page.contains("\n.SH NAME\n"), "{stem}: no NAME section");
    assert!(page.contains("\n.SH SYNOPSIS\n"), "{stem}: no SYNOPSIS");
    let Ok(groff) = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(path)
        .output()
    else {
        return;
    };
    assert!(
        groff.status.success() && groff.stderr.is_empty(),
        "{stem}: groff says {}",
        String::from_utf8_lossy(&groff.stderr)
    );
}
