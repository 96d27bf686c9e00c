//! `herd demo`: SPEC §9's first five minutes. Builds two vendors' real vaccine packages,
//! starts a real `herd serve`, a real site server (`herd serve --role site`) beside it, and
//! runs four real `herd-agent`s (phone, PDA, PC, set-top box) behind the site in a scratch
//! directory, and plays SPEC §5's worked example through them: virus a appears,
//! only maker B's vaccine b covers it, the phone switches vendors, user B's PC (policy
//! `latest-same-vendor`) is reported exposed with vaccine b offered — and a sample carrying
//! virus a is proven undetected on the phone before the switch and detected after. Before the
//! switch, an attacker's mirror serves the phone a tampered vaccine b, which it refuses. At the
//! end the center goes down: the site keeps answering its terminals and queues what they
//! report, and the center, restarted, receives it all once and in order. Then herd immunity
//! (`immunity`): a worm only the PC's vendor names is detected there, its hash becomes a
//! Herd signature, and the phone, of another vendor, detects it a moment later. Last, a
//! server in the data center supervises company A's middleware (SPEC §3.3): a known fault gets
//! its cause and remedy, an unknown crash has the middleware replaced by company B's.
//!
//! Every step states what it expects and checks it against what really happened (the
//! agents' exit codes, the center's API, the files in each agent's product prefix); `--exit`
//! turns the tally into the exit code. Without `--exit` the center keeps running for the
//! reader to explore until Ctrl-C.
//!
//! - `attack`: the malicious mirror the phone refuses before it switches;
//! - `site`: the site server, waiting for it, and the center's outage;
//! - `faults`: supervised programs failing, the fault database and a replacement;
//! - `immunity`: a vendor's detection becoming Herd's signature on every terminal;
//! - `story`: the cast (vendors, packages, feeds, terminals), pure data;
//! - `steps`: the story's steps, each printing what happens and checking what it expects;
//! - `describe`: the expectations of one check, and the phrases for plans and reports;
//! - `procs`: the `herd serve` and `herd-agent` child processes and their logs;
//! - `show`: printing steps and keeping the score;
//! - `signals`: Ctrl-C, so an interrupted demo still cleans up.

mod attack;
mod describe;
mod faults;
mod immunity;
mod procs;
mod show;
mod signals;
mod site;
mod steps;
mod story;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use herd_package::BuiltPackage;

use procs::{AgentProgram, CenterProcess};
use show::Show;
use signals::Interrupt;
use story::{PHONE, Vaccine};

/// Play SPEC's worked example with a real center and four real agents, checking every step.
///
/// Builds vaccine packages for two vendors, starts `herd serve` on a loopback port with
/// embedded SQLite and a site server (`herd serve --role site`) beside it, runs `herd-agent`
/// for a phone, a PDA, a PC and a set-top box behind the site, and shows
/// the phone switching to the vendor that covers a new virus, a PC on `latest-same-vendor`
/// reported exposed with that vendor's product offered, a malicious mirror's tampered package
/// refused by the phone, and a sample of the virus undetected before the switch and detected
/// after; then stops the center for a moment while the site keeps serving and queuing, and
/// shows everything queued arriving once and in order. Needs `herd-agent` beside `herd` (build both:
/// `cargo build --release --bin herd --bin herd-agent`).
///
/// Without `--exit`, the center keeps running afterwards, with the commands to explore it
/// printed, until Ctrl-C.
#[derive(Debug, Args)]
#[command(after_long_help = "Examples:
  herd demo                      # play the example, then keep the center up until Ctrl-C
  herd demo --exit               # for scripts and CI: exit 0 only if every step went as expected
  herd demo --dir demo --exit    # keep everything (packages, feeds, logs, agent state) in ./demo")]
pub struct DemoArgs {
    /// Run the scenario to the end, stop the center, and exit 0 only if every step happened
    /// as expected (1 otherwise).
    #[arg(long)]
    exit: bool,
    /// Work in this directory (created if missing, must be empty) instead of a new temporary
    /// one; it is kept at the end.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Keep the temporary directory at the end (packages, feeds, the center's data and log,
    /// each agent's prefix, state and log).
    #[arg(long)]
    keep: bool,
    /// The herd-agent program to run [default: herd-agent beside this herd].
    #[arg(long, value_name = "FILE")]
    agent: Option<PathBuf>,
}

