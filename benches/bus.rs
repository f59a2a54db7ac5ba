//! The bus against calling the handler yourself, in one run.
//!
//! ```text
//! cargo bench --bench bus
//! ```
//!
//! Every bus figure is amortised over many dispatches awaited in one loop inside one
//! current-thread tokio runtime (`iter_custom` + one `block_on` per sample), the way a
//! server task dispatches: the bus itself never calls `block_on`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use flext::middleware::{
    Authorize, Dispatch, Interceptor, Metrics, Middleware, Next, Output, Retry, Timeout, Tracing,
    Validation,
};
use flext::prelude::*;
use serde::{Deserialize, Serialize};

#[command(output = u64, validate)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Add {
    a: u64,
    b: u64,
}

#[business_rules]
impl Add {
    #[business_rule(code = "add.no_overflow")]
    fn no_overflow(&self) -> RuleResult {
        ensure!(self.a.checked_add(self.b).is_some(), "the sum overflows")
    }
}

/// The trivial sync handler every figure dispatches to.
#[command_handler]
fn add(cmd: Add) -> Result<u64> {
    Ok(cmd.a.wrapping_add(cmd.b))
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tick(u64);

#[event_handler]
fn tick_once(e: Tick) -> Result<()> {
    black_box(e.0);
    Ok(())
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Fanout(u64);

macro_rules! subscribers {
    ($($name:ident),*) => {$(
        #[event_handler]
        fn $name(e: Fanout) -> Result<()> {
            black_box(e.0);
            Ok(())
        }
    )*};
}
subscribers!(s0, s1, s2, s3, s4, s5, s6, s7, s8, s9);

/// An interceptor that does nothing before or after: what the loop itself costs.
struct Noop;

impl Interceptor for Noop {}

/// A wrapping middleware that only passes the dispatch on: what the chain costs.
struct NoopWrap;

impl Middleware for NoopWrap {
    fn handle<'a>(
        &'a self,
        _: &'a Dispatch<'a>,
        ctx: Context,
        next: Next<'a>,
    ) -> flext::BoxFuture<'a, Result<Output>> {
        next.run(ctx)
    }
}

/// Runs `dispatch` `iters` times in one runtime and returns the total time.
fn amortised<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, mut dispatch: F) -> Duration
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future,
{
    rt.block_on(async {
        let started = Instant::now();
        for i in 0..iters {
            black_box(dispatch(i).await);
        }
        started.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let ctx = Context::new();
    let bare = Bus::builder().record_stats(false).build().unwrap();
    let handle = bare.command_handle::<Add>().unwrap();
    assert_eq!(rt.block_on(bare.send(Add { a: 2, b: 3 }, &ctx)).unwrap(), 5);

    let mut g = c.benchmark_group("bus/send");
    g.bench_function("direct_call", |b| {
        b.iter(|| add(black_box(Add { a: 1, b: 2 })))
    });
    let dyn_fn: &dyn Fn(Add) -> Result<u64> = &add;
    g.bench_function("dyn_fn", |b| {
        b.iter(|| black_box(dyn_fn)(black_box(Add { a: 1, b: 2 })))
    });
    // The loop the bus figures run in, around a direct call: what awaiting costs.
    g.bench_function("direct_call_awaited", |b| {
        b.iter_custom(|iters| amortised(&rt, iters, |i| async move { add(Add { a: i, b: 2 }) }))
    });
    g.bench_function("typed_send", |b| {
        b.iter_custom(|iters| amortised(&rt, iters, |i| bare.send(Add { a: i, b: 2 }, &ctx)))
    });
    g.bench_function("resolved_handle", |b| {
        b.iter_custom(|iters| amortised(&rt, iters, |i| handle.call(Add { a: i, b: 2 }, &ctx)))
    });
    g.bench_function("send_local", |b| {
        b.iter_custom(|iters| amortised(&rt, iters, |i| bare.send_local(Add { a: i, b: 2 }, &ctx)))
    });
    let json = r#"{"a": 1, "b": 2}"#;
    g.bench_function("send_json", |b| {
        b.iter_custom(|iters| amortised(&rt, iters, |_| bare.send_json("Add", json, &ctx)))
    });
    g.finish();

    let mut g = c.benchmark_group("bus/middleware");
    let stats = Bus::builder().build().unwrap();
    g.bench_function("stats", |b| {
        b.iter_custom(|iters| amortised(&rt, iters, |i| stats.send(Add { a: i, b: 2 }, &ctx)))
    });
    let one = |name: &str, bus: Bus, g: &mut criterion::BenchmarkGroup<'_, _>| {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| amortised(&rt, iters, |i| bus.send(Add { a: i, b: 2 }, &ctx)))
        });
    };
    let builder = || Bus::builder().record_stats(false);
    one(
        "tracing",
        builder().middleware(Tracing).build().unwrap(),
        &mut g,
    );
    one(
        "metrics",
        builder().middleware(Metrics).build().unwrap(),
        &mut g,
    );
    one(
        "timeout",
        builder()
            .middleware(Timeout::default_after(Duration::from_secs(5)))
            .build()
            .unwrap(),
        &mut g,
    );
    one(
        "retry",
        builder().middleware(Retry::new(3)).build().unwrap(),
        &mut g,
    );
    one(
        "authorize",
        builder()
            .middleware(Authorize::new(|_, _| true))
            .build()
            .unwrap(),
        &mut g,
    );
    one(
        "validation",
        builder().middleware(Validation).build().unwrap(),
        &mut g,
    );
    one(
        "five_noop",
        builder()
            .interceptor(Noop)
            .interceptor(Noop)
            .interceptor(Noop)
            .interceptor(Noop)
            .interceptor(Noop)
            .build()
            .unwrap(),
        &mut g,
    );
    one(
        "five_noop_wrapping",
        builder()
            .middleware(NoopWrap)
            .middleware(NoopWrap)
            .middleware(NoopWrap)
            .middleware(NoopWrap)
            .middleware(NoopWrap)
            .build()
            .unwrap(),
        &mut g,
    );
    g.finish();

    let mut g = c.benchmark_group("bus/publish");
    g.bench_function("1_subscriber", |b| {
        b.iter_custom(|iters| amortised(&rt, iters, |i| bare.publish(Tick(i), &ctx)))
    });
    g.bench_function("10_subscribers", |b| {
        b.iter_custom(|iters| amortised(&rt, iters, |i| bare.publish(Fanout(i), &ctx)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
