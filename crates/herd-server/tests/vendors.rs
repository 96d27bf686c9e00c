//! Attacks by vendors on the center, through its real HTTPS API: steering the planner (raising
//! the danger of a competitor's threat, introducing threats an operator has not approved,
//! switching terminals of a group restricted to other vendors) and filling the disk with
//! packages. Each test shows the attack refused or neutralised, and nothing else changed.

mod support;

use herd_client::Client;
use herd_proto::api::{
    CheckinRequest, EnrolRequest, GroupDoc, NewEnrolmentToken, PlacementRule, PlacementRules,
};
use herd_proto::plan::Action;
use herd_proto::terminal::{HardwareDoc, InstalledDoc, PolicyDoc};
use serde_json::{Value, json};
use support::{TestCenter, code, seed_catalog, vendor_client, vendor_feed, vendor_token};

/// `GET path` with curl, trusting the center's CA: (status, body).
fn curl(center: &TestCenter, args: &[&str], path: &str) -> (String, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--cacert"])
        .arg(center.data_dir.join("ca.pem"))
        .args(args)
        .arg(format!("{}{path}", center.url))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.to_owned(), body.to_owned())
}

/// A center started with `config` as its configuration file.
fn center_with(config: &str) -> (TestCenter, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herd.toml");
    std::fs::write(&path, config).unwrap();
    let center = TestCenter::start_with(&["--config", path.to_str().unwrap()]);
    (center, dir)
}

fn publish(client: &Client, vendor: &str, feed: &Value) -> herd_proto::api::PublishResponse {
    client
        .publish_feed(vendor, &serde_json::to_vec(feed).unwrap())
        .expect("publish")
}

/// A group with `apply`, `min_danger` and a vendor allow-list, where `user`'s terminals land.
fn group_for_user(
    operator: &Client,
    user: &str,
    apply: &str,
    min_danger: &str,
    vendors: Option<&[&str]>,
) {
    operator
        .put_group(&GroupDoc {
            id: format!("{user}-group"),
            description: String::new(),
            policy: PolicyDoc {
                apply: apply.into(),
                min_danger: Some(min_danger.into()),
                consent: None,
                window: None,
                tz: None,
                vendors: vendors.map(|v| v.iter().map(|&s| s.to_owned()).collect()),
            },
            terminals: 0,
        })
        .unwrap();
    let mut rules = operator.rules().unwrap();
    rules.rules.push(PlacementRule {
        group: format!("{user}-group"),
        kind: None,
        platform: None,
        address: None,
        user: Some(user.into()),
    });
    operator
        .put_rules(&PlacementRules { rules: rules.rules })
        .unwrap();
}

/// Enrols a phone of `user` and returns a client with its certificate.
fn phone(center: &TestCenter, id: &str, user: &str) -> Client {
    let token = center
        .operator()
        .new_enrolment_token(&NewEnrolmentToken {
            label: "test".into(),
            uses: Some(1),
            ttl_secs: None,
            reenrol_terminal: None,
        })
        .unwrap()
        .token;
    let (key_pem, csr_pem) = herd_tls::new_key_and_csr(id).unwrap();
    let enrolled = center
        .anonymous()
        .enrol(&EnrolRequest {
            token,
            csr_pem,
            id: Some(id.to_owned()),
            user: Some(user.to_owned()),
            hardware: HardwareDoc {
                kind: "phone".into(),
                platform: "phone".into(),
                model: None,
            },
            tz: None,
        })
        .expect("enrol");
    center.terminal_client(&herd_tls::KeyPairPem {
        cert_pem: enrolled.certificate_pem,
        key_pem,
    })
}

fn running(product: &str) -> Option<InstalledDoc> {
    let (version, seq, pattern) = match product {
        "vaccine-a" => ("5.1", 1101, "a-1101"),
        _ => ("7.0", 1112, "b-1112"),
    };
    Some(InstalledDoc {
        product: product.into(),
        version: version.into(),
        seq,
        pattern: pattern.into(),
        format: "archive".into(),
    })
}

