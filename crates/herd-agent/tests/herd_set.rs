//! Herd's own signature set beyond exact hashes, end to end with real processes on loopback
//! (issue 13): a real `herd serve` center, `herd-agent run` daemons hosting their scanner
//! (`--scan`), and the `herd` CLI.
//! - An analyst adds `.ndb` body signatures (`herd signatures add`); the agent loads Herd's
//!   `herd.ndb` and detects a file matching it, not one that does not; bad lines are refused
//!   each by its number with nothing stored; a viewer is refused; removal retracts the
//!   signature on the terminal.
//! - After a verdict, an agent that held the previous `.hsb` downloads only a delta (the
//!   center's counters of bytes served say so) and ends with exactly the signed bytes; an agent
//!   whose copy matches no listed delta downloads the whole file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use herd_client::{Client, ReadLimits};
use herd_lab::harness::{CenterProcess, CenterSpec};
use herd_proto::api::{BodySignaturesDoc, NewApiToken, NewEnrolmentToken, VerdictDoc};
use herd_proto::distribution::{HERD_SET_TARGET, TARGETS_PATH, consistent_target_name};
use sha2::{Digest, Sha256};

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/herd.rs"]
mod herd;

use daemon::Daemon;
use herd::herd_binary;

/// The body the analyst's signature finds, and its hex.
const WORM_BODY: &str = "WORM-X-LOADER-0xBADC0DE";

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_herd-agent"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

impl Daemon {
    fn start(root: &Path, center: &CenterProcess, token: &str, id: &str) -> Daemon {
        let (files, state) = daemon::dirs(root, id);
        let mut command = agent();
        command
            .arg("run")
            .arg("--server")
            .arg(&center.url)
            .arg("--ca")
            .arg(center.ca_path())
            .arg("--state-dir")
            .arg(&state)
            .args(["--enrol-token", token, "--id", id])
            .args(["--kind", "pc", "--platform", "pc"])
            .arg("--scan")
            .arg(&files);
        Daemon::spawn(command, files, state)
    }
}

fn start_center(root: &Path) -> CenterProcess {
    let data = root.join("center");
    fs::create_dir_all(&data).unwrap();
    CenterProcess::start(
        &CenterSpec::new(herd_binary(), &data)
            .log(&root.join("center.log"))
            .args(["--checkin-interval", "3600"])
            .env("RUST_LOG", Some("error")),
    )
    .unwrap()
}

fn enrolment_token(operator: &Client) -> String {
    operator
        .new_enrolment_token(&NewEnrolmentToken {
            label: "tests".into(),
            uses: Some(10),
            ttl_secs: None,
            reenrol_terminal: None,
        })
        .unwrap()
        .token
}

/// A new API token of `role`, written to `<root>/<role>.token` too (for the CLI).
fn api_token(operator: &Client, root: &Path, role: &str) -> (String, PathBuf) {
    let token = operator
        .new_api_token(&NewApiToken {
            role: role.into(),
            vendor: None,
            label: format!("a {role}"),
            ttl_secs: None,
        })
        .unwrap()
        .token;
    let path = root.join(format!("{role}.token"));
    fs::write(&path, &token).unwrap();
    (token, path)
}

