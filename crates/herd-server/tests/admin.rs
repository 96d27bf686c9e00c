//! The admin commands as an operator and two vendors run them against a real `herd serve`:
//! tokens (created, listed, revoked, capped), feeds split per vendor, coverage, the fleet,
//! groups and rules, uploads, and the errors people meet (another vendor's feed, bad or
//! expired tokens, no center listening).

mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};

use herd_client::Client;
use herd_proto::api::{CheckinRequest, EnrolRequest, GapThreat, NewApiToken, TerminalGap};
use herd_proto::terminal::{HardwareDoc, InstalledDoc};
use support::{HERD, TestCenter};

/// A real center (the shared [`TestCenter`]) and the working directory the admin commands
/// run in (it holds feeds, rules and downloads).
struct Center {
    center: TestCenter,
    url: String,
    work: tempfile::TempDir,
}

impl Center {
    fn start() -> Center {
        let center = TestCenter::start();
        Center {
            url: center.url.clone(),
            center,
            work: tempfile::tempdir().unwrap(),
        }
    }

    fn ca_pem(&self) -> String {
        self.center.ca_pem()
    }

    fn operator(&self) -> Client {
        self.center.operator()
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.work.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs `herd ARGS` against this center, authenticated by the operator token file unless
    /// the arguments say otherwise.
    fn herd(&self, args: &[&str]) -> Output {
        Command::new(HERD)
            .args(args)
            .current_dir(self.work.path())
            .env("HERD_SERVER", &self.url)
            .env("HERD_CA", self.center.data_dir.join("ca.pem"))
            .env(
                "HERD_TOKEN_FILE",
                self.center.data_dir.join("operator.token"),
            )
            .env_remove("HERD_TOKEN")
            .output()
            .expect("herd runs")
    }

    /// Sends SIGTERM and expects a clean exit.
    fn stop(mut self) {
        let (status, stderr) = self.center.stop();
        assert!(
            status.success(),
            "herd serve exited with {status}:\n{stderr}"
        );
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

/// The seed catalog's part one vendor publishes, as the file a vendor would write.
fn vendor_feed(catalog: &serde_json::Value, vendor: &str) -> String {
    serde_json::to_string_pretty(&support::vendor_feed(catalog, vendor)).unwrap()
}

fn one_line(out: &Output) -> String {
    let text = stdout(out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "exactly the secret is printed: {text:?}");
    lines[0].to_owned()
}

#[test]
fn operators_and_vendors_drive_a_real_center_with_the_admin_commands() {
    let center = Center::start();
    let catalog: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&support::seed_catalog()).unwrap()).unwrap();
    let feed_a = center.write("maker-a.json", &vendor_feed(&catalog, "maker-a"));
    let feed_b = center.write("maker-b.json", &vendor_feed(&catalog, "maker-b"));
    let feed_a = feed_a.to_str().unwrap();
    let feed_b = feed_b.to_str().unwrap();

    // Vendor tokens: the secret alone on stdout, so scripts can capture it.
    let out = center.herd(&[
        "token",
        "create",
        "--role",
        "vendor",
        "--vendor",
        "maker-a",
        "--label",
        "maker-a CI",
    ]);
    assert_exit(&out, 0);
    let token_a = one_line(&out);
    let out = center.herd(&["token", "create", "--role", "vendor", "--vendor", "maker-b"]);
    assert_exit(&out, 0);
    let token_b = one_line(&out);
    assert_ne!(token_a, token_b);
    let out = center.herd(&["token", "create", "--role", "vendor"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("--vendor"), "{}", stderr(&out));

    // Each vendor publishes its own part; republishing changes nothing.
    let out = center.herd(&[
        "publish", feed_a, "--vendor", "maker-a", "--token", &token_a,
    ]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).starts_with("published the feed of maker-a: catalog revision "),
        "{}",
        stdout(&out)
    );
    let out = center.herd(&["publish", feed_a, "--token", &token_a]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).starts_with("the feed of maker-a is unchanged: catalog revision "),
        "{}",
        stdout(&out)
    );