fn plan_of(terminal: &Client, installed: Option<InstalledDoc>) -> herd_proto::plan::PlanDoc {
    terminal
        .checkin(&CheckinRequest {
            terminal: None,
            installed,
            hardware: None,
            tz: None,
            agent_version: Some("test".into()),
            interfaces: None,
            tuf_timestamp_version: None,
            consent_waiting: None,
            messages_after: None,
            tuf_held: None,
        })
        .expect("check-in")
        .plan
}

/// Maker B rewrites virus-a, which maker A declared as `high`, as `critical`: had the merge
/// kept the highest danger, terminals that act only on critical threats would be told to
/// leave vaccine-a for vaccine-b. The owner's description stands, the publish says so, and
/// the terminal stays.
#[test]
fn a_vendor_cannot_raise_the_danger_of_a_competitors_threat() {
    let center = TestCenter::start();
    let operator = center.operator();
    let catalog = seed_catalog();
    let (maker_a, maker_b) = (
        vendor_client(&center, "maker-a"),
        vendor_client(&center, "maker-b"),
    );
    let honest_a = publish(&maker_a, "maker-a", &vendor_feed(&catalog, "maker-a"));
    assert!(honest_a.warnings.is_empty(), "{:?}", honest_a.warnings);
    // An honest competitor's feed listing the same threat the same way draws no warning.
    let honest_b = publish(&maker_b, "maker-b", &vendor_feed(&catalog, "maker-b"));
    assert!(honest_b.warnings.is_empty(), "{:?}", honest_b.warnings);

    group_for_user(&operator, "careful", "latest-any-vendor", "critical", None);
    let terminal = phone(&center, "crit-only", "careful");
    assert_eq!(
        plan_of(&terminal, running("vaccine-a")).action,
        Action::None
    );

    let mut steering = vendor_feed(&catalog, "maker-b");
    steering["threats"][0]["danger"] = json!("critical");
    steering["threats"][0]["discovered"] = json!("1999-01-01");
    steering["threats"][0]["name"] = json!("VIRUS A, VERY DANGEROUS");
    let answer = publish(&maker_b, "maker-b", &steering);
    assert!(answer.changed, "the feed itself is stored");
    assert_eq!(answer.warnings.len(), 1, "{:?}", answer.warnings);
    assert_eq!(answer.warnings[0].path, "$.threats[0]");
    assert!(
        answer.warnings[0].message.contains("maker-a"),
        "{}",
        answer.warnings[0].message
    );

    let merged = operator.catalog().unwrap();
    assert_eq!(
        merged["threats"],
        json!([{"id": "virus-a", "name": "virus a", "danger": "high", "discovered": "2000-11-10"}])
    );
    let plan = plan_of(&terminal, running("vaccine-a"));
    assert_eq!(plan.action, Action::None, "{}", plan.reason);
    // Maker B's coverage statement for the threat still counts: terminals that act on high
    // threats still switch to the product that covers it.
    let any = phone(&center, "any-danger", "someone");
    assert_eq!(plan_of(&any, running("vaccine-a")).action, Action::Switch);
    let threats = operator.threats(None).unwrap();
    assert_eq!(threats.threats.len(), 1);
    assert_eq!(threats.threats[0].vendor, "maker-a");
    assert_eq!(threats.threats[0].danger.as_deref(), Some("high"));

    // The operator may hand the threat to maker B; then its description is the one used.
    operator.reassign_threat("virus-a", "maker-b").unwrap();
    assert_eq!(
        operator.catalog().unwrap()["threats"][0]["danger"],
        "critical"
    );
    assert_eq!(
        plan_of(&terminal, running("vaccine-a")).action,
        Action::Switch
    );
}

