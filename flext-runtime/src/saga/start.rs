//! Starting a saga under an id the caller gives, so that a second start runs nothing.

use uuid::Uuid;

use std::sync::Arc;

use tokio::time::Instant;

use super::erased::{ErasedSaga, typed_outcome};
use super::lease::Claim;
use super::progress::Progress;
use super::{ClaimRequest, Fence, Saga, SagaOutcome, SagaRecord, SagaRunner, SagaState, now_ms};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::future::BoxFuture;

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
    /// A second start of an existing id never runs a finished saga again. It returns
    /// the first start's outcome when that saga has finished (read back from the log,
    /// nothing written); waits for it and returns its outcome when it is running in this
    /// process; claims and drives it when its runner's lease expired (that runner
    /// crashed or lost the database); and otherwise reports that it is in flight
    /// elsewhere.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run); and, for an existing id:
    /// - [`ErrorKind::Conflict`](crate::ErrorKind::Conflict), `flext.saga.id_reused`: the
    ///   id belongs to another saga type or another input;
    /// - [`ErrorKind::Conflict`](crate::ErrorKind::Conflict), `flext.saga.in_flight`: the
    ///   saga is running under another runner (another process); the message names its
    ///   state, owner and how long its lease runs; [`recover`](Self::recover) or a new
    ///   start finishes it once that lease expires;
    /// - `flext.saga.definition_changed`, `flext.saga.input_mismatch` or
    ///   `flext.saga.output_mismatch`: the logged saga was started by code this program
    ///   cannot resume or decode; it is left as it is (nothing written).
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
    ///
    /// The future is boxed (one allocation beside the log's writes), so that a type
    /// without `#[saga]` is one error, at the argument.
    pub fn run_with_id<'a, S: Saga>(
        &'a self,
        id: Uuid,
        saga: S,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<SagaOutcome<S::Output>>> {
        Box::pin(async move {
            let input = saga.to_log().map_err(|e| {
                Error::internal(
                    crate::codes::SAGA_INPUT_NOT_SERIALISABLE,
                    format!("saga `{}`: {e}", S::NAME),
                )
            })?;
            let saga: &dyn ErasedSaga = &saga;
            typed_outcome::<S>(self.start(id, saga, input, ctx).await?)
        })
    }

    /// Starts `run` (its input encoded as `input`) under `id`: the part of
    /// [`run_with_id`](Self::run_with_id) and
    /// [`run_workflow_with_id`](Self::run_workflow_with_id) that is the same for every
    /// saga and workflow type.
    pub(super) async fn start<D: Drive + ?Sized>(
        &self,
        id: Uuid,
        run: &D,
        input: serde_json::Value,
        ctx: &Context,
    ) -> Result<D::Out> {
        let record = self.new_record(id, run.name(), input, run.definition(), ctx);
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
                return self.started_before(run, record, ctx).await;
            }
        };
        if !self
            .liveness_asked
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            self.hold_liveness().await;
        }
        let since = Instant::now();
        match self.log.create(&record).await {
            Ok(()) => {
                let claim = Claim::new(self, id, Fence::of(&record), since);
                run.fresh(self, claim, ctx).await
            }
            Err(e) if e.code() == crate::codes::SAGA_EXISTS => {
                self.started_before(run, record, ctx).await
            }
            Err(e) => Err(e),
        }
    }

    /// The record of a new saga (or durable workflow run) `name` under `id`, with its
    /// `input` and `definition`: running, leased to this runner, epoch 1.
    pub(super) fn new_record(
        &self,
        id: Uuid,
        name: &str,
        input: serde_json::Value,
        definition: &str,
        ctx: &Context,
    ) -> SagaRecord {
        let now = now_ms();
        SagaRecord {
            id,
            name: name.to_owned(),
            input,
            correlation_id: ctx.correlation_id(),
            state: SagaState::Running,
            transitions: Vec::new(),
            owner: self.lease.owner.clone(),
            lease_until_ms: now.saturating_add(self.lease.duration_ms),
            definition: definition.to_owned(),
            created_ms: now,
            epoch: 1,
        }
    }

    /// A second start of the run `wanted` describes, not driven in this process: its
    /// recorded outcome when it has finished (nothing is written); the run driven here
    /// when its lease expired (claimed under a new epoch, once this code can drive it).
    async fn started_before<D: Drive + ?Sized>(
        &self,
        run: &D,
        wanted: SagaRecord,
        ctx: &Context,
    ) -> Result<D::Out> {
        let id = wanted.id;
        let existing = self.log.load(id).await?;
        if existing.name != wanted.name || existing.input != wanted.input {
            return Err(Error::conflict(
                crate::codes::SAGA_ID_REUSED,
                format!(
                    "saga {id} was started as another `{}` (or another saga type): a second start must give the same input",
                    crate::input::echo(&existing.name)
                ),
            ));
        }
        if !existing.state.is_in_flight() {
            return run.recorded(&existing);
        }
        if super::parked(&existing.owner)
            && existing.lease_until_ms > now_ms()
            && let Some(asleep) = run.asleep(&existing)
        {
            return asleep;
        }
        let request = ClaimRequest {
            only: Some(id),
            names: vec![run.name()],
            limit: 1,
            accept: Arc::new(run.check()),
            ..ClaimRequest::any(&self.lease, now_ms())
        };
        let since = Instant::now();
        let mut claimed = self.log.claim_expired(&request).await?;
        if let Some((_, refused)) = claimed.refused.pop() {
            return Err(refused);
        }
        match claimed.sagas.pop() {
            Some(record) => run.claimed(self, record, since, ctx).await,
            None => Err(Error::conflict(
                crate::codes::SAGA_IN_FLIGHT,
                format!(
                    "saga {id} is {}, held by `{}` for {} ms more: it is finished by its runner, or by `recover()` or a new start once that lease expires",
                    existing.state.as_str(),
                    existing.owner,
                    existing.lease_until_ms.saturating_sub(now_ms())
                ),
            )),
        }
    }
}