/// Plays the demo; `Ok(true)` when every step happened as expected.
pub fn run(args: DemoArgs) -> anyhow::Result<bool> {
    let agent = AgentProgram::locate(args.agent.clone())?;
    let herd = std::env::current_exe().context("cannot find this herd program to run `serve`")?;
    let interrupt = Interrupt::install()?;
    let workdir = WorkDir::create(args.dir.as_deref(), args.keep)?;

    let steps = story_steps(args.exit);
    let mut demo = Demo {
        show: Show::new(steps.len()),
        interrupt,
        herd,
        agent,
        dir: workdir.path.clone(),
        packages: Vec::new(),
        center: None,
        site: None,
        enrol_token: None,
        mirror: None,
        phone_said: String::new(),
    };
    demo.show
        .banner("Herd demo: SPEC §5's worked example, with a real center and four real agents");
    demo.show.line(&format!(
        "Working in {} ({}).",
        workdir.path.display(),
        workdir.fate()
    ));

    let played = demo.play(&steps);
    demo.show.summary();

    // Even after a failed step the running center is worth a look: it shows what went wrong.
    if played != Played::Interrupted && !args.exit {
        demo.explore(&workdir);
    }
    let interrupted = played == Played::Interrupted;
    if interrupted {
        demo.show
            .line("Interrupted: stopping the site server and the center.");
    }
    demo.stop_site_quietly();
    demo.stop_center_quietly();
    let passed = demo.show.all_passed();
    drop(demo);
    workdir.finish();
    if interrupted {
        bail!("interrupted before the demo finished");
    }
    Ok(passed)
}

type StepFn = fn(&mut Demo) -> anyhow::Result<()>;

