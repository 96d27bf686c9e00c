//! The shape a plan must have to be carried out as one transaction: every fetch first, then
//! one `archive` install of the plan's `to` release with a fetched package, its verify step,
//! then the uninstalls. Checked before anything is downloaded, so a malformed plan changes
//! nothing.

use herd_core::Sha256;
use herd_proto::plan::{PlanDoc, Step};

use super::space::Wanted;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct FetchItem {
    pub step: usize,
    pub product: String,
    pub version: String,
    /// Lowercase hex.
    pub sha256: String,
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct UninstallItem {
    pub step: usize,
    pub product: String,
    pub version: String,
    pub format: String,
    pub script: String,
}

/// What the executor needs from a plan, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Shape {
    pub fetches: Vec<FetchItem>,
    pub install_step: usize,
    /// The fetch whose package the install script unpacks.
    pub package: usize,
    pub product: String,
    pub version: String,
    pub seq: u64,
    pub pattern: String,
    pub verify_step: usize,
    pub uninstalls: Vec<UninstallItem>,
}

impl Shape {
    /// `<product>/<version>` under `<prefix>/products`: the `current` link's text once active.
    pub(super) fn link_target(&self) -> String {
        herd_proto::layout::link_target(&self.product, &self.version)
    }

    pub(super) fn wanted(&self) -> Vec<Wanted> {
        self.fetches
            .iter()
            .map(|f| Wanted {
                sha256: f.sha256.clone(),
                size: f.size,
            })
            .collect()
    }

    pub(super) fn package_sha256(&self) -> &str {
        &self.fetches[self.package].sha256
    }
}

/// `Ok(None)` for a plan without steps (nothing to do); `Err` names what is wrong.
pub(super) fn check(plan: &PlanDoc) -> Result<Option<Shape>, String> {
    if plan.steps.is_empty() {
        return Ok(None);
    }
    let to = plan
        .to
        .as_ref()
        .ok_or("the plan has steps but no `to` release")?;
    release(&to.product, &to.version).map_err(|e| format!("the plan's `to` release: {e}"))?;
    let mut fetches = Vec::new();
    let mut install = None;
    let mut verify = None;
    let mut uninstalls = Vec::new();
    for (i, step) in plan.steps.iter().enumerate() {
        let at = |what: &str| format!("step {i} ({what})");
        match step {
            Step::Fetch {
                product,
                version,
                sha256,
                size,
                ..
            } => {
                if install.is_some() {
                    return Err(format!(
                        "{}: every fetch must come before the install",
                        at("fetch")
                    ));
                }
                release(product, version).map_err(|e| format!("{}: {e}", at("fetch")))?;
                let digest =
                    Sha256::parse_hex(sha256).map_err(|e| format!("{}: {e}", at("fetch")))?;
                if *size == 0 {
                    return Err(format!("{}: a package cannot be empty", at("fetch")));
                }
                fetches.push(FetchItem {
                    step: i,
                    product: product.clone(),
                    version: version.clone(),
                    sha256: digest.to_string(),
                    size: *size,
                });
            }
            Step::Install {
                product,
                version,
                format,
                ..
            } => {
                if install.is_some() {
                    return Err(format!("{}: a plan installs one product", at("install")));
                }
                release(product, version).map_err(|e| format!("{}: {e}", at("install")))?;
                known_format(format).map_err(|e| format!("{}: {e}", at("install")))?;
                if format != "archive" {
                    return Err(format!(
                        "{}: this agent installs archive packages only, not {format:?}",
                        at("install")
                    ));
                }
                if *product != to.product || *version != to.version {
                    return Err(format!(
                        "{}: installs {product} {version}, but the plan is to {} {}",
                        at("install"),
                        to.product,
                        to.version
                    ));
                }
                install = Some(i);
            }
            Step::Verify {
                product,
                version,
                pattern,
            } => {
                if install.is_none() || verify.is_some() {
                    return Err(format!(
                        "{}: one verify step, after the install",
                        at("verify")
                    ));
                }
                release(product, version).map_err(|e| format!("{}: {e}", at("verify")))?;
                herd_package::manifest::check_pattern_name(pattern)
                    .map_err(|e| format!("{}: {e}", at("verify")))?;
                if *product != to.product || *version != to.version {
                    return Err(format!(
                        "{}: verifies {product} {version}, but the plan installs {} {}",
                        at("verify"),
                        to.product,
                        to.version
                    ));
                }
                verify = Some((i, pattern.clone()));
            }
            Step::Uninstall {
                product,
                version,
                format,
                script,
                ..
            } => {
                if verify.is_none() {
                    return Err(format!(
                        "{}: the old product is removed only after the new one is verified",
                        at("uninstall")
                    ));
                }
                release(product, version).map_err(|e| format!("{}: {e}", at("uninstall")))?;
                known_format(format).map_err(|e| format!("{}: {e}", at("uninstall")))?;
                if format == "msi" {
                    return Err(format!(
                        "{}: msi uninstall scripts are PowerShell, which this agent does not run",
                        at("uninstall")
                    ));
                }
                if *product == to.product && *version == to.version {
                    return Err(format!(
                        "{}: would remove the product the plan installs",
                        at("uninstall")
                    ));
                }
                uninstalls.push(UninstallItem {
                    step: i,
                    product: product.clone(),
                    version: version.clone(),
                    format: format.clone(),
                    script: script.clone(),
                });
            }
        }
    }
    // The install script's text is not run: the agent unpacks `archive` packages itself.
    let install_step = install.ok_or("the plan has steps but no install")?;
    let (verify_step, pattern) = verify.ok_or("the plan installs without a verify step")?;
    let package = fetches
        .iter()
        .position(|f| f.product == to.product && f.version == to.version)
        .ok_or_else(|| {
            format!(
                "no fetch step downloads the package of {} {}",
                to.product, to.version
            )
        })?;
    Ok(Some(Shape {
        fetches,
        install_step,
        package,
        product: to.product.clone(),
        version: to.version.clone(),
        seq: to.seq,
        pattern,
        verify_step,
        uninstalls,
    }))
}

