//! The typed dispatch path allocates nothing per message: a synchronous handler, no
//! middleware, statistics off.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use flext::prelude::*;

/// Counts the allocations made on the current thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: forwards the caller's layout to the system allocator unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with this layout, in `alloc` above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[command(output = u64)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Add {
    a: u64,
    b: u64,
}

#[command_handler]
fn add(cmd: Add) -> Result<u64> {
    Ok(cmd.a + cmd.b)
}

#[command(output = u64)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct AddWithContext {
    a: u64,
}

#[command_handler]
fn add_with_context(cmd: AddWithContext, ctx: &Context) -> Result<u64> {
    Ok(cmd.a + u64::from(ctx.causation_id().is_some()))
}

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn typed_send_allocates_nothing_per_message() {
    // The counter counts.
    assert_eq!(
        allocations_during(|| drop(std::hint::black_box(Box::new(7)))),
        1
    );

    let bus = Bus::builder().record_stats(false).build().unwrap();
    let handle = bus.command_handle::<Add>().unwrap();
    let ctx = Context::new();
    // Warm up whatever is initialised once (the UUID generator's thread-local state).
    block_on(async {
        bus.send(Add { a: 1, b: 1 }, &ctx).await.unwrap();
        bus.send(AddWithContext { a: 1 }, &ctx).await.unwrap();
    });
    let mut sum = 0;
    let n = allocations_during(|| {
        block_on(async {
            for i in 0..1000 {
                sum += bus.send(Add { a: i, b: 1 }, &ctx).await.unwrap();
                sum += handle.call(Add { a: i, b: 1 }, &ctx).await.unwrap();
                // A handler that takes the context gets a child context: a new id and
                // `Arc` clones, still no allocation.
                sum += bus.send(AddWithContext { a: i }, &ctx).await.unwrap();
            }
        })
    });
    assert_eq!(n, 0, "allocations over 3,000 dispatches");
    assert!(sum > 0);
}

/// Polls a future that never waits to completion on this thread, without a runtime, so
/// that only the bus's allocations are counted.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context as TaskContext, Poll, Waker};
    let mut f = std::pin::pin!(f);
    let mut cx = TaskContext::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[test]
fn interceptors_allocate_nothing_per_message() {
    use flext::middleware::{Authorize, Metrics, Tracing, Validation};

    // Four interceptors: `Metrics` keeps its handles in a memo made on the first
    // dispatch, `Tracing` has no subscriber to build a span for. Statistics are off: their
    // latency histogram grows (allocates) whenever a sampled dispatch is slower than any
    // before it, which depends on how the machine schedules this thread, not on the
    // message.
    let bus = Bus::builder()
        .record_stats(false)
        .middleware(Tracing)
        .middleware(Metrics)
        .middleware(Authorize::new(|_, _| true))
        .middleware(Validation)
        .build()
        .unwrap();
    let ctx = Context::new();
    block_on(async {
        bus.send(Add { a: 1, b: 1 }, &ctx).await.unwrap();
        bus.send(AddWithContext { a: 1 }, &ctx).await.unwrap();
    });
    let mut sum = 0;
    let n = allocations_during(|| {
        block_on(async {
            for i in 0..1000 {
                sum += bus.send(Add { a: i, b: 1 }, &ctx).await.unwrap();
                sum += bus.send(AddWithContext { a: i }, &ctx).await.unwrap();
            }
        })
    });
    assert_eq!(n, 0, "allocations over 2,000 intercepted dispatches");
    assert_eq!(sum, (0..1000u64).map(|i| 2 * i + 2).sum::<u64>());
}
