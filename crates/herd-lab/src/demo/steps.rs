//! The steps of `herd demo`'s story, in the order `story_steps` plays them, and what they
//! share: publishing as a vendor, running an agent, looking at a terminal from the center and
//! from its own prefix.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use herd_client::Client;
use herd_proto::api::{
    GroupDoc, NewApiToken, NewEnrolmentToken, PlacementRule, PlacementRules, PlanReport,
};
use herd_proto::plan::Action;
use herd_proto::terminal::PolicyDoc;

use super::Demo;
use super::describe::*;
use super::procs::{self, AgentRun, CenterProcess, CenterSpec};
use super::show::{short_digest, table};
use super::story::{
    self, DEVICES, Device, PC, PHONE, SAME_VENDOR_GROUP, VACCINE_A, VACCINE_B, Vaccine,
};

impl Demo {
    pub(super) fn build_packages(&mut self) -> anyhow::Result<()> {
        self.show.say(
            "A vaccine package (format `archive`) is a tar.gz holding a manifest, the vendor's\n\
             ClamAV-format definitions, and a test file those definitions must detect: an agent\n\
             proves a product works by making it detect that file before switching to it.",
        );
        let work = self.dir.join("packages");
        fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
        for vaccine in [VACCINE_A, VACCINE_B] {
            let (path, built) = vaccine.build(&work)?;
            self.show.say(&format!(
                "{} by {} for {}: {} ({} bytes, sha256 {})",
                vaccine.label(),
                vaccine.vendor,
                vaccine.platforms.join(", "),
                self.rel(&path),
                built.size,
                short_digest(&built.sha256),
            ));
            let inspected = herd_package::inspect_file(&path);
            let held = match &inspected {
                Ok(inspection) => {
                    inspection.manifest.product == vaccine.product
                        && inspection.manifest.seq == vaccine.seq
                }
                Err(_) => false,
            };
            let mut text = format!(
                "{} passes the checks an agent makes before installing a package",
                vaccine.product
            );
            if let Err(err) = &inspected {
                text.push_str(&format!("\nrefused: {err}"));
            }
            self.show.check(held, &text);
            self.packages.push((vaccine, path, built));
        }
        self.show.say(&format!(
            "Only vaccine b's definitions carry a signature for virus a's body ({}).",
            story::VIRUS_A_SIGNATURE
        ));
        Ok(())
    }

    pub(super) fn start_center(&mut self) -> anyhow::Result<()> {
        let data_dir = self.dir.join("center");
        let log = self.dir.join("center.log");
        let spec = CenterSpec::new(&self.herd, &data_dir).log(&log);
        let interrupt = &self.interrupt;
        let center =
            CenterProcess::start_interruptible(&spec, &mut |pause| interrupt.sleep(pause))?;
        self.show.detail(&format!(
            "$ herd serve --data-dir {} --listen {}    (log: {})",
            self.rel(&center.data_dir),
            center.listen,
            self.rel(&center.log)
        ));
        self.show.say(&format!(
            "The center keeps the catalog (who covers which threat since when), the fleet, and plans\n\
             for every terminal at each check-in. At its first start it made a CA ({}): terminals\n\
             get client certificates from it when they enrol. It also wrote an operator API token\n\
             ({}). Its store is embedded SQLite in {}/.",
            self.rel(&center.ca_path()),
            self.rel(&center.operator_token_path()),
            self.rel(&center.data_dir),
        ));
        // Kept before anything else can fail, so that the clean-up stops it with SIGTERM.
        self.center = Some(center);
        let groups = self.operator()?.groups().context("GET /v1/groups")?;
        let unknown = groups.groups.iter().find(|g| g.id == "unknown");
        let held = unknown.is_some_and(|g| g.policy.apply == "latest-any-vendor");
        self.show.check(
            held,
            &format!(
                "the center answers at {} over TLS; terminals no rule places go to group unknown \
                 (policy latest-any-vendor: the newest coverage, from any vendor)",
                self.center()?.url
            ),
        );
        Ok(())
    }