/// The value of a counter in the center's `/metrics`.
fn metric(center: &CenterProcess, name: &str) -> u64 {
    let client = center.client(None).unwrap();
    let text = client
        .repository()
        .get("/metrics", ReadLimits::metadata(4 << 20))
        .unwrap();
    String::from_utf8(text)
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn an_analysts_body_signature_reaches_the_agents_and_its_removal_retracts_it() {
    herd_tls::install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let center = start_center(root);
    let operator = center.operator().unwrap();
    let token = enrolment_token(&operator);
    let (analyst_token, analyst_file) = api_token(&operator, root, "analyst");
    let (viewer_token, _) = api_token(&operator, root, "viewer");
    let analyst = center.client(Some(&analyst_token)).unwrap();
    let viewer = center.client(Some(&viewer_token)).unwrap();
    let herd = |args: &[&str]| -> Output {
        Command::new(herd_binary())
            .args(args)
            .arg("--server")
            .arg(&center.url)
            .arg("--ca")
            .arg(center.ca_path())
            .arg("--token-file")
            .arg(&analyst_file)
            .output()
            .unwrap()
    };

    let mut pc = Daemon::start(root, &center, &token, "pc");

    // The analyst adds an .ndb file with the CLI: a comment and two signatures.
    let ndb = root.join("worm-x.ndb");
    fs::write(
        &ndb,
        format!(
            "# Worm X, seen in the lab\nHerd.Immunity.WormX.Loader:0:*:{}\nHerd.Immunity.WormX.Tail:0:*:{}\n",
            hex(WORM_BODY.as_bytes()),
            hex(b"WORM-X-TAIL-NEVER-SEEN-HERE"),
        ),
    )
    .unwrap();
    let added = herd(&["signatures", "add", ndb.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&added.stdout);
    assert!(added.status.success(), "{added:?}");
    assert!(
        said.contains("added 2 to Herd's set (Herd.Immunity.WormX.Loader, Herd.Immunity.WormX.Tail); the set has 2 body signature(s)"),
        "{said}"
    );
    let listed = analyst.body_signatures().unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|s| (s.name.as_str(), s.format.as_str(), s.added_by.as_str()))
            .collect::<Vec<_>>(),
        [
            ("Herd.Immunity.WormX.Loader", "ndb", "analyst"),
            ("Herd.Immunity.WormX.Tail", "ndb", "analyst")
        ]
    );
    let table = herd(&["signatures", "list"]);
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("Herd.Immunity.WormX.Loader"),
        "{table:?}"
    );

    // The agent fetches herd.ndb through TUF and scans with it.
    pc.wait_for("Herd's own signature set updated (2 signature(s))");
    pc.wait_for("Herd's own set included");
    let infected = pc.drop_file("report.doc", &format!("macro {WORM_BODY} macro\n"));
    let told = pc.wait_for("is infected");
    assert!(told.contains("Herd.Immunity.WormX.Loader"), "{told}");
    assert!(!infected.exists(), "the file was quarantined");
    let clean = pc.drop_file("notes.txt", "WORM-X-LOADER but not the body\n");
    assert!(
        pc.lines_with("is infected", Duration::from_secs(3))
            .is_empty()
    );
    assert!(clean.exists(), "a file that does not match stays");
    // The detection by Herd's own signature does not make a cross-vendor verdict.
    assert!(operator.herd_set().unwrap().is_empty());

    // Bad lines: each named by its number, nothing stored, nothing published.
    let bad = BodySignaturesDoc {
        format: "ndb".into(),
        text: format!(
            "Herd.Immunity.Fine:0:*:{}\nHerd.Immunity.Odd:0:*:zz11\nVendor.Name:0:*:{}\n",
            hex(b"FINE-BODY"),
            hex(b"OTHER-BODY")
        ),
        name: None,
    };
    let err = analyst.add_body_signatures(&bad).unwrap_err().to_string();
    assert!(err.contains("2 problem(s), nothing was added"), "{err}");
    assert!(err.contains("line 2: "), "{err}");
    assert!(
        err.contains(
            "line 3: the signature name \"Vendor.Name\" must start with \"Herd.Immunity.\""
        ),
        "{err}"
    );
    let ldb = root.join("broken.ldb");
    fs::write(&ldb, "Herd.Immunity.L;Target:0;0&1;616263\n").unwrap();
    let refused = herd(&["signatures", "add", ldb.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("line 1: "),
        "{refused:?}"
    );
    let again = herd(&["signatures", "add", ndb.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .contains("Herd's set already has a signature named \"Herd.Immunity.WormX.Loader\""),
        "{again:?}"
    );
    assert_eq!(analyst.body_signatures().unwrap().len(), 2);

    // A viewer may neither add, nor list, nor remove.
    let fine = BodySignaturesDoc {
        format: "ndb".into(),
        text: format!("Herd.Immunity.Fine:0:*:{}\n", hex(b"FINE-BODY")),
        name: None,
    };
    for refusal in [
        viewer.add_body_signatures(&fine).unwrap_err(),
        viewer.body_signatures().unwrap_err(),
        viewer
            .remove_body_signature("Herd.Immunity.WormX.Loader")
            .unwrap_err(),
    ] {
        assert_eq!(refusal.code(), Some("forbidden"), "{refusal}");
    }
    assert_eq!(analyst.body_signatures().unwrap().len(), 2);

    // Removing the loader's signature retracts it on the terminal.
    let removed = herd(&["signatures", "remove", "Herd.Immunity.WormX.Loader"]);
    assert!(removed.status.success(), "{removed:?}");
    pc.wait_for("Herd's own signature set updated (1 signature(s))");
    pc.wait_for("Herd's own set included");
    let kept = pc.drop_file("report-again.doc", &format!("macro {WORM_BODY} macro\n"));
    assert!(
        pc.lines_with("is infected", Duration::from_secs(3))
            .is_empty()
    );
    assert!(kept.exists(), "a removed signature no longer detects");
    let missing = herd(&["signatures", "remove", "Herd.Immunity.WormX.Loader"]);
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no body signature named"),
        "{missing:?}"
    );
}

