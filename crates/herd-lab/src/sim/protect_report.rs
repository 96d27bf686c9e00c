//! What `herd sim protect` reports: per run, the distribution of time to protection over
//! every enrolled terminal (a terminal never protected ranks after all the others, so a
//! percentile that falls among them is "never"), the shares protected within 1, 5 and 10 s,
//! the bytes the terminals downloaded and the bytes that crossed the center→site link; and
//! the median of each over the runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::protect::{Gathered, Published};
use super::protect_wire::Bytes;

/// What was simulated.
#[derive(Clone, Debug, Serialize)]
pub struct Input {
    pub terminals: usize,
    pub enrolled: usize,
    pub enrol_errors: BTreeMap<String, u64>,
    /// Terminals that fell back to polling (their upstream refused `/v1/wait`).
    pub polling: usize,
    pub sites: usize,
    pub processes: usize,
    pub wake: &'static str,
    /// What each run measures from: a vendor's `release` or an analyst's `verdict`.
    pub path: &'static str,
    pub definitions_kib: usize,
    /// Enrolling the fleet until every terminal held its connection.
    pub settle_secs: f64,
    pub cores: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub run: u32,
    pub version: String,
    pub terminals: usize,
    pub protected: usize,
    pub never: usize,
    /// From the upload's start to the feed's answer.
    pub publish_secs: f64,
    pub package_bytes: u64,
    pub p50_secs: Option<f64>,
    pub p99_secs: Option<f64>,
    /// The last protected terminal's time (`None` when one never was).
    pub max_secs: Option<f64>,
    pub within_1s: f64,
    pub within_5s: f64,
    pub within_10s: f64,
    /// Bytes the sites counted from the center during the run (`None` without sites or when
    /// the sites do not export `herd_site_upstream_bytes_total`).
    pub upstream_bytes: Option<u64>,
    /// One copy of the package per site.
    pub one_copy_per_site_bytes: u64,
    /// Bodies the terminals downloaded (with no sites, what the center served them).
    pub downloaded: Bytes,
    pub verifications: u64,
    pub errors: BTreeMap<String, u64>,
    pub silent_workers: usize,
    /// How long the work before this run (the previous run's stragglers, the sites' relaying;
    /// before the first, the relaying of the fleet's enrolment) took to finish.
    pub quiet_before_secs: Option<f64>,
    /// The CPU each tier used from the publication to the end of the run (`None` where the
    /// processes' CPU times cannot be read).
    pub cpu: Option<CpuUse>,
}

/// CPU seconds each tier of the simulation used during a run, and the run's wall time: on one
/// machine the tiers share its cores, which a deployment spreads over a machine per site.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CpuUse {
    pub wall_secs: f64,
    pub center_secs: f64,
    pub sites_secs: f64,
    /// The simulated terminals (their TLS, JSON and checks), all worker processes together.
    pub terminals_secs: f64,
}

impl CpuUse {
    /// The CPU seconds processes `pids` have used so far, together (Linux: `/proc/PID/stat`'s
    /// user and system times); `None` when one cannot be read.
    pub fn seconds_of(pids: &[u32]) -> Option<f64> {
        // Clock ticks per second: 100 on every Linux this runs on (USER_HZ).
        const TICKS: f64 = 100.0;
        let mut total = 0.0;
        for pid in pids {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the command, which is in parentheses and may hold spaces.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            total += (utime + stime) / TICKS;
        }
        Some(total)
    }

    /// One line for the report.
    pub fn line(&self, protected: usize) -> String {
        let per_terminal = |secs: f64| {
            if protected == 0 {
                "-".to_owned()
            } else {
                format!("{:.2} ms", secs * 1000.0 / protected as f64)
            }
        };
        format!(
            "cpu over {:.1} s: center {:.1} s, sites {:.1} s, simulated terminals {:.1} s; \
             per protected terminal: sites {}, terminals {}",
            self.wall_secs,
            self.center_secs,
            self.sites_secs,
            self.terminals_secs,
            per_terminal(self.sites_secs),
            per_terminal(self.terminals_secs),
        )
    }
}

