//! `herd demo`'s site server (SPEC §2, §9): a real `herd serve --role site` on loopback
//! between the center and the four terminals, which enrol, check in and download through it;
//! and the step where the center goes down, the site keeps answering its terminals and queues
//! what they report, and the center, restarted on the same data and port, receives everything
//! queued once and in order.
//!
//! What the site did is read from its own `/metrics` (queue depth, link state, bytes fetched
//! from the center, catalog revision) and what the center received from the center's
//! `/metrics` and operator API, never from what the demo itself sent.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use herd_client::ReadLimits;
use herd_core::Timestamp;

use super::Demo;
use super::procs::{AgentRun, CenterProcess, CenterSpec};
use super::show::table;
use super::story::{DEVICES, Device, PHONE};

/// The site's id at the center (what `herd sites` lists).
pub(super) const SITE_ID: &str = "office-1";
/// How long the site may take to replicate a change of the center, or to forward its queue
/// once the center answers (its retry pause grows to 30 s while the center is down).
const SITE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a waiting loop reads the metrics.
const METRICS_POLL: Duration = Duration::from_millis(200);

/// A process's Prometheus text, read once.
pub(super) struct Metrics(String);

impl Metrics {
    /// The value of an unlabelled series, when present.
    pub(super) fn get(&self, name: &str) -> Option<u64> {
        self.0.lines().find_map(|line| {
            let value = line.strip_prefix(name)?.strip_prefix(' ')?;
            value.trim().parse::<f64>().ok().map(|v| v as u64)
        })
    }

    /// Like [`Metrics::get`], an absent series being an error that names it.
    fn need(&self, name: &str, whose: &str) -> anyhow::Result<u64> {
        self.get(name)
            .ok_or_else(|| anyhow!("the {whose}'s /metrics has no {name}"))
    }
}

