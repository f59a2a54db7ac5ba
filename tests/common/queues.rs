//! Queues in the `SagaLog` conformance suite: a queue with a limit of 3 worked by three
//! processes never runs more than 3 at once (by the effects' own start and end times)
//! and runs each saga once; waiting sagas start highest priority first, oldest first
//! within one; an enqueue is idempotent by saga id; a partition key's limit and a rate
//! limit hold; the queue's depth, running count and oldest item are reported.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flext::Uuid;
use flext::prelude::*;
use flext::saga::{Enqueue, Enqueued, Queue, SagaLog, SagaOutcome, SagaRunner};
use serde::{Deserialize, Serialize};

#[path = "overlap.rs"]
mod overlap;

/// What the partner calls did: each call's order, start and end (nanoseconds since the
/// Unix epoch, read by the call itself: a millisecond would not order a call that ends
/// and the next that starts).
#[derive(Default)]
pub struct Partner {
    calls: Mutex<Vec<(String, u64, u64)>>,
    running: AtomicU32,
}

impl Partner {
    fn calls(&self) -> Vec<(String, u64, u64)> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[derive(Serialize, Deserialize)]
pub struct PartnerCall {
    pub order: String,
    pub call_ms: u64,
}

#[saga]
impl PartnerCall {
    #[saga_step]
    async fn book(&self, partner: State<Partner>) -> Result<String> {
        let start = now_ns();
        partner.running.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(self.call_ms)).await;
        partner.running.fetch_sub(1, Ordering::SeqCst);
        let end = now_ns();
        partner
            .calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((self.order.clone(), start, end));
        Ok(format!("booked {}", self.order))
    }
}

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn runner(log: Arc<dyn SagaLog>, partner: &Arc<Partner>, name: &str) -> SagaRunner {
    SagaRunner::builder_shared(log)
        .owner(name)
        .shared_state(partner.clone())
        .build()
}

async fn enqueue(runner: &SagaRunner, queue: &Queue, order: &str, how: Enqueue) -> Uuid {
    let id = Uuid::new_v4();
    let call = PartnerCall {
        order: order.into(),
        call_ms: 0,
    };
    let enqueued = runner
        .enqueue(queue, id, call, how, &Context::new())
        .await
        .unwrap();
    assert_eq!(enqueued, Enqueued::Queued);
    id
}

/// The orders a pass of `runner` on `queue` ran, in the order they were claimed.
async fn pass(runner: &SagaRunner, queue: &Queue) -> Vec<String> {
    runner
        .dispatch(queue)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, outcome)| match outcome.unwrap() {
            SagaOutcome::Completed { output, .. } => output
                .as_str()
                .unwrap_or_default()
                .trim_start_matches("booked ")
                .to_owned(),
            other => panic!("{other:?}"),
        })
        .collect()
}

