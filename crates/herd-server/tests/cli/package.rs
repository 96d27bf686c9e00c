//! `herd package build|inspect` end to end with the real binary: the shipped example package
//! directory builds, inspects (text and JSON) and yields catalog entries a feed accepts; every
//! hostile input is refused with exit code 1, an error naming the file and what is wrong, and
//! nothing written at the output path (a previous package there stays as it was).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use super::{herd, herd_in, repo};

/// A temporary directory holding `src/`, a copy of `examples/packages/vaccine-b`.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(
            &repo().join("examples/packages/vaccine-b"),
            &dir.path().join("src"),
        );
        Workspace { dir }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn write(&self, relative: &str, content: impl AsRef<[u8]>) {
        let path = self.path(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    /// Rewrites the manifest through a JSON edit.
    fn edit_manifest(&self, edit: impl FnOnce(&mut serde_json::Value)) {
        let path = self.path("src/herd-package.json");
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        edit(&mut manifest);
        fs::write(path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    }

    /// `herd package build --from-dir src --platform phone,pc --out out/b.tar.gz`, run in the
    /// workspace.
    fn build(&self) -> Output {
        fs::create_dir_all(self.path("out")).unwrap();
        herd_in(
            self.dir.path(),
            &[
                "package",
                "build",
                "--from-dir",
                "src",
                "--platform",
                "phone,pc",
                "--out",
                "out/b.tar.gz",
            ],
        )
    }

    /// Names in `out/`: a refused build leaves no temporary file there either.
    fn out_names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.path("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_example_package_builds_inspects_and_its_entries_fit_maker_bs_feed() {
    let ws = Workspace::new();
    let built = ws.build();
    assert_eq!(built.status.code(), Some(0), "{}", stderr(&built));
    let entries: serde_json::Value = serde_json::from_slice(&built.stdout).unwrap();
    let entries = entries.as_array().unwrap();
    let platforms: Vec<&str> = entries
        .iter()
        .map(|e| e["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["phone", "pc"]);
    let sha256 = entries[0]["sha256"].as_str().unwrap().to_owned();
    assert_eq!(entries[0]["format"], "archive");
    assert!(stderr(&built).contains("herd: built out/b.tar.gz"));

    let again = herd_in(
        ws.dir.path(),
        &[
            "package",
            "build",
            "--from-dir",
            "src",
            "--platform",
            "phone,pc",
            "--out",
            "out/c.tar.gz",
        ],
    );
    assert_eq!(
        again.stdout, built.stdout,
        "the same inputs, the same bytes"
    );
    assert_eq!(
        fs::read(ws.path("out/b.tar.gz")).unwrap(),
        fs::read(ws.path("out/c.tar.gz")).unwrap()
    );

    let text = herd_in(ws.dir.path(), &["package", "inspect", "out/b.tar.gz"]);
    assert_eq!(text.status.code(), Some(0), "{}", stderr(&text));
    let text = String::from_utf8(text.stdout).unwrap();
    for expected in [
        "out/b.tar.gz: a package an agent accepts",
        "product      vaccine-b 7.0 by maker-b",
        "definitions  seq 1112 (b-1112), engine herd-scan/1",
        &format!("sha256       {sha256}"),
        "defs/b-1112.ndb",
        "(definitions)",
        "(test pattern)",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }

    let json = herd_in(
        ws.dir.path(),
        &["package", "inspect", "--json", "out/b.tar.gz"],
    );
    assert_eq!(json.status.code(), Some(0), "{}", stderr(&json));
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["sha256"], sha256.as_str());
    assert_eq!(json["size"], entries[0]["size"]);
    assert_eq!(json["compression"], "gzip");
    assert_eq!(json["manifest"]["product"], "vaccine-b");
    assert_eq!(json["manifest"]["test_pattern"], "test/b-test.txt");

    // The printed entries replace the example feed's placeholders and the feed still validates.
    let mut feed: serde_json::Value =
        serde_json::from_slice(&fs::read(repo().join("examples/feeds/maker-b.json")).unwrap())
            .unwrap();
    feed["releases"][0]["packages"] = serde_json::Value::Array(entries.clone());
    let text = serde_json::to_string(&feed).unwrap();
    let catalog = herd_proto::catalog::parse_catalog("maker-b feed", &text)
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(catalog.releases.len(), 1);
}

/// One hostile input: how to make it, and what the error must say.
struct Case {
    name: &'static str,
    make: fn(&Workspace),
    says: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "path traversal in a definitions path",
        make: |ws| {
            ws.write("outside.ndb", "X:0:*:41414141\n");
            ws.edit_manifest(|m| m["definitions"][0] = "../outside.ndb".into());
        },
        says: &[
            "src/herd-package.json: $.definitions[0]:",
            "'..' parts: \"../outside.ndb\"",
        ],
    },
    Case {
        name: "an absolute test pattern path",
        make: |ws| ws.edit_manifest(|m| m["test_pattern"] = "/etc/passwd".into()),
        says: &[
            "src/herd-package.json: $.test_pattern:",
            "relative to the package root, found \"/etc/passwd\"",
        ],
    },
    Case {
        name: "a symbolic link in the source directory",
        make: |ws| {
            std::os::unix::fs::symlink("/etc/passwd", ws.path("src/test/passwd")).unwrap();
        },
        says: &["src/test/passwd: only regular files and directories can go into a package"],
    },
    Case {
        name: "a manifest that is a symbolic link",
        make: |ws| {
            fs::rename(ws.path("src/herd-package.json"), ws.path("real.json")).unwrap();
            std::os::unix::fs::symlink(ws.path("real.json"), ws.path("src/herd-package.json"))
                .unwrap();
        },
        says: &["src/herd-package.json: the manifest must be a regular file"],
    },
    Case {
        name: "a manifest that is not JSON",
        make: |ws| ws.write("src/herd-package.json", "format = \"herd.package/v1\"\n"),
        says: &["src/herd-package.json: $: not valid JSON: expected ident at line 1 column 2"],
    },
    Case {
        name: "an unknown field",
        make: |ws| ws.edit_manifest(|m| m["colour"] = "red".into()),
        says: &["src/herd-package.json: $.colour: unknown field `colour`"],
    },
    Case {
        name: "another format version",
        make: |ws| {
            ws.edit_manifest(|m| {
                m["format"] = "herd.package/v2".into();
                m["layers"] = serde_json::json!([]);
            })
        },
        says: &[
            "src/herd-package.json: $.format: unknown format \"herd.package/v2\"; this version of Herd reads \"herd.package/v1\"",
        ],
    },
    Case {
        name: "definitions the manifest names but the directory lacks",
        make: |ws| fs::remove_file(ws.path("src/defs/b-1112.ndb")).unwrap(),
        says: &[
            "src/herd-package.json:",
            "$.definitions names \"defs/b-1112.ndb\", which is not in the package",
        ],
    },
    Case {
        name: "a test pattern the definitions do not detect",
        make: |ws| ws.write("src/test/b-test.txt", "nothing to see here\n"),
        says: &[
            "src/test/b-test.txt: the test pattern is not detected by the product's 1 signature(s)",
        ],
    },
    Case {
        name: "definitions that do not load",
        make: |ws| ws.write("src/defs/b-1112.ndb", "Broken:0:*:zz\n"),
        says: &["the definitions do not load:", "src/defs/b-1112.ndb:1"],
    },
    Case {
        name: "a huge manifest",
        make: |ws| {
            let mut text = fs::read(ws.path("src/herd-package.json")).unwrap();
            text.resize(2 << 20, b' ');
            ws.write("src/herd-package.json", text);
        },
        says: &[
            "src/herd-package.json: the manifest is 2097152 bytes; an agent reads at most 1048576",
        ],
    },
    Case {
        name: "a hook that is not executable",
        make: |ws| {
            ws.write("src/bin/post-install", "#!/bin/sh\nexit 0\n");
            fs::set_permissions(
                ws.path("src/bin/post-install"),
                fs::Permissions::from_mode(0o644),
            )
            .unwrap();
            ws.edit_manifest(|m| m["post_install"] = "bin/post-install".into());
        },
        says: &["the hook \"bin/post-install\" is not executable"],
    },
];

#[test]
fn hostile_package_directories_are_refused_naming_the_file_and_nothing_is_written() {
    for case in CASES {
        let ws = Workspace::new();
        (case.make)(&ws);
        let out = ws.build();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", case.name);
        assert!(out.stdout.is_empty(), "{}: no catalog entries", case.name);
        for says in case.says {
            assert!(
                err.contains(says),
                "{}: {says:?} missing from:\n{err}",
                case.name
            );
        }
        assert!(
            err.contains("herd: the package was not built; nothing was written to out/b.tar.gz"),
            "{}: {err}",
            case.name
        );
        assert!(
            ws.out_names().is_empty(),
            "{}: {:?}",
            case.name,
            ws.out_names()
        );
    }
}

#[test]
fn a_refused_build_leaves_the_previous_package_in_place() {
    let ws = Workspace::new();
    assert_eq!(ws.build().status.code(), Some(0));
    let before = fs::read(ws.path("out/b.tar.gz")).unwrap();
    ws.write("src/test/b-test.txt", "no longer detected\n");
    assert_eq!(ws.build().status.code(), Some(1));
    assert_eq!(fs::read(ws.path("out/b.tar.gz")).unwrap(), before);
    assert_eq!(ws.out_names(), ["b.tar.gz"]);
}

#[test]
fn usage_and_io_errors_exit_2() {
    let ws = Workspace::new();
    fs::create_dir_all(ws.path("out")).unwrap();
    // A missing input file named on the command line is an I/O error, not refused content.
    let out = herd_in(
        ws.dir.path(),
        &[
            "package",
            "build",
            "--product",
            "vaccine-b",
            "--vendor",
            "maker-b",
            "--version",
            "7.0",
            "--seq",
            "1112",
            "--pattern",
            "b-1112",
            "--defs",
            "missing.ndb",
            "--test-pattern",
            "src/test/b-test.txt",
            "--platform",
            "pc",
            "--out",
            "out/b.tar.gz",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("missing.ndb"), "{}", stderr(&out));
    assert!(ws.out_names().is_empty());

    // A directory without a manifest.
    let out = herd_in(
        ws.dir.path(),
        &[
            "package",
            "build",
            "--from-dir",
            "out",
            "--platform",
            "pc",
            "--out",
            "b.tar.gz",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("out/herd-package.json"),
        "{}",
        stderr(&out)
    );

    // No --out, and --from-dir with the flags it replaces.
    let out = herd(&["package", "build", "--from-dir", "x", "--platform", "pc"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--out <FILE>"), "{}", stderr(&out));
    let out = herd(&[
        "package",
        "build",
        "--from-dir",
        "x",
        "--seq",
        "1",
        "--platform",
        "pc",
        "--out",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        stderr(&out)
    );

    // A missing package is an I/O error; a file that is not a package is refused.
    let out = herd_in(ws.dir.path(), &["package", "inspect", "nope.tar.gz"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nope.tar.gz"), "{}", stderr(&out));
    ws.write("junk.tar", vec![0u8; 1024]);
    let out = herd_in(ws.dir.path(), &["package", "inspect", "junk.tar"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("junk.tar is not a package an agent accepts"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_help_shows_a_manifest_and_an_example() {
    for args in [&["package", "--help"][..], &["package", "build", "--help"]] {
        let out = herd(args);
        assert_eq!(out.status.code(), Some(0));
        let help = String::from_utf8(out.stdout).unwrap();
        for expected in [
            "\"format\": \"herd.package/v1\"",
            "\"test_pattern\": \"test/b-test.txt\"",
            "herd package build --from-dir vaccine-b --platform phone,pc --out vaccine-b-7.0.tar.gz",
            "herd package inspect",
        ] {
            assert!(help.contains(expected), "{args:?}: {expected:?} missing");
        }
    }
}

#[test]
fn a_program_package_builds_with_its_health_check_and_inspects() {
    let ws = Workspace::new();
    // Company A's middleware: no definitions, a health check instead.
    for file in ["defs", "test"] {
        let _ = fs::remove_dir_all(ws.path(&format!("src/{file}")));
    }
    ws.write("src/bin/middleware", "#!/bin/sh\necho ready\n");
    fs::set_permissions(
        ws.path("src/bin/middleware"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    ws.edit_manifest(|m| {
        let m = m.as_object_mut().unwrap();
        for field in ["engine", "definitions", "test_pattern"] {
            m.remove(field);
        }
        m.insert("kind".into(), "program".into());
        m.insert("product".into(), "middleware-a".into());
        m.insert(
            "health_check".into(),
            serde_json::json!({"command": ["bin/middleware", "--health"], "timeout_ms": 5000,
                               "exit_status": 0, "output_contains": "ready"}),
        );
    });
    let built = ws.build();
    assert_eq!(built.status.code(), Some(0), "{}", stderr(&built));
    let text = herd_in(ws.dir.path(), &["package", "inspect", "out/b.tar.gz"]);
    assert_eq!(text.status.code(), Some(0), "{}", stderr(&text));
    let text = String::from_utf8(text.stdout).unwrap();
    for expected in [
        "kind         program",
        "release      seq 1112 (b-1112)",
        "health check `bin/middleware --health` within 5000 ms: exit status 0 and output containing \"ready\"",
        "(health check)",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }

    // Without its health check a program has nothing to prove it works: refused, named.
    ws.edit_manifest(|m| {
        m.as_object_mut().unwrap().remove("health_check");
    });
    let refused = ws.build();
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused)
            .contains("$.health_check: a program without a test pattern declares a health check"),
        "{}",
        stderr(&refused)
    );
}
