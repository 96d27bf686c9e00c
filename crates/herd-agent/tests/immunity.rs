//! Herd immunity end to end (issue 13, SPEC §3.2), with real processes on loopback: a real
//! `herd serve` center, vendors' packages built with herd-package, and `herd-agent run`
//! daemons hosting their scanner (`--scan`). A PC running vendor A's product detects a new
//! file by name; the detection reaches the center as a `scan.detection` event; the
//! cross-vendor rule publishes the file's hash in Herd's own signature set (signed, pushed);
//! the phone, whose vendor B product does not know the file, fetches the set through TUF and
//! detects the file seconds later. A benign verdict retracts the signature, an operator's
//! malicious verdict publishes one by hand, and the same suspicious hash from two terminals
//! publishes it by the second rule.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use herd_client::Client;
use herd_lab::harness::{CenterProcess, CenterSpec};
use herd_package::PackageSpec;
use herd_proto::api::{GroupDoc, NewEnrolmentToken, PlacementRule, PlacementRules, VerdictDoc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/herd.rs"]
mod herd;

use daemon::Daemon;
use herd::herd_binary;

/// A body vendor A's product detects by name and vendor B's does not.
const NEW_VIRUS: &str = "NEW-VIRUS-BODY-0xFEEDFACE";
/// A body vendor A's product only finds suspicious (`Suspicious.` signatures).
const SUSPECT: &str = "SUSPECT-PACKER-BODY-0xC0FFEE";

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_herd-agent"))
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Builds `product` 1.0 for PCs and phones with these extra body signatures.
fn package(root: &Path, product: &str, vendor: &str, extra: &[(&str, &str)]) -> (PathBuf, Value) {
    let src = root.join("src").join(product);
    fs::create_dir_all(&src).unwrap();
    let own = format!("HERD-TEST-PATTERN-{product}");
    let mut defs = format!("{product}.Test.Pattern:0:*:{}\n", hex(&own));
    for (name, body) in extra {
        defs += &format!("{name}:0:*:{}\n", hex(body));
    }
    let definitions = src.join(format!("{product}.ndb"));
    fs::write(&definitions, defs).unwrap();
    let test_pattern = src.join("test.txt");
    fs::write(&test_pattern, format!("== {own} ==\n")).unwrap();
    let hook = src.join("post-install");
    fs::write(&hook, "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
    let spec = PackageSpec {
        product: product.into(),
        vendor: vendor.into(),
        version: "1.0".into(),
        seq: 1,
        pattern: format!("{product}-1"),
        definitions: vec![definitions],
        test_pattern,
        post_install: Some(hook),
        pre_uninstall: None,
        platforms: vec!["pc".into(), "phone".into()],
    };
    let path = root.join(format!("{product}.tar.gz"));
    let built = herd_package::build(&spec, &path).unwrap();
    let feed = json!({
        "format": "herd.catalog/v1",
        "vendors": [{"id": vendor, "name": vendor}],
        "products": [{"id": product, "vendor": vendor, "name": product, "platforms": ["pc", "phone"]}],
        "releases": [{"product": product, "version": "1.0", "pattern": format!("{product}-1"), "seq": 1,
                      "published": "2026-01-01T00:00:00Z", "packages": built.catalog_packages}],
        "threats": [],
        "coverage": []
    });
    (path, feed)
}

impl Daemon {
    fn start(root: &Path, center: &CenterProcess, token: &str, id: &str, user: &str) -> Daemon {
        let (files, state) = daemon::dirs(root, id);
        let kind = if id.starts_with("phone") {
            "phone"
        } else {
            "pc"
        };
        let mut command = agent();
        command
            .arg("run")
            .arg("--server")
            .arg(&center.url)
            .arg("--ca")
            .arg(center.ca_path())
            .arg("--state-dir")
            .arg(&state)
            .args(["--enrol-token", token, "--id", id, "--user", user])
            .args(["--kind", kind, "--platform", kind, "--tz", "+09:00"])
            .arg("--scan")
            .arg(&files)
            .args(["--daily-scan", "03:00"]);
        Daemon::spawn(command, files, state)
    }
}

#[track_caller]
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "waited 30 s for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `herd_set.updated` events the center stored for `terminal`, read with the sqlite3 tool.
fn herd_set_events(data: &Path, terminal: &str) -> Vec<Value> {
    let output = Command::new("sqlite3")
        .arg("-readonly")
        .arg(data.join("herd.db"))
        .arg(format!(
            "SELECT data FROM events WHERE terminal = '{terminal}' \
             AND kind = 'herd_set.updated' ORDER BY seq"
        ))
        .output()
        .expect("the sqlite3 tool runs (apt-get install sqlite3)");
    assert!(
        output.status.success(),
        "sqlite3: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn group(operator: &Client, id: &str, vendor: &str) {
    operator
        .put_group(&GroupDoc {
            id: id.into(),
            description: String::new(),
            policy: serde_json::from_value(
                json!({"apply": "latest-any-vendor", "vendors": [vendor]}),
            )
            .unwrap(),
            terminals: 0,
        })
        .unwrap();
}

fn in_set(operator: &Client, sha256: &str) -> Option<herd_proto::api::HerdSignatureDoc> {
    operator
        .herd_set()
        .unwrap()
        .into_iter()
        .find(|s| s.sha256 == sha256)
}

#[test]
fn a_vendors_detection_protects_terminals_of_every_vendor_within_seconds() {
    herd_tls::install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let keep = std::env::var_os("IMM_KEEP").map(PathBuf::from);
    let root = keep.as_deref().unwrap_or(root);
    let data = root.join("center");
    fs::create_dir_all(&data).unwrap();
    let config = root.join("center.toml");
    fs::write(&config, "immunity_suspect_terminals = 2\n").unwrap();
    let center = CenterProcess::start(
        &CenterSpec::new(herd_binary(), &data)
            .log(&root.join("center.log"))
            .arg("--config")
            .arg(&config)
            .args(["--checkin-interval", "3600"])
            .env("RUST_LOG", Some("error")),
    )
    .unwrap();
    let operator = center.operator().unwrap();
    let token = operator
        .new_enrolment_token(&NewEnrolmentToken {
            label: "tests".into(),
            uses: Some(10),
            ttl_secs: None,
            reenrol_terminal: None,
        })
        .unwrap()
        .token;

    let (a, feed_a) = package(
        root,
        "vaccine-a",
        "maker-a",
        &[
            ("vaccine-a.NewVirus", NEW_VIRUS),
            ("Suspicious.Packer", SUSPECT),
        ],
    );
    let (b, feed_b) = package(root, "vaccine-b", "maker-b", &[]);
    for (vendor, feed, package) in [("maker-a", &feed_a, &a), ("maker-b", &feed_b, &b)] {
        operator
            .publish_feed(vendor, feed.to_string().as_bytes())
            .unwrap();
        operator.upload_package(package).unwrap();
    }
    group(&operator, "vendor-a", "maker-a");
    group(&operator, "vendor-b", "maker-b");
    let rule = |user: &str, group: &str| PlacementRule {
        group: group.into(),
        kind: None,
        platform: None,
        address: None,
        user: Some(user.into()),
    };
    operator
        .put_rules(&PlacementRules {
            rules: vec![rule("alice", "vendor-a"), rule("bob", "vendor-b")],
        })
        .unwrap();

    let mut pc = Daemon::start(root, &center, &token, "pc", "alice");
    let mut phone = Daemon::start(root, &center, &token, "phone", "bob");
    pc.wait_for("vaccine-a 1.0 (vaccine-a-1) is active");
    pc.wait_for("scanning");
    phone.wait_for("vaccine-b 1.0 (vaccine-b-1) is active");
    phone.wait_for("scanning");

    // The PC's vendor knows the new file by name: quarantined, reported.
    let body = format!("junk {NEW_VIRUS} junk\n");
    let sha256 = sha256_hex(body.as_bytes());
    let on_pc = pc.drop_file("invoice.pdf.exe", &body);
    let told = pc.wait_for("is infected");
    assert!(told.contains("vaccine-a.NewVirus"), "{told}");
    assert!(told.contains("moved to quarantine"), "{told}");
    assert!(!on_pc.exists(), "the file was quarantined");
    let notice: Value =
        serde_json::from_slice(&fs::read(root.join("pc/detections.json")).unwrap()).unwrap();
    assert_eq!(notice[0]["sha256"], sha256.as_str());
    assert_eq!(notice[0]["action"], "quarantined");
    assert_eq!(notice[0]["product"], "vaccine-a/1.0");
    // `herd-agent status` tells the user too.
    let status = agent()
        .args(["status", "--state-dir"])
        .arg(root.join("pc"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("invoice.pdf.exe is infected (vaccine-a.NewVirus): quarantined as "),
        "{text}"
    );

    // The detection reached the center, whose cross-vendor rule published the hash.
    let detected_at = Instant::now();
    wait_until("the hash to enter Herd's set", || {
        in_set(&operator, &sha256).is_some()
    });
    let signature = in_set(&operator, &sha256).unwrap();
    assert_eq!(signature.source, "rule:cross-vendor");
    assert_eq!(signature.first_terminal, "pc");
    assert_eq!(signature.first_signature, "vaccine-a.NewVirus");
    assert_eq!(signature.size, body.len() as u64);
    // The file is a threat of the catalog now, covered by Herd's set (SPEC §3.2.5), named
    // after the vendor's signature.
    let herd_threat = || {
        let coverage = operator.coverage().unwrap();
        coverage
            .threats
            .into_iter()
            .find(|t| t.threat == format!("herd-{}", &sha256[..16]))
    };
    wait_until("the file to enter the catalog", || herd_threat().is_some());
    let threat = herd_threat().unwrap();
    assert_eq!(threat.name, "vaccine-a.NewVirus");
    assert!(threat.herd_since.is_some(), "{threat:?}");

    // The phone (vendor B, which does not know the file) gets the set pushed and detects it.
    phone.wait_for("Herd's own signature set updated (1 signature(s))");
    phone.wait_for("Herd's own set included");
    let protected = detected_at.elapsed();
    // The phone told the center which set it holds now (`herd_set.updated`, in the cycle's
    // flush): the set's SHA-256 and its one signature.
    let held = sha256_hex(&fs::read(root.join("phone/herd-set/herd-set.hsb")).unwrap());
    wait_until("the phone's herd_set.updated event at the center", || {
        herd_set_events(&data, "phone")
            .iter()
            .any(|event| event["sha256"] == held.as_str() && event["signatures"] == 1)
    });
    eprintln!("PC's detection -> phone protected by Herd's set: {protected:?}");
    let on_phone = phone.drop_file("invoice.pdf.exe", &body);
    let told = phone.wait_for("is infected");
    assert!(told.contains(&signature.name), "{told}");
    assert!(
        !on_phone.exists(),
        "the file was quarantined on the phone too"
    );
    // Vendor B still does not know it: only Herd's signature matched.
    assert!(!told.contains("vaccine-b"), "{told}");

    // A benign verdict (a false positive) retracts the signature the same way.
    let outcome = operator
        .verdict(&VerdictDoc {
            sha256: sha256.clone(),
            size: None,
            verdict: "benign".into(),
            threat: None,
            danger: None,
            name: None,
        })
        .unwrap();
    assert!(outcome.changed);
    assert_eq!(outcome.signatures, 0);
    phone.wait_for("Herd's own signature set updated (0 signature(s))");
    phone.wait_for("scanning");
    let kept = phone.drop_file("invoice-again.pdf.exe", &body);
    assert!(
        phone
            .lines_with("is infected", Duration::from_secs(3))
            .is_empty()
    );
    assert!(kept.exists(), "a retracted signature no longer detects");

    // An operator's malicious verdict publishes a file nobody detected.
    let other = format!("another new file {}\n", "x".repeat(40));
    let other_sha = sha256_hex(other.as_bytes());
    let outcome = operator
        .verdict(&VerdictDoc {
            sha256: other_sha.clone(),
            size: Some(other.len() as u64),
            verdict: "malicious".into(),
            threat: Some("new-worm".into()),
            danger: None,
            name: None,
        })
        .unwrap();
    assert!(outcome.changed);
    assert_eq!(outcome.signatures, 1);
    phone.wait_for("Herd's own signature set updated (1 signature(s))");
    phone.wait_for("Herd's own set included");
    phone.drop_file("worm.sh", &other);
    let told = phone.wait_for("is infected");
    assert!(told.contains("Herd.Immunity.new-worm."), "{told}");

    // Bad verdicts are refused, naming what is wrong, and change nothing.
    for (doc, says) in [
        (
            json!({"sha256": "ABC", "verdict": "malicious", "size": 3}),
            "$.sha256",
        ),
        (
            json!({"sha256": other_sha, "verdict": "maybe"}),
            "$.verdict",
        ),
        (json!({"sha256": sha256, "verdict": "malicious"}), "$.size"),
    ] {
        let doc: VerdictDoc = serde_json::from_value(doc).unwrap();
        let err = operator.verdict(&doc).unwrap_err();
        assert!(err.to_string().contains(says), "{err}");
    }
    assert_eq!(operator.herd_set().unwrap().len(), 1);

    // The same suspicious hash from two terminals (the configured threshold) is published.
    let suspect = format!("packed {SUSPECT}\n");
    let suspect_sha = sha256_hex(suspect.as_bytes());
    let mut pc2 = Daemon::start(root, &center, &token, "pc2", "alice");
    pc2.wait_for("scanning");
    pc.drop_file("tool.exe", &suspect);
    let told = pc.wait_for("is infected");
    assert!(
        told.contains("Suspicious.Packer") && told.contains("reported"),
        "{told}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        in_set(&operator, &suspect_sha).is_none(),
        "one terminal is not enough"
    );
    pc2.drop_file("tool.exe", &suspect);
    pc2.wait_for("is infected");
    wait_until("the suspect hash to enter Herd's set", || {
        in_set(&operator, &suspect_sha).is_some()
    });
    assert_eq!(
        in_set(&operator, &suspect_sha).unwrap().source,
        "rule:suspect-terminals"
    );
    phone.wait_for("Herd's own signature set updated (2 signature(s))");
    phone.wait_for("Herd's own set included");
    phone.drop_file("tool.exe", &suspect);
    let told = phone.wait_for("is infected");
    assert!(told.contains("Herd.Immunity."), "{told}");

    // Samples: the suspicious hit went to the sample store by itself; a user submits a file.
    wait_until("the suspicious sample to be stored", || {
        operator
            .samples()
            .unwrap()
            .iter()
            .any(|s| s.sha256 == suspect_sha)
    });
    let submitted = root.join("strange.bin");
    let strange = format!("strange {NEW_VIRUS} bytes\n");
    fs::write(&submitted, &strange).unwrap();
    let strange_sha = sha256_hex(strange.as_bytes());
    let submit = |file: &Path| {
        agent()
            .args(["submit", "--state-dir"])
            .arg(root.join("phone"))
            .arg(file)
            .output()
            .unwrap()
    };
    let out = submit(&submitted);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("queued"),
        "{out:?}"
    );
    wait_until("the submitted sample to be stored", || {
        operator
            .samples()
            .unwrap()
            .iter()
            .any(|s| s.sha256 == strange_sha)
    });
    let samples = operator.samples().unwrap();
    let sample = samples.iter().find(|s| s.sha256 == strange_sha).unwrap();
    assert_eq!(
        (
            sample.reason.as_str(),
            sample.first_terminal.as_str(),
            sample.size
        ),
        ("submitted", "phone", strange.len() as u64)
    );
    assert!(
        samples
            .iter()
            .find(|s| s.sha256 == suspect_sha)
            .unwrap()
            .in_herd_set
    );
    // Kept neutralised: not the bytes, no signature matches them at rest, not runnable.
    let stored = data.join("samples").join(format!("{strange_sha}.bin"));
    let at_rest = fs::read(&stored).unwrap();
    assert_ne!(at_rest, strange.as_bytes());
    assert_eq!(
        fs::metadata(&stored).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let scanned = agent()
        .args(["scan", "--no-summary", "--prefix"])
        .arg(root.join("pc/prefix"))
        .arg(&stored)
        .output()
        .unwrap();
    assert_eq!(scanned.status.code(), Some(0), "{scanned:?}");
    assert_eq!(operator.sample(&strange_sha, 1 << 20).unwrap(), at_rest);
    // Restored with the keystream of its SHA-256, it is the file.
    let mut restored = at_rest.clone();
    for (block, chunk) in restored.chunks_mut(32).enumerate() {
        let key = Sha256::new()
            .chain_update(strange_sha.as_bytes())
            .chain_update((block as u64).to_le_bytes())
            .finalize();
        chunk.iter_mut().zip(key).for_each(|(b, k)| *b ^= k);
    }
    assert_eq!(restored, strange.as_bytes());
    // Sent once; too large is refused with nothing queued.
    let again = submit(&submitted);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("was sent before"),
        "{again:?}"
    );
    let large = root.join("large.bin");
    fs::write(&large, vec![b'x'; (1 << 20) + 1]).unwrap();
    let refused = submit(&large);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("nothing was queued"),
        "{refused:?}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(operator.samples().unwrap().len(), 2);

    // `herd immunity` lists the set and judges files through the same API.
    let herd = |args: &[&str]| {
        Command::new(herd_binary())
            .args(args)
            .arg("--server")
            .arg(&center.url)
            .arg("--ca")
            .arg(center.ca_path())
            .arg("--token-file")
            .arg(center.operator_token_path())
            .output()
            .unwrap()
    };
    let listed = herd(&["immunity", "list"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{text}");
    assert!(
        text.contains(&suspect_sha) && text.contains("rule:suspect-terminals"),
        "{text}"
    );
    assert!(
        text.contains(&other_sha) && text.contains("operator"),
        "{text}"
    );
    let judged = herd(&["immunity", "verdict", "benign", &other_sha]);
    let text = String::from_utf8_lossy(&judged.stdout);
    assert!(judged.status.success(), "{text}");
    assert!(
        text.contains("removed from Herd's set; the set has 1 signature(s)"),
        "{text}"
    );
    let refused = herd(&[
        "immunity",
        "verdict",
        "malicious",
        "not-a-digest",
        "--size",
        "3",
    ]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("$.sha256"),
        "{refused:?}"
    );
}
