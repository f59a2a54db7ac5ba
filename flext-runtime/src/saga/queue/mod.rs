//! Queues: sagas enqueued under a name run under that queue's limits — how many at once
//! (across every process on the log), how many at once per partition key (per
//! customer), how many starts per period (a rate limit) — in priority order, oldest
//! first within a priority.
//!
//! The pattern is the durable queue of DBOS and Hatchet (concurrency and rate limits
//! enforced by the database, not by a process), on the saga log: an enqueued saga is a
//! saga record leased to the queue (`queue:<name>`, no runner) plus a queue row; a
//! dispatch pass ([`SagaLog::dequeue`](super::SagaLog::dequeue)) counts what runs and
//! claims what may start in one atomic write (PostgreSQL: under a per-queue lock, the
//! candidates read `FOR UPDATE SKIP LOCKED`; SQLite: the writer's transaction, which
//! serialises every process on the file). An item counts as running from its claim
//! until its saga reaches a final state or sticks, which the log records in the
//! transaction of that write; a saga whose process died keeps its slot until the
//! recovery loop finishes it, so a crash never lets more run than the limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use uuid::Uuid;

use super::recovery::SagaRegistration;
use super::signal::NO_LIMIT_MS;
use super::{Lease, Saga, SagaOutcome, SagaRecord, SagaRunner, SagaState, now_ms};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::future::BoxFuture;

/// The longest queue name [`Queue::new`] takes, in bytes.
pub const MAX_QUEUE_NAME_BYTES: usize = 128;
/// The longest partition key [`Enqueue::partition`] takes, in bytes.
pub const MAX_PARTITION_BYTES: usize = 256;

/// The owner prefix of a saga waiting in a queue: no runner.
pub(crate) const QUEUE_PREFIX: &str = "queue:";

/// A named queue and its limits: what [`SagaRunner::enqueue`] puts sagas in and
/// [`SagaRunner::spawn_queue`] runs them from.
///
/// ```
/// use flext::saga::Queue;
/// let partner = Queue::new("partner-api").unwrap()
///     .limit(10)                      // at most 10 running at once, across processes
///     .partition_limit(1)             // one at a time per partition key (customer)
///     .rate_limit(100, 60_000);       // at most 100 starts per minute
/// assert_eq!(partner.name(), "partner-api");
/// let nameless = Queue::new("").unwrap_err();
/// assert_eq!(nameless.code(), flext::codes::SAGA_QUEUE_INPUT);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    name: String,
    limit: Option<u32>,
    partition_limit: Option<u32>,
    rate: Option<Rate>,
    poll_ms: u64,
}

/// A rate limit: at most `starts` sagas start in any `per_ms` milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    /// How many starts.
    pub starts: u32,
    /// In how many milliseconds.
    pub per_ms: u64,
}

impl Queue {
    /// A queue named `name`, without limits (add them with [`limit`](Self::limit),
    /// [`partition_limit`](Self::partition_limit) and [`rate_limit`](Self::rate_limit)).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Validation`](crate::ErrorKind::Validation), `flext.saga.queue_input`,
    /// when `name` is empty or longer than [`MAX_QUEUE_NAME_BYTES`].
    pub fn new(name: impl Into<String>) -> Result<Queue> {
        let name = name.into();
        if name.is_empty() || name.len() > MAX_QUEUE_NAME_BYTES {
            return Err(Error::validation(
                crate::codes::SAGA_QUEUE_INPUT,
                format!(
                    "a queue's name is 1 to {MAX_QUEUE_NAME_BYTES} bytes (got {}: {})",
                    name.len(),
                    crate::input::echo(&name)
                ),
            ));
        }
        Ok(Queue {
            name,
            limit: None,
            partition_limit: None,
            rate: None,
            poll_ms: 50,
        })
    }

    /// At most `n` of the queue's sagas run at once, counted in the log across every
    /// process (0 holds everything).
    pub fn limit(mut self, n: u32) -> Self {
        self.limit = Some(n);
        self
    }

    /// At most `n` sagas of one partition key ([`Enqueue::partition`]) run at once;
    /// sagas enqueued without a key are not limited by it.
    pub fn partition_limit(mut self, n: u32) -> Self {
        self.partition_limit = Some(n);
        self
    }

    /// At most `starts` sagas start in any `per_ms` milliseconds.
    pub fn rate_limit(mut self, starts: u32, per_ms: u64) -> Self {
        self.rate = Some(Rate { starts, per_ms });
        self
    }

