//! A plan checked against signed metadata before anything is downloaded: every fetch names a
//! target the verified metadata lists with the step's length and SHA-256, for the release the
//! plan installs and for this terminal's platform; the install script is the one the agent
//! generates from that target's signed `custom.herd`; an uninstall removes only what the agent
//! itself has installed, and its script (for formats removed by one) is generated from the
//! named target's signed metadata. The plan the executor then carries out holds the generated
//! scripts, so only text the agent wrote is ever run.

use std::collections::BTreeMap;

use herd_core::{PackageFormat, Sha256};
use herd_planner::script::{InstallSpec, UninstallSpec, install_script, uninstall_script};
use herd_proto::api::trust_refusals as kinds;
use herd_proto::distribution::{PackageCustom, package_target, read_custom};
use herd_proto::plan::{PlanDoc, Step};
use herd_proto::terminal::InstalledDoc;
use herd_tuf::TargetFile;

use super::{Refusal, TrustClient};

/// What the agent knows of itself, which no plan can change.
#[derive(Clone, Debug)]
pub struct Ours<'a> {
    /// The platform packages must be built for.
    pub platform: &'a str,
    /// What the agent has installed (and may therefore remove).
    pub installed: Option<&'a InstalledDoc>,
}

/// A plan whose every step the signed metadata vouches for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedPlan {
    /// The plan with the agent's own scripts in it (equal to the plan's, or it was refused).
    pub plan: PlanDoc,
    /// Each package's target path, by SHA-256 (where a mirror serves it).
    pub targets: BTreeMap<String, String>,
}

/// A fetched package's signed description.
struct Signed {
    target: String,
    file: TargetFile,
    custom: PackageCustom,
}

/// Checks `plan` against the refreshed metadata of `client` (loading delegated roles as
/// needed). Plans without steps pass as they are.
pub fn verify_plan(
    client: &mut TrustClient,
    plan: &PlanDoc,
    ours: &Ours<'_>,
) -> Result<VerifiedPlan, Refusal> {
    let mut verified = plan.clone();
    let mut targets = BTreeMap::new();
    let mut fetched: BTreeMap<(String, String), Signed> = BTreeMap::new();
    for (i, step) in plan.steps.iter().enumerate() {
        match step {
            Step::Fetch {
                product,
                version,
                format,
                sha256,
                size,
                target,
            } => {
                let signed = signed_package(client, i, "fetch", target.as_deref(), ours)?;
                let refuse = |kind, detail: String| {
                    Refusal::new(
                        kind,
                        Some(&signed.target),
                        format!("step {i} (fetch): {detail}"),
                    )
                };
                if signed.file.length != *size
                    || !signed
                        .file
                        .hashes
                        .get("sha256")
                        .is_some_and(|h| h.eq_ignore_ascii_case(sha256))
                {
                    return Err(refuse(
                        kinds::MISMATCH,
                        format!(
                            "the plan's package ({size} bytes, SHA-256 {sha256}) is not the signed \
                             target ({} bytes, SHA-256 {})",
                            signed.file.length,
                            signed
                                .file
                                .hashes
                                .get("sha256")
                                .map_or("none", String::as_str)
                        ),
                    ));
                }
                let c = &signed.custom;
                if (&c.product, &c.version, &c.format) != (product, version, format) {
                    return Err(refuse(
                        kinds::UNLISTED,
                        format!(
                            "the plan fetches {product} {version} ({format}), but the signed \
                             target is {} {} ({}) (wrong software)",
                            c.product, c.version, c.format
                        ),
                    ));
                }
                let to = plan.to.as_ref().ok_or_else(|| {
                    refuse(
                        kinds::UNLISTED,
                        "the plan fetches with no `to` release".into(),
                    )
                })?;
                if (&to.product, &to.version, to.seq) != (&c.product, &c.version, c.seq) {
                    return Err(refuse(
                        kinds::UNLISTED,
                        format!(
                            "the plan is to {} {} (seq {}), but fetches the signed {} {} (seq {}) \
                             (wrong software)",
                            to.product, to.version, to.seq, c.product, c.version, c.seq
                        ),
                    ));
                }
                targets.insert(sha256.to_ascii_lowercase(), signed.target.clone());
                fetched.insert((product.clone(), version.clone()), signed);
            }
            Step::Install {
                product,
                version,
                format,
                script,
            } => {
                let signed = fetched
                    .get(&(product.clone(), version.clone()))
                    .ok_or_else(|| {
                        Refusal::new(
                            kinds::UNLISTED,
                            None,
                            format!(
                                "step {i} (install): no earlier fetch of {product} {version} names \
                                 a signed target"
                            ),
                        )
                    })?;
                if format != &signed.custom.format {
                    return Err(Refusal::new(
                        kinds::UNLISTED,
                        Some(&signed.target),
                        format!(
                            "step {i} (install): format {format}, but the signed package is {}",
                            signed.custom.format
                        ),
                    ));
                }
                let generated = generated_install(signed)?;
                if *script != generated {
                    return Err(script_refusal(i, "install", &signed.target));
                }
                if let Step::Install { script, .. } = &mut verified.steps[i] {
                    *script = generated;
                }
            }
            Step::Verify {
                product,
                version,
                pattern,
            } => {
                if let Some(signed) = fetched.get(&(product.clone(), version.clone()))
                    && *pattern != signed.custom.pattern
                {
                    return Err(Refusal::new(
                        kinds::MISMATCH,
                        Some(&signed.target),
                        format!(
                            "step {i} (verify): pattern {pattern}, but the signed release's is {}",
                            signed.custom.pattern
                        ),
                    ));
                }
            }
            Step::Uninstall {
                product,
                version,
                format,
                script,
                target,
            } => {
                let mine = ours
                    .installed
                    .is_some_and(|d| (&d.product, &d.version) == (product, version));
                if !mine {
                    let have = ours.installed.map_or("nothing".to_owned(), |d| {
                        format!("{} {}", d.product, d.version)
                    });
                    return Err(Refusal::new(
                        kinds::UNLISTED,
                        None,
                        format!(
                            "step {i} (uninstall): removes {product} {version}, but this agent \
                             installed {have}"
                        ),
                    ));
                }
                // The agent removes `archive` versions with its own code: no script runs.
                if format == PackageFormat::Archive.as_str() {
                    continue;
                }
                let signed = signed_package(client, i, "uninstall", target.as_deref(), ours)?;
                let c = &signed.custom;
                if (&c.product, &c.format) != (product, format) {
                    return Err(Refusal::new(
                        kinds::UNLISTED,
                        Some(&signed.target),
                        format!(
                            "step {i} (uninstall): removes {product} ({format}), but the signed \
                             target is of {} ({}) (wrong software)",
                            c.product, c.format
                        ),
                    ));
                }
                let generated = generated_uninstall(product, version, &signed)?;
                if *script != generated {
                    return Err(script_refusal(i, "uninstall", &signed.target));
                }
                if let Step::Uninstall { script, .. } = &mut verified.steps[i] {
                    *script = generated;
                }
            }
        }
    }
    Ok(VerifiedPlan {
        plan: verified,
        targets,
    })
}