impl RunReport {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        run: u32,
        version: String,
        terminals: usize,
        _t0: u64,
        published: Published,
        gathered: Gathered,
        upstream_bytes: Option<u64>,
        sites: usize,
    ) -> RunReport {
        let mut times: Vec<f64> = gathered
            .times_us
            .iter()
            .map(|&us| us as f64 / 1e6)
            .collect();
        times.sort_by(f64::total_cmp);
        let protected = times.len();
        let share = |limit: f64| {
            if terminals == 0 {
                0.0
            } else {
                times.iter().filter(|&&t| t <= limit).count() as f64 / terminals as f64
            }
        };
        RunReport {
            run,
            version,
            terminals,
            protected,
            never: terminals.saturating_sub(protected),
            publish_secs: published.secs,
            package_bytes: published.package_bytes,
            p50_secs: percentile(&times, terminals, 0.50),
            p99_secs: percentile(&times, terminals, 0.99),
            max_secs: if protected >= terminals {
                times.last().copied()
            } else {
                None
            },
            within_1s: share(1.0),
            within_5s: share(5.0),
            within_10s: share(10.0),
            upstream_bytes,
            one_copy_per_site_bytes: published.package_bytes * sites as u64,
            downloaded: gathered.bytes,
            verifications: gathered.verifications,
            errors: gathered.errors,
            silent_workers: gathered.silent_workers,
            quiet_before_secs: None,
            cpu: None,
        }
    }

    /// One line for the progress output.
    pub fn line(&self) -> String {
        format!(
            "run {}: {}/{} protected; p50 {} p99 {} max {}; within 1 s {:.1} %, 5 s {:.1} %, 10 s {:.1} %; never {}{}",
            self.run,
            self.protected,
            self.terminals,
            secs(self.p50_secs),
            secs(self.p99_secs),
            secs(self.max_secs),
            self.within_1s * 100.0,
            self.within_5s * 100.0,
            self.within_10s * 100.0,
            self.never,
            if self.errors.is_empty() {
                String::new()
            } else {
                format!("; errors {:?}", self.errors)
            }
        )
    }
}

/// The time by which a share `p` of `terminals` were protected (nearest rank), or `None` when
/// that rank falls among the terminals never protected.
pub fn percentile(sorted: &[f64], terminals: usize, p: f64) -> Option<f64> {
    if terminals == 0 {
        return None;
    }
    let rank = ((p * terminals as f64).ceil() as usize).clamp(1, terminals);
    sorted.get(rank - 1).copied()
}

/// The median of values, `None` counting as larger than any number (never); `None` when the
/// median is one.
pub fn median(values: &[Option<f64>]) -> Option<f64> {
    let mut sorted: Vec<Option<f64>> = values.to_vec();
    sorted.sort_by(|a, b| match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(b),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    sorted
        .get(sorted.len().checked_sub(1)? / 2)
        .copied()
        .flatten()
}

/// The sum of every sample of `name` (any labels) in Prometheus text, `None` when absent.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let value = rest.rsplit(' ').next()?.parse::<f64>().ok()?;
        *found.get_or_insert(0.0) += value;
    }
    found
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub runs: usize,
    pub p50_secs: Option<f64>,
    pub p99_secs: Option<f64>,
    pub max_secs: Option<f64>,
    pub within_1s: Option<f64>,
    pub within_5s: Option<f64>,
    pub within_10s: Option<f64>,
    pub never: Option<f64>,
    pub upstream_bytes: Option<f64>,
    pub one_copy_per_site_bytes: Option<f64>,
    pub package_bytes: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProtectReport {
    pub input: Input,
    pub runs: Vec<RunReport>,
    /// Medians over the runs.
    pub median: Summary,
}

impl ProtectReport {
    pub fn new(input: Input, runs: Vec<RunReport>) -> ProtectReport {
        let of =
            |f: &dyn Fn(&RunReport) -> Option<f64>| median(&runs.iter().map(f).collect::<Vec<_>>());
        let median = Summary {
            runs: runs.len(),
            p50_secs: of(&|r| r.p50_secs),
            p99_secs: of(&|r| r.p99_secs),
            max_secs: of(&|r| r.max_secs),
            within_1s: of(&|r| Some(r.within_1s)),
            within_5s: of(&|r| Some(r.within_5s)),
            within_10s: of(&|r| Some(r.within_10s)),
            never: of(&|r| Some(r.never as f64)),
            upstream_bytes: if runs.iter().all(|r| r.upstream_bytes.is_some()) {
                of(&|r| r.upstream_bytes.map(|b| b as f64))
            } else {
                None
            },
            one_copy_per_site_bytes: of(&|r| Some(r.one_copy_per_site_bytes as f64)),
            package_bytes: of(&|r| Some(r.package_bytes as f64)),
        };
        ProtectReport {
            input,
            runs,
            median,
        }
    }

