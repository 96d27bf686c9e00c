//! Benchmark of `Store::record_checkins` on SQLite, the center's hot write path: 100,000
//! enrolled terminals, check-ins arriving in batches of 1,000 (the center's group commit), with
//! realistic document sizes. Reports microseconds per check-in write for a first pass, where
//! every plan is new, and for steady state, where few plans change.
//!
//! `cargo bench -p herd-store --bench checkins [-- TERMINALS BATCH]`; set
//! `HERD_BENCH_POSTGRES_URL` to run it against PostgreSQL as well (in a throwaway schema).

use std::time::{Duration, Instant};

use herd_store::{CheckinWrite, EnrolTokenRow, NewTerminal, PlanWrite, Store, UNKNOWN_GROUP};

/// SplitMix64: deterministic, so runs compare.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn terminal_id(i: u64) -> String {
    format!("terminal-{i:07}")
}

/// An inventory of the size agents report (one product, a few hundred bytes).
fn installed(i: u64, seq: u64) -> String {
    format!(
        r#"{{"products":[{{"vendor":"vendor-{v}","product":"av-{v}","version":"4.{seq}.0","definitions_seq":{seq},"format":"deb","installed_at":"2026-01-0{d}T10:00:00Z","prefix":"/opt/herd/av"}}],"scanned":"2026-01-01T00:00:00Z"}}"#,
        v = i % 7,
        d = 1 + i % 9,
    )
}

/// A plan document of the size the planner renders (steps, threats, a reason sentence).
fn plan(i: u64, version: u64) -> PlanWrite {
    let id = format!("plan-{i}-{version}");
    let doc = format!(
        r#"{{"schema":"herd.plan/v1","id":"{id}","terminal":"{t}","action":"update","reason":"vendor-{v}'s av-{v} 4.{version}.0 covers 12 threats that 4.{p}.0 misses, among them the critical ransomware family lockbit-{i}; the update is allowed by policy latest-any-vendor","steps":[{{"fetch":{{"sha256":"{h}","size":24117248,"url":"/v1/packages/{h}"}}}},{{"install":{{"format":"deb","script":"dpkg -i \"$HERD_PACKAGE\""}}}},{{"verify":{{"product":"av-{v}","version":"4.{version}.0"}}}}],"uncovered":["threat-1","threat-2","threat-3","threat-4","threat-5","threat-6","threat-7","threat-8","threat-9","threat-10","threat-11","threat-12"]}}"#,
        t = terminal_id(i),
        v = i % 7,
        p = version.saturating_sub(1),
        h = format!("{:064x}", u128::from(i) * 0x9E37_79B9 + u128::from(version)),
    );
    PlanWrite {
        id,
        action: "update".to_owned(),
        uncovered: 12,
        doc,
    }
}

/// What each terminal last reported: a check-in repeats it unless something changed.
struct Fleet {
    /// Per terminal: its plan version and inventory version.
    versions: Vec<(u64, u64)>,
}

impl Fleet {
    /// One check-in of a random terminal; its plan and, independently, its inventory change
    /// with `change_percent` % probability, and one check-in in 50 comes from another address.
    fn checkin(&mut self, rng: &mut Rng, at: i64, change_percent: u64) -> CheckinWrite {
        let i = rng.below(self.versions.len() as u64);
        let (plan_version, inventory_version) = &mut self.versions[i as usize];
        if rng.below(100) < change_percent {
            *plan_version += 1;
        }
        if rng.below(100) < change_percent {
            *inventory_version += 1;
        }
        let address = if rng.below(50) == 0 {
            format!(
                "10.{}.{}.{}",
                rng.below(256),
                rng.below(256),
                rng.below(256)
            )
        } else {
            format!("192.168.{}.{}", i / 256 % 256, i % 256)
        };
        CheckinWrite {
            terminal: terminal_id(i),
            at,
            address,
            installed: Some(installed(i, *inventory_version)),
            hardware: None,
            tz: None,
            agent_version: Some("1.4.2".to_owned()),
            plan: plan(i, *plan_version),
            relay: None,
        }
    }
}

