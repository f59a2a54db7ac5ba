//! Kills workers of the `durable_orders` example (timers, signals, a queue, child sagas
//! and a schedule in one service) with SIGKILL at random moments while three of them run
//! on one SQLite file, starts new ones in their place, and checks what a user relies on:
//! every order completed with each effect once and none undone, no saga in flight or
//! stuck, no transition twice, every queue item finished, and never more than 3 partner
//! calls at once (the queue's limit) by the calls' own start and end times, a killed
//! call ending when its process was killed.
//!
//! On SQLite (the log in the file), and with the `postgres` feature on PostgreSQL too
//! (the log in a throwaway cluster; the effects stay in a SQLite file).
//! `FLEXT_ORDERS_KILL_ROUNDS` sets the number of rounds (default 30);
//! `FLEXT_KILL_SEED` replays a run.

#![cfg(all(feature = "sqlite", feature = "schedules"))]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use flext::saga::{SagaFilter, SagaLog, SagaState, SqliteLog, Transition};

#[path = "common/kill.rs"]
mod kill;
#[path = "common/overlap.rs"]
mod overlap;

use kill::{Rng, env_count, kill_after, seed};

/// Nanoseconds since the Unix epoch.
fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn as_u64(ns: i64) -> u64 {
    u64::try_from(ns).unwrap_or(0)
}

struct Verified {
    orders: usize,
    attempts: usize,
    most: usize,
    ticks: usize,
    violations: Vec<String>,
}