    pub(super) fn maker_a_publishes(&mut self) -> anyhow::Result<()> {
        self.show.say(&format!(
            "Virus a (danger: high) was discovered on {}. Maker A knows it, but vaccine a 5.1 cannot\n\
             detect it yet; its feed says so, and that it expects to cover it around {}.",
            story::THREAT_DISCOVERED,
            story::THREAT_EXPECTED_FROM_A
        ));
        self.vendor_publishes(VACCINE_A)
    }

    pub(super) fn operators_prepare(&mut self) -> anyhow::Result<()> {
        let operator = self.operator()?;
        self.show.say(&format!(
            "Group {SAME_VENDOR_GROUP} is for user B's PC; a placement rule puts terminals of user-b\n\
             there when they enrol. It starts on latest-any-vendor, so the PC gets a first product.",
        ));
        operator
            .put_group(&group(SAME_VENDOR_GROUP, "latest-any-vendor"))
            .with_context(|| format!("PUT /v1/groups/{SAME_VENDOR_GROUP}"))?;
        let rules = PlacementRules {
            rules: vec![PlacementRule {
                group: SAME_VENDOR_GROUP.to_owned(),
                kind: None,
                platform: None,
                address: None,
                user: Some(PC.user.to_owned()),
            }],
        };
        operator
            .put_rules(&rules)
            .context("PUT /v1/placement-rules")?;
        let stored = operator.rules().context("GET /v1/placement-rules")?;
        self.show.check(
            stored == rules,
            &format!(
                "placement rule stored: user {} → group {SAME_VENDOR_GROUP}; everyone else → unknown",
                PC.user
            ),
        );
        let token = operator
            .new_enrolment_token(&NewEnrolmentToken {
                label: "herd demo terminals".to_owned(),
                uses: Some(DEVICES.len() as u64),
                ttl_secs: Some(3600),
                reenrol_terminal: None,
            })
            .context("POST /v1/enrolment-tokens")?;
        let token_file = self.dir.join("enrol.token");
        write_private(&token_file, &token.token)?;
        self.show.check(
            !token.token.is_empty(),
            &format!(
                "an enrolment token for {} terminals, valid until {} ({})",
                DEVICES.len(),
                token.expires_at,
                self.rel(&token_file)
            ),
        );
        self.enrol_token = Some(token_file);
        Ok(())
    }

    pub(super) fn terminals_enrol(&mut self) -> anyhow::Result<()> {
        self.show.say(
            "Each terminal runs a real herd-agent with its own product directory (prefix) and state:\n\
             it enrols (a key pair, a CSR, a certificate from the center), checks in with nothing\n\
             installed, carries out its plan, and checks in again to report what it runs. The\n\
             planner gives a terminal with no product the best one for its platform: vaccine a.",
        );
        for device in DEVICES {
            let run = self.agent_run_once(&device)?;
            if device.id == PHONE.id {
                self.show.detail(&format!("$ {}", run.command));
                self.show_agent_lines(&run);
            }
            let seen = self.look(&device)?;
            let expected_group = if device.id == PC.id {
                SAME_VENDOR_GROUP
            } else {
                "unknown"
            };
            let mut expect = Expect::default();
            expect.exit_code(&run, 0);
            expect.that(seen.detail.summary.group == expected_group, || {
                format!(
                    "it was placed in group {} instead of {expected_group}",
                    seen.detail.summary.group
                )
            });
            let executed = expect.carried_out(&run, "", &seen, Action::Switch, &VACCINE_A);
            expect.runs(&seen.installed, &VACCINE_A);
            let now = seen.detail.plan.as_ref();
            expect.that(now.is_some_and(|p| p.action == Action::Exposed), || {
                format!(
                    "its plan after installing is {}, not exposed",
                    describe_plan(now)
                )
            });
            let text = format!(
                "{} ({}), group {}: {} carried out ({}); runs {}; now {}",
                device.id,
                device.describe,
                seen.detail.summary.group,
                executed.map_or("no plan", |(action, _)| action),
                describe_report(seen.detail.last_report.as_ref()),
                installed_label(seen.installed.as_ref()),
                describe_plan(now),
            );
            self.verdict(expect, &text, &run);
        }
        self.show.say(
            "Every terminal now runs a product, and every one is exposed: nobody covers virus a\n\
             yet. Each agent told its user so (the NOTICE above).",
        );
        Ok(())
    }

