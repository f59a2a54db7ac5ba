//! A signal's latency: from `runner.signal` to the signal step running in the saga it
//! was sent to, on one SQLite log (`synchronous = NORMAL`), through the sending runner's
//! recovery loop (its period is an hour, so every wake-up is the send's), against the
//! baseline of the same runner running a one-step saga to its end (`runner.run`: the
//! creation and one transition).
//!
//! ```text
//! cargo bench --bench signals
//! ```
//!
//! Also prints p50 and p99 over `FLEXT_SIGNALS` sends (default 1,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use flext::prelude::*;
use flext::saga::{SagaOutcome, SagaRunner, Signal, SqliteLog, Synchronous};
use serde::{Deserialize, Serialize};

/// Wakes the bench when a signal step ran.
#[derive(Default)]
struct Arrived(tokio::sync::Notify);

#[derive(Serialize, Deserialize)]
struct Paid {
    cents: u64,
}

#[derive(Serialize, Deserialize)]
struct Await {
    order: u64,
}

#[saga]
impl Await {
    #[saga_step]
    async fn place(&self) -> Result<u64> {
        Ok(self.order)
    }

    #[saga_step(signal, wait_ms = 3_600_000)]
    async fn payment(
        &self,
        _order: &u64,
        paid: Signal<Paid>,
        arrived: State<Arrived>,
    ) -> Result<u64> {
        let cents = paid.received()?.cents;
        arrived.0.notify_one();
        Ok(cents)
    }
}

#[derive(Serialize, Deserialize)]
struct OneStep {
    order: u64,
}

#[saga]
impl OneStep {
    #[saga_step]
    async fn place(&self) -> Result<u64> {
        Ok(self.order)
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("flext-bench-signals-{}", flext::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let arrived = Arc::new(Arrived::default());
    let runner =
        SagaRunner::builder(SqliteLog::open_with(dir.join("log.db"), Synchronous::Normal).unwrap())
            .shared_state(arrived.clone())
            .build();
    let ctx = Context::new();
    let recovery = rt.block_on(async { runner.spawn_recovery(Duration::from_secs(3_600)) });

    // One send, timed from the call to the step: the saga is put to wait untimed.
    let send = |order: u64| -> Duration {
        rt.block_on(async {
            let outcome = runner.run(Await { order }, &ctx).await.unwrap();
            assert!(matches!(outcome, SagaOutcome::Waiting { .. }));
            let id = outcome.saga_id();
            let started = Instant::now();
            runner
                .signal::<Await, _>(id, &format!("evt-{order}"), &Paid { cents: order })
                .await
                .unwrap();
            arrived.0.notified().await;
            started.elapsed()
        })
    };

    let mut g = c.benchmark_group("signals/sqlite");
    let mut order = 0;
    g.bench_function("send_to_step", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    order += 1;
                    send(order)
                })
                .sum()
        })
    });
    g.bench_function("baseline_one_step_saga", |b| {
        b.iter(|| {
            order += 1;
            rt.block_on(runner.run(OneStep { order }, &ctx)).unwrap()
        })
    });
    g.finish();

    let n: usize = std::env::var("FLEXT_SIGNALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let mut lags: Vec<Duration> = (0..n)
        .map(|_| {
            order += 1;
            send(order)
        })
        .collect();
    lags.sort_unstable();
    let pct = |p: f64| lags[((lags.len() as f64 * p) as usize).min(lags.len() - 1)];
    println!(
        "signals: send to step over {n} sends: p50 {:.0} µs, p99 {:.0} µs",
        pct(0.50).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6
    );
    rt.block_on(recovery.shutdown());
    drop(runner);
    std::fs::remove_dir_all(&dir).ok();
}

criterion_group!(benches, bench);
criterion_main!(benches);
