//! `cargo xtask bench unpack`: how fast the agent unpacks a package with its own checked
//! reader (`herd_package::unpack_file`: one pass that checks every member, files created with
//! `O_EXCL | O_NOFOLLOW` through directory handles, owned by the agent, synced), against
//! `tar -xzf` of the same file, which is what the install script used to run.
//!
//! The package is generated: `--megabytes` of `.hdb` definitions (MD5 signature lines, which
//! compress about as well as real definitions) in `--files` files, built deterministically
//! with `herd_package::archive::encode`. Each run unpacks into a fresh directory; the figure
//! is the median over `--runs` runs, in MB/s of unpacked bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use herd_fs::Dir;
use herd_package::archive::{FileEntry, encode};
use herd_package::{ENGINE, Manifest, PACKAGE_FORMAT};

use crate::median;

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Megabytes of definitions in the package.
    #[arg(long, default_value_t = 100)]
    megabytes: usize,
    /// Definition files they are split into.
    #[arg(long, default_value_t = 10)]
    files: usize,
    /// Timed runs of each unpacker (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

pub fn run(options: Options) -> Result<()> {
    let work = std::env::temp_dir().join(format!("herd-bench-unpack-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = bench(&options, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn bench(options: &Options, work: &Path) -> Result<()> {
    let files = options.files.max(1);
    let per_file = options.megabytes * 1_000_000 / files;
    let mut members = BTreeMap::new();
    let mut definitions = Vec::new();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for f in 0..files {
        let mut text = String::with_capacity(per_file + 64);
        let mut n = 0u64;
        while text.len() < per_file {
            // A deterministic stream of "md5:size:name" lines.
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let _ = writeln!(
                text,
                "{:016x}{:016x}:{}:Bench.Sig.{f}.{n}",
                state,
                state.rotate_left(17),
                (state >> 40) % 100_000 + 1
            );
            n += 1;
        }
        let path = format!("defs/bench-{f}.hdb");
        definitions.push(path.clone());
        members.insert(
            path,
            FileEntry {
                data: text.into_bytes(),
                executable: false,
            },
        );
    }
    members.insert(
        "test/test.txt".to_owned(),
        FileEntry {
            data: b"bench".to_vec(),
            executable: false,
        },
    );
    let manifest = Manifest {
        format: PACKAGE_FORMAT.to_owned(),
        product: "bench".to_owned(),
        vendor: "bench".to_owned(),
        version: "1.0".to_owned(),
        seq: 1,
        pattern: "bench-1".to_owned(),
        kind: None,
        engine: Some(ENGINE.to_owned()),
        definitions,
        test_pattern: Some("test/test.txt".to_owned()),
        health_check: None,
        run: None,
        post_install: None,
        pre_uninstall: None,
        hooks_run_as: None,
    };
    let unpacked: usize = members.values().map(|m| m.data.len()).sum();
    eprintln!(
        "building a package of {} MB of definitions…",
        unpacked / 1_000_000
    );
    let bytes = encode(&manifest, &members).context("encoding the package")?;
    let package = work.join("bench.tar.gz");
    std::fs::write(&package, &bytes)?;
    println!(
        "package: {:.1} MB compressed, {:.1} MB unpacked in {} files",
        bytes.len() as f64 / 1e6,
        unpacked as f64 / 1e6,
        files + 2
    );

    let parent = Dir::open(work).context("opening the work directory")?;
    let mut ours = Vec::new();
    let mut tar = Vec::new();
    let mut tar_synced = Vec::new();
    for run in 0..options.runs {
        let name = format!("ours-{run}");
        let started = Instant::now();
        herd_package::unpack_file(&package, &parent, &name).context("unpack_file")?;
        ours.push(started.elapsed().as_secs_f64());
        parent.remove_tree(name.as_ref())?;

        let dest = work.join(format!("tar-{run}"));
        std::fs::create_dir(&dest)?;
        let started = Instant::now();
        let status = Command::new("tar")
            .arg("-xzf")
            .arg(&package)
            .arg("-C")
            .arg(&dest)
            .status()
            .context("running tar")?;
        tar.push(started.elapsed().as_secs_f64());
        // tar does not sync; sync what it wrote so both sides pay for durability (`sync -f`
        // syncs the whole file system, so this side may also pay for others' writes).
        let synced = Command::new("sync").arg("-f").arg(&dest).status();
        tar_synced.push(started.elapsed().as_secs_f64());
        if !status.success() || !synced.is_ok_and(|s| s.success()) {
            bail!("tar -xzf failed ({status})");
        }
        std::fs::remove_dir_all(&dest)?;
    }
    let mb = unpacked as f64 / 1e6;
    let (ours, tar, tar_synced) = (median(ours), median(tar), median(tar_synced));
    println!(
        "herd_package::unpack_file: median {:.3} s = {:.0} MB/s (checked, files synced one by one)",
        ours,
        mb / ours
    );
    println!(
        "tar -xzf:                  median {:.3} s = {:.0} MB/s (nothing synced)",
        tar,
        mb / tar
    );
    println!(
        "tar -xzf + sync -f:        median {:.3} s = {:.0} MB/s",
        tar_synced,
        mb / tar_synced
    );
    Ok(())
}