/// The signed target a step names, with its `custom.herd`, for this platform.
fn signed_package(
    client: &mut TrustClient,
    i: usize,
    kind: &str,
    target: Option<&str>,
    ours: &Ours<'_>,
) -> Result<Signed, Refusal> {
    let target = target.ok_or_else(|| {
        Refusal::new(
            kinds::UNLISTED,
            None,
            format!("step {i} ({kind}): the plan names no signed target"),
        )
    })?;
    let (_, file) = client.find_target(target)?.ok_or_else(|| {
        Refusal::new(
            kinds::UNLISTED,
            Some(target),
            format!(
                "step {i} ({kind}): no role delegated for {target} lists it in the verified \
                 metadata (arbitrary installation)"
            ),
        )
    })?;
    let custom: PackageCustom = read_custom(target, file.custom.as_ref()).map_err(|why| {
        Refusal::new(
            kinds::INVALID,
            Some(target),
            format!("step {i} ({kind}): {why}"),
        )
    })?;
    let named = package_target(
        &custom.vendor,
        &custom.product,
        &custom.version,
        &custom.platform,
        &custom.format,
    );
    if named != target {
        return Err(Refusal::new(
            kinds::UNLISTED,
            Some(target),
            format!(
                "step {i} ({kind}): the target's signed metadata describes {named}, not {target}"
            ),
        ));
    }
    if custom.platform != ours.platform {
        return Err(Refusal::new(
            kinds::UNLISTED,
            Some(target),
            format!(
                "step {i} ({kind}): {target} is built for {}, this terminal is {} (wrong software)",
                custom.platform, ours.platform
            ),
        ));
    }
    Ok(Signed {
        target: target.to_owned(),
        file,
        custom,
    })
}

fn format_of(signed: &Signed) -> Result<PackageFormat, Refusal> {
    PackageFormat::parse(&signed.custom.format).map_err(|why| {
        Refusal::new(
            kinds::INVALID,
            Some(&signed.target),
            format!("format: {why}"),
        )
    })
}

/// The install script the planner writes, from signed metadata only.
fn generated_install(signed: &Signed) -> Result<String, Refusal> {
    let c = &signed.custom;
    let sha256 = signed
        .file
        .hashes
        .get("sha256")
        .and_then(|h| Sha256::parse_hex(h).ok())
        .ok_or_else(|| {
            Refusal::new(
                kinds::INVALID,
                Some(&signed.target),
                "the target has no SHA-256",
            )
        })?;
    Ok(install_script(&InstallSpec {
        product: &c.product,
        version: &c.version,
        pattern: &c.pattern,
        format: format_of(signed)?,
        sha256,
        size: signed.file.length,
        name: c.name.as_deref(),
        product_code: c.product_code.as_deref(),
        post_install: c.post_install.as_deref(),
    }))
}

/// The uninstall script of what the agent installed, from the named target's signed metadata.
fn generated_uninstall(product: &str, version: &str, signed: &Signed) -> Result<String, Refusal> {
    let c = &signed.custom;
    Ok(uninstall_script(&UninstallSpec {
        product,
        version,
        format: format_of(signed)?,
        name: c.name.as_deref(),
        product_code: c.product_code.as_deref(),
        pre_uninstall: c.pre_uninstall.as_deref(),
    }))
}

fn script_refusal(i: usize, kind: &str, target: &str) -> Refusal {
    Refusal::new(
        kinds::SCRIPT,
        Some(target),
        format!(
            "step {i} ({kind}): the plan's {kind} script is not the one this agent generates \
             from signed metadata"
        ),
    )
}
