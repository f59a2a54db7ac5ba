//! Durable timers at scale: 100,000 sagas asleep at a `#[saga_step(sleep)]` step in one
//! SQLite log (`synchronous = NORMAL`) and, with the `postgres` feature, in one
//! PostgreSQL database (a throwaway cluster that syncs its commits, or `DATABASE_URL`).
//! Measures what a recovery pass costs when none of them is due (every pass of every
//! runner's recovery loop pays it), the storage per sleeping saga, the worker's resident
//! memory before and after putting them to sleep, and the wake-up lag of 1,000 sagas due
//! at once under a recovery loop every 50 ms.
//!
//! ```text
//! cargo bench --bench timers
//! cargo bench --features postgres --bench timers
//! ```
//!
//! `FLEXT_SLEEPING` sets the number of sleeping sagas (default 100,000). On PostgreSQL
//! they are put to sleep by 32 tasks at once (one at a time, each of the 3 commits would
//! wait for its own `fsync`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use flext::prelude::*;
use flext::saga::{SagaOutcome, SagaRunner, SqliteLog, Synchronous, now_ms};
use serde::{Deserialize, Serialize};

/// When each woken saga's last step ran, in milliseconds since the Unix epoch, with the
/// time it was due.
#[derive(Default)]
struct Woken(Mutex<Vec<(u64, u64)>>);

#[derive(Serialize, Deserialize)]
struct Nap {
    /// Milliseconds since the Unix epoch at which it wakes.
    at_ms: u64,
}

#[saga]
impl Nap {
    #[saga_step]
    async fn start(&self) -> Result<u64> {
        Ok(self.at_ms)
    }

    #[saga_step(sleep)]
    async fn wait(&self, at: &u64) -> Result<Duration> {
        Ok(Duration::from_millis(at.saturating_sub(now_ms())))
    }

    #[saga_step]
    async fn woke(&self, at: &u64, woken: State<Woken>) -> Result<()> {
        woken.0.lock().unwrap().push((*at, now_ms()));
        Ok(())
    }
}

fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

/// Puts `n` sagas to sleep a month away on `runner`, `tasks` at a time, then measures
/// an idle recovery pass and the lag of a burst of 1,000 due at once; `storage` gives
/// the bytes the log takes.
fn measure(
    c: &mut Criterion,
    label: &str,
    rt: &tokio::runtime::Runtime,
    runner: &SagaRunner,
    woken: &Arc<Woken>,
    tasks: u64,
    storage: &dyn Fn() -> u64,
) {
    let n: u64 = std::env::var("FLEXT_SLEEPING")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let before_kib = resident_kib();
    let far = now_ms() + 30 * 24 * 3600 * 1000;
    let started = Instant::now();
    rt.block_on(async {
        let per = n.div_ceil(tasks);
        let all: Vec<_> = (0..tasks)
            .map(|_| {
                let runner = runner.clone();
                tokio::spawn(async move {
                    for _ in 0..per {
                        let outcome = runner
                            .run(Nap { at_ms: far }, &Context::new())
                            .await
                            .unwrap();
                        assert!(matches!(outcome, SagaOutcome::Sleeping { .. }));
                    }
                })
            })
            .collect();
        for task in all {
            task.await.unwrap();
        }
    });
    let put_to_sleep = started.elapsed();
    let after_kib = resident_kib();
    let bytes = storage();
    println!(
        "timers ({label}): {n} sagas put to sleep in {:.1} s ({:.1} µs each, {tasks} at a time); {} bytes per sleeping saga; resident memory {} KiB before, {} KiB after",
        put_to_sleep.as_secs_f64(),
        put_to_sleep.as_secs_f64() * 1e6 / n as f64,
        bytes / n.max(1),
        before_kib,
        after_kib
    );

    let mut g = c.benchmark_group(format!("timers/{label}"));
    g.sample_size(20);
    g.bench_function(format!("recovery_pass_none_due_{n}_sleeping"), |b| {
        b.iter(|| {
            let report = rt.block_on(runner.recover()).unwrap();
            assert!(report.is_empty());
        })
    });
    g.finish();

    // 1,000 sagas due in one second, a recovery loop every 50 ms.
    woken.0.lock().unwrap().clear();
    let due = now_ms() + 1_000;
    rt.block_on(async {
        for _ in 0..1_000 {
            runner
                .run(Nap { at_ms: due }, &Context::new())
                .await
                .unwrap();
        }
        let recovery = runner.spawn_recovery(Duration::from_millis(50));
        while woken.0.lock().unwrap().len() < 1_000 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        recovery.shutdown().await;
    });
    let mut lags: Vec<u64> = woken
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(at, ran)| ran.saturating_sub(*at))
        .collect();
    lags.sort_unstable();
    let pct = |p: f64| lags[((lags.len() as f64 * p) as usize).min(lags.len() - 1)];
    println!(
        "timers ({label}): wake-up lag of 1,000 sagas due at once beside {n} sleeping, recovery every 50 ms: p50 {} ms, p99 {} ms, max {} ms",
        pct(0.50),
        pct(0.99),
        lags[lags.len() - 1]
    );
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("flext-bench-timers-{}", flext::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("log.db");
    let woken = Arc::new(Woken::default());
    let runner = SagaRunner::builder(SqliteLog::open_with(&path, Synchronous::Normal).unwrap())
        .shared_state(woken.clone())
        .build();
    let storage = || {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        std::fs::metadata(&path).unwrap().len()
    };
    measure(c, "sqlite", &rt, &runner, &woken, 1, &storage);
    drop(runner);
    std::fs::remove_dir_all(&dir).ok();

    #[cfg(feature = "postgres")]
    {
        use flext::postgres::{PgDatabase, TestCluster};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let cluster = TestCluster::start_durable().unwrap_or_else(|e| panic!("{e}"));
        let db = rt.block_on(async {
            let url = cluster.fresh_database().await.unwrap();
            PgDatabase::connect(&url).await.unwrap()
        });
        let woken = Arc::new(Woken::default());
        let runner = SagaRunner::builder(db.saga_log())
            .shared_state(woken.clone())
            .build();
        let storage = || {
            rt.block_on(async {
                let client = db.client().await.unwrap();
                client.batch_execute("VACUUM ANALYZE").await.unwrap();
                let row = client
                    .query_one(
                        "SELECT pg_total_relation_size('flext_sagas') + pg_total_relation_size('flext_saga_transitions')",
                        &[],
                    )
                    .await
                    .unwrap();
                u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)
            })
        };
        measure(c, "postgres", &rt, &runner, &woken, 32, &storage);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
