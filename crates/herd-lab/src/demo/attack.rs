//! The step of `herd demo` where an attacker's mirror serves the phone a tampered vaccine b:
//! first with maker B's role re-signed by the attacker's key to vouch for it, then with the
//! genuine metadata and only the package's bytes changed. The phone refuses both, keeps its
//! product, and the center hears of it; then the mirror turns honest, and the next step's
//! check-in installs the genuine package from it.

use anyhow::{Context as _, anyhow};
use herd_client::ReadLimits;
use herd_proto::api::{ReportOutcome, StepStatus, trust_refusals};
use herd_proto::distribution::{METADATA_PATH, TARGETS_PATH, package_target, vendor_role};
use serde_json::Value;

use super::Demo;
use super::describe::*;
use super::story::{PHONE, VACCINE_A, VACCINE_B};
use crate::mirror::{Behaviour, Mirror};

/// The phone's package of vaccine b as the repository names it.
pub(super) struct Target {
    /// `packages/maker-b/vaccine-b/7.0/phone.archive`.
    pub path: String,
    /// Where a mirror serves it: `/tuf/targets/…/<sha256>.phone.archive`.
    pub url: String,
    pub bytes: Vec<u8>,
}

impl Demo {
    pub(super) fn malicious_mirror(&mut self) -> anyhow::Result<()> {
        let target = self.phone_target()?;
        let mirror = Mirror::start().context("cannot start a mirror on a loopback port")?;
        let upstream = self.center()?.client(None)?.repository();
        mirror.proxy(upstream.clone());
        self.show.say(&format!(
            "Terminals may read the signed repository (TUF metadata and packages) from any mirror,\n\
             `herd-agent run --mirror URL`, even over plain HTTP: they believe only what the root\n\
             they got at enrolment vouches for. An attacker runs the mirror at {}.\n\
             It serves the phone's vaccine b package ({})\n\
             with other bytes of the same size under its genuine name, and maker B's role re-signed\n\
             with the attacker's own key so that it lists them.",
            mirror.url(),
            target.path
        ));

        // The attacker's package: the genuine one with bytes changed, so sizes agree.
        let mut tampered = target.bytes.clone();
        let middle = tampered.len() / 2;
        for byte in &mut tampered[middle..(middle + 16).min(target.bytes.len())] {
            *byte ^= 0x5a;
        }
        let role_url = current_role_url(&upstream, &vendor_role(VACCINE_B.vendor))?;
        let genuine_role = upstream
            .get(&role_url, ReadLimits::metadata(16 << 20))
            .with_context(|| format!("GET {role_url} from the center"))?;
        let forged_role = forge_role(&genuine_role, &target.path, &tampered)?;
        mirror.set(&target.url, Behaviour::Replace(tampered));
        mirror.set(&role_url, Behaviour::Replace(forged_role));

        let refusals_before = self.center_refusals(trust_refusals::SIGNATURE)?;
        let run = self.agent_run_once_with(&PHONE, &["--mirror", &mirror.url()])?;
        self.show.detail(&format!("$ {}", run.command));
        self.show_agent_lines(&run);
        self.phone_said.push_str(&run.output);
        let seen = self.look(&PHONE)?;
        let status = self.agent_status(&PHONE)?;
        let refusal = &status["progress"]["trust"]["last_refusal"];
        self.show.detail(&format!(
            "  $ herd-agent status --state-dir {} --json  → last_refusal: {} ({}): {}",
            self.rel(&self.terminal_dir(&PHONE).join("state")),
            refusal["kind"].as_str().unwrap_or("none"),
            refusal["subject"].as_str().unwrap_or("-"),
            refusal["detail"].as_str().unwrap_or("-"),
        ));
        let mut expect = Expect::default();
        expect.exit_code(&run, 1);
        expect.that(run.output.contains("refused plan"), || {
            "the agent did not say it refused the plan".to_owned()
        });
        expect.that(refusal["kind"] == trust_refusals::SIGNATURE, || {
            format!("`herd-agent status` shows the last refusal as {refusal}")
        });
        expect.runs(&seen.installed, &VACCINE_A);
        let downloaded = mirror.take_requests().contains(&target.url);
        expect.that(!downloaded, || {
            "it downloaded the package although the metadata was refused".to_owned()
        });
        self.verdict(
            expect,
            &format!(
                "{} refused maker B's role signed by a key its root does not delegate to ({}): \
                 nothing downloaded, it still runs {}",
                PHONE.id,
                trust_refusals::SIGNATURE,
                installed_label(seen.installed.as_ref())
            ),
            &run,
        );
        self.center_heard(
            trust_refusals::SIGNATURE,
            refusals_before,
            &format!("({})", trust_refusals::SIGNATURE),
        )?;

        self.show.say(
            "The attacker tries again with the genuine metadata, changing only the package's bytes:",
        );
        mirror.honest(&role_url);
        let mismatches_before = self.center_refusals(trust_refusals::MISMATCH)?;
        let run = self.agent_run_once_with(&PHONE, &["--mirror", &mirror.url()])?;
        self.show_agent_lines(&run);
        self.phone_said.push_str(&run.output);
        let seen = self.look(&PHONE)?;
        let report = seen.detail.last_report.as_ref();
        self.show_executed(None, report);
        let mut expect = Expect::default();
        expect.exit_code(&run, 1);
        expect.that(mirror.take_requests().contains(&target.url), || {
            format!("it did not download {} from the mirror", target.url)
        });
        expect.that(
            report.is_some_and(|r| {
                r.outcome == ReportOutcome::RolledBack
                    && r.steps.first().is_some_and(|s| {
                        s.status == StepStatus::Failed
                            && s.detail.as_deref().is_some_and(|d| d.contains("SHA-256"))
                    })
            }),
            || {
                format!(
                    "the center's last report is {}, not a fetch refused for its SHA-256",
                    describe_report(report)
                )
            },
        );
        expect.runs(&seen.installed, &VACCINE_A);
        self.verdict(
            expect,
            &format!(
                "the downloaded bytes are not the signed SHA-256: plan rolled back ({}), {} \
                 still runs {}",
                describe_report(report),
                PHONE.id,
                installed_label(seen.installed.as_ref())
            ),
            &run,
        );

        let mismatches = self.center_refusals(trust_refusals::MISMATCH)?;
        self.show.check(
            mismatches == mismatches_before + 1,
            &format!(
                "the center received the trust.refused event for the tampered bytes \
                 (herd_trust_refusals_total{{kind=\"{}\"}} {mismatches_before} → {mismatches})",
                trust_refusals::MISMATCH
            ),
        );

        mirror.honest_all();
        self.show.say(
            "The mirror turns honest. At its next check-in the phone reads the same repository\n\
             from it again.",
        );
        self.mirror = Some(mirror);
        Ok(())
    }

