//! Starting a saga under an id the caller gives, so that a second start runs nothing.

use uuid::Uuid;

use super::progress::Progress;
use super::{Saga, SagaOutcome, SagaRecord, SagaRunner, SagaState, now_ms};
use crate::context::Context;
use crate::error::{Error, Result};

/// The id of the saga of type `saga` that event `event_id` starts: the same for every
/// delivery of the event (a UUID v5 of the two), so that starting it with
/// [`SagaRunner::run_with_id`] on each delivery of an at-least-once outbox starts it
/// once.
///
/// ```
/// use flext::saga::saga_id_for_event;
/// let event = flext::Uuid::new_v4();
/// assert_eq!(saga_id_for_event("FulfilOrder", event), saga_id_for_event("FulfilOrder", event));
/// assert_ne!(saga_id_for_event("FulfilOrder", event), saga_id_for_event("Refund", event));
/// ```
pub fn saga_id_for_event(saga: &str, event_id: Uuid) -> Uuid {
    Uuid::new_v5(&event_id, saga.as_bytes())
}

impl SagaRunner {
    /// [`run`](Self::run) with the saga id given by the caller, so that starting the
    /// same saga twice (a retried request, a redelivered message) runs it once. The id
    /// goes into the log's creation write under a unique key: no extra commit.
    ///
    /// A second start of an existing id runs nothing. It returns the first start's
    /// outcome when that saga has finished (read back from the log); waits for it and
    /// returns its outcome when it is running in this process; and otherwise reports
    /// that it is in flight elsewhere.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run); and, for an existing id:
    /// - [`ErrorKind::Conflict`](crate::ErrorKind::Conflict), `flext.saga.id_reused`: the
    ///   id belongs to another saga type or another input;
    /// - [`ErrorKind::Conflict`](crate::ErrorKind::Conflict), `flext.saga.in_flight`: the
    ///   saga is running under another runner (another process); the message names its
    ///   state and owner, and [`recover`](Self::recover) finishes it once that runner's
    ///   lease expires.
    ///
    /// ```
    /// use flext::prelude::*;
    /// use flext::saga::{MemoryLog, SagaRunner};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Book { seat: u32 }
    ///
    /// #[saga]
    /// impl Book {
    ///     #[saga_step]
    ///     fn reserve(&self) -> Result<u32> { Ok(self.seat) }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let runner = SagaRunner::builder(MemoryLog::new()).build();
    /// let id = Uuid::new_v4();
    /// let first = runner.run_with_id(id, Book { seat: 7 }, &Context::new()).await.unwrap();
    /// let again = runner.run_with_id(id, Book { seat: 7 }, &Context::new()).await.unwrap();
    /// assert_eq!((first.saga_id(), again.saga_id()), (id, id));
    /// let other = runner.run_with_id(id, Book { seat: 8 }, &Context::new()).await.unwrap_err();
    /// assert_eq!(other.code(), flext::codes::SAGA_ID_REUSED);
    /// # }
    /// ```
    pub async fn run_with_id<S: Saga>(
        &self,
        id: Uuid,
        saga: S,
        ctx: &Context,
    ) -> Result<SagaOutcome<S::Output>> {
        let input = saga.to_log().map_err(|e| {
            Error::internal(
                crate::codes::SAGA_INPUT_NOT_SERIALISABLE,
                format!("saga `{}`: {e}", S::NAME),
            )
        })?;
        let record = SagaRecord {
            id,
            name: S::NAME.to_owned(),
            input,
            correlation_id: ctx.correlation_id(),
            state: SagaState::Running,
            transitions: Vec::new(),
            owner: self.lease.owner.clone(),
            lease_until_ms: now_ms().saturating_add(self.lease.duration_ms),
            definition: S::DEFINITION.to_owned(),
            created_ms: now_ms(),
        };
        // Whoever registers the id first in this process starts it; a second start here
        // waits for that one to end, without touching the log meanwhile.
        let done = {
            let mut running = self
                .running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match running.get(&id) {
                Some(first) => Err(first.subscribe()),
                None => {
                    let (done, _) = tokio::sync::watch::channel(false);
                    running.insert(id, done.clone());
                    Ok(Started {
                        runner: self,
                        id,
                        done,
                    })
                }
            }
        };
        let _started = match done {
            Ok(started) => started,
            Err(mut first) => {
                // An error means the first start's future was dropped mid-way; the log
                // says where it stopped either way.
                let _ = first.wait_for(|finished| *finished).await;
                return self.started_before(&saga, record, ctx).await;
            }
        };
        match self.log.create(&record).await {
            Ok(()) => {
                self.drive(&saga, id, Progress::new(S::STEPS.len()), ctx)
                    .await
            }
            Err(e) if e.code() == crate::codes::SAGA_EXISTS => {
                self.started_before(&saga, record, ctx).await
            }
            Err(e) => Err(e),
        }
    }

    /// A second start of the saga `wanted` describes, not driven in this process: its
    /// recorded outcome when it has finished.
    async fn started_before<S: Saga>(
        &self,
        saga: &S,
        wanted: SagaRecord,
        ctx: &Context,
    ) -> Result<SagaOutcome<S::Output>> {
        let id = wanted.id;
        let existing = self.log.load(id).await?;
        if existing.name != wanted.name || existing.input != wanted.input {
            return Err(Error::conflict(
                crate::codes::SAGA_ID_REUSED,
                format!(
                    "saga {id} was started as another `{}` (or another saga type): a second start must give the same input",
                    existing.name
                ),
            ));
        }
        if existing.state.is_in_flight() {
            return Err(Error::conflict(
                crate::codes::SAGA_IN_FLIGHT,
                format!(
                    "saga {id} is {}, held by `{}`: it is finished by its runner, or by `recover()` once that runner's lease expires",
                    existing.state.as_str(),
                    existing.owner
                ),
            ));
        }
        // Finished: replaying its transitions writes nothing and rebuilds its outcome.
        let progress = Progress::replay(S::STEPS.len(), &existing.transitions);
        self.drive(saga, id, progress, ctx).await
    }
}

/// This process's start of a saga: while it lives, a second start here waits for it.
/// Dropped when the start ends, or when its future is dropped mid-way, so a waiter is
/// never left waiting.
struct Started<'a> {
    runner: &'a SagaRunner,
    id: Uuid,
    done: tokio::sync::watch::Sender<bool>,
}

impl Drop for Started<'_> {
    fn drop(&mut self) {
        self.runner
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
        self.done.send_replace(true);
    }
}