    // A vendor cannot publish the other's feed, under either vendor's name.
    let out = center.herd(&["publish", feed_b, "--token", &token_a]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("forbidden_vendor"),
        "{}",
        stderr(&out)
    );
    let out = center.herd(&[
        "publish", feed_b, "--vendor", "maker-a", "--token", &token_a,
    ]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("forbidden_vendor"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("$.products[0].vendor"),
        "{}",
        stderr(&out)
    );

    let token_b_file = center.write("maker-b.token", &format!("{token_b}\n"));
    let out = center.herd(&[
        "publish",
        feed_b,
        "--token-file",
        token_b_file.to_str().unwrap(),
    ]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("published the feed of maker-b"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("the center does not hold 2 of the packages"),
        "{}",
        stdout(&out)
    );

    // A refused feed prints every problem with its path.
    let broken = vendor_feed(&catalog, "maker-a").replace("\"high\"", "\"huge\"");
    let broken = center.write("broken.json", &broken);
    let out = center.herd(&["publish", broken.to_str().unwrap(), "--token", &token_a]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("feed_invalid: "), "{err}");
    assert!(err.contains("\n  $.threats[0].danger: "), "{err}");

    // The coverage matrix: vaccine-b covers virus-a since 1112, vaccine-a is expected to.
    let out = center.herd(&["coverage"]);
    assert_exit(&out, 0);
    let table = stdout(&out);
    let header = table.lines().nth(1).unwrap();
    let row = table.lines().find(|l| l.starts_with("virus-a")).unwrap();
    assert!(
        header.find("vaccine-a").unwrap() < header.find("vaccine-b").unwrap(),
        "{table}"
    );
    assert_eq!(
        row.find("exp. 2000-11-15"),
        header.find("vaccine-a"),
        "{table}"
    );
    assert_eq!(row.find("since 1112"), header.find("vaccine-b"), "{table}");
    assert!(row.starts_with("virus-a  high    2000-11-10"), "{table}");
    let out = center.herd(&["coverage", "--json"]);
    assert_exit(&out, 0);
    let matrix: herd_proto::api::CoverageMatrix = serde_json::from_slice(&out.stdout).unwrap();
    let b = matrix
        .products
        .iter()
        .position(|p| p.id == "vaccine-b")
        .unwrap();
    assert_eq!(matrix.threats[0].cells[b].since_seq, Some(1112));
    assert!(matrix.threats[0].cells[b].covered);

    // Credentials: garbage, expired, and a vendor's token on an operator endpoint.
    let out = center.herd(&["coverage", "--token", "garbage"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("unauthenticated"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the API token came from --token"),
        "{}",
        stderr(&out)
    );
    let expired = center
        .operator()
        .new_api_token(&NewApiToken {
            role: "operator".to_owned(),
            vendor: None,
            label: "already expired".to_owned(),
            ttl_secs: Some(0),
        })
        .unwrap();
    let out = center.herd(&["coverage", "--token", &expired.token]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("token_expired"), "{}", stderr(&out));
    let out = center.herd(&["terminals", "--token", &token_a]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("forbidden"), "{}", stderr(&out));

    // Groups: the policy every enrolling terminal gets, and a refused window.
    let out = center.herd(&[
        "groups",
        "put",
        "unknown",
        "--policy-apply",
        "latest-any-vendor",
    ]);
    assert_exit(&out, 0);
    let out = center.herd(&[
        "groups",
        "put",
        "kiosks",
        "--policy-apply",
        "pinned",
        "--min-danger",
        "high",
        "--window",
        "01:00-05:00",
        "--description",
        "vending machines",
    ]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).starts_with("group kiosks saved: pinned, min danger high"),
        "{}",
        stdout(&out)
    );
    let out = center.herd(&[
        "groups",
        "put",
        "bad",
        "--policy-apply",
        "pinned",
        "--window",
        "25:00-26:00",
    ]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("bad_request"), "{}", stderr(&out));
    let out = center.herd(&["groups", "list"]);
    assert_exit(&out, 0);
    let kiosks = stdout(&out)
        .lines()
        .find(|l| l.starts_with("kiosks"))
        .map(str::to_owned);
    let kiosks = kiosks.unwrap_or_else(|| panic!("{}", stdout(&out)));
    assert!(
        kiosks.contains("pinned")
            && kiosks.contains("01:00-05:00")
            && kiosks.ends_with("vending machines"),
        "{kiosks}"
    );

    // A group restricted to some vendors; threats with their owners; vendors; the blob store.
    let out = center.herd(&[
        "groups",
        "put",
        "loyal",
        "--policy-apply",
        "latest-any-vendor",
        "--vendors",
        "maker-a,maker-c",
    ]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("vendors maker-a,maker-c"),
        "{}",
        stdout(&out)
    );
    let out = center.herd(&["threats", "list"]);
    assert_exit(&out, 0);
    let virus = stdout(&out)
        .lines()
        .find(|l| l.starts_with("virus-a"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("{}", stdout(&out)));
    assert!(
        virus.contains("maker-a") && virus.contains("approved") && virus.contains("high"),
        "{virus}"
    );
    assert_exit(
        &center.herd(&["threats", "reassign", "virus-a", "maker-b"]),
        0,
    );
    let out = center.herd(&["threats", "list", "--json"]);
    assert_exit(&out, 0);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["threats"][0]["vendor"], "maker-b");
    // maker-a's feed now describes a threat maker-b owns: stored, and told what does not count.
    let mut rated = support::vendor_feed(&catalog, "maker-a");
    rated["threats"][0]["danger"] = serde_json::json!("critical");
    let rated = center.write("maker-a-rated.json", &rated.to_string());
    let out = center.herd(&["publish", rated.to_str().unwrap(), "--token", &token_a]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains(
            "do not count:\n  $.threats[0]: threat \"virus-a\" belongs to vendor \"maker-b\""
        ),
        "{}",
        stdout(&out)
    );
    let out = center.herd(&["threats", "approve", "nothing-such"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("not_found"), "{}", stderr(&out));
    let out = center.herd(&["threats", "pending", "--token", &token_a]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("forbidden"), "{}", stderr(&out));
    let out = center.herd(&["vendors", "list"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with("maker-b") && l.contains("approved")),
        "{}",
        stdout(&out)
    );
    let out = center.herd(&["blobs", "gc"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).starts_with("collected 0 packages and 0 abandoned uploads"),
        "{}",
        stdout(&out)
    );
    assert_exit(&center.herd(&["groups", "delete", "loyal"]), 0);

    // Placement rules round-trip; a rule's group cannot be deleted while the rule uses it.
    let rules = center.write(
        "rules.json",
        r#"{"rules": [{"group": "kiosks", "kind": "vending"}]}"#,
    );
    let out = center.herd(&["rules", "set", rules.to_str().unwrap()]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).starts_with("1 placement rule set"),
        "{}",
        stdout(&out)
    );
    let out = center.herd(&["rules", "show"]);
    assert_exit(&out, 0);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        shown,
        serde_json::json!({"rules": [{"group": "kiosks", "kind": "vending"}]})
    );
    let out = center.herd(&["groups", "delete", "kiosks"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("conflict"), "{}", stderr(&out));
    let typo = center.write(
        "typo.json",
        r#"{"rules": [{"group": "kiosks", "knd": "vending"}]}"#,
    );
    let out = center.herd(&["rules", "set", typo.to_str().unwrap()]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("$.rules[0].knd: unknown field `knd`"),
        "{}",
        stderr(&out)
    );
    let none = center.write("none.json", r#"{"rules": []}"#);
    assert_exit(&center.herd(&["rules", "set", none.to_str().unwrap()]), 0);
    assert_exit(&center.herd(&["groups", "delete", "kiosks"]), 0);

    // A terminal enrols with a token from `herd enrol-token create` and checks in.
    let out = center.herd(&["enrol-token", "create", "--uses", "2", "--label", "phones"]);
    assert_exit(&out, 0);
    let enrol_token = one_line(&out);
    let (key_pem, csr_pem) = herd_tls::new_key_and_csr("45a").unwrap();
    let anonymous = Client::new(&center.url, &center.ca_pem(), None).unwrap();
    let enrolled = anonymous
        .enrol(&EnrolRequest {
            token: enrol_token,
            csr_pem,
            id: Some("45a".to_owned()),
            user: Some("user-a".to_owned()),
            hardware: HardwareDoc {
                kind: "phone".to_owned(),
                platform: "phone".to_owned(),
                model: None,
            },
            tz: Some("+09:00".to_owned()),
        })
        .unwrap();
    let identity = herd_tls::KeyPairPem {
        cert_pem: enrolled.certificate_pem,
        key_pem,
    };
    let terminal = Client::new(&center.url, &center.ca_pem(), Some(&identity)).unwrap();
    let checkin = terminal
        .checkin(&CheckinRequest {
            terminal: None,
            installed: Some(InstalledDoc {
                product: "vaccine-a".to_owned(),
                version: "5.1".to_owned(),
                seq: 1101,
                pattern: "a-1101".to_owned(),
                format: "archive".to_owned(),
            }),
            hardware: None,
            tz: None,
            agent_version: None,
            interfaces: None,
            tuf_timestamp_version: None,
            consent_waiting: None,
            messages_after: None,
            tuf_held: None,
        })
        .unwrap();
    assert_eq!(checkin.plan.action, herd_proto::plan::Action::Switch);

    let out = center.herd(&["terminals"]);
    assert_exit(&out, 0);
    let table = stdout(&out);
    let row = table
        .lines()
        .find(|l| l.starts_with("45a "))
        .unwrap_or_else(|| panic!("{table}"));
    for expected in [
        "user-a",
        "phone/phone",
        "unknown",
        "vaccine-a 5.1 (a-1101)",
        "switch",
    ] {
        assert!(row.contains(expected), "{expected:?} missing in {row:?}");
    }
    assert!(table.ends_with("1 terminal\n"), "{table}");
    let out = center.herd(&["terminals", "--exposed"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "no terminals match\n");
    let out = center.herd(&["terminals", "--action", "switch", "--json"]);
    assert_exit(&out, 0);
    let listed: Vec<herd_proto::api::TerminalSummary> =
        serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, "45a");

    let out = center.herd(&["terminal", "45a"]);
    assert_exit(&out, 0);
    let detail = stdout(&out);
    assert!(detail.starts_with("terminal 45a\n"), "{detail}");
    assert!(detail.contains(&checkin.plan.reason), "{detail}");
    assert!(detail.contains("    1. fetch vaccine-b 7.0"), "{detail}");
    // The plan's bounded list with the whole gap's size by danger.
    assert!(
        detail.contains("  uncovered now:    virus-a (high 1)\n"),
        "{detail}"
    );
    assert!(detail.contains("  uncovered after:  -\n"), "{detail}");
    assert!(
        detail.contains("addresses (most recent first):"),
        "{detail}"
    );
    let out = center.herd(&["terminal", "45a", "--plan"]);
    assert_exit(&out, 0);
    let plan: herd_proto::plan::PlanDoc = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan, checkin.plan);

    // The whole gap, of which a plan lists the first 20: virus-a (high) now, nothing once the
    // switch to vaccine-b is carried out.
    let out = center.herd(&["terminal", "45a", "--gap"]);
    assert_exit(&out, 0);
    assert_eq!(
        stdout(&out),
        "terminal 45a
uncovered now: 1 threat (high 1)
  THREAT   DANGER  DISCOVERED  NAME
  virus-a  high    2000-11-10  virus a
uncovered after: nothing
"
    );
    let out = center.herd(&["terminal", "45a", "--gap", "--json"]);
    assert_exit(&out, 0);
    let gap: TerminalGap = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        gap,
        TerminalGap {
            terminal: "45a".to_owned(),
            uncovered_now: vec![GapThreat {
                id: "virus-a".to_owned(),
                name: "virus a".to_owned(),
                danger: "high".to_owned(),
                discovered: "2000-11-10".to_owned(),
            }],
            uncovered_after: vec![],
        }
    );
    let out = center.herd(&["terminal", "nobody", "--gap"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("not_found"), "{}", stderr(&out));
    let out = center.herd(&["terminal", "nobody"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("not_found"), "{}", stderr(&out));

    // Packages: uploaded by a vendor, then downloaded by the terminal, verified.
    let package = center.write("vaccine-b-7.0-phone.tar.gz", &"vaccine b ".repeat(10_000));
    let out = center.herd(&["upload", package.to_str().unwrap(), "--token", &token_b]);
    assert_exit(&out, 0);
    let line = stdout(&out);
    let sha256 = line.split_whitespace().next().unwrap().to_owned();
    assert_eq!(sha256.len(), 64, "{line}");
    assert!(line.contains("  100000  "), "{line}");
    let out = center.herd(&[
        "upload",
        package.to_str().unwrap(),
        "missing.tar.gz",
        "--token",
        &token_b,
    ]);
    assert_exit(&out, 2);
    assert!(
        stdout(&out).contains("(already stored)"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("cannot read missing.tar.gz"),
        "{}",
        stderr(&out)
    );
    // A refused upload is answered before the body is sent, and reported as a refusal.
    let big = center.write("big.pkg", &"x".repeat(4 << 20));
    let out = center.herd(&["upload", big.to_str().unwrap(), "--token", "garbage"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("unauthenticated"), "{}", stderr(&out));
    let dest = center.work.path().join("downloaded");
    terminal.download_package(&sha256, 100_000, &dest).unwrap();
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(&package).unwrap()
    );

    center.stop();
}

#[test]
fn an_unreachable_center_or_missing_credentials_exit_2_with_a_clear_message() {
    let work = tempfile::tempdir().unwrap();
    let (ca_pem, _key) = herd_tls::CertificateAuthority::generate("test CA").unwrap();
    let ca = work.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("https://127.0.0.1:{port}");
    let herd = |args: &[&str]| {
        Command::new(HERD)
            .args(args)
            .current_dir(work.path())
            .env_remove("HERD_SERVER")
            .env_remove("HERD_CA")
            .env_remove("HERD_TOKEN")
            .env_remove("HERD_TOKEN_FILE")
            .output()
            .unwrap()
    };

    let out = herd(&[
        "coverage",
        "--server",
        &server,
        "--ca",
        ca.to_str().unwrap(),
        "--token",
        "x",
    ]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot reach the center at {server}: ")),
        "{err}"
    );
    assert!(err.contains("is `herd serve` running there?"), "{err}");

    // Without a token and without the default token file.
    let out = herd(&[
        "terminals",
        "--server",
        &server,
        "--ca",
        ca.to_str().unwrap(),
    ]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("no API token: cannot read herd-data/operator.token"),
        "{err}"
    );

    // Without the CA certificate.
    let out = herd(&["terminals", "--server", &server, "--token", "x"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("cannot read the center's CA certificate herd-data/ca.pem"),
        "{err}"
    );

    let out = herd(&[
        "coverage",
        "--server",
        "http://127.0.0.1:1",
        "--ca",
        ca.to_str().unwrap(),
        "--token",
        "x",
    ]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("must start with https://"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn every_admin_command_teaches_with_examples() {
    for command in [
        &["publish", "--help"][..],
        &["upload", "--help"],
        &["terminals", "--help"],
        &["terminal", "--help"],
        &["coverage", "--help"],
        &["token", "create", "--help"],
        &["enrol-token", "create", "--help"],
        &["token", "list", "--help"],
        &["token", "revoke", "--help"],
        &["groups", "put", "--help"],
        &["rules", "set", "--help"],
        &["threats", "pending", "--help"],
        &["threats", "approve", "--help"],
        &["threats", "reassign", "--help"],
        &["vendors", "pending", "--help"],
        &["vendors", "approve", "--help"],
        &["blobs", "gc", "--help"],
    ] {
        let out = Command::new(HERD).args(command).output().unwrap();
        assert_exit(&out, 0);
        let help = stdout(&out);
        assert!(help.contains("Examples:\n  herd "), "{command:?}:\n{help}");
        assert!(help.contains("HERD_SERVER"), "{command:?}:\n{help}");
    }
    let text = stdout(&Command::new(HERD).arg("--help").output().unwrap());
    for command in [
        "publish",
        "upload",
        "terminals",
        "terminal",
        "coverage",
        "token",
        "enrol-token",
        "groups",
        "rules",
        "threats",
        "vendors",
        "blobs",
    ] {
        assert!(
            text.contains(&format!("  {command} ")),
            "{command} missing in:\n{text}"
        );
    }
}

/// The id `herd token list --json` gives the token labelled `label`.
fn token_id(center: &Center, label: &str) -> String {
    let out = center.herd(&["token", "list", "--json"]);
    assert_exit(&out, 0);
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["label"] == label)
        .unwrap_or_else(|| panic!("no token {label:?} in {list}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_revoked_token_is_refused_at_once() {
    let center = Center::start();
    let out = center.herd(&["token", "create", "--role", "operator", "--label", "alice"]);
    assert_exit(&out, 0);
    let alice = one_line(&out);
    let out = center.herd(&[
        "enrol-token",
        "create",
        "--uses",
        "5",
        "--label",
        "shop floor",
    ]);
    assert_exit(&out, 0);
    let enrolment = one_line(&out);
    assert_exit(&center.herd(&["terminals", "--token", &alice]), 0);

    // Listed by id, kind and label; never a secret.
    let out = center.herd(&["token", "list"]);
    assert_exit(&out, 0);
    let listing = stdout(&out);
    for expected in [
        "ID",
        "alice",
        "bootstrap operator token",
        "shop floor",
        "enrolment",
    ] {
        assert!(listing.contains(expected), "{listing}");
    }
    let secret = std::fs::read_to_string(center.center.data_dir.join("operator.token")).unwrap();
    for secret in [secret.trim(), &alice, &enrolment] {
        assert!(!listing.contains(secret), "{listing}");
    }

    // Revoked: refused by the very next request, with no cache to wait for.
    let out = center.herd(&["token", "revoke", &token_id(&center, "alice")]);
    assert_exit(&out, 0);
    assert!(
        stderr(&out).contains("revoked operator token"),
        "{}",
        stderr(&out)
    );
    let out = center.herd(&["terminals", "--token", &alice]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("unauthenticated"), "{}", stderr(&out));

    let out = center.herd(&["token", "revoke", &token_id(&center, "shop floor")]);
    assert_exit(&out, 0);
    let (_, csr_pem) = herd_tls::new_key_and_csr("late").unwrap();
    let refused = Client::new(&center.url, &center.ca_pem(), None)
        .unwrap()
        .enrol(&EnrolRequest {
            token: enrolment,
            csr_pem,
            id: None,
            user: None,
            hardware: HardwareDoc {
                kind: "pc".into(),
                platform: "pc".into(),
                model: None,
            },
            tz: None,
        })
        .unwrap_err();
    assert_eq!(refused.code(), Some("enrolment_token_invalid"), "{refused}");

    // The last operator token is kept unless forced.
    let bootstrap = token_id(&center, "bootstrap operator token");
    let out = center.herd(&["token", "revoke", &bootstrap]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("last operator token"),
        "{}",
        stderr(&out)
    );
    assert_exit(&center.herd(&["terminals"]), 0);
    let out = center.herd(&["token", "revoke", "--force", &bootstrap]);
    assert_exit(&out, 0);
    let out = center.herd(&["terminals"]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("unauthenticated"), "{}", stderr(&out));
    center.stop();
}

#[test]
fn a_token_longer_than_the_cap_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("herd.toml");
    std::fs::write(
        &config,
        "max_api_token_days = 30\nmax_enrol_token_days = 2\n",
    )
    .unwrap();
    let center = Center {
        center: TestCenter::start_with(&["--config", config.to_str().unwrap()]),
        url: String::new(),
        work,
    };
    let center = Center {
        url: center.center.url.clone(),
        ..center
    };
    let out = center.herd(&["token", "create", "--role", "operator", "--ttl-days", "31"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("30 days (max_api_token_days)"),
        "{}",
        stderr(&out)
    );
    let out = center.herd(&["enrol-token", "create", "--ttl-days", "3"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("2 days (max_enrol_token_days)"),
        "{}",
        stderr(&out)
    );
    assert_exit(
        &center.herd(&["token", "create", "--role", "operator", "--ttl-days", "30"]),
        0,
    );
    // The default lifetime of an API token (a year) is cut to the cap, which is no surprise:
    // nobody asked for more.
    let out = center.herd(&[
        "token", "create", "--role", "operator", "--label", "default",
    ]);
    assert_exit(&out, 0);
    let list = center.operator().tokens().unwrap();
    let default = list.tokens.iter().find(|t| t.label == "default").unwrap();
    let created = herd_core::Timestamp::parse(&default.created_at).unwrap();
    let expires = herd_core::Timestamp::parse(&default.expires_at).unwrap();
    assert_eq!(expires.unix_seconds() - created.unix_seconds(), 30 * 86_400);
    center.stop();
}