    /// Vaccine b's phone package: its target path, where a mirror serves it, its bytes.
    pub(super) fn phone_target(&self) -> anyhow::Result<Target> {
        let (path, built) = self
            .packages
            .iter()
            .find(|(v, _, _)| v.product == VACCINE_B.product)
            .map(|(_, path, built)| (path, built))
            .ok_or_else(|| anyhow!("the {} package was not built", VACCINE_B.product))?;
        let doc = built
            .catalog_packages
            .iter()
            .find(|p| p.platform == PHONE.kind)
            .ok_or_else(|| anyhow!("{} has no package for phones", VACCINE_B.product))?;
        let target = package_target(
            VACCINE_B.vendor,
            VACCINE_B.product,
            VACCINE_B.version,
            &doc.platform,
            &doc.format,
        );
        let url = format!(
            "{TARGETS_PATH}{}",
            herd_proto::distribution::consistent_target_name(&target, &doc.sha256)
        );
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Target {
            path: target,
            url,
            bytes,
        })
    }

    /// `herd-agent status --json` of a terminal.
    pub(super) fn agent_status(&self, device: &super::story::Device) -> anyhow::Result<Value> {
        let state = self.terminal_dir(device).join("state");
        let args: Vec<String> = vec![
            "status".into(),
            "--state-dir".into(),
            state.display().to_string(),
            "--json".into(),
        ];
        let shown = format!("herd-agent status --state-dir {} --json", self.rel(&state));
        let run = self.agent.run(
            &args,
            shown,
            &self.terminal_dir(device).join("agent.log"),
            &self.dir,
            &self.interrupt,
        )?;
        // The JSON comes first; the output holds stderr after it, if anything.
        match serde_json::Deserializer::from_str(&run.output)
            .into_iter::<Value>()
            .next()
        {
            Some(Ok(status)) => Ok(status),
            Some(Err(err)) => Err(anyhow!(
                "`herd-agent status --json` did not print JSON ({err}):\n{}",
                run.tail()
            )),
            None => Err(anyhow!(
                "`herd-agent status --json` printed nothing:\n{}",
                run.tail()
            )),
        }
    }

    /// The `trust.refused` events of `kind` the center has counted (its `/metrics`).
    fn center_refusals(&self, kind: &str) -> anyhow::Result<u64> {
        let metrics = self
            .center()?
            .client(None)?
            .repository()
            .get("/metrics", ReadLimits::metadata(4 << 20))
            .context("GET /metrics")?;
        let metrics = String::from_utf8_lossy(&metrics);
        let series = format!("herd_trust_refusals_total{{kind=\"{kind}\"}} ");
        let line = metrics
            .lines()
            .find_map(|line| line.strip_prefix(&series))
            .ok_or_else(|| anyhow!("the center's /metrics has no {series}"))?;
        line.trim()
            .parse()
            .with_context(|| format!("/metrics: {series}{line}"))
    }

    /// Checks that the center received the phone's `trust.refused` event and its report.
    fn center_heard(&mut self, kind: &str, before: u64, in_report: &str) -> anyhow::Result<()> {
        let after = self.center_refusals(kind)?;
        let seen = self.look(&PHONE)?;
        let report = seen.detail.last_report.as_ref();
        let reported = report.is_some_and(|r| {
            r.outcome == ReportOutcome::RolledBack
                && r.message.as_deref().is_some_and(|m| m.contains(in_report))
        });
        if let Some(message) = report.and_then(|r| r.message.as_deref()) {
            self.show.say(&format!("  the center's report: {message}"));
        }
        self.show.check(
            after == before + 1 && reported,
            &format!(
                "the center received the trust.refused event (herd_trust_refusals_total{{kind=\"{kind}\"}} \
                 {before} → {after}) and the plan's report ({})",
                describe_report(report)
            ),
        );
        Ok(())
    }
}

