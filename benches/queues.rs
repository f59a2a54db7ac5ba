//! Queue dispatch throughput: `FLEXT_QUEUE_SAGAS` one-step sagas (default 2,000) run
//! through a queue limited to 10 at a time, against the same sagas through a queue
//! without a limit, and against starting them directly (`runner.run_with_id`, all at
//! once: no queue), each on a fresh SQLite log (`synchronous = NORMAL`) in one process
//! with one queue loop. The step does no work of its own, so the figures are the
//! queue's own cost: an enqueue (one write), a dispatch pass (one write that counts,
//! picks and claims), and the saga's creation-less run (one transition).
//!
//! ```text
//! cargo bench --bench queues
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use flext::prelude::*;
use flext::saga::{Enqueue, Queue, SagaLog, SagaRunner, SqliteLog, Synchronous};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Call {
    order: u64,
}

#[saga]
impl Call {
    #[saga_step]
    async fn call(&self) -> Result<u64> {
        Ok(self.order)
    }
}

fn runner(dir: &std::path::Path, name: &str) -> (SagaRunner, Arc<dyn SagaLog>) {
    let log: Arc<dyn SagaLog> = Arc::new(
        SqliteLog::open_with(dir.join(format!("{name}.db")), Synchronous::Normal).unwrap(),
    );
    (SagaRunner::builder_shared(log.clone()).build(), log)
}

/// Enqueues `n` calls and runs them through `queue`; (enqueue time, run time).
async fn through(
    runner: &SagaRunner,
    log: &Arc<dyn SagaLog>,
    queue: Queue,
    n: u64,
) -> (Duration, Duration) {
    let started = Instant::now();
    for order in 0..n {
        runner
            .enqueue(
                &queue,
                flext::Uuid::new_v4(),
                Call { order },
                Enqueue::default(),
                &Context::new(),
            )
            .await
            .unwrap();
    }
    let enqueued = started.elapsed();
    let started = Instant::now();
    let worker = runner.spawn_queue(queue.clone().poll_ms(1));
    loop {
        let open = log
            .queue_depths()
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.queue == queue.name())
            .map_or(0, |d| d.queued + d.running);
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let ran = started.elapsed();
    worker.shutdown().await;
    (enqueued, ran)
}

fn per_second(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let n: u64 = std::env::var("FLEXT_QUEUE_SAGAS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let dir = std::env::temp_dir().join(format!("flext-bench-queues-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // No queue: every saga started at once.
        let (direct, _) = runner(&dir, "direct");
        let direct = Arc::new(direct);
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for order in 0..n {
            let runner = direct.clone();
            tasks.spawn(async move {
                runner
                    .run_with_id(flext::Uuid::new_v4(), Call { order }, &Context::new())
                    .await
                    .unwrap();
            });
        }
        while tasks.join_next().await.is_some() {}
        let direct = started.elapsed();

        let (unlimited, log) = runner(&dir, "unlimited");
        let (enqueue_unlimited, unlimited) =
            through(&unlimited, &log, Queue::new("calls").unwrap(), n).await;
        let (limited, log) = runner(&dir, "limited");
        let (enqueue_limited, limited) =
            through(&limited, &log, Queue::new("calls").unwrap().limit(10), n).await;

        println!("queues: {n} one-step sagas on SQLite (NORMAL), one process, one queue loop");
        println!(
            "  started directly (no queue):  {:>8.0} sagas/s",
            per_second(n, direct)
        );
        println!(
            "  queue without a limit:        {:>8.0} sagas/s (enqueue {:.0} µs each)",
            per_second(n, unlimited),
            enqueue_unlimited.as_secs_f64() * 1e6 / n as f64
        );
        println!(
            "  queue, limit 10:              {:>8.0} sagas/s (enqueue {:.0} µs each)",
            per_second(n, limited),
            enqueue_limited.as_secs_f64() * 1e6 / n as f64
        );
        println!(
            "  limit 10 / unlimited: {:.2}x; unlimited / direct: {:.2}x",
            per_second(n, limited) / per_second(n, unlimited),
            per_second(n, unlimited) / per_second(n, direct)
        );
    });
    std::fs::remove_dir_all(&dir).ok();
}