async fn enrol_fleet(store: &dyn Store, terminals: u64) {
    store
        .enrol_token_insert(EnrolTokenRow {
            hash: "bench".to_owned(),
            label: "bench".to_owned(),
            uses_left: terminals,
            created_at: 0,
            expires_at: i64::MAX,
            reenrol_terminal: None,
        })
        .await
        .expect("enrolment token");
    let hardware =
        r#"{"platform":"linux-x86_64","model":"PC-2000","memory_mb":8192,"disk_gb":256}"#;
    for i in 0..terminals {
        let terminal = NewTerminal {
            id: terminal_id(i),
            user: Some(format!("user{i}")),
            hardware: hardware.to_owned(),
            tz: Some("+01:00".to_owned()),
            group: UNKNOWN_GROUP.to_owned(),
            cert_sha256: format!("{:064x}", u128::from(i)),
            enrolled_at: 1_700_000_000,
            address: format!("192.168.{}.{}", i / 256 % 256, i % 256),
            site: None,
        };
        store
            .enrol("bench", 1_700_000_000, terminal)
            .await
            .expect("enrol");
    }
}

/// CPU time (user + system) this process has used so far, from `/proc/self/stat` (Linux; USER_HZ
/// is 100 there on every architecture); zero where that cannot be read.
fn process_cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Timings of one phase.
struct Phase {
    /// Wall-clock time inside `record_checkins`.
    storing: Duration,
    /// Process CPU time over the phase, minus the time spent making the check-ins.
    cpu: Duration,
}

/// Runs `batches` batches of `batch` check-ins.
async fn run_phase(
    store: &dyn Store,
    fleet: &mut Fleet,
    rng: &mut Rng,
    batches: u64,
    batch: u64,
    change_percent: u64,
    clock: &mut i64,
) -> Phase {
    let cpu_before = process_cpu_time();
    let mut storing = Duration::ZERO;
    let mut making = Duration::ZERO;
    for _ in 0..batches {
        *clock += 1;
        let started = Instant::now();
        let writes: Vec<CheckinWrite> = (0..batch)
            .map(|_| fleet.checkin(rng, *clock, change_percent))
            .collect();
        making += started.elapsed();
        let started = Instant::now();
        store
            .record_checkins(&writes)
            .await
            .expect("record_checkins");
        storing += started.elapsed();
    }
    let cpu = process_cpu_time()
        .saturating_sub(cpu_before)
        .saturating_sub(making);
    Phase { storing, cpu }
}

async fn bench(label: &str, store: &dyn Store, terminals: u64, batch: u64) {
    let started = Instant::now();
    enrol_fleet(store, terminals).await;
    println!(
        "{label}: enrolled {terminals} terminals in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let mut rng = Rng(0x5EED);
    let mut fleet = Fleet {
        versions: vec![(0, 0); terminals as usize],
    };
    let mut clock = 1_800_000_000;
    let batches = terminals / batch;
    let phases = [
        ("first pass, plans and inventories new", batches, 100),
        (
            "steady state, 5% of plans and inventories change",
            2 * batches,
            5,
        ),
        ("steady state, nothing changes", 2 * batches, 0),
    ];
    for (name, batches, change_percent) in phases {
        let phase = run_phase(
            store,
            &mut fleet,
            &mut rng,
            batches,
            batch,
            change_percent,
            &mut clock,
        )
        .await;
        let writes = (batches * batch) as f64;
        println!(
            "{label}: {name}: {writes} check-ins in {batches} batches of {batch}: \
             {:.2} µs per check-in ({:.2} µs CPU), {:.0} check-ins/s",
            phase.storing.as_secs_f64() * 1e6 / writes,
            phase.cpu.as_secs_f64() * 1e6 / writes,
            writes / phase.storing.as_secs_f64()
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; positional numbers override the sizes.
    let numbers: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let terminals = numbers.first().copied().unwrap_or(100_000);
    let batch = numbers.get(1).copied().unwrap_or(1_000).max(1);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let store = herd_store::open(&url).await.expect("open SQLite");
        bench("sqlite", &*store, terminals, batch).await;
        drop(store);

        if let Ok(base) = std::env::var("HERD_BENCH_POSTGRES_URL") {
            let schema = format!("herd_bench_{}", std::process::id());
            let admin = sqlx::PgPool::connect(&base)
                .await
                .expect("connect to PostgreSQL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&admin)
                .await
                .expect("create the bench schema");
            let separator = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{separator}options=-csearch_path%3D{schema}");
            let store = herd_store::open(&url).await.expect("open PostgreSQL");
            bench("postgres", &*store, terminals, batch).await;
            drop(store);
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&admin)
                .await
                .expect("drop the bench schema");
        }
    });
}
