//! Child sagas: a `#[saga_step(child)]` step starts the child saga an earlier step
//! returned, waits for its outcome (leased to no runner while the child sleeps or waits
//! for a signal), and runs with it as a [`Child<S>`]; a parent that compensates
//! compensates its completed child through the child's own compensations.
//!
//! The pattern is the nested saga of Garcia-Molina and Salem ("Sagas", 1987: a saga may
//! be a step of another) with the delivery of Temporal's child workflows: the child is a
//! saga of its own in the same log (its own lease, fencing, recovery and operator
//! actions), under an id derived from its parent's and the step's
//! ([`child_saga_id`]), so that a parent run again after a crash finds the child it
//! started instead of starting another. The log links the two when it creates the child
//! ([`SagaLog::create_child`](super::SagaLog::create_child)), and the child's final write
//! keeps a `child:<Name>` signal in the parent's inbox, so a parked parent wakes once the
//! child finishes, in the same atomic write.

use tokio::time::Instant;
use uuid::Uuid;

use super::lease::Claim;
use super::progress::Progress;
use super::signal::{Reached, Receipt};
use super::{
    ChildSpec, ClaimRequest, Intervention, OperatorAction, SagaOutcome, SagaRecord, SagaRunner,
    SagaState, SignalRecord, StepSpec, now_ms,
};
use crate::context::Context;
use crate::error::{Error, ErrorKind, Result};

mod outcome;

pub use self::outcome::Child;
pub(super) use self::outcome::decode;
use self::outcome::ended;

/// The id of the child saga that step `step` of saga `parent` starts: a UUID v5 of the
/// two, the same on every run of the step.
///
/// ```
/// use flext::saga::child_saga_id;
/// let parent = flext::Uuid::new_v4();
/// assert_eq!(child_saga_id(parent, "ship"), child_saga_id(parent, "ship"));
/// assert_ne!(child_saga_id(parent, "ship"), child_saga_id(parent, "bill"));
/// ```
pub fn child_saga_id(parent: Uuid, step: &str) -> Uuid {
    Uuid::new_v5(&parent, step.as_bytes())
}

/// The name of the signal a child of type `name` keeps in its parent's inbox when it
/// finishes, and that its parent waits for.
pub(crate) fn child_signal(name: &str) -> String {
    format!("child:{name}")
}

/// The signal a finished `child` keeps in its `parent`'s inbox: a wake-up, its payload
/// `null` (the parent reads the child's outcome from the child's record).
pub(crate) fn finished_signal(parent: Uuid, child: &SagaRecord) -> SignalRecord {
    SignalRecord {
        saga_id: parent,
        name: child_signal(&child.name),
        sender: child.id.to_string(),
        payload: serde_json::Value::Null,
        sent_ms: now_ms(),
    }
}

impl SagaRunner {
    /// Brings child step `index` to its receipt (how the child ended): starts the child
    /// when the log has none yet and drives it here, then reads it back; a child that
    /// has not finished (it sleeps, waits, or another runner drives it) parks the parent
    /// until the child's final write wakes it.
    pub(in crate::saga) async fn reach_child(
        &self,
        claim: &Claim,
        spec: &StepSpec,
        child: ChildSpec,
        index: usize,
        p: &mut Progress,
        ctx: &Context,
    ) -> Result<Reached> {
        if p.receipts.get(index).is_some_and(Option::is_some) {
            return Ok(Reached::Ready);
        }
        let id = child_saga_id(claim.id, spec.name);
        let record = self
            .with_heartbeat(
                claim,
                spec.name,
                self.start_child(claim.id, id, child, p, ctx),
            )
            .await??;
        let signal = child_signal(child.name);
        let Some(ended) = ended(&record) else {
            tracing::info!(step = spec.name, child_id = %id, state = %record.state, "saga waits for its child");
            return self
                .wait(claim, spec, &signal, index, None, p)
                .await
                .map(Reached::Parked);
        };
        let payload = serde_json::to_value(&ended).map_err(|e| {
            Error::internal(
                crate::codes::SAGA_OUTPUT_NOT_SERIALISABLE,
                format!("the outcome of child saga {id} does not serialise: {e}"),
            )
        })?;
        let receipt = Receipt {
            sender: Some(id.to_string()),
            payload: Some(payload),
        };
        self.take(claim, index, signal, receipt, p).await
    }

