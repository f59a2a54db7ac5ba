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

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[cfg(doc)]
use super::SagaRunner;
use super::{Lease, SagaRecord};
use crate::error::{Error, Result};

mod pick;
mod worker;

pub(crate) use self::pick::{Candidate, pick};
pub use self::worker::{QueueLoop, QueueReport};

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