    pub(super) fn keep_pc_with_its_vendor(&mut self) -> anyhow::Result<()> {
        self.show.say(&format!(
            "User B's office has chosen to stay with maker A. Operators set group {SAME_VENDOR_GROUP}'s\n\
             policy to latest-same-vendor: its terminals take newer releases of the product they\n\
             run, never another vendor's. Terminals plan with it from their next check-in.",
        ));
        let operator = self.operator()?;
        let syncs = self.site_syncs()?;
        operator
            .put_group(&group(SAME_VENDOR_GROUP, "latest-same-vendor"))
            .with_context(|| format!("PUT /v1/groups/{SAME_VENDOR_GROUP}"))?;
        let groups = operator.groups().context("GET /v1/groups")?;
        let same = groups.groups.iter().find(|g| g.id == SAME_VENDOR_GROUP);
        self.show.check(
            same.is_some_and(|g| g.policy.apply == "latest-same-vendor" && g.terminals == 1),
            &format!(
                "group {SAME_VENDOR_GROUP}: policy {}, {} terminal(s) ({})",
                same.map_or("missing", |g| g.policy.apply.as_str()),
                same.map_or(0, |g| g.terminals),
                PC.id
            ),
        );
        self.await_site_sync(syncs, "the new policy")?;
        Ok(())
    }

    pub(super) fn scan_before_switch(&mut self) -> anyhow::Result<()> {
        let sample = self.write_sample()?;
        self.show.say(&format!(
            "A file carrying virus a arrives on the phone ({}: harmless text holding virus a's body).\n\
             The phone scans it with its active product, vaccine a 5.1:",
            self.rel(&sample)
        ));
        let run = self.scan(&PHONE, &sample)?;
        self.show.detail(&format!("$ {}", run.command));
        self.show_scan_lines(&run);
        let mut expect = Expect::default();
        expect.exit_code(&run, 0);
        expect.that(!run.output.contains(" FOUND"), || {
            "it reported a detection".to_owned()
        });
        self.verdict(
            expect,
            "not detected (exit 0): vaccine a has no signature for virus a, and no vendor covers it yet",
            &run,
        );
        Ok(())
    }

    pub(super) fn maker_b_publishes(&mut self) -> anyhow::Result<()> {
        self.show.say(&format!(
            "Two days after virus a's discovery, maker B's 11/12 pattern file ({}) covers it. Maker B\n\
             publishes vaccine b {} for phones and PCs. Nothing is pushed to terminals: each one gets\n\
             a new plan at its next check-in.",
            VACCINE_B.pattern, VACCINE_B.version
        ));
        let syncs = self.site_syncs()?;
        self.vendor_publishes(VACCINE_B)?;
        self.await_site_sync(syncs, "maker B's release and its signed metadata")?;
        let coverage = self.operator()?.coverage().context("GET /v1/coverage")?;
        let (held, text) = virus_a_coverage(&coverage);
        self.show.check(held, &text);
        Ok(())
    }