/// With threat_approval = "operator", maker A adds a critical threat only vaccine-a covers,
/// to pull vaccine-b's terminals over. Until an operator approves it, no plan counts it.
/// Vendors themselves wait for approval too (vendor_approval = "operator").
#[test]
fn a_vendor_cannot_make_terminals_switch_with_an_unapproved_threat() {
    let (center, _config) =
        center_with("threat_approval = \"operator\"\nvendor_approval = \"operator\"\n");
    let operator = center.operator();
    let catalog = seed_catalog();
    let (maker_a, maker_b) = (
        vendor_client(&center, "maker-a"),
        vendor_client(&center, "maker-b"),
    );
    let first = publish(&maker_a, "maker-a", &vendor_feed(&catalog, "maker-a"));
    assert!(
        first
            .warnings
            .iter()
            .any(|w| w.path == "$.vendors" && w.message.contains("approval")),
        "{:?}",
        first.warnings
    );
    publish(&maker_b, "maker-b", &vendor_feed(&catalog, "maker-b"));
    let pending: Vec<String> = operator
        .vendors(Some("pending"))
        .unwrap()
        .vendors
        .into_iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(pending, ["maker-a", "maker-b"]);
    assert_eq!(
        operator.catalog().unwrap()["products"],
        json!([]),
        "feeds of vendors nobody approved do not count"
    );
    for vendor in ["maker-a", "maker-b"] {
        operator.decide_vendor(vendor, true).unwrap();
    }
    assert_eq!(operator.threats(Some("pending")).unwrap().threats.len(), 1);
    operator.decide_threat("virus-a", true).unwrap();

    let terminal = phone(&center, "runs-b", "user-b");
    assert_eq!(
        plan_of(&terminal, running("vaccine-b")).action,
        Action::None
    );

    let mut lure = vendor_feed(&catalog, "maker-a");
    lure["threats"].as_array_mut().unwrap().push(
        json!({"id": "worm-x", "name": "worm x", "danger": "critical", "discovered": "2000-11-11"}),
    );
    lure["coverage"].as_array_mut().unwrap().push(
        json!({"product": "vaccine-a", "threat": "worm-x", "since_seq": 1101, "covered_on": "2000-11-11"}),
    );
    let answer = publish(&maker_a, "maker-a", &lure);
    assert!(
        answer
            .warnings
            .iter()
            .any(|w| w.message.contains("worm-x") && w.message.contains("approval")),
        "{:?}",
        answer.warnings
    );
    let plan = plan_of(&terminal, running("vaccine-b"));
    assert_eq!(plan.action, Action::None, "{}", plan.reason);
    let listed = operator.threats(Some("pending")).unwrap().threats;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id.as_str(), listed[0].vendor.as_str()),
        ("worm-x", "maker-a")
    );
    assert_eq!(listed[0].danger.as_deref(), Some("critical"));
    // A vendor token cannot approve its own threat.
    assert_eq!(
        code(maker_a.decide_threat("worm-x", true).unwrap_err()).0,
        403
    );

    // Approved, the same threat does make vaccine-b's terminals move: the approval was all
    // that kept them.
    operator.decide_threat("worm-x", true).unwrap();
    let plan = plan_of(&terminal, running("vaccine-b"));
    assert_eq!(plan.action, Action::Switch, "{}", plan.reason);
    // And rejected, it stops counting again.
    operator.decide_threat("worm-x", false).unwrap();
    assert_eq!(
        plan_of(&terminal, running("vaccine-b")).action,
        Action::None
    );
    assert_eq!(
        code(operator.decide_threat("nothing", true).unwrap_err()).0,
        404
    );
}