/// `GET /metrics` of a running `herd serve` (center or site), over its TLS listener.
pub(super) fn read_metrics(process: &CenterProcess) -> anyhow::Result<Metrics> {
    let bytes = process
        .client(None)?
        .repository()
        .get("/metrics", ReadLimits::metadata(4 << 20))
        .with_context(|| format!("GET {}/metrics", process.url))?;
    Ok(Metrics(String::from_utf8_lossy(&bytes).into_owned()))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Demo {
    pub(super) fn start_site(&mut self) -> anyhow::Result<()> {
        self.show.say(
            "The terminals sit in an office with its own site server: the same program in its second\n\
             role. It enrols with the center once (its own certificate, mutual TLS on the link),\n\
             replicates the catalog and the groups, mirrors the signed repository, answers its\n\
             terminals' check-ins with its own planner, and sends what they report to the center\n\
             through a durable queue.",
        );
        let center = self.center()?;
        let token = center
            .operator()?
            .new_site_token(&format!("herd demo: {SITE_ID}"))
            .context("POST /v1/site-tokens")?;
        let center_url = center.url.clone();
        let center_ca = center.ca_path();
        let data_dir = self.dir.join("site");
        let config = self.dir.join("site.toml");
        // The token stays off the command line; a short pull keeps the demo brisk.
        let text = format!(
            "# herd demo's site server\nsite_token = \"{}\"\nsite_poll_secs = 5\n",
            token.token
        );
        herd_fs::write_atomic(&config, text.as_bytes(), 0o600)
            .with_context(|| format!("cannot write {}", config.display()))?;
        let args = [
            "--role".to_owned(),
            "site".to_owned(),
            "--upstream".to_owned(),
            center_url.clone(),
            "--upstream-ca".to_owned(),
            center_ca.display().to_string(),
            "--site-id".to_owned(),
            SITE_ID.to_owned(),
            "--config".to_owned(),
            config.display().to_string(),
        ];
        let spec = CenterSpec::new(&self.herd, &data_dir)
            .log(&self.dir.join("site.log"))
            .args(args);
        let interrupt = &self.interrupt;
        let site = CenterProcess::start_interruptible(&spec, &mut |pause| interrupt.sleep(pause))?;
        self.show.detail(&format!(
            "$ herd serve --role site --upstream {center_url} --upstream-ca {} --site-id {SITE_ID} \
             --config {} --data-dir {} --listen {}    (log: {})",
            self.rel(&center_ca),
            self.rel(&config),
            self.rel(&site.data_dir),
            site.listen,
            self.rel(&site.log)
        ));
        self.show.say(&format!(
            "{} holds the site enrolment token and site_poll_secs = 5. The site has its own\n\
             embedded SQLite store in {}/; its server certificate comes from the center's CA, so\n\
             the terminals trust it with the center's ca.pem.",
            self.rel(&config),
            self.rel(&site.data_dir)
        ));
        // Kept before anything else can fail, so that the clean-up stops it with SIGTERM.
        self.site = Some(site);

        let sites = self.operator()?.sites().context("GET /v1/sites")?;
        let listed = sites.iter().find(|s| s.id == SITE_ID);
        self.show.check(
            listed.is_some(),
            &format!(
                "the site server answers at {} over TLS; the center lists site {SITE_ID}{}",
                self.site()?.url,
                listed.map_or(String::new(), |s| format!(
                    " ({}, state {})",
                    s.url, s.state
                ))
            ),
        );
        let (replicated, revision) = self.await_site_catalog()?;
        self.show.check(
            replicated,
            &format!(
                "the site replicated the center's catalog (revision {revision}), groups and \
                 placement rule, and mirrors its signed repository"
            ),
        );
        Ok(())
    }

    pub(super) fn center_goes_down(&mut self) -> anyhow::Result<()> {
        self.show.say(
            "The center goes down (SIGTERM, as an init system would stop it). The terminals keep\n\
             talking to their site: it plans with its replicated catalog and groups, serves the\n\
             signed repository from its mirror, and queues what they report until the center\n\
             answers again.",
        );
        let operator = self.operator()?;
        let applied_before = operator
            .sites()
            .context("GET /v1/sites")?
            .into_iter()
            .find(|s| s.id == SITE_ID)
            .map_or(0, |s| s.relay_applied);
        let site = read_metrics(self.site()?)?;
        let depth_before = site.need("herd_site_queue_depth", "site")?;

        let center = self
            .center
            .as_mut()
            .ok_or_else(|| anyhow!("the center is not running"))?;
        let listen = center.listen.clone();
        let (status, killed) = center.stop()?;
        self.show
            .detail(&format!("$ kill -TERM <herd serve> (the center, {listen})"));
        self.show.check(
            status.success() && !killed,
            &format!("the center stopped ({status}); nothing answers at https://{listen}"),
        );
        let down_at = unix_now();

        self.show
            .say("Meanwhile every terminal checks in with the site:");
        let mut checkins = Vec::new();
        for device in DEVICES {
            let run = self.agent_run_through_site(&device, &[], false)?;
            checkins.push(self.expect_site_plan(&device, &run, down_at)?);
        }

        let mut queued = (0, 0);
        // The check below says what was seen when the wait ended, held or not.
        let _counted = self.wait_for("the site to count its queue", SITE_TIMEOUT, |demo| {
            let site = read_metrics(demo.site()?)?;
            queued = (
                site.need("herd_site_queue_depth", "site")?,
                site.need("herd_site_upstream_up", "site")?,
            );
            Ok(queued.0 >= depth_before + DEVICES.len() as u64 && queued.1 == 0)
        })?;
        let (depth, up) = queued;
        self.show.check(
            depth >= depth_before + DEVICES.len() as u64 && up == 0,
            &format!(
                "the site queued what they reported: herd_site_queue_depth {depth_before} → {depth} \
                 (their check-ins and events), herd_site_upstream_up {up}"
            ),
        );

        // The center comes back on the same data directory and address.
        let data_dir = self.dir.join("center");
        let spec = CenterSpec::new(&self.herd, &data_dir)
            .log(&self.dir.join("center.log"))
            .listen(&listen);
        let interrupt = &self.interrupt;
        let center =
            CenterProcess::start_interruptible(&spec, &mut |pause| interrupt.sleep(pause))?;
        let up_at = unix_now();
        self.show.detail(&format!(
            "$ herd serve --data-dir {} --listen {listen}    (the center again)",
            self.rel(&center.data_dir)
        ));
        let same_address = center.listen == listen;
        self.center = Some(center);
        let answers = self.operator()?.health().is_ok();
        self.show.check(
            same_address && answers,
            &format!(
                "the center is back at https://{listen} on the same data after {} s away",
                up_at - down_at
            ),
        );

        self.say_waiting_for_the_site();
        let drained = self.await_site_forwarded()?;
        let center = read_metrics(self.center()?)?;
        // The center's counters start at its restart: all they count is this catch-up.
        let relayed = center.need("herd_site_relayed_items_total", "center")?;
        let duplicates = center.need("herd_site_relayed_duplicates_total", "center")?;
        let queued_now = depth - depth_before;
        self.show.check(
            drained && relayed == queued_now && duplicates == 0,
            &format!(
                "the queue {}: the center applied {relayed} relayed item(s) of the \
                 {queued_now} queued, {duplicates} duplicate(s) (herd_site_relayed_items_total, \
                 herd_site_relayed_duplicates_total)",
                if drained {
                    "drained to 0"
                } else {
                    "did not drain"
                }
            ),
        );
        let applied_after = self
            .operator()?
            .sites()
            .context("GET /v1/sites")?
            .into_iter()
            .find(|s| s.id == SITE_ID)
            .map_or(0, |s| s.relay_applied);
        self.show.check(
            applied_after >= applied_before + queued_now,
            &format!(
                "in order: the center applies a site's queue by its sequence numbers, now through \
                 seq {applied_after} (was {applied_before})"
            ),
        );

        for (device, agent_says) in DEVICES.iter().zip(&checkins) {
            let detail = self
                .operator()?
                .terminal(device.id)
                .with_context(|| format!("GET /v1/terminals/{}", device.id))?;
            let center_says = detail.summary.last_checkin.as_deref();
            let while_down = center_says
                .and_then(|at| Timestamp::parse(at).ok())
                .map(Timestamp::unix_seconds)
                .is_some_and(|at| down_at <= at && at <= up_at);
            let same = agent_says.is_some() && center_says == agent_says.as_deref();
            self.show.check(
                while_down && same,
                &format!(
                    "the center shows {}'s latest check-in, made through the site while the center \
                     was down ({}{}), action {}",
                    device.id,
                    center_says.unwrap_or("never"),
                    if same {
                        String::new()
                    } else {
                        format!(
                            "; the agent says {}",
                            agent_says.as_deref().unwrap_or("never")
                        )
                    },
                    detail.summary.action.as_deref().unwrap_or("none yet"),
                ),
            );
        }
        let sites = self.operator()?.sites().context("GET /v1/sites")?;
        let rows: Vec<Vec<String>> = sites
            .iter()
            .map(|s| {
                vec![
                    s.id.clone(),
                    s.state.clone(),
                    s.terminals.to_string(),
                    s.relay_applied.to_string(),
                    s.last_contact.clone().unwrap_or_else(|| "never".to_owned()),
                ]
            })
            .collect();
        self.show
            .say("What `herd sites list` shows the operators now:");
        self.show.detail(&table(
            &[
                "site",
                "state",
                "terminals",
                "applied through",
                "last contact",
            ],
            &rows,
        ));
        self.links_crossed_once()
    }

    /// Checks a terminal's check-in through the site while the center is down: it exits 0,
    /// checked in after the center went down, holds the plan it had before the outage (the
    /// phone nothing to do, the others exposed), and the site acknowledged all it reported
    /// (the agent's own status says so).
    /// Returns the agent's last check-in time as it says it.
    fn expect_site_plan(
        &mut self,
        device: &Device,
        run: &AgentRun,
        down_at: i64,
    ) -> anyhow::Result<Option<String>> {
        if device.id == PHONE.id {
            self.show.detail(&format!("  $ {}", run.command));
        }
        let status = self.agent_status(device)?;
        let progress = &status["progress"];
        let action = progress["plan"]["action"].as_str().unwrap_or("missing");
        let reason = progress["plan"]["reason"].as_str().unwrap_or("");
        let checked_in = progress["last_checkin"].as_str();
        let pending = status["outbox"]["pending"].as_u64();
        let expected = if device.id == PHONE.id {
            "none"
        } else {
            "exposed"
        };
        let mut problems = Vec::new();
        if run.code() != Some(0) {
            problems.push(format!("it exited with {}", run.status));
        }
        let after_down = checked_in
            .and_then(|at| Timestamp::parse(at).ok())
            .is_some_and(|at| at.unix_seconds() >= down_at);
        if !after_down {
            problems.push(format!(
                "its last check-in ({}) is not from after the center went down",
                checked_in.unwrap_or("never")
            ));
        }
        if action != expected {
            problems.push(format!("its plan is {action}, not {expected}"));
        }
        if pending != Some(0) {
            problems.push(format!(
                "{} report(s) wait in its outbox: the site did not acknowledge them",
                pending.map_or("unknown".to_owned(), |n| n.to_string())
            ));
        }
        let mut text = format!(
            "{} checked in with the site at {}: plan {action} ({reason}); the site acknowledged \
             its reports",
            device.id,
            checked_in.unwrap_or("never"),
        );
        if !problems.is_empty() {
            text.push_str(&format!(
                "\n{}\nthe agent printed:\n{}",
                problems.join("; "),
                run.tail()
            ));
        }
        self.show.check(problems.is_empty(), &text);
        Ok(checked_in.map(str::to_owned))
    }

    fn say_waiting_for_the_site(&mut self) {
        self.show.say(
            "The site finds the center again at its next attempt (its pause between attempts grows\n\
             while the center is away, up to 30 s) and sends its queue, oldest first:",
        );
    }

    /// "Each package crossed the center→site link once": the bytes the site fetched from the
    /// center against the packages it served its terminals.
    fn links_crossed_once(&mut self) -> anyhow::Result<()> {
        let site = read_metrics(self.site()?)?;
        let fetched = site.need("herd_site_upstream_bytes_total", "site")?;
        let fetches = site.need("herd_site_upstream_requests_total", "site")?;
        let hits = site.get("herd_site_cache_hits_total").unwrap_or(0);
        // Every terminal got vaccine a from the site; the phone got vaccine b from the mirror
        // in the attack step, so the site fetches it only if it mirrors releases ahead.
        let sizes: Vec<(String, u64)> = self
            .packages
            .iter()
            .map(|(vaccine, _, built)| (vaccine.product.to_owned(), built.size))
            .collect();
        let first = sizes.first().map_or(0, |(_, size)| *size);
        let all: u64 = sizes.iter().map(|(_, size)| size).sum();
        let once = fetched == first || fetched == all;
        self.show.check(
            once,
            &format!(
                "each package crossed the center→site link once: the site fetched {fetched} bytes in \
                 {fetches} request(s) (herd_site_upstream_bytes_total) for {} ({}); its cache served \
                 the rest ({hits} hit(s))",
                sizes
                    .iter()
                    .map(|(product, size)| format!("{product} {size} bytes"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if fetched == all {
                    "both packages"
                } else {
                    "vaccine a, which all four terminals downloaded; the phone took vaccine b from \
                     the mirror"
                }
            ),
        );
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Waiting for the site.

    pub(super) fn site(&self) -> anyhow::Result<&CenterProcess> {
        self.site
            .as_ref()
            .ok_or_else(|| anyhow!("the site server is not running"))
    }

    /// Waits until the site plans with the center's catalog revision (and so with the groups
    /// and signed metadata of the same change, which a site installs before the catalog);
    /// whether it did in time, and the revision.
    pub(super) fn await_site_catalog(&mut self) -> anyhow::Result<(bool, u64)> {
        let wanted = read_metrics(self.center()?)?.need("herd_catalog_revision", "center")?;
        let replicated = self.wait_for(
            &format!("the site to replicate catalog revision {wanted}"),
            SITE_TIMEOUT,
            |demo| {
                let site = read_metrics(demo.site()?)?;
                Ok(site.get("herd_catalog_revision") == Some(wanted))
            },
        )?;
        Ok((replicated, wanted))
    }

    /// The site's count of replicated changes (catalog, groups, signed metadata).
    pub(super) fn site_syncs(&self) -> anyhow::Result<Option<u64>> {
        match &self.site {
            Some(site) => Ok(Some(
                read_metrics(site)?.need("herd_site_syncs_total", "site")?,
            )),
            None => Ok(None),
        }
    }

    /// After an operator's change at the center: waits until the site replicated it (its
    /// count of changes moved past `before`) and says so.
    pub(super) fn await_site_sync(
        &mut self,
        before: Option<u64>,
        what: &str,
    ) -> anyhow::Result<()> {
        let Some(before) = before else {
            return Ok(());
        };
        let synced = self.wait_for(
            &format!("the site to replicate {what}"),
            SITE_TIMEOUT,
            |demo| {
                let site = read_metrics(demo.site()?)?;
                Ok(site.get("herd_site_syncs_total").unwrap_or(0) > before)
            },
        )?;
        let (replicated, revision) = self.await_site_catalog()?;
        self.show.check(
            synced && replicated,
            &format!(
                "the site {} {what} (it plans with catalog revision {revision})",
                if synced && replicated {
                    "replicated"
                } else {
                    "did not replicate in time"
                }
            ),
        );
        Ok(())
    }

    /// Waits until the site has sent everything queued to the center: its queue is empty,
    /// the center answered, and nothing more was forwarded between two readings (a terminal's
    /// last report may still be on its way when the agent exits). False if it did not in time.
    pub(super) fn await_site_forwarded(&mut self) -> anyhow::Result<bool> {
        let mut last: Option<u64> = None;
        self.wait_for(
            "the site to send its queue to the center",
            SITE_TIMEOUT,
            |demo| {
                let site = read_metrics(demo.site()?)?;
                let depth = site.need("herd_site_queue_depth", "site")?;
                let up = site.need("herd_site_upstream_up", "site")?;
                let forwarded = site.need("herd_site_forwarded_items_total", "site")?;
                let settled = depth == 0 && up == 1 && last == Some(forwarded);
                last = Some(forwarded);
                Ok(settled)
            },
        )
    }

    /// After an agent talked to the site while the center is up: waits until what it
    /// reported reached the center, so the center's view can be checked.
    pub(super) fn settle_site(&mut self) -> anyhow::Result<()> {
        if self.site.is_none() || !self.center.as_mut().is_some_and(CenterProcess::running) {
            return Ok(());
        }
        if !self.await_site_forwarded()? {
            bail!(
                "the site did not send what its terminals reported to the center within {} s; \
                 its log ({}) ends with:\n{}",
                SITE_TIMEOUT.as_secs(),
                self.dir.join("site.log").display(),
                crate::harness::log_tail(&self.dir.join("site.log"))
            );
        }
        Ok(())
    }

    /// Polls `done` until it holds (true), `timeout` passes (false), or Ctrl-C (an error).
    fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&mut Demo) -> anyhow::Result<bool>,
    ) -> anyhow::Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            if done(self)? {
                return Ok(true);
            }
            if Instant::now() > deadline {
                return Ok(false);
            }
            if self.interrupt.sleep(METRICS_POLL) {
                bail!("interrupted while waiting for {what}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_read_by_exact_name() {
        let text = Metrics(
            "# TYPE herd_site_queue_depth gauge\nherd_site_queue_depth 7\n\
             herd_site_queue_depth_max 9\nherd_catalog_revision 3\n"
                .to_owned(),
        );
        assert_eq!(text.get("herd_site_queue_depth"), Some(7));
        assert_eq!(text.get("herd_catalog_revision"), Some(3));
        assert_eq!(text.get("herd_site_upstream_up"), None);
        let err = text.need("herd_site_upstream_up", "site").unwrap_err();
        assert!(err.to_string().contains("herd_site_upstream_up"), "{err}");
    }
}