#[test]
fn after_a_verdict_an_agent_holding_the_set_downloads_only_a_delta() {
    herd_tls::install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let center = start_center(root);
    let operator = center.operator().unwrap();
    let token = enrolment_token(&operator);
    let verdict = |n: usize| {
        let content = format!("a file judged malicious, number {n}");
        operator
            .verdict(&VerdictDoc {
                sha256: sha256_hex(content.as_bytes()),
                size: Some(content.len() as u64),
                verdict: "malicious".into(),
                threat: None,
                danger: None,
                name: None,
            })
            .unwrap()
    };
    // A set of some size: 150 exact-hash signatures (about 15 KB).
    const FIRST: usize = 150;
    for n in 0..FIRST {
        verdict(n);
    }
    let mut pc = Daemon::start(root, &center, &token, "pc");
    pc.wait_for(&format!(
        "Herd's own signature set updated ({FIRST} signature(s))"
    ));
    let whole = pc.set_file("herd-set.hsb");
    assert_eq!(
        metric(&center, "herd_set_bytes_served_whole_total"),
        whole.len() as u64,
        "the first set is downloaded whole"
    );
    assert_eq!(metric(&center, "herd_set_bytes_served_delta_total"), 0);

    // One more verdict: the agent rebuilds the new set from the one it holds and a delta.
    let outcome = verdict(FIRST);
    let said = pc.wait_for(&format!(
        "Herd's own signature set updated ({} signature(s))",
        FIRST + 1
    ));
    assert!(said.contains("as deltas"), "{said}");
    let delta_bytes = metric(&center, "herd_set_bytes_served_delta_total");
    assert_eq!(
        metric(&center, "herd_set_bytes_served_whole_total"),
        whole.len() as u64,
        "nothing more was downloaded whole"
    );
    assert!(
        delta_bytes > 0 && delta_bytes * 10 < whole.len() as u64,
        "a delta of {delta_bytes} bytes for a set of {} bytes",
        whole.len()
    );
    eprintln!(
        "set of {} bytes: updated with a delta of {delta_bytes} bytes",
        whole.len()
    );
    // The exact signed bytes: what the center serves under the signed SHA-256.
    let held = pc.set_file("herd-set.hsb");
    assert_eq!(sha256_hex(&held), outcome.set_sha256);
    let served = center
        .client(None)
        .unwrap()
        .repository()
        .get(
            &format!(
                "{TARGETS_PATH}{}",
                consistent_target_name(HERD_SET_TARGET, &outcome.set_sha256)
            ),
            ReadLimits::target(1 << 20),
        )
        .unwrap();
    assert_eq!(held, served);

    // A copy that matches no version the center made deltas from (changed while the agent
    // was stopped): the whole file at the next start, and the exact signed bytes again.
    drop(pc);
    // The test's own download above counts as whole bytes served too.
    let whole_before = metric(&center, "herd_set_bytes_served_whole_total");
    let tampered = root.join("pc").join("herd-set").join("herd-set.hsb");
    fs::write(&tampered, [held.as_slice(), b"# changed here\n"].concat()).unwrap();
    let mut pc = Daemon::start(root, &center, &token, "pc");
    let said = pc.wait_for(&format!(
        "Herd's own signature set updated ({} signature(s))",
        FIRST + 1
    ));
    assert!(!said.contains("deltas"), "{said}");
    assert_eq!(held, pc.set_file("herd-set.hsb"));
    assert_eq!(
        metric(&center, "herd_set_bytes_served_delta_total"),
        delta_bytes
    );
    assert_eq!(
        metric(&center, "herd_set_bytes_served_whole_total"),
        whole_before + held.len() as u64
    );
}