    /// How often [`SagaRunner::spawn_queue`] looks for work when nothing of its own
    /// finished, in milliseconds (default 50).
    pub fn poll_ms(mut self, ms: u64) -> Self {
        self.poll_ms = ms.max(1);
        self
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The owner a saga waiting in this queue is leased to.
    fn owner(&self) -> String {
        queue_owner(&self.name)
    }
}

/// How a saga is enqueued: its priority and partition key.
///
/// ```
/// use flext::saga::Enqueue;
/// let urgent = Enqueue::default().priority(10).partition("customer-7");
/// assert_eq!(urgent.priority, 10);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enqueue {
    /// Higher runs first (default 0); equal priorities run oldest first.
    pub priority: i32,
    /// The partition key for [`Queue::partition_limit`] (a customer id); empty for
    /// none.
    pub partition: String,
}

impl Enqueue {
    /// With priority `priority` (higher first).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// With partition key `key`.
    pub fn partition(mut self, key: impl Into<String>) -> Self {
        self.partition = key.into();
        self
    }
}

/// The owner a saga waiting in queue `name` is leased to.
pub(crate) fn queue_owner(name: &str) -> String {
    format!("{QUEUE_PREFIX}{name}")
}

/// A queue row as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueItem {
    /// The queue's name.
    pub queue: String,
    /// The enqueued saga.
    pub saga_id: Uuid,
    /// Higher runs first.
    pub priority: i32,
    /// The partition key; empty for none.
    pub partition: String,
    /// When it was enqueued, in milliseconds since the Unix epoch.
    pub enqueued_ms: u64,
    /// The parent saga of a child started through a queue
    /// (`#[saga_step(child, queue = "...")]`): the log links the two as
    /// [`SagaLog::create_child`](super::SagaLog::create_child) does, in the enqueue's
    /// write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Uuid>,
}

/// What [`SagaRunner::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Enqueued {
    /// The saga waits in the queue.
    Queued,
    /// A saga of this id was already in the log: nothing changed.
    Duplicate,
}

/// One dispatch pass's request ([`SagaLog::dequeue`](super::SagaLog::dequeue)).
#[derive(Debug, Clone)]
pub struct DequeueRequest {
    /// The queue.
    pub queue: String,
    /// At most this many running at once (`None`: no limit).
    pub limit: Option<u32>,
    /// At most this many running at once per partition key.
    pub partition_limit: Option<u32>,
    /// At most this many starts per period.
    pub rate: Option<Rate>,
    /// At most this many claimed by this pass.
    pub max: usize,
    /// The claiming runner's lease.
    pub lease: Lease,
    /// Now, in milliseconds since the Unix epoch.
    pub now_ms: u64,
}

/// What a dispatch pass claimed, and where the queue stands after it.
#[derive(Debug, Clone, Default)]
pub struct Dequeued {
    /// The sagas claimed, leased to the request's runner under a new epoch.
    pub sagas: Vec<SagaRecord>,
    /// The queue after the pass.
    pub depth: QueueDepth,
}

/// Where a queue stands: in [`SagaRunner::queue_depths`], the queue loop's
/// [`report`](crate::registry::ReportSource::report) (so in `bus.report()`) and the
/// operator views.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDepth {
    /// The queue's name.
    pub queue: String,
    /// How many wait.
    pub queued: u64,
    /// How many run (claimed, not yet finished or stuck).
    pub running: u64,
    /// When the oldest waiting one was enqueued, in milliseconds since the Unix epoch.
    pub oldest_queued_ms: Option<u64>,
}

/// A waiting item as [`pick`] sees it.
pub(crate) struct Candidate<'a> {
    pub(crate) saga_id: Uuid,
    pub(crate) partition: &'a str,
}