/// Checks the log (through the `SagaLog` API, the same on every backend) and the
/// services' ledger in the SQLite file `ledger`.
async fn verify(log: Arc<dyn SagaLog>, ledger: &Path, killed_at: &HashMap<u32, i64>) -> Verified {
    let conn = rusqlite::Connection::open(ledger).unwrap();
    let mut violations = Vec::new();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    let undone = count("SELECT COUNT(*) FROM effects WHERE undone <> 0");
    if undone != 0 {
        violations.push(format!("{undone} effects undone"));
    }
    for depth in log.queue_depths().await.unwrap() {
        if depth.queued + depth.running != 0 {
            violations.push(format!("queue {} left {depth:?}", depth.queue));
        }
    }
    let sagas = log.list(&SagaFilter::default()).await.unwrap();
    let ids: HashSet<String> = sagas.iter().map(|s| s.id.to_string()).collect();
    let keys: Vec<String> = conn
        .prepare("SELECT key FROM effects")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for key in keys {
        if !ids.contains(key.get(..36).unwrap_or_default()) {
            violations.push(format!("effect {key} without its saga"));
        }
    }
    let (mut orders, mut ticks) = (0, 0);
    let mut tick_times = HashSet::new();
    for summary in &sagas {
        let (id, name) = (summary.id, summary.name.as_str());
        let record = log.load(id).await.unwrap();
        if record.state != SagaState::Completed {
            violations.push(format!(
                "saga {id} ({name}) is {}, held by {}",
                record.state, record.owner
            ));
        }
        let mut completed: BTreeMap<usize, usize> = BTreeMap::new();
        for t in &record.transitions {
            if let Transition::StepCompleted { index, .. } = t {
                *completed.entry(*index).or_default() += 1;
            }
        }
        if completed.values().any(|&n| n > 1) {
            violations.push(format!("saga {id}: a step completed twice: {completed:?}"));
        }
        let effects: Vec<String> = conn
            .prepare("SELECT step FROM effects WHERE key LIKE ?1 || ':%' ORDER BY step")
            .unwrap()
            .query_map([id.to_string()], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected: &[&str] = match name {
            "Order" => {
                orders += 1;
                &["remind", "reserve"]
            }
            "PartnerBooking" => &["call"],
            "Reconcile" => {
                ticks += 1;
                tick_times.insert(record.input["tick_ms"].as_u64());
                &["reconcile"]
            }
            other => {
                violations.push(format!("saga {id} of unknown type {other}"));
                &[]
            }
        };
        if effects != expected {
            violations.push(format!(
                "saga {id} ({name}): effects {effects:?}, expected {expected:?}"
            ));
        }
    }
    if tick_times.len() != ticks {
        violations.push(format!(
            "{ticks} reconciliations for {} ticks",
            tick_times.len()
        ));
    }
    // The partner calls: never more than the queue's limit at once.
    let calls: Vec<(u32, i64, Option<i64>)> = conn
        .prepare("SELECT pid, start_ns, end_ns FROM calls")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut intervals = Vec::new();
    for (pid, start, end) in &calls {
        match end.or_else(|| killed_at.get(pid).copied()) {
            Some(end) => intervals.push((as_u64(*start), as_u64(end))),
            None => violations.push(format!(
                "a call of process {pid} never ended and it was not killed"
            )),
        }
    }
    let most = overlap::most_at_once(&intervals);
    if most > 3 {
        violations.push(format!(
            "{most} partner calls ran at once under a limit of 3"
        ));
    }
    Verified {
        orders,
        attempts: calls.len(),
        most,
        ticks,
        violations,
    }
}

/// The example, built with the features this test was (so that the two soaks build it
/// once).
fn binary() -> std::path::PathBuf {
    if cfg!(feature = "postgres") {
        kill::example_with("durable_orders", &["postgres"])
    } else {
        kill::example("durable_orders")
    }
}

/// Three workers on one log (`log_args` choose it; the effects go to `dir`'s ledger),
/// one killed at random each round and replaced; then a drain, and the checks.
fn soak<F, Fut>(backend: &str, log_args: &[String], connect: F)
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: std::future::Future<Output = Arc<dyn SagaLog>>,
{
    let rounds = env_count("FLEXT_ORDERS_KILL_ROUNDS", 30);
    let seed = seed();
    let mut rng = Rng(seed ^ 0x2545_f491_4f6c_dd1d);
    let binary = binary();
    let dir = std::env::temp_dir().join(format!("flext-orders-kill-{backend}-{seed}"));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("orders.db");
    const ORDERS: u64 = 4;

    let mut spawned = 0;
    let mut worker = || {
        let child = Command::new(&binary)
            .args(["--db", db.to_str().unwrap()])
            .args(log_args)
            .args([
                "--owner",
                &format!("worker-{spawned}"),
                "--orders",
                &ORDERS.to_string(),
                "--start",
                &(spawned * ORDERS).to_string(),
                "--linger-ms",
                "1200",
            ])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join(format!("worker-{spawned}.err"))).unwrap())
            .spawn()
            .expect("the example starts");
        spawned += 1;
        (spawned - 1, child)
    };
    let mut workers = [worker(), worker(), worker()];
    let mut killed_at = HashMap::new();
    let mut killed = 0;
    for _ in 0..rounds {
        let victim = rng.below(3) as usize;
        let (_, child) = &mut workers[victim];
        let pid = child.id();
        if kill_after(child, rng.below(ORDERS * 5)) {
            killed_at.insert(pid, now_ns());
            killed += 1;
        }
        workers[victim] = worker();
    }
    for (n, mut child) in workers {
        let status = child.wait().unwrap();
        let err = std::fs::read_to_string(dir.join(format!("worker-{n}.err"))).unwrap_or_default();
        assert!(status.success(), "worker-{n}, not killed, failed: {err}");
    }
    let out = Command::new(&binary)
        .args(["--db", db.to_str().unwrap()])
        .args(log_args)
        .args([
            "--owner",
            "drain",
            "--orders",
            "0",
            "--drain",
            // At least two of the schedule's ticks, whatever the rounds took.
            "--linger-ms",
            "2500",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let found = rt.block_on(async { verify(connect(db.clone()).await, &db, &killed_at).await });
    println!(
        "durable orders kill rounds on {backend}: {rounds} ({killed} workers killed mid-run), seed {seed}: {} orders completed, {} partner call attempts, at most {} at once (limit 3), {} reconcile ticks, violations {}",
        found.orders,
        found.attempts,
        found.most,
        found.ticks,
        found.violations.len()
    );
    assert!(found.violations.is_empty(), "{:#?}", found.violations);
    // A worker killed before it placed an order never created it: the others are all in.
    assert!(
        found.orders as u64 > spawned * ORDERS / 2,
        "most orders were placed"
    );
    assert!(
        killed > rounds / 2,
        "most rounds killed a worker mid-flight"
    );
    assert!(found.ticks >= 2, "the schedule fired");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
#[cfg(unix)]
fn three_workers_killed_at_random_keep_the_queue_limit_and_lose_nothing() {
    soak("sqlite", &[], |db| async move {
        Arc::new(SqliteLog::open(&db).unwrap()) as Arc<dyn SagaLog>
    });
}

/// The same soak with the saga log in PostgreSQL (a throwaway cluster); the services'
/// ledger stays in a SQLite file.
#[cfg(all(unix, feature = "postgres"))]
#[test]
fn three_workers_on_postgresql_killed_at_random_keep_the_queue_limit_and_lose_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = flext::postgres::TestCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let url = rt.block_on(cluster.fresh_database()).unwrap();
    drop(rt);
    let args = ["--pg".to_owned(), url.clone()];
    soak("postgres", &args, |_| async move {
        let db = flext::postgres::PgDatabase::connect(&url).await.unwrap();
        Arc::new(db.saga_log()) as Arc<dyn SagaLog>
    });
}
