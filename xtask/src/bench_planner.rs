//! `cargo xtask bench planner`: plans a generated fleet against a generated catalog, the bar of SPEC §8.
//!
//! The catalog and fleet are generated deterministically from a seed (same seed, same data),
//! shaped like a real fleet: vendors cover most threats days to weeks after discovery, a few
//! never; terminals run recent definitions of a product that supports their platform, under a
//! mix of policies, consent settings, windows and time zones. The timed part is exactly
//! "from parsed catalog to plans": `Planner::new` plus one `Planner::plan` per terminal, on
//! one thread.
//!
//! A second timed phase renders check-in answers: for every terminal (or the first
//! `--render-sample` of the fleet), plan it and write its plan JSON (threat lists bounded as
//! SPEC §4 says) into a reused buffer with `Planner::render_json`, which writes the bytes of
//! the `PlanDoc` serialised by serde_json; one thread, with a planner built beforehand (its
//! precompute is timed above), the median over the runs, and the size of every plan. The
//! same is timed through a `PlanDoc` and serde_json, the way that builds the document.

use std::hint::black_box;
use std::time::Instant;

use anyhow::{Context, Result};
use herd_core::{Terminal, Timestamp};
use herd_planner::{Action, Planner};

use crate::{median, peak_rss_bytes, rss_bytes};
use herd_lab::world;

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Terminals in the fleet.
    #[arg(long, default_value_t = 1_000_000)]
    terminals: usize,
    /// Threats in the catalog.
    #[arg(long, default_value_t = 100_000)]
    threats: usize,
    /// Products in the catalog (two per vendor).
    #[arg(long, default_value_t = 20)]
    products: usize,
    /// Weekly definitions releases per product.
    #[arg(long, default_value_t = 160)]
    releases: usize,
    /// Timed runs; the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Terminals whose plans are rendered to JSON in the rendering phase (the first of the
    /// fleet) [default: every terminal].
    #[arg(long, value_name = "N")]
    render_sample: Option<usize>,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 2000_11_10)]
    seed: u64,
}

use world::{DAY, START};