/// What [`SagaRunner::start`] starts: a saga (`dyn ErasedSaga`) or a durable workflow
/// run (`graph::DurableRun`). One object-safe shape, so that the idempotent start is
/// compiled once per kind, not once per type.
pub(super) trait Drive: Send + Sync {
    /// What a drive ends in.
    type Out;
    /// The type's name, as the log records it.
    fn name(&self) -> &'static str;
    /// The type's definition, as the log records it.
    fn definition(&self) -> &'static str;
    /// Whether this code can drive a logged record of the type.
    fn check(&self) -> fn(&SagaRecord) -> Result<()>;
    /// Drives a record just created, under `claim`.
    fn fresh<'a>(
        &'a self,
        runner: &'a SagaRunner,
        claim: Claim,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<Self::Out>>;
    /// Drives `record`, just claimed by a log call that started at `since`, from where
    /// its transitions leave it.
    fn claimed<'a>(
        &'a self,
        runner: &'a SagaRunner,
        record: SagaRecord,
        since: Instant,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<Self::Out>>;
    /// What a finished `record` ended in, without running or writing anything.
    ///
    /// # Errors
    ///
    /// When the linked code cannot read it (another definition).
    fn recorded(&self, record: &SagaRecord) -> Result<Self::Out>;
    /// Where a sleeping or waiting `record` is parked, without running or writing
    /// anything; `None` when this kind of run does not park.
    fn asleep(&self, record: &SagaRecord) -> Option<Result<Self::Out>> {
        let _ = record;
        None
    }
}

impl Drive for dyn ErasedSaga + '_ {
    type Out = SagaOutcome<serde_json::Value>;

    fn name(&self) -> &'static str {
        ErasedSaga::name(self)
    }
    fn definition(&self) -> &'static str {
        ErasedSaga::definition(self)
    }
    fn check(&self) -> fn(&SagaRecord) -> Result<()> {
        ErasedSaga::check(self)
    }
    fn fresh<'a>(
        &'a self,
        runner: &'a SagaRunner,
        claim: Claim,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<Self::Out>> {
        Box::pin(async move {
            runner
                .drive(self, &claim, Progress::new(self.steps().len()), ctx)
                .await
        })
    }
    fn claimed<'a>(
        &'a self,
        runner: &'a SagaRunner,
        record: SagaRecord,
        since: Instant,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<Self::Out>> {
        Box::pin(runner.continue_claimed(self, record, since, ctx))
    }
    fn recorded(&self, record: &SagaRecord) -> Result<Self::Out> {
        recorded(self, record)
    }
    fn asleep(&self, record: &SagaRecord) -> Option<Result<Self::Out>> {
        let steps = self.steps();
        let p = Progress::replay(steps.len(), &record.transitions);
        let step = |index: usize| steps.get(index).map_or("?", |s| s.name).to_owned();
        if let Some((index, until_ms)) = p.waiting {
            return Some(Ok(SagaOutcome::Waiting {
                saga_id: record.id,
                step: step(index),
                signal: steps
                    .get(index)
                    .and_then(|s| s.signal)
                    .map_or("?", |s| s.name)
                    .to_owned(),
                until_ms,
            }));
        }
        let (index, until_ms, _) = p.sleeping?;
        Some(Ok(SagaOutcome::Sleeping {
            saga_id: record.id,
            step: step(index),
            until_ms,
        }))
    }
}

/// The outcome a finished (or stuck) saga recorded, rebuilt from its transitions without
/// running or writing anything.
fn recorded(saga: &dyn ErasedSaga, record: &SagaRecord) -> Result<SagaOutcome<serde_json::Value>> {
    let steps = saga.steps();
    let p = Progress::replay(steps.len(), &record.transitions);
    if p.final_state(steps).is_none() {
        // The linked code has steps the finished saga never ran: another definition.
        return Err(super::definition::changed(
            saga.name(),
            record.id,
            &record.definition,
            saga.definition(),
        ));
    }
    Ok(p.outcome(steps, record.id))
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