    pub(super) fn terminals_check_in(&mut self) -> anyhow::Result<()> {
        self.show.say(
            "At its next check-in each terminal reports what it runs and gets a plan (SPEC §5). A plan\n\
             that changes software is carried out as a transaction: download and verify, install\n\
             beside the old product, prove the new one detects its test file, switch, and only\n\
             then uninstall the old one; any failure puts the old product back.",
        );
        let mirror_url = self.mirror.as_ref().map(crate::mirror::Mirror::url);
        for device in DEVICES {
            // The phone reads the signed repository from the mirror, honest by now.
            let run = match (&mirror_url, device.id == PHONE.id) {
                (Some(url), true) => self.agent_run_once_with(&device, &["--mirror", url])?,
                _ => self.agent_run_once(&device)?,
            };
            let seen = self.look(&device)?;
            let plan = seen.detail.plan.as_ref();
            self.show.line("");
            let mut expect = Expect::default();
            expect.exit_code(&run, 0);
            if device.id != PHONE.id {
                self.show.say(&format!(
                    "{} ({}): {}",
                    device.id,
                    device.describe,
                    describe_plan(plan)
                ));
                self.show.say(&format!(
                    "  reason: {}",
                    plan.map_or("(no plan)", |p| p.reason.as_str())
                ));
            } else {
                self.show
                    .say(&format!("{} ({}):", device.id, device.describe));
            }
            if device.id == PHONE.id {
                self.show.detail(&format!("  $ {}", run.command));
                let earlier = std::mem::take(&mut self.phone_said);
                let executed =
                    expect.carried_out(&run, &earlier, &seen, Action::Switch, &VACCINE_B);
                self.show_executed(executed, seen.detail.last_report.as_ref());
                let from_mirror = match &self.mirror {
                    Some(mirror) => {
                        let genuine = self.phone_target()?.url;
                        let served = mirror.take_requests().contains(&genuine);
                        expect.that(served, || format!("the mirror did not serve it {genuine}"));
                        served
                    }
                    None => false,
                };
                self.show.say(&format!(
                    "  then: {} — {}",
                    describe_plan(plan),
                    plan.map_or("(no plan)", |p| p.reason.as_str())
                ));
                expect.runs(&seen.installed, &VACCINE_B);
                let old = self
                    .prefix(&device)
                    .join(herd_proto::layout::PRODUCTS_DIR)
                    .join(VACCINE_A.product)
                    .join(VACCINE_A.version);
                let old_removed = !old.exists();
                expect.that(old_removed, || {
                    format!("the old product is still in {}", self.rel(&old))
                });
                expect.that(plan.is_some_and(|p| p.action == Action::None), || {
                    format!(
                        "its plan after switching is {}, not none",
                        describe_plan(plan)
                    )
                });
                let text = format!(
                    "{} switched vendors as one transaction: it runs {}{}; nothing is left to do{}",
                    device.id,
                    installed_label(seen.installed.as_ref()),
                    if old_removed {
                        " and vaccine-a is uninstalled"
                    } else {
                        ""
                    },
                    if from_mirror {
                        " (the genuine package, from the mirror)"
                    } else {
                        ""
                    }
                );
                self.verdict(expect, &text, &run);
                continue;
            }

            let notices: Vec<String> = run
                .output
                .lines()
                .filter_map(|line| line.find("NOTICE:").map(|at| line[at..].to_owned()))
                .collect();
            for notice in &notices {
                self.show
                    .say(&format!("  the agent tells {}: {notice}", device.user));
            }
            let offered: Vec<&str> = plan
                .map(|p| p.alternatives.iter().map(|a| a.product.as_str()).collect())
                .unwrap_or_default();
            expect.that(plan.is_some_and(|p| p.action == Action::Exposed), || {
                format!("its plan is {}, not exposed", describe_plan(plan))
            });
            expect.runs(&seen.installed, &VACCINE_A);
            expect.that(!notices.is_empty(), || {
                "the agent did not notify its user".to_owned()
            });
            let text = if device.id == PC.id {
                expect.that(offered.contains(&VACCINE_B.product), || {
                    format!(
                        "vaccine-b is not among its alternatives ({})",
                        if offered.is_empty() {
                            "none".to_owned()
                        } else {
                            offered.join(", ")
                        }
                    )
                });
                expect.that(
                    notices.iter().any(|n| n.contains(VACCINE_B.product)),
                    || "the notice does not offer vaccine-b".to_owned(),
                );
                format!(
                    "{} is exposed and offered vaccine-b: policy latest-same-vendor keeps {}",
                    device.id,
                    installed_label(seen.installed.as_ref())
                )
            } else {
                expect.that(offered.is_empty(), || {
                    format!("it was offered {}", offered.join(", "))
                });
                format!(
                    "{} is exposed with nothing to offer (no product for the {} covers virus a); keeps {}",
                    device.id,
                    device.kind,
                    installed_label(seen.installed.as_ref())
                )
            };
            self.verdict(expect, &text, &run);
        }
        Ok(())
    }