    /// Starts child saga `id` of parent `parent` when the log has none, and drives it
    /// here; returns the child as the log then has it. A child that exists is left to
    /// whoever drives it (its runner, or the recovery loop once its lease expires).
    async fn start_child(
        &self,
        parent: Uuid,
        id: Uuid,
        child: ChildSpec,
        p: &Progress,
        ctx: &Context,
    ) -> Result<SagaRecord> {
        let registration = child.registration;
        let input = p
            .outputs
            .get(child.input)
            .and_then(Option::clone)
            .ok_or_else(|| {
                Error::internal(
                    crate::codes::SAGA_MISSING_OUTPUT,
                    format!(
                        "the child saga `{}` is the output of step {}, which the log does not hold",
                        child.name, child.input
                    ),
                )
            })?;
        let record = self.new_record(id, child.name, input, registration.definition, ctx);
        (registration.check)(&record)?;
        if let Some(queue) = child.queue {
            // Through a queue: it waits there, and a queue loop starts it.
            let item = super::QueueItem {
                queue: queue.to_owned(),
                saga_id: id,
                priority: 0,
                partition: String::new(),
                enqueued_ms: now_ms(),
                parent: Some(parent),
            };
            let record = SagaRecord {
                owner: super::queue::queue_owner(queue),
                lease_until_ms: super::signal::NO_LIMIT_MS,
                ..record
            };
            let enqueued = self.log.enqueue(&record, &item).await?;
            tracing::info!(child_id = %id, child = child.name, queue, ?enqueued, "child saga enqueued");
            return self.log.load(id).await;
        }
        let since = Instant::now();
        match self.log.create_child(&record, parent).await {
            Ok(()) => {
                tracing::info!(child_id = %id, child = child.name, "child saga started");
                if let Err(e) = (registration.resume)(self, record, since).await {
                    // In flight in the log: its lease expires and recovery finishes it.
                    tracing::warn!(child_id = %id, error = %e, "child saga stopped; recovery finishes it");
                }
            }
            Err(e) if e.code() == crate::codes::SAGA_EXISTS => {
                // A child this code cannot drive (another definition, an input that no
                // longer decodes) stops its parent too, both left as they are: the
                // child's definition is part of its parent's.
                let existing = self.log.load(id).await?;
                if existing.state.is_in_flight() {
                    (registration.check)(&existing)?;
                }
                return Ok(existing);
            }
            Err(e) => return Err(e),
        }
        self.log.load(id).await
    }

    /// Compensates the child of child step `spec` because its parent `claim.id`
    /// compensates: a completed child is reopened ([`OperatorAction::Compensate`]) and
    /// driven here to its compensated end; one already compensated or resolved is left
    /// as it is; one whose compensation another runner drives is waited for (its lease
    /// polled), and taken over once that lease expires.
    ///
    /// # Errors
    ///
    /// `flext.saga.child_failed` when the child stuck while compensating (an operator
    /// must act on it; the parent's compensation is then retried or sticks); the log's
    /// errors.
    pub(in crate::saga) async fn compensate_child(
        &self,
        parent: Uuid,
        spec: &StepSpec,
        child: ChildSpec,
    ) -> Result<()> {
        let id = child_saga_id(parent, spec.name);
        loop {
            let record = match self.log.load(id).await {
                Ok(record) => record,
                // Never started: nothing to undo.
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            let outcome = match record.state {
                SagaState::Compensated | SagaState::Resolved => return Ok(()),
                SagaState::Stuck => return Err(child_stuck(child.name, id)),
                SagaState::Completed => {
                    let command = Intervention {
                        action: OperatorAction::Compensate,
                        principal: format!("saga {parent}"),
                        reason: format!("its step `{}` is compensated", spec.name),
                        past_pivot: false,
                    };
                    self.intervene(id, &command).await?
                }
                SagaState::Running | SagaState::Compensating => {
                    let now = now_ms();
                    if record.lease_until_ms > now {
                        let wait = (record.lease_until_ms - now)
                            .min(self.lease.duration_ms / 4)
                            .max(10);
                        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                        continue;
                    }
                    let registration = child.registration;
                    let request = ClaimRequest {
                        only: Some(id),
                        names: vec![registration.name],
                        limit: 1,
                        accept: std::sync::Arc::new(registration.check),
                        ..ClaimRequest::any(&self.lease, now)
                    };
                    let since = Instant::now();
                    let mut claimed = self.log.claim_expired(&request).await?;
                    if let Some((_, refused)) = claimed.refused.pop() {
                        return Err(refused);
                    }
                    match claimed.sagas.pop() {
                        Some(record) => (registration.resume)(self, record, since).await?,
                        None => continue,
                    }
                }
            };
            return match outcome {
                SagaOutcome::Compensated { .. } | SagaOutcome::Resolved { .. } => Ok(()),
                SagaOutcome::Stuck { .. } => Err(child_stuck(child.name, id)),
                // Still in flight (its compensation went on elsewhere): look again.
                _ => continue,
            };
        }
    }
}

fn child_stuck(name: &str, id: Uuid) -> Error {
    Error::conflict(
        crate::codes::SAGA_CHILD_FAILED,
        format!(
            "child saga `{name}` {id} is stuck while compensating: act on it (`flext-saga resume` or `resolve`), then resume this saga"
        ),
    )
}