/// The story, in order. Each step prints what happens and checks what it expects.
fn story_steps(exit: bool) -> Vec<(&'static str, StepFn)> {
    let mut steps: Vec<(&'static str, StepFn)> = vec![
        (
            "Two vaccine makers build real packages",
            Demo::build_packages,
        ),
        ("The center starts", Demo::start_center),
        (
            "Day one: maker A publishes vaccine a; virus a is known but nobody covers it",
            Demo::maker_a_publishes,
        ),
        (
            "Operators prepare: a group, a placement rule, an enrolment token",
            Demo::operators_prepare,
        ),
        (
            "A site server starts in the terminals' office",
            Demo::start_site,
        ),
        (
            "Four terminals enrol through the site and get a product",
            Demo::terminals_enrol,
        ),
        (
            "Operators keep user B's PC with its vendor",
            Demo::keep_pc_with_its_vendor,
        ),
        (
            "Virus a reaches the phone, which cannot detect it",
            Demo::scan_before_switch,
        ),
        (
            "Maker B publishes vaccine b, which covers virus a",
            Demo::maker_b_publishes,
        ),
        (
            "A malicious mirror serves the phone a tampered vaccine b: refused",
            Demo::malicious_mirror,
        ),
        (
            "The terminals check in: the phone switches vendors, the others are exposed",
            Demo::terminals_check_in,
        ),
        ("The phone now detects virus a", Demo::scan_after_switch),
        (
            "The center goes down; the site keeps serving",
            Demo::center_goes_down,
        ),
        (
            "Herd immunity: the PC's vendor names a new worm; the phone's vendor learns it from Herd's set",
            Demo::herd_immunity,
        ),
        ("The center's view of the fleet", Demo::center_view),
        (
            "A supervised middleware fails: a known cause, and an unknown one replaced",
            Demo::supervised_middleware_fails,
        ),
    ];
    if exit {
        steps.push(("The site server and the center stop", Demo::stop_center));
    }
    steps
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Played {
    /// Every step ran (whether or not every check held).
    Completed,
    /// A step could not go on, so the later ones did not run.
    Stopped,
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

/// The scenario's state, filled in as the steps go.
struct Demo {
    show: Show,
    interrupt: Interrupt,
    /// This program, run as `herd serve`.
    herd: PathBuf,
    agent: AgentProgram,
    dir: PathBuf,
    /// Each vendor's release, package file and what building it produced.
    packages: Vec<(Vaccine, PathBuf, BuiltPackage)>,
    center: Option<CenterProcess>,
    /// The terminals' site server (`herd serve --role site`), once started.
    site: Option<CenterProcess>,
    /// The file holding the terminals' enrolment token (kept off command lines).
    enrol_token: Option<PathBuf>,
    /// The mirror the phone reads the signed repository from, once the attacker's is honest.
    mirror: Option<crate::mirror::Mirror>,
    /// What the phone's agent said while refusing the malicious mirror: it announced there
    /// the plan it carries out at the next check-in.
    phone_said: String,
}

impl Demo {
    fn play(&mut self, steps: &[(&'static str, StepFn)]) -> Played {
        for (title, step) in steps {
            if self.interrupt.raised() {
                return Played::Interrupted;
            }
            self.show.step(title);
            if let Err(err) = step(self) {
                if self.interrupt.raised() {
                    self.show.abort_step("interrupted (Ctrl-C)");
                    return Played::Interrupted;
                }
                self.show
                    .abort_step(&format!("this step could not go on: {err:#}"));
                return Played::Stopped;
            }
        }
        Played::Completed
    }

    // -----------------------------------------------------------------------------------------
    // After the story.

    /// Leaves the center running for the reader, with the commands to look at it, until
    /// Ctrl-C (or until the center stops on its own).
    fn explore(&mut self, workdir: &WorkDir) {
        let Some(center) = self.center.as_mut() else {
            return;
        };
        if !center.running() {
            return;
        }
        let herd = std::env::args().next().unwrap_or_else(|| "herd".to_owned());
        self.show.line("");
        self.show.line(&format!(
            "The center is still running at {}. Look around (in another terminal):",
            center.url
        ));
        // The web console, with a one-time sign-in link so nobody pastes a token.
        let link = std::process::Command::new(&self.herd)
            .args([
                "console",
                "link",
                "--label",
                "demo",
                "--ttl-mins",
                "60",
                "--server",
            ])
            .arg(&center.url)
            .arg("--ca")
            .arg(center.ca_path())
            .arg("--token-file")
            .arg(center.operator_token_path())
            .output();
        match link {
            Ok(out) if out.status.success() => {
                let link = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                self.show.line(&format!(
                    "  the web console: {}/console/ (its certificate is from the center's own \
                     CA, so the browser warns); sign in once with {link}",
                    center.url
                ));
            }
            _ => self.show.line(&format!(
                "  the web console: {}/console/ (sign in with the token in {})",
                center.url,
                center.operator_token_path().display()
            )),
        }
        self.show.line(&format!(
            "  export HERD_SERVER={} HERD_CA={} HERD_TOKEN_FILE={}",
            center.url,
            center.ca_path().display(),
            center.operator_token_path().display()
        ));
        for command in [
            "terminals",
            &format!("terminal {}", PHONE.id),
            "coverage",
            "groups list",
            "sites list",
        ] {
            self.show.line(&format!("  {herd} {command}"));
        }
        self.show.line(&format!(
            "  API description: {}/v1/openapi.json   metrics: {}/metrics",
            center.url, center.url
        ));
        if let Some(site) = &self.site {
            self.show.line(&format!(
                "  the terminals' site server {}: {}   metrics: {}/metrics",
                site::SITE_ID,
                site.url,
                site.url
            ));
        }
        if let Some(mirror) = &self.mirror {
            self.show.line(&format!(
                "  the mirror {} reads the signed repository from (honest now): {}/tuf/",
                PHONE.id,
                mirror.url()
            ));
        }
        self.show.line(&format!(
            "  logs: {}, {}, {}",
            center.log.display(),
            self.dir.join("site.log").display(),
            self.dir.join("terminals/*/agent.log").display()
        ));
        self.show.line(&if workdir.remove {
            format!(
                "Press Ctrl-C to stop the site server and the center and remove {}.",
                workdir.path.display()
            )
        } else {
            format!(
                "Press Ctrl-C to stop the site server and the center ({} is kept).",
                workdir.path.display()
            )
        });
        loop {
            if self.interrupt.sleep(std::time::Duration::from_millis(500)) {
                self.show.line("");
                break;
            }
            if !center.running() {
                self.show.line(&format!(
                    "The center stopped on its own; see {}.",
                    center.log.display()
                ));
                break;
            }
        }
    }

    /// Stops the site server if it still runs (before the center, whose terminals it serves).
    fn stop_site_quietly(&mut self) {
        let Some(mut site) = self.site.take() else {
            return;
        };
        if !site.running() {
            return;
        }
        let said = match site.stop() {
            Ok((status, false)) => format!("Site server stopped ({status})."),
            Ok((status, true)) => {
                format!("The site server did not stop in time and was killed ({status}).")
            }
            Err(err) => format!("Cannot stop the site server: {err:#}"),
        };
        self.show.line(&said);
    }

    /// Stops the center if it still runs (after exploring, on an interruption, or when a
    /// step failed before `--exit`'s own stop step).
    fn stop_center_quietly(&mut self) {
        let Some(mut center) = self.center.take() else {
            return;
        };
        if !center.running() {
            return;
        }
        let said = match center.stop() {
            Ok((status, false)) => format!("Center stopped ({status})."),
            Ok((status, true)) => {
                format!("The center did not stop in time and was killed ({status}).")
            }
            Err(err) => format!("Cannot stop the center: {err:#}"),
        };
        self.show.line(&said);
    }
}

/// The demo's directory: a new private temporary one (removed at the end unless `--keep`),
/// or the one the user named (created if missing, must be empty, always kept).
#[derive(Debug)]
struct WorkDir {
    path: PathBuf,
    remove: bool,
}

impl WorkDir {
    fn create(given: Option<&Path>, keep: bool) -> anyhow::Result<WorkDir> {
        if let Some(dir) = given {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let mut entries =
                fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
            if entries.next().is_some() {
                bail!(
                    "{} is not empty; give --dir a new or empty directory (the demo starts a \
                     fresh center there)",
                    dir.display()
                );
            }
            let path = fs::canonicalize(dir)
                .with_context(|| format!("cannot resolve {}", dir.display()))?;
            return Ok(WorkDir {
                path,
                remove: false,
            });
        }
        use std::os::unix::fs::DirBuilderExt as _;
        let base = std::env::temp_dir();
        for _ in 0..16 {
            let path = base.join(format!("herd-demo-{:08x}", rand::random::<u32>()));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    return Ok(WorkDir {
                        path,
                        remove: !keep,
                    });
                }
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(err) => {
                    return Err(err).with_context(|| {
                        format!("cannot create a directory in {}", base.display())
                    });
                }
            }
        }
        bail!(
            "cannot create a new directory in {} (every name tried exists)",
            base.display()
        )
    }

    fn fate(&self) -> &'static str {
        if self.remove {
            "removed at the end; --keep keeps it"
        } else {
            "kept at the end"
        }
    }

    /// Removes the directory if it is a temporary one, else says where everything is.
    fn finish(self) {
        if self.remove {
            if let Err(err) = fs::remove_dir_all(&self.path) {
                eprintln!("herd: cannot remove {}: {err}", self.path.display());
            }
        } else {
            use std::io::Write as _;
            // Best effort, like everything the demo prints: a closed stdout is no error here.
            let _ = writeln!(
                std::io::stdout(),
                "Everything the demo made is in {} (packages, feeds, center, terminals, logs).",
                self.path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_directory_must_be_empty_and_is_kept() {
        let base = std::env::temp_dir().join(format!("herd-demo-workdir-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let made = WorkDir::create(Some(&base.join("new")), false).unwrap();
        assert!(!made.remove);
        fs::write(made.path.join("file"), "x").unwrap();
        let err = WorkDir::create(Some(&made.path), false).unwrap_err();
        assert!(err.to_string().contains("is not empty"), "{err}");
        fs::remove_dir_all(&base).unwrap();

        let temporary = WorkDir::create(None, false).unwrap();
        assert!(temporary.remove && temporary.path.is_dir());
        let path = temporary.path.clone();
        temporary.finish();
        assert!(!path.exists());
    }
}