    pub(super) fn scan_after_switch(&mut self) -> anyhow::Result<()> {
        let sample = self.dir.join("samples").join(SAMPLE_NAME);
        self.show
            .say("The phone scans the same file again, now with vaccine b 7.0:");
        let run = self.scan(&PHONE, &sample)?;
        self.show.detail(&format!("$ {}", run.command));
        self.show_scan_lines(&run);
        let mut expect = Expect::default();
        expect.exit_code(&run, 1);
        let named = format!("{} FOUND", story::VIRUS_A_SIGNATURE);
        expect.that(run.output.contains(&named), || {
            format!("it did not report {named}")
        });
        self.verdict(
            expect,
            &format!(
                "detected (exit 1) as {}: the phone is protected",
                story::VIRUS_A_SIGNATURE
            ),
            &run,
        );

        self.show
            .say("User B's PC, still on vaccine a, scans it too:");
        let run = self.scan(&PC, &sample)?;
        self.show_scan_lines(&run);
        let mut expect = Expect::default();
        expect.exit_code(&run, 0);
        expect.that(!run.output.contains(" FOUND"), || {
            "it reported a detection".to_owned()
        });
        self.verdict(
            expect,
            "not detected on the PC (exit 0): why the center lists it as exposed",
            &run,
        );
        Ok(())
    }

    pub(super) fn center_view(&mut self) -> anyhow::Result<()> {
        self.show.say(
            "What operators see, through API v1 (the same data as `herd terminals` and\n\
             `herd coverage`): every terminal as of its last check-in, and who covers what.",
        );
        let operator = self.operator()?;
        let fleet = operator
            .all_terminals(None, None)
            .context("GET /v1/terminals")?;
        let rows: Vec<Vec<String>> = fleet.iter().map(terminal_row).collect();
        self.show.detail(&table(
            &[
                "terminal",
                "user",
                "kind",
                "group",
                "installed",
                "action",
                "uncovered",
            ],
            &rows,
        ));
        for device in DEVICES {
            let summary = fleet.iter().find(|t| t.id == device.id);
            let (vaccine, action, uncovered) = if device.id == PHONE.id {
                (VACCINE_B, Action::None, 0)
            } else {
                (VACCINE_A, Action::Exposed, 1)
            };
            let mut expect = Expect::default();
            expect.that(
                summary.is_some_and(|t| {
                    t.installed.as_ref().is_some_and(|i| {
                        i.product == vaccine.product && i.version == vaccine.version
                    }) && t.action.as_deref() == Some(action.as_str())
                        && t.uncovered == uncovered
                }),
                || match summary {
                    Some(t) => format!(
                        "the center lists it with {}, action {}, {} uncovered",
                        installed_label(t.installed.as_ref()),
                        t.action.as_deref().unwrap_or("none yet"),
                        t.uncovered
                    ),
                    None => "the center does not list it".to_owned(),
                },
            );
            self.show.check(
                expect.held(),
                &format!(
                    "{}: {} {}, action {action}, {uncovered} threat(s) uncovered{}",
                    device.id,
                    vaccine.product,
                    vaccine.version,
                    expect.problems_only()
                ),
            );
        }

        let exposed: Vec<String> = operator
            .all_terminals(None, Some(Action::Exposed.as_str()))
            .context("GET /v1/terminals?action=exposed")?
            .into_iter()
            .map(|t| t.id)
            .collect();
        let mut want: Vec<&str> = DEVICES
            .iter()
            .filter(|d| d.id != PHONE.id)
            .map(|d| d.id)
            .collect();
        want.sort_unstable();
        self.show.check(
            exposed == want,
            &format!(
                "the exposed terminals operators are asked to look at: {}",
                if exposed.is_empty() {
                    "none".to_owned()
                } else {
                    exposed.join(", ")
                }
            ),
        );

        let coverage = operator.coverage().context("GET /v1/coverage")?;
        let mut header = vec![
            "threat".to_owned(),
            "danger".to_owned(),
            "discovered".to_owned(),
        ];
        header.extend(
            coverage
                .products
                .iter()
                .map(|p| format!("{} ({})", p.id, p.vendor)),
        );
        let rows: Vec<Vec<String>> = coverage
            .threats
            .iter()
            .map(|row| {
                let mut cells = vec![
                    row.threat.clone(),
                    row.danger.clone(),
                    row.discovered.clone(),
                ];
                cells.extend(row.cells.iter().map(describe_cell));
                cells
            })
            .collect();
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        self.show.line("");
        self.show.detail(&table(&header, &rows));
        let (held, text) = virus_a_coverage(&coverage);
        self.show.check(held, &text);
        Ok(())
    }