pub fn run(o: Options) -> Result<()> {
    let started = Instant::now();
    eprintln!(
        "generating {} threats x {} products ({} releases each) and {} terminals (seed {}) ...",
        o.threats, o.products, o.releases, o.terminals, o.seed
    );
    let shape = world::Shape {
        threats: o.threats,
        products: o.products,
        releases: o.releases,
        seed: o.seed,
    };
    let catalog_doc = world::catalog(&shape, "");
    let terminal_docs: Vec<_> = (0..o.terminals)
        .map(|i| world::terminal(&shape, &catalog_doc, "", i))
        .collect();
    let catalog = catalog_doc
        .validate("generated catalog")
        .context("the generated catalog is invalid")?;
    let terminals: Vec<Terminal> = terminal_docs
        .iter()
        .map(|t| t.validate("generated terminal", &catalog))
        .collect::<Result<_, _>>()
        .context("a generated terminal is invalid")?;
    drop(terminal_docs);
    drop(catalog_doc);
    eprintln!(
        "generated and validated in {:.1} s: {} coverage statements, {} releases",
        started.elapsed().as_secs_f64(),
        catalog.coverage.len(),
        catalog.releases.len()
    );
    let rss_before = rss_bytes();
    let now = Timestamp::from_unix_seconds(START + (o.releases as i64 * 7 - 3) * DAY + 12 * 3600);

    let mut samples = Vec::with_capacity(o.runs);
    let mut precompute = Vec::with_capacity(o.runs);
    let mut counts = [0usize; 4];
    let mut rss_with_plans = None;
    for run in 0..o.runs {
        let t0 = Instant::now();
        let mut planner = Planner::new(&catalog, now);
        let t1 = Instant::now();
        let plans: Vec<_> = terminals.iter().map(|t| planner.plan(t)).collect();
        let elapsed = t0.elapsed().as_secs_f64();
        let distinct = planner.distinct_decisions();
        precompute.push((t1 - t0).as_secs_f64());
        samples.push(elapsed);
        if run == 0 {
            rss_with_plans = rss_bytes();
            for plan in &plans {
                counts[match plan.decision.action {
                    Action::None => 0,
                    Action::Update => 1,
                    Action::Switch => 2,
                    Action::Exposed => 3,
                }] += 1;
            }
        }
        black_box(&plans);
        drop(plans);
        if run == 0 {
            // The same fleet again with every decision already memoised: the per-terminal floor.
            let t2 = Instant::now();
            let again: Vec<_> = terminals.iter().map(|t| planner.plan(t)).collect();
            eprintln!(
                "  warm pass (all decisions memoised): {:.3} s",
                t2.elapsed().as_secs_f64()
            );
            black_box(&again);
        }
        eprintln!(
            "run {}: {:.3} s ({:.3} s precomputing, {distinct} distinct decisions)",
            run + 1,
            elapsed,
            (t1 - t0).as_secs_f64()
        );
    }

    // Rendering check-in answers: plan, render, serialise, for every terminal of the sample.
    let sample = &terminals[..terminals.len().min(o.render_sample.unwrap_or(usize::MAX))];
    let mut planner = Planner::new(&catalog, now);
    let mut buffer = Vec::with_capacity(64 * 1024);
    let mut sizes: Vec<usize> = Vec::with_capacity(sample.len());
    let mut render_samples = Vec::with_capacity(o.runs);
    let mut doc_samples = Vec::with_capacity(o.runs);
    for run in 0..o.runs {
        let t0 = Instant::now();
        for terminal in sample {
            let plan = planner.plan(terminal);
            buffer.clear();
            planner.render_json(&plan, &mut buffer);
            if run == 0 {
                sizes.push(buffer.len());
            }
            black_box(&buffer);
        }
        let seconds = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        for terminal in sample {
            let plan = planner.plan(terminal);
            buffer.clear();
            serde_json::to_writer(&mut buffer, &planner.render(&plan))
                .context("a plan serialises")?;
            black_box(&buffer);
        }
        let doc_seconds = t1.elapsed().as_secs_f64();
        eprintln!(
            "render run {}: {} plans in {seconds:.3} s ({doc_seconds:.3} s through PlanDoc)",
            run + 1,
            sample.len()
        );
        render_samples.push(seconds);
        doc_samples.push(doc_seconds);
    }
    // The direct rendering must write the document's bytes; checked on a part of the sample.
    let mut direct = Vec::new();
    for terminal in sample.iter().step_by(97) {
        let plan = planner.plan(terminal);
        direct.clear();
        planner.render_json(&plan, &mut direct);
        let doc = serde_json::to_vec(&planner.render(&plan)).context("a plan serialises")?;
        anyhow::ensure!(
            direct == doc,
            "render_json differs from the PlanDoc's JSON for {}",
            terminal.id
        );
    }
    sizes.sort_unstable();
    let render_median = median(render_samples.clone());
    let size_at = |q: f64| {
        sizes
            .get(((sizes.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0)
    };

    let median_seconds = median(samples.clone());
    println!(
        "planner benchmark: {} terminals, {} threats x {} products, one thread",
        terminals.len(),
        catalog.threats.len(),
        catalog.products.len()
    );
    println!(
        "  actions: none {}, update {}, switch {}, exposed {}",
        counts[0], counts[1], counts[2], counts[3]
    );
    println!(
        "  plan all terminals: median {:.3} s over {} runs (min {:.3}, max {:.3}); precompute median {:.3} s",
        median_seconds,
        samples.len(),
        samples.iter().copied().fold(f64::INFINITY, f64::min),
        samples.iter().copied().fold(0.0, f64::max),
        median(precompute)
    );
    println!(
        "  throughput: {:.2} million plans/s",
        terminals.len() as f64 / median_seconds / 1e6
    );
    let render_rate = sample.len() as f64 / render_median;
    println!(
        "  check-in answers (plan + Planner::render_json), first {} terminals: median {:.3} s over {} runs (min {:.3}, max {:.3}) \
         -> {:.0} plans/s",
        sample.len(),
        render_median,
        render_samples.len(),
        render_samples.iter().copied().fold(f64::INFINITY, f64::min),
        render_samples.iter().copied().fold(0.0, f64::max),
        render_rate
    );
    let doc_median = median(doc_samples);
    println!(
        "  the same through PlanDoc + serde_json::to_writer: median {:.3} s -> {:.0} plans/s",
        doc_median,
        sample.len() as f64 / doc_median
    );
    println!(
        "  plan size (bytes): min {}, median {}, p90 {}, p99 {}, max {}; mean {:.0}",
        size_at(0.0),
        size_at(0.5),
        size_at(0.9),
        size_at(0.99),
        size_at(1.0),
        sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64
    );
    if let (Some(before), Some(with_plans), Some(peak)) =
        (rss_before, rss_with_plans, peak_rss_bytes())
    {
        println!(
            "  resident memory: {:.0} MB with the validated catalog and fleet; {:.0} MB with the planner's tables and all {} plans too; \
             process peak {:.0} MB (data generation included)",
            before as f64 / 1e6,
            with_plans as f64 / 1e6,
            terminals.len(),
            peak as f64 / 1e6
        );
    }
    println!(
        "  bar (SPEC §8): under 1 s -> {}",
        if median_seconds < 1.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "  bar (check-in answers): at least 100,000 rendered plans/s on one core -> {}",
        if render_rate >= 100_000.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}