/// A group allowed only maker A's products: vaccine-b closes vaccine-a's gap, but its
/// terminals are never told to switch to it, nor shown it as an alternative; a terminal of
/// the group with nothing installed gets vaccine-a, not the better vaccine-b.
#[test]
fn a_group_restricted_to_one_vendor_never_switches_to_another() {
    let center = TestCenter::start();
    let operator = center.operator();
    let catalog = seed_catalog();
    for vendor in ["maker-a", "maker-b"] {
        publish(
            &vendor_client(&center, vendor),
            vendor,
            &vendor_feed(&catalog, vendor),
        );
    }
    group_for_user(
        &operator,
        "loyal",
        "latest-any-vendor",
        "low",
        Some(&["maker-a"]),
    );
    let groups = operator.groups().unwrap();
    let loyal = groups
        .groups
        .iter()
        .find(|g| g.id == "loyal-group")
        .unwrap();
    assert_eq!(loyal.policy.vendors, Some(vec!["maker-a".to_owned()]));

    let restricted = phone(&center, "loyal-1", "loyal");
    let free = phone(&center, "free-1", "someone");
    // The same inventory outside the group switches: the restriction is what holds.
    assert_eq!(plan_of(&free, running("vaccine-a")).action, Action::Switch);
    let plan = plan_of(&restricted, running("vaccine-a"));
    assert_eq!(plan.action, Action::Exposed, "{}", plan.reason);
    assert!(plan.alternatives.is_empty(), "{:?}", plan.alternatives);
    assert!(plan.to.is_none());

    let empty = phone(&center, "loyal-2", "loyal");
    let plan = plan_of(&empty, None);
    assert_eq!(plan.action, Action::Switch, "{}", plan.reason);
    assert_eq!(plan.to.unwrap().product, "vaccine-a");
    assert_eq!(
        plan_of(&free, None).to.unwrap().product,
        "vaccine-b",
        "unrestricted, the better product is chosen"
    );
}

/// A vendor uploads packages until its quota is used: the upload past it is refused (429,
/// quota_exceeded) whether it announces its size or not, nothing of it is stored, and another
/// vendor's uploads are not affected.
#[test]
fn a_vendor_cannot_fill_the_disk_past_its_quota() {
    let (center, _config) = center_with("vendor_storage_quota_bytes = 1000000\n");
    let token_a = vendor_token(&center, "maker-a");
    let maker_a = center.anonymous().with_token(&token_a);
    let dir = tempfile::tempdir().unwrap();
    let package = |name: &str, size: usize, fill: u8| {
        let path = dir.path().join(name);
        std::fs::write(&path, vec![fill; size]).unwrap();
        path
    };
    let first = maker_a.upload_package(&package("a1", 600_000, 1)).unwrap();
    assert!(first.created);
    // Uploading a stored package again adds nothing, so it is not refused.
    assert!(
        !maker_a
            .upload_package(&package("a1-again", 600_000, 1))
            .unwrap()
            .created
    );
    let over = package("a2", 500_000, 2);
    assert_eq!(
        code(maker_a.upload_package(&over).unwrap_err()),
        (429, "quota_exceeded".into())
    );
    let digest = format!(
        "{:x}",
        <sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&over).unwrap())
    );
    assert!(
        std::fs::read_dir(center.data_dir.join("blobs/tmp"))
            .unwrap()
            .next()
            .is_none(),
        "nothing of the refused upload is left"
    );
    assert_eq!(
        code(
            maker_a
                .download_package(&digest, 500_000, &dir.path().join("x"))
                .unwrap_err()
        )
        .1,
        "not_found"
    );
    // Without Content-Length the body is cut where the quota ends.
    let auth = format!("Authorization: Bearer {token_a}");
    let (status, body) = curl(
        &center,
        &[
            "-X",
            "PUT",
            "-H",
            "Transfer-Encoding: chunked",
            "-H",
            &auth,
            "-T",
            over.to_str().unwrap(),
        ],
        &format!("/v1/packages/{digest}"),
    );
    assert_eq!(status, "429", "{body}");
    assert!(body.contains("quota_exceeded"), "{body}");
    // Another vendor has its own quota.
    let maker_b = vendor_client(&center, "maker-b");
    assert!(maker_b.upload_package(&over).unwrap().created);
    let (_, metrics) = curl(&center, &[], "/metrics");
    assert!(
        metrics.contains("herd_packages_over_quota_total 2"),
        "{metrics}"
    );
}