    pub fn text(&self) -> String {
        let input = &self.input;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "herd sim protect ({} path): {} terminals ({} enrolled, {} polling), {} sites, {} worker processes, wake by {}, {} KiB definitions; fleet settled in {:.1} s; {} cores",
            input.path,
            input.terminals,
            input.enrolled,
            input.polling,
            input.sites,
            input.processes,
            input.wake,
            input.definitions_kib,
            input.settle_secs,
            input.cores
        );
        if !input.enrol_errors.is_empty() {
            let _ = writeln!(out, "enrolment errors: {:?}", input.enrol_errors);
        }
        for run in &self.runs {
            let _ = writeln!(out, "{}", run.line());
            let _ = writeln!(
                out,
                "  publish {:.2} s, package {} B; downloaded: metadata {} B, packages {} B, {} requests; {} chains verified; center→sites {}",
                run.publish_secs,
                run.package_bytes,
                run.downloaded.metadata,
                run.downloaded.packages,
                run.downloaded.requests,
                run.verifications,
                match run.upstream_bytes {
                    Some(bytes) => format!(
                        "{bytes} B (one copy per site: {} B)",
                        run.one_copy_per_site_bytes
                    ),
                    None if input.sites == 0 => "– (no sites)".to_owned(),
                    None => "not exported by the sites".to_owned(),
                }
            );
            if let Some(cpu) = &run.cpu {
                let _ = writeln!(out, "  {}", cpu.line(run.protected));
            }
        }
        let m = &self.median;
        let share = |s: Option<f64>| s.map_or("–".to_owned(), |s| format!("{:.1} %", s * 100.0));
        let _ = writeln!(
            out,
            "median of {} runs: p50 {} p99 {} max {}; within 1 s {}, 5 s {}, 10 s {}; never {}; center→sites {}",
            m.runs,
            secs(m.p50_secs),
            secs(m.p99_secs),
            secs(m.max_secs),
            share(m.within_1s),
            share(m.within_5s),
            share(m.within_10s),
            m.never.map_or("–".to_owned(), |n| format!("{n:.0}")),
            m.upstream_bytes
                .map_or("–".to_owned(), |b| format!("{b:.0} B")),
        );
        out
    }
}

fn secs(value: Option<f64>) -> String {
    value.map_or("never".to_owned(), |s| format!("{s:.2} s"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_rank_over_every_terminal_with_the_unprotected_last() {
        let times = [0.5, 1.0, 2.0, 3.0];
        assert_eq!(percentile(&times, 4, 0.5), Some(1.0));
        assert_eq!(percentile(&times, 4, 0.99), Some(3.0));
        // Two of six never got it: the 99th percentile is "never", the median is not.
        assert_eq!(percentile(&times, 6, 0.5), Some(2.0));
        assert_eq!(percentile(&times, 6, 0.99), None);
        assert_eq!(percentile(&[], 0, 0.5), None);
        assert_eq!(percentile(&[], 3, 0.01), None);
    }

    #[test]
    fn medians_count_never_as_the_largest() {
        assert_eq!(median(&[Some(3.0), Some(1.0), Some(2.0)]), Some(2.0));
        assert_eq!(median(&[Some(3.0), None, Some(2.0)]), Some(3.0));
        assert_eq!(median(&[None, None, Some(2.0)]), None);
        assert_eq!(median(&[Some(1.0), Some(2.0)]), Some(1.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn metric_samples_are_summed_over_labels() {
        let text = "# HELP herd_site_upstream_bytes_total x\n\
                    herd_site_upstream_bytes_total{kind=\"targets\"} 100\n\
                    herd_site_upstream_bytes_total{kind=\"metadata\"} 23\n\
                    herd_site_upstream_bytes_total_other 5\n";
        assert_eq!(
            metric_sum(text, "herd_site_upstream_bytes_total"),
            Some(123.0)
        );
        assert_eq!(
            metric_sum("other 1\n", "herd_site_upstream_bytes_total"),
            None
        );
        assert_eq!(metric_sum("x 1\nx 2\n", "x"), Some(3.0));
    }

    #[test]
    fn a_run_counts_shares_over_every_enrolled_terminal() {
        let gathered = Gathered {
            times_us: vec![400_000, 2_000_000, 9_000_000],
            errors: BTreeMap::new(),
            bytes: Bytes::default(),
            verifications: 1,
            target_bytes: 1000,
            silent_workers: 0,
        };
        let published = Published {
            secs: 0.1,
            package_bytes: 1000,
        };
        let run = RunReport::new(1, "2".into(), 4, 0, published, gathered, Some(2100), 2);
        assert_eq!((run.protected, run.never), (3, 1));
        assert_eq!(run.within_1s, 0.25);
        assert_eq!(run.within_5s, 0.5);
        assert_eq!(run.within_10s, 0.75);
        assert_eq!(run.p50_secs, Some(2.0));
        assert_eq!(run.p99_secs, None);
        assert_eq!(run.max_secs, None);
        assert_eq!(run.one_copy_per_site_bytes, 2000);
    }
}