/// `connect` opens another process's connection to the same store.
pub async fn queue_contract<F, Fut>(connect: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn SagaLog>>,
{
    limit_contract(&connect).await;

    let partner = Arc::new(Partner::default());
    let process = runner(connect().await, &partner, "queues");

    // Priorities, oldest first within one; a second enqueue of an id changes nothing.
    let queue = Queue::new(format!("order-{}", Uuid::new_v4()))
        .unwrap()
        .limit(1);
    let first = enqueue(&process, &queue, "a", Enqueue::default()).await;
    enqueue(&process, &queue, "b", Enqueue::default().priority(5)).await;
    enqueue(&process, &queue, "c", Enqueue::default()).await;
    let again = PartnerCall {
        order: "a".into(),
        call_ms: 0,
    };
    let twice = process
        .enqueue(&queue, first, again, Enqueue::default(), &Context::new())
        .await
        .unwrap();
    assert_eq!(twice, Enqueued::Duplicate);
    let other = PartnerCall {
        order: "z".into(),
        call_ms: 0,
    };
    let reused = process
        .enqueue(&queue, first, other, Enqueue::default(), &Context::new())
        .await
        .unwrap_err();
    assert_eq!(reused.code(), flext::codes::SAGA_ID_REUSED);
    let depth = process
        .queue_depths()
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.queue == queue.name())
        .unwrap();
    assert_eq!((depth.queued, depth.running), (3, 0));
    assert!(depth.oldest_queued_ms.is_some());
    let mut order = Vec::new();
    for _ in 0..4 {
        order.extend(pass(&process, &queue).await);
    }
    assert_eq!(
        order,
        ["b", "a", "c"],
        "highest priority first, then oldest"
    );

    // One at a time per partition key; sagas without a key are not held by it.
    let queue = Queue::new(format!("customers-{}", Uuid::new_v4()))
        .unwrap()
        .partition_limit(1);
    for (order, key) in [("c1-a", "c1"), ("c1-b", "c1"), ("c2-a", "c2"), ("none", "")] {
        enqueue(&process, &queue, order, Enqueue::default().partition(key)).await;
    }
    // A loop's first pass claims the one it may start per key; none of them finished
    // before the others were picked, so each key's second waits.
    let mut passes = Vec::new();
    for _ in 0..3 {
        let mut ran = pass(&process, &queue).await;
        ran.sort();
        passes.push(ran);
    }
    assert_eq!(
        passes,
        [
            vec!["c1-a", "c2-a", "none"],
            vec!["c1-b"],
            Vec::<&str>::new()
        ]
    );

    // At most 2 starts a minute.
    let queue = Queue::new(format!("rated-{}", Uuid::new_v4()))
        .unwrap()
        .rate_limit(2, 60_000);
    for order in ["r1", "r2", "r3"] {
        enqueue(&process, &queue, order, Enqueue::default()).await;
    }
    assert_eq!(pass(&process, &queue).await, ["r1", "r2"]);
    assert!(
        pass(&process, &queue).await.is_empty(),
        "the third waits for the minute"
    );
    let looping = process.spawn_queue(queue.clone().poll_ms(10));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let depth = looping.depth();
    assert_eq!(
        (depth.queue.as_str(), depth.queued, depth.running),
        (queue.name(), 1, 0)
    );
    // In `bus.report()`, as an application registers it.
    let bus = flext::Bus::builder()
        .report(looping.report_source())
        .build()
        .unwrap();
    let report = bus.report();
    let report = report
        .components
        .iter()
        .find(|c| c.kind == "queue")
        .unwrap_or_else(|| panic!("the queue in {:?}", report.components));
    assert_eq!(report.name, queue.name());
    assert_eq!(report.status["queued"], 1);
    assert!(report.status["oldest_queued_ms"].as_u64().is_some());
    looping.shutdown().await;
}

/// Three processes work one queue with a limit of 3: never more than 3 calls at once,
/// each saga once.
async fn limit_contract<F, Fut>(connect: &F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn SagaLog>>,
{
    let partner = Arc::new(Partner::default());
    let queue = Queue::new(format!("partner-{}", Uuid::new_v4()))
        .unwrap()
        .limit(3)
        .poll_ms(5);
    let producer = runner(connect().await, &partner, "producer");
    let n = 24;
    for i in 0..n {
        let call = PartnerCall {
            order: format!("o-{i}"),
            call_ms: 15,
        };
        producer
            .enqueue(
                &queue,
                Uuid::new_v4(),
                call,
                Enqueue::default(),
                &Context::new(),
            )
            .await
            .unwrap();
    }
    let mut loops = Vec::new();
    for p in 0..3 {
        let process = runner(connect().await, &partner, &format!("worker-{p}"));
        loops.push(process.spawn_queue(queue.clone()));
    }
    for _ in 0..1000 {
        if partner.calls().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for l in loops {
        l.shutdown().await;
    }
    let calls = partner.calls();
    let mut orders: Vec<&str> = calls.iter().map(|c| c.0.as_str()).collect();
    orders.sort_unstable();
    orders.dedup();
    assert_eq!((calls.len(), orders.len()), (n, n), "each saga ran once");
    let intervals: Vec<(u64, u64)> = calls.iter().map(|c| (c.1, c.2)).collect();
    let most = overlap::most_at_once(&intervals);
    assert!(most <= 3, "{most} calls ran at once under a limit of 3");
}
