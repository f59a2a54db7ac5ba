//! A four-step saga with trivial steps: run by the runner over the in-memory log and over
//! SQLite, against the same steps called directly and against the raw `rusqlite`
//! commits the log needs, in one run; then with 1, 8 and 64 sagas in flight on one
//! SQLite log at `synchronous = FULL`, where group commit shares each commit, and at
//! `synchronous = NORMAL` in a multi-thread runtime.
//!
//! ```text
//! cargo bench --bench saga
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use flext::prelude::*;
use flext::saga::{MemoryLog, SagaRunner, SqliteLog, Synchronous};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Trivial {
    n: u64,
}

#[saga]
impl Trivial {
    #[saga_step(compensate = undo_a)]
    fn a(&self) -> Result<u64> {
        Ok(self.n + 1)
    }
    fn undo_a(&self, _: &u64) -> Result<()> {
        Ok(())
    }

    #[saga_step(compensate = undo_b)]
    fn b(&self, a: &u64) -> Result<u32> {
        Ok((*a % 1000) as u32)
    }
    fn undo_b(&self, _: &u32) -> Result<()> {
        Ok(())
    }

    #[saga_step(compensate = undo_c)]
    fn c(&self, b: &u32) -> Result<String> {
        Ok(b.to_string())
    }
    fn undo_c(&self, _: &String) -> Result<()> {
        Ok(())
    }

    #[saga_step]
    fn d(&self, c: &str) -> Result<usize> {
        Ok(c.len())
    }
}

fn direct(t: &Trivial) -> Result<usize> {
    let a = t.a()?;
    let b = t.b(&a)?;
    let c = t.c(&b)?;
    t.d(&c)
}

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("flext-bench-{}", flext::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The commits a four-step saga needs, written by hand: one row for the saga, then one
/// per step, each in its own transaction.
fn raw_commits(conn: &mut rusqlite::Connection, n: u64) {
    let id = format!("saga-{n}");
    let tx = conn.transaction().unwrap();
    tx.execute(
        "INSERT INTO sagas (id, state) VALUES (?1, 'running')",
        [&id],
    )
    .unwrap();
    tx.commit().unwrap();
    for step in 0..4 {
        let tx = conn.transaction().unwrap();
        tx.execute(
            "INSERT INTO steps (saga_id, seq, body) VALUES (?1, ?2, '{}')",
            rusqlite::params![id, step],
        )
        .unwrap();
        tx.execute("UPDATE sagas SET state = 'running' WHERE id = ?1", [&id])
            .unwrap();
        tx.commit().unwrap();
    }
}

fn raw_connection(sync: &str) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(temp_db("raw.db")).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync};
         CREATE TABLE sagas (id TEXT PRIMARY KEY, state TEXT NOT NULL);
         CREATE TABLE steps (saga_id TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (saga_id, seq));"
    ))
    .unwrap();
    conn
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let rt = &rt;
    let ctx = Context::new();
    let ctx = &ctx;
    // Times `iters` sagas run one after another by a runner from `make` (built before
    // the clock starts, so that a fresh in-memory log per sample keeps memory flat).
    let runs = |make: fn() -> SagaRunner| {
        move |iters: u64| {
            let runner = make();
            rt.block_on(async {
                let started = Instant::now();
                for n in 0..iters {
                    black_box(runner.run(Trivial { n }, ctx).await.unwrap());
                }
                started.elapsed()
            })
        }
    };

    let mut g = c.benchmark_group("saga/in_memory");
    g.bench_function("direct_calls", |b| {
        b.iter(|| direct(black_box(&Trivial { n: 7 })))
    });
    let mut memory = runs(|| SagaRunner::builder(MemoryLog::new()).build());
    g.bench_function("runner_memory_log", |b| b.iter_custom(&mut memory));
    g.finish();

    let mut g = c.benchmark_group("saga/sqlite");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    for (label, sync, pragma) in [
        ("normal", Synchronous::Normal, "NORMAL"),
        ("full", Synchronous::Full, "FULL"),
    ] {
        let mut raw = raw_connection(pragma);
        let mut n = 0;
        g.bench_function(format!("raw_5_commits_{label}"), |b| {
            b.iter(|| {
                n += 1;
                raw_commits(&mut raw, n);
            })
        });
        let make: fn() -> SagaRunner = match sync {
            Synchronous::Normal => || {
                SagaRunner::builder(
                    SqliteLog::open_with(temp_db("log.db"), Synchronous::Normal).unwrap(),
                )
                .build()
            },
            Synchronous::Full => || {
                SagaRunner::builder(
                    SqliteLog::open_with(temp_db("log.db"), Synchronous::Full).unwrap(),
                )
                .build()
            },
        };
        let mut sqlite = runs(make);
        g.bench_function(format!("runner_sqlite_{label}"), |b| {
            b.iter_custom(&mut sqlite)
        });
    }
    g.finish();
}

/// Group commit: `in_flight` sagas at once, each task running its share back to back, on
/// one `SqliteLog` at `synchronous = FULL`, in a current-thread runtime (the log's writer
/// thread on the other core). Time per saga (5 transitions); the commits per write are
/// printed after each case.
fn group_commit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    in_flight(c, "saga/group_commit_full", Synchronous::Full, &rt);
}

/// The same at `synchronous = NORMAL`, in the runtime `#[tokio::main]` builds (a worker
/// per core, here 2): runs per second at 8 and 64 in flight against 1.
fn concurrency_normal(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    in_flight(c, "saga/in_flight_normal", Synchronous::Normal, &rt);
}

fn in_flight(c: &mut Criterion, group: &str, sync: Synchronous, rt: &tokio::runtime::Runtime) {
    let ctx = Context::new();
    let mut g = c.benchmark_group(group);
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    for in_flight in [1u64, 8, 64] {
        let log = std::sync::Arc::new(SqliteLog::open_with(temp_db("group.db"), sync).unwrap());
        let runner = SagaRunner::builder_shared(log.clone()).build();
        let before = log.stats();
        g.throughput(criterion::Throughput::Elements(5));
        g.bench_function(format!("{in_flight}_in_flight"), |b| {
            b.iter_custom(|iters| {
                let per_task = iters.div_ceil(in_flight);
                let started = Instant::now();
                rt.block_on(async {
                    let mut tasks = tokio::task::JoinSet::new();
                    for t in 0..in_flight {
                        let (runner, ctx) = (runner.clone(), ctx.clone());
                        tasks.spawn(async move {
                            for n in 0..per_task {
                                black_box(
                                    runner
                                        .run(
                                            Trivial {
                                                n: t * per_task + n,
                                            },
                                            &ctx,
                                        )
                                        .await
                                        .unwrap(),
                                );
                            }
                        });
                    }
                    while let Some(done) = tasks.join_next().await {
                        done.unwrap();
                    }
                });
                // Scaled to `iters` sagas when the tasks ran a few more.
                started
                    .elapsed()
                    .mul_f64(iters as f64 / (per_task * in_flight) as f64)
            })
        });
        let after = log.stats();
        let (commits, writes) = (after.commits - before.commits, after.writes - before.writes);
        eprintln!(
            "{group}/{in_flight}_in_flight: {commits} commits for {writes} writes = {:.3} commits per write",
            commits as f64 / writes.max(1) as f64
        );
    }
    g.finish();
}

criterion_group!(benches, bench, group_commit, concurrency_normal);
criterion_main!(benches);