/// Which `candidates` (in priority order) a pass may start: as many as the limit leaves
/// free of `running`, no more than the rate limit leaves of `started_in_window`, and per
/// partition key no more than its limit leaves of `by_partition`. Every backend calls
/// it inside the write that claims them.
pub(crate) fn pick(
    request: &DequeueRequest,
    candidates: &[Candidate<'_>],
    running: u64,
    by_partition: &HashMap<String, u64>,
    started_in_window: u64,
) -> Vec<Uuid> {
    let mut free = request.max as u64;
    if let Some(limit) = request.limit {
        free = free.min(u64::from(limit).saturating_sub(running));
    }
    if let Some(rate) = request.rate {
        free = free.min(u64::from(rate.starts).saturating_sub(started_in_window));
    }
    let mut counts: HashMap<&str, u64> = HashMap::new();
    let mut chosen = Vec::new();
    for c in candidates {
        if chosen.len() as u64 >= free {
            break;
        }
        if let Some(limit) = request.partition_limit
            && !c.partition.is_empty()
        {
            let n = counts
                .entry(c.partition)
                .or_insert_with(|| by_partition.get(c.partition).copied().unwrap_or(0));
            if *n >= u64::from(limit) {
                continue;
            }
            *n += 1;
        }
        chosen.push(c.saga_id);
    }
    chosen
}

impl SagaRunner {
    /// Puts saga `saga` in `queue` under id `id`: recorded in the log at once (leased to
    /// the queue, no runner), started by a [`spawn_queue`](Self::spawn_queue) loop of
    /// any process once the queue's limits allow, highest priority first. Idempotent by
    /// id: a second enqueue of the same id changes nothing
    /// ([`Enqueued::Duplicate`]).
    ///
    /// ```
    /// use flext::prelude::*;
    /// use flext::saga::{Enqueue, Enqueued, MemoryLog, Queue, SagaRunner};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct CallPartner { order: String }
    ///
    /// #[saga]
    /// impl CallPartner {
    ///     #[saga_step]
    ///     async fn call(&self) -> Result<String> { Ok(format!("booked {}", self.order)) }
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let runner = SagaRunner::builder(MemoryLog::new()).build();
    /// let partner = Queue::new("partner").unwrap().limit(10);
    /// let id = Uuid::new_v4();
    /// let first = runner.enqueue(&partner, id, CallPartner { order: "o-1".into() }, Enqueue::default(), &Context::new()).await.unwrap();
    /// let again = runner.enqueue(&partner, id, CallPartner { order: "o-1".into() }, Enqueue::default(), &Context::new()).await.unwrap();
    /// assert_eq!((first, again), (Enqueued::Queued, Enqueued::Duplicate));
    /// let outcomes = runner.dispatch(&partner).await.unwrap(); // what the queue loop does
    /// assert_eq!(outcomes.len(), 1);
    /// # });
    /// ```
    ///
    /// # Errors
    ///
    /// - `flext.saga.queue_input` ([`ErrorKind::Validation`](crate::ErrorKind::Validation)):
    ///   the partition key is longer than [`MAX_PARTITION_BYTES`];
    /// - `flext.saga.id_reused` ([`ErrorKind::Conflict`](crate::ErrorKind::Conflict)):
    ///   the id belongs to another saga type or input;
    /// - `flext.saga.input_not_serialisable` when the saga does not serialise;
    /// - [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure) when the log
    ///   fails (enqueue again with the same id);
    /// - `flext.saga.queues_unsupported` from a log that keeps no queues.
    pub fn enqueue<'a, S: Saga>(
        &'a self,
        queue: &'a Queue,
        id: Uuid,
        saga: S,
        how: Enqueue,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<Enqueued>> {
        let input = saga.to_log().map_err(|e| {
            Error::internal(
                crate::codes::SAGA_INPUT_NOT_SERIALISABLE,
                format!("saga `{}`: {e}", S::NAME),
            )
        });
        Box::pin(async move {
            if how.partition.len() > MAX_PARTITION_BYTES {
                return Err(Error::validation(
                    crate::codes::SAGA_QUEUE_INPUT,
                    format!(
                        "a partition key is at most {MAX_PARTITION_BYTES} bytes (got {})",
                        how.partition.len()
                    ),
                ));
            }
            let now = now_ms();
            let record = SagaRecord {
                id,
                name: S::NAME.to_owned(),
                input: input?,
                correlation_id: ctx.correlation_id(),
                state: SagaState::Running,
                transitions: Vec::new(),
                owner: queue.owner(),
                lease_until_ms: NO_LIMIT_MS,
                definition: S::DEFINITION.to_owned(),
                created_ms: now,
                epoch: 1,
            };
            let item = QueueItem {
                queue: queue.name.clone(),
                saga_id: id,
                priority: how.priority,
                partition: how.partition,
                enqueued_ms: now,
                parent: None,
            };
            let enqueued = self.log.enqueue(&record, &item).await?;
            if enqueued == Enqueued::Duplicate {
                let existing = self.log.load(id).await?;
                if existing.name != record.name || existing.input != record.input {
                    return Err(Error::conflict(
                        crate::codes::SAGA_ID_REUSED,
                        format!(
                            "saga {id} was started as another `{}` (or another saga type): a second enqueue must give the same input",
                            crate::input::echo(&existing.name)
                        ),
                    ));
                }
            }
            tracing::info!(saga_id = %id, queue = %queue.name, ?enqueued, "saga enqueued");
            Ok(enqueued)
        })
    }

    /// One dispatch pass of `queue`: claims what its limits let start (at most a
    /// [`recovery_batch`](super::SagaRunnerBuilder::recovery_batch)) and drives those
    /// sagas to their outcomes, concurrently; returns each one's id and outcome (or the
    /// error that stopped it: it is then in flight, and recovery finishes it).
    /// [`spawn_queue`](Self::spawn_queue) runs passes in a loop without waiting for
    /// one's sagas before the next.
    ///
    /// # Errors
    ///
    /// When the log cannot be read or written.
    pub async fn dispatch(
        &self,
        queue: &Queue,
    ) -> Result<Vec<(Uuid, Result<SagaOutcome<serde_json::Value>>)>> {
        let (claimed, _) = self.claim_queued(queue, self.recovery_batch).await?;
        let since = Instant::now();
        Ok(futures_util::future::join_all(
            claimed
                .into_iter()
                .map(|record| async move { (record.id, self.drive_queued(record, since).await) }),
        )
        .await)
    }

    /// Claims up to `max` of `queue`'s waiting sagas that its limits let start.
    async fn claim_queued(
        &self,
        queue: &Queue,
        max: usize,
    ) -> Result<(Vec<SagaRecord>, QueueDepth)> {
        let request = DequeueRequest {
            queue: queue.name.clone(),
            limit: queue.limit,
            partition_limit: queue.partition_limit,
            rate: queue.rate,
            max,
            lease: self.lease.clone(),
            now_ms: now_ms(),
        };
        let dequeued = self.log.dequeue(&request).await?;
        Ok((dequeued.sagas, dequeued.depth))
    }

    /// Drives a saga just claimed from a queue.
    async fn drive_queued(
        &self,
        record: SagaRecord,
        since: Instant,
    ) -> Result<SagaOutcome<serde_json::Value>> {
        let registration = SagaRegistration::find(&record.name).ok_or_else(|| {
            Error::not_found(
                crate::codes::SAGA_UNKNOWN_TYPE,
                format!(
                    "queued saga {} is a `{}`, which is not linked into this program",
                    record.id,
                    crate::input::echo(&record.name)
                ),
            )
        })?;
        (registration.check)(&record)?;
        (registration.resume)(self, record, since).await
    }

    /// Where every queue of the log stands, by name.
    ///
    /// # Errors
    ///
    /// When the log cannot be read; `flext.saga.queues_unsupported` from a log that
    /// keeps no queues.
    pub async fn queue_depths(&self) -> Result<Vec<QueueDepth>> {
        self.log.queue_depths().await
    }

    /// Runs `queue`'s sagas in a background task until [`QueueLoop::shutdown`]: a
    /// dispatch pass every [`Queue::poll_ms`] and whenever one of its sagas finishes,
    /// each saga it claims driven in a task of its own. Run one in every process that
    /// should work the queue: the limits hold across all of them. Pair it with
    /// [`spawn_recovery`](Self::spawn_recovery), which finishes the sagas of a process
    /// that died (they keep their slots until then).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (it spawns a task).
    pub fn spawn_queue(&self, queue: Queue) -> QueueLoop {
        let runner = self.clone();
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = stop.clone();
        let depth = Arc::new(Mutex::new(QueueDepth {
            queue: queue.name.clone(),
            ..QueueDepth::default()
        }));
        let seen = depth.clone();
        let name = queue.name.clone();
        let task = tokio::spawn(async move {
            let finished = Arc::new(tokio::sync::Notify::new());
            let mut tasks = tokio::task::JoinSet::new();
            loop {
                while tasks.try_join_next().is_some() {}
                match runner.claim_queued(&queue, runner.recovery_batch).await {
                    Ok((claimed, now)) => {
                        *seen.lock().unwrap_or_else(PoisonError::into_inner) = now;
                        let since = Instant::now();
                        for record in claimed {
                            let (runner, finished) = (runner.clone(), finished.clone());
                            tasks.spawn(async move {
                                let id = record.id;
                                if let Err(e) = runner.drive_queued(record, since).await {
                                    tracing::warn!(saga_id = %id, error = %e, "queued saga stopped; recovery finishes it");
                                }
                                finished.notify_one();
                            });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(queue = %queue.name, error = %e, "queue dispatch pass failed")
                    }
                }
                let wait = std::pin::pin!(tokio::time::sleep(Duration::from_millis(queue.poll_ms)));
                let done = std::pin::pin!(finished.notified());
                let stop = std::pin::pin!(stopped.notified());
                let due = futures_util::future::select(wait, done);
                if let futures_util::future::Either::Right(_) =
                    futures_util::future::select(due, stop).await
                {
                    break;
                }
            }
            // The sagas it started finish (or are dropped with the runtime: recovery
            // finishes them).
            while tasks.join_next().await.is_some() {}
        });
        QueueLoop {
            name,
            stop,
            depth,
            task: Some(task),
        }
    }
}

/// A running queue loop ([`SagaRunner::spawn_queue`]). Also a
/// [`ReportSource`](crate::registry::ReportSource): register it with
/// [`BusBuilder::report`](crate::BusBuilder::report) and `bus.report()` shows the
/// queue's depth, running count and oldest waiting item as of its last pass.
pub struct QueueLoop {
    name: String,
    stop: Arc<tokio::sync::Notify>,
    depth: Arc<Mutex<QueueDepth>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl QueueLoop {
    /// Where the queue stood at the loop's last pass.
    pub fn depth(&self) -> QueueDepth {
        self.depth
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A report source for `bus.report()` that outlives this handle.
    pub fn report_source(&self) -> QueueReport {
        QueueReport {
            name: self.name.clone(),
            depth: self.depth.clone(),
        }
    }

    /// Stops the loop after its current pass and waits for the sagas it started.
    pub async fn shutdown(mut self) {
        self.stop.notify_one();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for QueueLoop {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A queue's entry in `bus.report()` ([`QueueLoop::report_source`]).
#[derive(Clone)]
pub struct QueueReport {
    name: String,
    depth: Arc<Mutex<QueueDepth>>,
}

impl crate::registry::ReportSource for QueueReport {
    /// The queue's depth, running count and oldest waiting item, as of the loop's last
    /// pass.
    fn report(&self) -> crate::registry::ComponentReport {
        let depth = self
            .depth
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        crate::registry::ComponentReport {
            kind: "queue",
            name: self.name.clone(),
            healthy: true,
            status: serde_json::to_value(depth).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(
        limit: Option<u32>,
        partition_limit: Option<u32>,
        rate: Option<Rate>,
    ) -> DequeueRequest {
        DequeueRequest {
            queue: "q".into(),
            limit,
            partition_limit,
            rate,
            max: 100,
            lease: Lease {
                owner: "r/1".into(),
                duration_ms: 1000,
            },
            now_ms: 0,
        }
    }

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|i| Uuid::from_u128(i as u128 + 1)).collect()
    }

    #[test]
    fn the_limit_leaves_what_runs_and_the_rate_what_started() {
        let ids = ids(6);
        let c: Vec<Candidate<'_>> = ids
            .iter()
            .map(|&saga_id| Candidate {
                saga_id,
                partition: "",
            })
            .collect();
        let none = HashMap::new();
        assert_eq!(
            pick(&request(Some(3), None, None), &c, 1, &none, 0),
            ids[..2]
        );
        assert!(pick(&request(Some(3), None, None), &c, 5, &none, 0).is_empty());
        let rate = Some(Rate {
            starts: 4,
            per_ms: 1000,
        });
        assert_eq!(pick(&request(None, None, rate), &c, 0, &none, 3), ids[..1]);
        assert_eq!(pick(&request(None, None, None), &c, 0, &none, 0), ids);
    }

    #[test]
    fn a_partition_at_its_limit_is_skipped_and_the_next_ones_start() {
        let ids = ids(4);
        let parts = ["a", "a", "b", ""];
        let c: Vec<Candidate<'_>> = ids
            .iter()
            .zip(parts)
            .map(|(&saga_id, partition)| Candidate { saga_id, partition })
            .collect();
        let running = HashMap::from([("b".to_owned(), 1)]);
        // One per key: the first `a`, not the second; `b` already runs one; no key is free.
        assert_eq!(
            pick(&request(None, Some(1), None), &c, 1, &running, 0),
            [ids[0], ids[3]]
        );
    }
}