/// `/tuf/metadata/<N>.<role>.json` of the role's version the repository's snapshot names now.
fn current_role_url(upstream: &herd_client::Repository, role: &str) -> anyhow::Result<String> {
    let read = |name: &str| -> anyhow::Result<Value> {
        let url = format!("{METADATA_PATH}{name}");
        let bytes = upstream
            .get(&url, ReadLimits::metadata(16 << 20))
            .with_context(|| format!("GET {url} from the center"))?;
        serde_json::from_slice(&bytes).with_context(|| format!("{url} is not JSON"))
    };
    let version_of = |doc: &Value, file: &str| {
        doc["signed"]["meta"][file]["version"]
            .as_u64()
            .ok_or_else(|| anyhow!("the repository lists no {file}"))
    };
    let timestamp = read("timestamp.json")?;
    let snapshot = read(&format!(
        "{}.snapshot.json",
        version_of(&timestamp, "snapshot.json")?
    ))?;
    let version = version_of(&snapshot, &format!("{role}.json"))?;
    Ok(format!("{METADATA_PATH}{version}.{role}.json"))
}

/// The role document re-signed by a key of the attacker's, listing `bytes` under `target`.
fn forge_role(genuine: &[u8], target: &str, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let doc: Value = serde_json::from_slice(genuine).context("the role is not JSON")?;
    let mut forged: herd_tuf::Targets =
        serde_json::from_value(doc["signed"].clone()).context("the role is not a targets role")?;
    let listed = forged
        .targets
        .get_mut(target)
        .ok_or_else(|| anyhow!("the role does not list {target}"))?;
    listed.length = bytes.len() as u64;
    listed.hashes = herd_tuf::hashes_of(bytes);
    let attacker = herd_tuf::SigningKey::generate().context("cannot make the attacker's key")?;
    Ok(herd_tuf::sign(&forged, &[&attacker]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(target: &str, bytes: &[u8], key: &herd_tuf::SigningKey) -> Vec<u8> {
        let targets = herd_tuf::Targets {
            type_: "targets".to_owned(),
            spec_version: "1.0.31".to_owned(),
            version: 3,
            expires: "2030-01-01T00:00:00Z".to_owned(),
            targets: [(
                target.to_owned(),
                herd_tuf::TargetFile {
                    length: bytes.len() as u64,
                    hashes: herd_tuf::hashes_of(bytes),
                    custom: Some(serde_json::json!({"herd": {"kept": true}})),
                },
            )]
            .into(),
            delegations: None,
        };
        herd_tuf::sign(&targets, &[key])
    }

    #[test]
    fn the_forged_role_lists_the_attackers_bytes_under_the_genuine_name_and_another_key() {
        let vendor = herd_tuf::SigningKey::generate().unwrap();
        let path = "packages/maker-b/vaccine-b/7.0/phone.archive";
        let genuine = role(path, b"genuine package", &vendor);
        let forged = forge_role(&genuine, path, b"the attacker's bytes").unwrap();
        let (genuine, forged): (Value, Value) = (
            serde_json::from_slice(&genuine).unwrap(),
            serde_json::from_slice(&forged).unwrap(),
        );
        let listed = &forged["signed"]["targets"][path];
        assert_eq!(listed["length"], 20);
        assert_eq!(
            listed["hashes"]["sha256"],
            herd_tuf::hashes_of(b"the attacker's bytes")["sha256"].as_str()
        );
        // Everything else as the vendor signed it: version, expiry, what Herd says of it.
        assert_eq!(forged["signed"]["version"], genuine["signed"]["version"]);
        assert_eq!(
            listed["custom"],
            genuine["signed"]["targets"][path]["custom"]
        );
        assert_ne!(
            forged["signatures"][0]["keyid"],
            genuine["signatures"][0]["keyid"]
        );
    }

    #[test]
    fn a_role_that_cannot_be_forged_says_why() {
        let key = herd_tuf::SigningKey::generate().unwrap();
        let path = "packages/maker-b/vaccine-b/7.0/phone.archive";
        for (doc, said) in [
            (b"<html>".to_vec(), "the role is not JSON"),
            (
                br#"{"signed": {"_type": "targets"}}"#.to_vec(),
                "not a targets role",
            ),
            (
                role("packages/maker-b/other/1/phone.archive", b"x", &key),
                "the role does not list packages/maker-b/vaccine-b/7.0/phone.archive",
            ),
        ] {
            let err = forge_role(&doc, path, b"bytes").unwrap_err();
            assert!(format!("{err:#}").contains(said), "{err:#}");
        }
    }

    #[test]
    fn the_current_role_is_found_through_timestamp_and_snapshot_or_said_missing() {
        let mirror = Mirror::start().unwrap();
        let upstream = herd_client::Repository::mirror(&mirror.url()).unwrap();
        let err = current_role_url(&upstream, "vendor-maker-b").unwrap_err();
        assert!(
            format!("{err:#}").contains("GET /tuf/metadata/timestamp.json"),
            "{err:#}"
        );
        mirror.put(
            "/tuf/metadata/timestamp.json",
            r#"{"signed": {"meta": {"snapshot.json": {"version": 7}}}}"#,
        );
        mirror.put(
            "/tuf/metadata/7.snapshot.json",
            r#"{"signed": {"meta": {"vendor-maker-b.json": {"version": 4}}}}"#,
        );
        assert_eq!(
            current_role_url(&upstream, "vendor-maker-b").unwrap(),
            "/tuf/metadata/4.vendor-maker-b.json"
        );
        let err = current_role_url(&upstream, "vendor-maker-c").unwrap_err();
        assert!(
            format!("{err:#}").contains("the repository lists no vendor-maker-c.json"),
            "{err:#}"
        );
    }
}
