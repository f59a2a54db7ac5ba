//! A runner's side of a queue: enqueueing, a dispatch pass that drives what it claims,
//! and the loop that runs passes ([`QueueLoop`]), a report source for `bus.report()`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use super::{DequeueRequest, Enqueue, Enqueued, MAX_PARTITION_BYTES, Queue, QueueDepth, QueueItem};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::future::BoxFuture;
use crate::saga::recovery::SagaRegistration;
use crate::saga::signal::NO_LIMIT_MS;
use crate::saga::{Saga, SagaOutcome, SagaRecord, SagaRunner, now_ms};

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
                owner: queue.owner(),
                lease_until_ms: NO_LIMIT_MS,
                ..self.new_record(id, S::NAME, input?, S::DEFINITION, ctx)
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
    /// [`recovery_batch`](crate::saga::SagaRunnerBuilder::recovery_batch)) and drives those
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
        let registration = SagaRegistration::of_record(&record)?;
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
