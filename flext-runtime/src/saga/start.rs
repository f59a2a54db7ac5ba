//! Starting a saga under an id the caller gives, so that a second start runs nothing.

use uuid::Uuid;

use super::progress::Progress;
use super::{Saga, SagaOutcome, SagaRecord, SagaRunner, SagaState, now_ms};
use crate::context::Context;
use crate::error::{Error, Result};

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
        };
        match self.log.create(&record).await {
            Ok(()) => {}
            Err(e) if e.code() == crate::codes::SAGA_EXISTS => {
                return self.started_before(&saga, record, ctx).await;
            }
            Err(e) => return Err(e),
        }
        let (done, _) = tokio::sync::watch::channel(false);
        self.running_here(id, Some(done.clone()));
        let outcome = self
            .drive(&saga, id, Progress::new(S::STEPS.len()), ctx)
            .await;
        self.running_here(id, None);
        done.send_replace(true);
        outcome
    }

    /// Marks saga `id` as driven by this process (with the channel its end is sent on),
    /// or no longer.
    fn running_here(&self, id: Uuid, done: Option<tokio::sync::watch::Sender<bool>>) {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match done {
            Some(done) => {
                running.insert(id, done);
            }
            None => {
                running.remove(&id);
            }
        }
    }

    /// A second start of the saga `wanted` describes: its recorded outcome, after
    /// waiting for it when this process is driving it.
    async fn started_before<S: Saga>(
        &self,
        saga: &S,
        wanted: SagaRecord,
        ctx: &Context,
    ) -> Result<SagaOutcome<S::Output>> {
        let id = wanted.id;
        let mut existing = self.log.load(id).await?;
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
            let here = self
                .running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&id)
                .map(tokio::sync::watch::Sender::subscribe);
            let Some(mut done) = here else {
                return Err(Error::conflict(
                    crate::codes::SAGA_IN_FLIGHT,
                    format!(
                        "saga {id} is {}, held by `{}`: it is finished by its runner, or by `recover()` once that runner's lease expires",
                        existing.state.as_str(),
                        existing.owner
                    ),
                ));
            };
            // The sender is dropped only after the end is sent; an error here means the
            // driving future was cancelled, and the log says where it stopped.
            let _ = done.wait_for(|finished| *finished).await;
            existing = self.log.load(id).await?;
            if existing.state.is_in_flight() {
                return Err(Error::conflict(
                    crate::codes::SAGA_IN_FLIGHT,
                    format!(
                        "saga {id} was left {}: `recover()` finishes it",
                        existing.state.as_str()
                    ),
                ));
            }
        }
        // Finished: replaying its transitions writes nothing and rebuilds its outcome.
        let progress = Progress::replay(S::STEPS.len(), &existing.transitions);
        self.drive(saga, id, progress, ctx).await
    }
}