    pub(super) fn stop_center(&mut self) -> anyhow::Result<()> {
        if let Some(site) = self.site.as_mut() {
            let (status, killed) = site.stop()?;
            self.show.check(
                status.success() && !killed,
                &if killed {
                    format!(
                        "the site server did not stop within {} s of SIGTERM and was killed ({status})",
                        procs::CENTER_STOP_TIMEOUT.as_secs()
                    )
                } else {
                    format!("the site server stopped cleanly on SIGTERM ({status})")
                },
            );
        }
        let center = self
            .center
            .as_mut()
            .ok_or_else(|| anyhow!("the center is not running"))?;
        let (status, killed) = center.stop()?;
        self.show.check(
            status.success() && !killed,
            &if killed {
                format!(
                    "the center did not stop within {} s of SIGTERM and was killed ({status})",
                    procs::CENTER_STOP_TIMEOUT.as_secs()
                )
            } else {
                format!("the center stopped cleanly on SIGTERM ({status})")
            },
        );
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Helpers.

    pub(super) fn center(&self) -> anyhow::Result<&CenterProcess> {
        self.center
            .as_ref()
            .ok_or_else(|| anyhow!("the center is not running"))
    }

    pub(super) fn operator(&self) -> anyhow::Result<Client> {
        self.center()?.operator()
    }

    /// A path as the reader sees it: relative to the demo directory when inside it.
    pub(super) fn rel(&self, path: &Path) -> String {
        path.strip_prefix(&self.dir)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    pub(super) fn terminal_dir(&self, device: &Device) -> PathBuf {
        self.dir.join("terminals").join(device.id)
    }

    pub(super) fn prefix(&self, device: &Device) -> PathBuf {
        self.terminal_dir(device).join("prefix")
    }

    /// A vendor gets an API token from the operators, uploads its package, publishes its feed.
    pub(super) fn vendor_publishes(&mut self, vaccine: Vaccine) -> anyhow::Result<()> {
        let (path, built) = self
            .packages
            .iter()
            .find(|(v, _, _)| v.product == vaccine.product)
            .map(|(_, path, built)| (path.clone(), built.clone()))
            .ok_or_else(|| anyhow!("the {} package was not built", vaccine.product))?;
        let center = self.center()?;
        let token = center
            .operator()?
            .new_api_token(&NewApiToken {
                role: "vendor".to_owned(),
                vendor: Some(vaccine.vendor.to_owned()),
                label: format!("herd demo: {}", vaccine.vendor),
                ttl_secs: Some(3600),
            })
            .context("POST /v1/tokens")?;
        let vendor = center.client(Some(&token.token))?;

        let stored = vendor
            .upload_package(&path)
            .with_context(|| format!("PUT /v1/packages/{}", built.sha256))?;
        self.show.check(
            stored.sha256 == built.sha256 && stored.size == built.size,
            &format!(
                "{} uploaded {} with its own vendor token; the center checked its digest and size",
                vaccine.vendor,
                self.rel(&path)
            ),
        );

        let feed =
            serde_json::to_vec_pretty(&vaccine.feed(&built)).context("serialising a feed")?;
        let feeds = self.dir.join("feeds");
        fs::create_dir_all(&feeds).with_context(|| format!("cannot create {}", feeds.display()))?;
        let feed_path = feeds.join(format!("{}.json", vaccine.vendor));
        fs::write(&feed_path, &feed)
            .with_context(|| format!("cannot write {}", feed_path.display()))?;
        let published = vendor
            .publish_feed(vaccine.vendor, &feed)
            .with_context(|| format!("PUT /v1/feeds/{}", vaccine.vendor))?;
        self.show.check(
            published.changed && published.missing_packages.is_empty(),
            &format!(
                "{} published its feed ({}): catalog revision {}, {}",
                vaccine.vendor,
                self.rel(&feed_path),
                published.revision,
                if published.missing_packages.is_empty() {
                    "every package it names is on the center".to_owned()
                } else {
                    format!(
                        "packages missing: {}",
                        published.missing_packages.join(", ")
                    )
                }
            ),
        );
        Ok(())
    }

    /// `herd-agent run --once` for one terminal (enrolling it the first time).
    pub(super) fn agent_run_once(&mut self, device: &Device) -> anyhow::Result<AgentRun> {
        self.agent_run_once_with(device, &[])
    }

    /// `herd-agent run --once` with more options (`--mirror URL`), through the site when
    /// there is one; returns once what the terminal reported reached the center.
    pub(super) fn agent_run_once_with(
        &mut self,
        device: &Device,
        more: &[&str],
    ) -> anyhow::Result<AgentRun> {
        self.agent_run_through_site(device, more, true)
    }

    /// `herd-agent run --once` with the site as its server (the center before the site
    /// starts), waiting for the site to forward what it reported when `settle`. The agent
    /// trusts the center's CA, which issued the site's certificate too.
    pub(super) fn agent_run_through_site(
        &mut self,
        device: &Device,
        more: &[&str],
        settle: bool,
    ) -> anyhow::Result<AgentRun> {
        let run = self.agent_command(device, more)?;
        if settle {
            self.settle_site()?;
        }
        Ok(run)
    }

    fn agent_command(&self, device: &Device, more: &[&str]) -> anyhow::Result<AgentRun> {
        let server = match &self.site {
            Some(site) => site.url.clone(),
            None => self.center()?.url.clone(),
        };
        let ca = self.dir.join("center").join("ca.pem");
        let token_file = self
            .enrol_token
            .as_deref()
            .ok_or_else(|| anyhow!("no enrolment token was created"))?;
        let dir = self.terminal_dir(device);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = |p: PathBuf| p.display().to_string();
        let args: Vec<String> = [
            "run".into(),
            "--server".into(),
            server.clone(),
            "--ca".into(),
            path(ca.clone()),
            "--state-dir".into(),
            path(dir.join("state")),
            "--prefix".into(),
            path(self.prefix(device)),
            "--enrol-token-file".into(),
            path(token_file.to_owned()),
            "--id".into(),
            device.id.into(),
            "--user".into(),
            device.user.into(),
            "--kind".into(),
            device.kind.into(),
            "--platform".into(),
            device.kind.into(),
            "--tz".into(),
            story::TZ.into(),
            "--once".into(),
        ]
        .into_iter()
        .chain(more.iter().map(|s| (*s).to_owned()))
        .collect();
        let shown = format!(
            "herd-agent run --server {} --ca {} --state-dir {} --prefix {} --enrol-token-file {} \
             --id {} --user {} --kind {} --platform {} --tz {} --once{}",
            server,
            self.rel(&ca),
            self.rel(&dir.join("state")),
            self.rel(&self.prefix(device)),
            self.rel(token_file),
            device.id,
            device.user,
            device.kind,
            device.kind,
            story::TZ,
            more.iter().map(|s| format!(" {s}")).collect::<String>()
        );
        self.agent.run(
            &args,
            shown,
            &dir.join("agent.log"),
            &self.dir,
            &self.interrupt,
        )
    }

    /// `herd-agent scan --prefix PREFIX FILE`: a scan with the terminal's active product.
    pub(super) fn scan(&self, device: &Device, file: &Path) -> anyhow::Result<AgentRun> {
        let prefix = self.prefix(device);
        let args: Vec<String> = vec![
            "scan".into(),
            "--prefix".into(),
            prefix.display().to_string(),
            self.rel(file),
        ];
        let shown = format!(
            "herd-agent scan --prefix {} {}",
            self.rel(&prefix),
            self.rel(file)
        );
        self.agent.run(
            &args,
            shown,
            &self.terminal_dir(device).join("agent.log"),
            &self.dir,
            &self.interrupt,
        )
    }

    /// The plan a terminal carried out, and the result of each of its steps as the report the
    /// center received says.
    pub(super) fn show_executed(
        &mut self,
        executed: Option<(&str, &str)>,
        report: Option<&PlanReport>,
    ) {
        if let Some((action, reason)) = executed {
            self.show.say(&format!("  plan: {action}"));
            self.show.say(&format!("  reason: {reason}"));
        }
        let Some(report) = report else {
            return;
        };
        self.show
            .say("  carried out (the report the center received):");
        let dir = format!("{}/", self.dir.display());
        let rows: Vec<Vec<String>> = report
            .steps
            .iter()
            .map(|step| {
                vec![
                    step.kind.clone(),
                    step_status(step.status).to_owned(),
                    shorten_digests(&step.detail.as_deref().unwrap_or("").replace(&dir, "")),
                ]
            })
            .collect();
        let steps = table(&["step", "status", "detail"], &rows);
        for line in steps.lines() {
            self.show.detail(&format!("    {line}"));
        }
        if let Some(message) = &report.message {
            self.show.say(&format!("  result: {message}"));
        }
    }

    /// What the agent itself said (its `herd-agent: …` lines), dimmed.
    pub(super) fn show_agent_lines(&mut self, run: &AgentRun) {
        for line in run.output.lines() {
            if line.starts_with("herd-agent: ") {
                self.show.detail(&format!("  {line}"));
            }
        }
    }

    /// The per-file lines of a scan (`FILE: OK`, `FILE: NAME FOUND`), without the summary.
    pub(super) fn show_scan_lines(&mut self, run: &AgentRun) {
        for line in run.output.lines() {
            if line.ends_with(": OK") || line.ends_with(" FOUND") {
                self.show.say(&format!("  {line}"));
            }
        }
    }

    pub(super) fn write_sample(&self) -> anyhow::Result<PathBuf> {
        let dir = self.dir.join("samples");
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(SAMPLE_NAME);
        fs::write(&path, story::sample_content())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }

    /// What the center and the terminal's own prefix say about a terminal.
    pub(super) fn look(&self, device: &Device) -> anyhow::Result<Seen> {
        let detail = self
            .operator()?
            .terminal(device.id)
            .with_context(|| format!("GET /v1/terminals/{}", device.id))?;
        let installed = herd_package::installed_product(&self.prefix(device))
            .with_context(|| format!("reading what {} runs", device.id))?;
        Ok(Seen { detail, installed })
    }

    /// Prints one check from collected expectations; on failure, what differed and the end of
    /// what the agent printed.
    pub(super) fn verdict(&mut self, expect: Expect, text: &str, run: &AgentRun) {
        let text = format!("{text}{}", expect.problems_text(run));
        self.show.check(expect.held(), &text);
    }
}

const SAMPLE_NAME: &str = "greeting-card.exe";

/// Writes a secret readable by its owner only, durably (herd-fs).
fn write_private(path: &Path, secret: &str) -> anyhow::Result<()> {
    herd_fs::write_atomic(path, format!("{secret}\n").as_bytes(), 0o600)?;
    Ok(())
}

fn group(id: &str, apply: &str) -> GroupDoc {
    GroupDoc {
        id: id.to_owned(),
        description: "User B's PC: gets a first product, then keeps its vendor".to_owned(),
        policy: PolicyDoc {
            apply: apply.to_owned(),
            min_danger: Some("low".to_owned()),
            consent: Some("auto".to_owned()),
            window: None,
            tz: None,
            vendors: None,
        },
        terminals: 0,
    }
}