/// Checks a product and version the executor will turn into `products/<product>/<version>`,
/// put in script environments and print: the center validated them against its catalog, but a
/// stolen or buggy center could send `..`, a slash, control characters or megabytes, and the
/// agent refuses those itself rather than trusting the center's word.
fn release(product: &str, version: &str) -> Result<(), String> {
    herd_core::check_identifier(product).map_err(|e| format!("product: {e}"))?;
    herd_core::check_version(version).map_err(|e| format!("version of {product}: {e}"))?;
    Ok(())
}

/// Checks a package format is one Herd knows; the refusal quotes at most 32 characters of it, so
/// a megabyte of garbage does not end up in the report.
fn known_format(format: &str) -> Result<(), String> {
    herd_core::PackageFormat::parse(format).map(drop).map_err(|_| {
        let shown: String = format.chars().take(32).collect();
        let more = if shown.len() < format.len() { "…" } else { "" };
        format!("unknown package format {shown:?}{more}; expected one of archive, deb, rpm, msi, apk")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_proto::plan::{Action, ReleaseRef};

    fn plan(steps: Vec<Step>) -> PlanDoc {
        PlanDoc {
            terminal: "t".into(),
            action: Action::Switch,
            uncovered_now: vec![],
            uncovered_now_counts: Default::default(),
            uncovered_now_more: 0,
            uncovered_after: vec![],
            uncovered_after_counts: Default::default(),
            uncovered_after_more: 0,
            from: None,
            to: Some(ReleaseRef {
                product: "b".into(),
                version: "7.0".into(),
                seq: 7,
            }),
            consent_required: false,
            not_before: None,
            steps,
            alternatives: vec![],
            reason: String::new(),
        }
    }

    fn fetch() -> Step {
        Step::Fetch {
            product: "b".into(),
            version: "7.0".into(),
            format: "archive".into(),
            sha256: "AB".repeat(32),
            size: 10,
            target: None,
        }
    }

    fn install(format: &str) -> Step {
        Step::Install {
            product: "b".into(),
            version: "7.0".into(),
            format: format.into(),
            script: "true".into(),
        }
    }

    fn verify() -> Step {
        Step::Verify {
            product: "b".into(),
            version: "7.0".into(),
            pattern: "b-7".into(),
        }
    }

    fn uninstall() -> Step {
        Step::Uninstall {
            product: "a".into(),
            version: "5.1".into(),
            format: "archive".into(),
            script: "true".into(),
            target: None,
        }
    }

    #[test]
    fn a_planner_shaped_plan_is_accepted() {
        let shape = check(&plan(vec![
            fetch(),
            install("archive"),
            verify(),
            uninstall(),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            shape.fetches[0].sha256,
            "ab".repeat(32),
            "digests are normalised"
        );
        assert_eq!((shape.install_step, shape.verify_step), (1, 2));
        assert_eq!(shape.uninstalls[0].step, 3);
        assert_eq!(shape.link_target(), "products/b/7.0");
        assert_eq!(check(&plan(vec![])).unwrap(), None);
    }

    #[test]
    fn out_of_order_or_unsupported_plans_are_refused() {
        let cases = [
            (
                vec![install("archive"), fetch(), verify()],
                "before the install",
            ),
            (
                vec![fetch(), install("deb"), verify()],
                "archive packages only",
            ),
            (
                vec![fetch(), install("archive"), uninstall(), verify()],
                "only after",
            ),
            (vec![fetch(), install("archive")], "without a verify"),
            (vec![fetch(), verify()], "after the install"),
        ];
        for (steps, why) in cases {
            let err = check(&plan(steps)).unwrap_err();
            assert!(err.contains(why), "{err} (expected {why:?})");
        }
        let mut bad = plan(vec![fetch(), install("archive"), verify()]);
        bad.steps[0] = Step::Fetch {
            product: "b".into(),
            version: "7.0".into(),
            format: "archive".into(),
            sha256: "xyz".into(),
            size: 10,
            target: None,
        };
        assert!(check(&bad).unwrap_err().contains("SHA-256"));
    }
}
