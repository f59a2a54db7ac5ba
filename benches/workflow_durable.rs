//! Durable workflows against sagas on the same log: a four-node chain recorded by
//! `run_workflow_durable` against a four-step saga run by the same runner, per node and
//! per step, on the in-memory log and on SQLite at `synchronous = NORMAL`; then eight
//! independent nodes (they settle together: one write for their starts, one for their
//! completions) against eight chained nodes (one write each), at `synchronous = FULL`,
//! where each write is an `fsync`.
//!
//! ```text
//! cargo bench --bench workflow_durable
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use flext::prelude::*;
use flext::saga::{MemoryLog, SagaRunner, SqliteLog, Synchronous};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Steps {
    n: u64,
}

#[saga]
impl Steps {
    #[saga_step]
    async fn a(&self) -> Result<u64> {
        Ok(self.n + 1)
    }
    #[saga_step]
    async fn b(&self, a: &u64) -> Result<u64> {
        Ok(a + 1)
    }
    #[saga_step]
    async fn c(&self, b: &u64) -> Result<u64> {
        Ok(b + 1)
    }
    #[saga_step]
    async fn d(&self, c: &u64) -> Result<u64> {
        Ok(c + 1)
    }
}

#[derive(Serialize, Deserialize)]
struct Chain4 {
    n: u64,
}

#[workflow(durable)]
impl Chain4 {
    #[workflow_step]
    async fn a(&self) -> Result<u64> {
        Ok(self.n + 1)
    }
    #[workflow_step(depends_on = [a])]
    async fn b(&self, a: &u64) -> Result<u64> {
        Ok(a + 1)
    }
    #[workflow_step(depends_on = [b])]
    async fn c(&self, b: &u64) -> Result<u64> {
        Ok(b + 1)
    }
    #[workflow_step(depends_on = [c])]
    async fn d(&self, c: &u64) -> Result<u64> {
        Ok(c + 1)
    }
}

#[derive(Serialize, Deserialize)]
struct Wide8 {
    n: u64,
}

#[workflow(durable)]
impl Wide8 {
    #[workflow_step]
    async fn n1(&self) -> Result<u64> {
        Ok(self.n + 1)
    }
    #[workflow_step]
    async fn n2(&self) -> Result<u64> {
        Ok(self.n + 2)
    }
    #[workflow_step]
    async fn n3(&self) -> Result<u64> {
        Ok(self.n + 3)
    }
    #[workflow_step]
    async fn n4(&self) -> Result<u64> {
        Ok(self.n + 4)
    }
    #[workflow_step]
    async fn n5(&self) -> Result<u64> {
        Ok(self.n + 5)
    }
    #[workflow_step]
    async fn n6(&self) -> Result<u64> {
        Ok(self.n + 6)
    }
    #[workflow_step]
    async fn n7(&self) -> Result<u64> {
        Ok(self.n + 7)
    }
    #[workflow_step]
    async fn n8(&self) -> Result<u64> {
        Ok(self.n + 8)
    }
}

#[derive(Serialize, Deserialize)]
struct Chain8 {
    n: u64,
}

#[workflow(durable)]
impl Chain8 {
    #[workflow_step]
    async fn n1(&self) -> Result<u64> {
        Ok(self.n + 1)
    }
    #[workflow_step(depends_on = [n1])]
    async fn n2(&self, v: &u64) -> Result<u64> {
        Ok(v + 2)
    }
    #[workflow_step(depends_on = [n2])]
    async fn n3(&self, v: &u64) -> Result<u64> {
        Ok(v + 3)
    }
    #[workflow_step(depends_on = [n3])]
    async fn n4(&self, v: &u64) -> Result<u64> {
        Ok(v + 4)
    }
    #[workflow_step(depends_on = [n4])]
    async fn n5(&self, v: &u64) -> Result<u64> {
        Ok(v + 5)
    }
    #[workflow_step(depends_on = [n5])]
    async fn n6(&self, v: &u64) -> Result<u64> {
        Ok(v + 6)
    }
    #[workflow_step(depends_on = [n6])]
    async fn n7(&self, v: &u64) -> Result<u64> {
        Ok(v + 7)
    }
    #[workflow_step(depends_on = [n7])]
    async fn n8(&self, v: &u64) -> Result<u64> {
        Ok(v + 8)
    }
}

fn temp_db() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("flext-bench-{}", flext::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("log.db")
}

fn memory() -> SagaRunner {
    SagaRunner::builder(MemoryLog::new()).build()
}

fn sqlite(sync: Synchronous) -> SagaRunner {
    SagaRunner::builder(SqliteLog::open_with(temp_db(), sync).unwrap()).build()
}

/// Times `iters` runs of `run`, one after another, on a runner from `make` (built before
/// the clock starts).
fn timed<F>(
    rt: &tokio::runtime::Runtime,
    make: impl Fn() -> SagaRunner,
    run: impl Fn(SagaRunner, u64) -> F,
) -> impl FnMut(u64) -> Duration
where
    F: std::future::Future<Output = ()>,
{
    move |iters| {
        let runner = make();
        rt.block_on(async {
            let started = Instant::now();
            for n in 0..iters {
                run(runner.clone(), n).await;
            }
            started.elapsed()
        })
    }
}

fn per_node(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let ctx = Context::new();
    let ctx = &ctx;
    let saga = |runner: SagaRunner, n| async move {
        black_box(runner.run(Steps { n }, ctx).await.unwrap());
    };
    let workflow = |runner: SagaRunner, n| async move {
        black_box(
            runner
                .run_workflow_durable(Chain4 { n }, ctx)
                .await
                .unwrap(),
        );
    };

    let mut g = c.benchmark_group("workflow_durable/memory");
    g.bench_function("saga_4_steps", |b| b.iter_custom(timed(&rt, memory, saga)));
    g.bench_function("workflow_4_nodes", |b| {
        b.iter_custom(timed(&rt, memory, workflow))
    });
    g.finish();

    let mut g = c.benchmark_group("workflow_durable/sqlite_normal");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    let normal = || sqlite(Synchronous::Normal);
    g.bench_function("saga_4_steps", |b| b.iter_custom(timed(&rt, normal, saga)));
    g.bench_function("workflow_4_nodes", |b| {
        b.iter_custom(timed(&rt, normal, workflow))
    });
    g.finish();
}

fn together(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let ctx = Context::new();
    let ctx = &ctx;
    let mut g = c.benchmark_group("workflow_durable/sqlite_full");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    let full = || sqlite(Synchronous::Full);
    g.bench_function("8_independent_nodes", |b| {
        b.iter_custom(timed(&rt, full, |runner, n| async move {
            black_box(runner.run_workflow_durable(Wide8 { n }, ctx).await.unwrap());
        }))
    });
    g.bench_function("8_chained_nodes", |b| {
        b.iter_custom(timed(&rt, full, |runner, n| async move {
            black_box(
                runner
                    .run_workflow_durable(Chain8 { n }, ctx)
                    .await
                    .unwrap(),
            );
        }))
    });
    g.finish();
}

criterion_group!(benches, per_node, together);
criterion_main!(benches);
