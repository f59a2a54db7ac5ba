//! The saga runner: starting sagas, driving them forward, compensating.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use uuid::Uuid;

use super::erased::ErasedSaga;
use super::lease::Claim;
use super::progress::{Phase, Progress};
use super::signal::Reached;
use super::step::step_context;
use super::{
    ErrorRecord, HistoryEntry, Lease, RetryOn, Saga, SagaFilter, SagaLog, SagaOutcome, SagaState,
    SagaSummary, StepScope, Transition,
};
use crate::attempt::{attempt, is_changed_output};
use crate::backoff::Backoff;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::future::BoxFuture;
use crate::state::StateMap;

/// Runs sagas and recovers the ones a crash left in flight. Cheap to clone.
///
/// ```
/// use flext::prelude::*;
/// use flext::saga::{MemoryLog, SagaOutcome, SagaRunner};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Transfer { cents: u64 }
///
/// #[saga]
/// impl Transfer {
///     #[saga_step(compensate = refund)]
///     fn debit(&self) -> Result<u64> { Ok(self.cents) }
///     fn refund(&self, debited: &u64) -> Result<()> { let _ = debited; Ok(()) }
///
///     #[saga_step]
///     fn credit(&self, debited: &u64) -> Result<String> {
///         Err(Error::infrastructure("bank.down", format!("cannot credit {debited}")))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let runner = SagaRunner::builder(MemoryLog::new()).build();
/// match runner.run(Transfer { cents: 500 }, &Context::new()).await.unwrap() {
///     SagaOutcome::Compensated { failed_step, compensated, .. } => {
///         assert_eq!(failed_step, "credit");
///         assert_eq!(compensated, ["debit"]);
///     }
///     other => panic!("{other:?}"),
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct SagaRunner {
    pub(super) log: Arc<dyn SagaLog>,
    pub(super) state: Arc<StateMap>,
    pub(super) lease: Lease,
    pub(super) compensation_attempts: u32,
    pub(super) backoff_cap: Duration,
    /// At most this many sagas claimed per recovery pass.
    pub(super) recovery_batch: usize,
    /// Whether this runner has asked the log for its liveness lock yet.
    pub(super) liveness_asked: Arc<std::sync::atomic::AtomicBool>,
    /// The sagas this runner (and its clones) is driving, for a second start to wait on.
    pub(super) running: Arc<std::sync::Mutex<HashMap<Uuid, tokio::sync::watch::Sender<bool>>>>,
    /// Wakes this runner's recovery loop before its next pass: a signal was sent to a
    /// waiting saga.
    pub(super) nudge: Arc<tokio::sync::Notify>,
}

impl SagaRunner {
    /// The log this runner writes to.
    pub fn log(&self) -> &Arc<dyn SagaLog> {
        &self.log
    }

    /// Records a new saga and runs it to an outcome. The saga's id is a fresh random
    /// UUID (v4), so its first characters tell it apart in the operator views; use
    /// [`run_with_id`](Self::run_with_id) to name it yourself.
    ///
    /// # Errors
    ///
    /// Only when the log fails ([`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure)) or another runner took
    /// the saga over ([`ErrorKind::Conflict`](crate::ErrorKind::Conflict), `flext.saga.lease_lost`): the saga is then
    /// in flight in the log, and [`recover`](Self::recover) finishes it. A failing step
    /// is not an error: it is a [`SagaOutcome::Compensated`] or
    /// [`SagaOutcome::Stuck`]. A saga that reaches a `#[saga_step(sleep)]` step returns
    /// [`SagaOutcome::Sleeping`] with its wake-up time: the recovery loop
    /// ([`spawn_recovery`](Self::spawn_recovery)) of whichever runner passes after that
    /// time finishes it.
    ///
    /// The future is boxed (one allocation beside the log's writes), so that a type
    /// without `#[saga]` is one error, at the argument, not one more at each use of the
    /// future.
    pub fn run<'a, S: Saga>(
        &'a self,
        saga: S,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<SagaOutcome<S::Output>>> {
        self.run_with_id(Uuid::new_v4(), saga, ctx)
    }

    /// The backoff of a step or compensation whose first wait is `first_ms`.
    pub(super) fn backoff(&self, first_ms: u64) -> Backoff {
        Backoff::new(Duration::from_millis(first_ms), self.backoff_cap)
    }

    /// Takes this runner's liveness lock in the log ([`SagaLog::hold_liveness`]), or
    /// checks it is still held; whether it is. A log that cannot take it is logged at
    /// WARN and the runner goes on: takeovers of its sagas then wait for the lease.
    pub(super) async fn hold_liveness(&self) -> bool {
        self.liveness_asked
            .store(true, std::sync::atomic::Ordering::Relaxed);
        match self.log.hold_liveness(&self.lease.owner).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(owner = %self.lease.owner, error = %e, "cannot take the runner's liveness lock; a restart will wait for its sagas' leases");
                false
            }
        }
    }

    /// The owner prefix of this runner's incarnations: `name/`.
    pub(super) fn owner_prefix(&self) -> String {
        match self.lease.owner.rsplit_once('/') {
            Some((name, _)) => format!("{name}/"),
            None => format!("{}/", self.lease.owner),
        }
    }

    /// The sagas `filter` matches, oldest first, for operators.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use flext::saga::{MemoryLog, SagaFilter, SagaRunner, SagaState};
    /// let runner = SagaRunner::builder(MemoryLog::new()).build();
    /// let stuck = runner.list(&SagaFilter::default().state(SagaState::Stuck)).await.unwrap();
    /// assert!(stuck.is_empty());
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// When the log cannot be read ([`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure)).
    pub async fn list(&self, filter: &SagaFilter) -> Result<Vec<SagaSummary>> {
        self.log.list(filter).await
    }

    /// Every transition of saga `id`, oldest first, with when it was written: what it
    /// did, how many attempts each step and compensation took, its errors, and what
    /// operators did to it.
    ///
    /// # Errors
    ///
    /// `flext.saga.not_found` ([`ErrorKind::NotFound`](crate::ErrorKind::NotFound)) for
    /// an unknown id; [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure)
    /// when the log cannot be read.
    pub async fn history(&self, id: Uuid) -> Result<Vec<HistoryEntry>> {
        self.log.history(id).await
    }

    /// Drives `saga` under `claim` from `p` to an outcome, in a `flext.saga` span. One
    /// function for every saga type ([`ErasedSaga`]); the caller decodes the output.
    pub(super) async fn drive(
        &self,
        saga: &dyn ErasedSaga,
        claim: &Claim,
        p: Progress,
        ctx: &Context,
    ) -> Result<SagaOutcome<serde_json::Value>> {
        use tracing::Instrument;
        let span = tracing::info_span!("flext.saga", saga = saga.name(), saga_id = %claim.id, epoch = claim.epoch, correlation_id = %ctx.correlation_id());
        self.drive_in_span(saga, claim, p, ctx)
            .instrument(span)
            .await
    }

    async fn drive_in_span(
        &self,
        saga: &dyn ErasedSaga,
        claim: &Claim,
        mut p: Progress,
        ctx: &Context,
    ) -> Result<SagaOutcome<serde_json::Value>> {
        let id = claim.id;
        let steps = saga.steps();
        let pivot = steps.iter().position(|s| s.pivot);

        while let Phase::Forward { next } = p.phase {
            if next >= steps.len() {
                break;
            }
            let spec = &steps[next];
            // A sleep step that already ran: wake when due, or sleep on.
            if let Some((at, until_ms, output)) = p.sleeping.clone()
                && at == next
            {
                if super::now_ms() < until_ms {
                    return self.sleep(claim, spec, next, until_ms, output).await;
                }
                self.wake(claim, &mut p, next, output, steps.len()).await?;
                continue;
            }
            // A signal step runs with its receipt, or the saga waits for one.
            if let Some(signal) = spec.signal
                && let Reached::Parked(outcome) =
                    self.reach_signal(claim, spec, signal, next, &mut p).await?
            {
                return Ok(outcome);
            }
            // A child step runs with its child's outcome, or the saga waits for it.
            if let Some(child) = spec.child
                && let Reached::Parked(outcome) = self
                    .reach_child(claim, spec, child, next, &mut p, ctx)
                    .await?
            {
                return Ok(outcome);
            }
            let after_pivot = pivot.is_some_and(|p| next > p);
            let retry_any = match spec.retry_on {
                Some(RetryOn::Any) => true,
                Some(RetryOn::Transient) => false,
                None => after_pivot,
            };
            claim.check()?;
            let (result, attempts) = {
                let scope = StepScope {
                    ctx: step_context(ctx, claim, spec.name, false),
                    outputs: &p.outputs,
                    receipt: p.receipts[next].as_ref(),
                    state: &self.state,
                    step: spec.name,
                };
                self.with_heartbeat(
                    claim,
                    spec.name,
                    attempt(
                        spec.name,
                        spec.timeout_ms,
                        self.backoff(spec.backoff_ms),
                        spec.retries,
                        retry_any,
                        || AssertUnwindSafe(saga.run_step(next, &scope)).catch_unwind(),
                    ),
                )
                .await?
            };
            let result = refuse_changed_output(id, result)?;
            let result = match result {
                Ok(output) if spec.sleep => match super::timer::sleep_until(spec.name, &output) {
                    Ok(until_ms) if until_ms > super::now_ms() => {
                        return self.sleep(claim, spec, next, until_ms, output).await;
                    }
                    Ok(_) => Ok(output),
                    Err(e) => Err(e),
                },
                other => other,
            };
            match result {
                Ok(output) => {
                    let last = next + 1 == steps.len();
                    let state = if last {
                        SagaState::Completed
                    } else {
                        SagaState::Running
                    };
                    self.write(
                        claim,
                        &Transition::StepCompleted {
                            index: next,
                            output: output.clone(),
                            attempts,
                        },
                        state,
                    )
                    .await?;
                    p.outputs[next] = Some(output);
                    p.phase = Phase::Forward { next: next + 1 };
                }
                Err(error) if after_pivot => {
                    let record = ErrorRecord::from(&error);
                    self.write(
                        claim,
                        &Transition::Stuck {
                            step: spec.name.to_owned(),
                            error: record,
                            attempts,
                        },
                        SagaState::Stuck,
                    )
                    .await?;
                    tracing::error!(step = spec.name, %error, "saga stuck after its pivot");
                    return Ok(SagaOutcome::Stuck {
                        saga_id: id,
                        step: spec.name.to_owned(),
                        error,
                        remaining: steps[next..].iter().map(|s| s.name.to_owned()).collect(),
                    });
                }
                Err(error) => {
                    let record = ErrorRecord::from(&error);
                    tracing::warn!(step = spec.name, %error, "saga step failed; compensating");
                    p.phase = Phase::Compensating {
                        failed: next,
                        error: record.clone(),
                    };
                    let state = if p.to_undo(steps).is_empty() {
                        SagaState::Compensated
                    } else {
                        SagaState::Compensating
                    };
                    self.write(
                        claim,
                        &Transition::StepFailed {
                            index: next,
                            error: record,
                            attempts,
                        },
                        state,
                    )
                    .await?;
                }
            }
        }

        match p.phase.clone() {
            Phase::Compensating { .. } if !p.to_undo(steps).is_empty() => {
                self.compensate(saga, claim, p, ctx).await
            }
            _ => Ok(p.outcome(steps, id)),
        }
    }

    async fn compensate(
        &self,
        saga: &dyn ErasedSaga,
        claim: &Claim,
        mut p: Progress,
        ctx: &Context,
    ) -> Result<SagaOutcome<serde_json::Value>> {
        let id = claim.id;
        let steps = saga.steps();
        let pending = p.to_undo(steps);
        for (n, &i) in pending.iter().enumerate() {
            let spec = &steps[i];
            // The compensation's name: its scope's, its heartbeat's and its errors'.
            let compensation = spec.compensation.unwrap_or(spec.name);
            claim.check()?;
            let (result, attempts) = {
                let scope = StepScope {
                    ctx: step_context(ctx, claim, spec.name, true),
                    outputs: &p.outputs,
                    receipt: None,
                    state: &self.state,
                    step: compensation,
                };
                self.with_heartbeat(
                    claim,
                    compensation,
                    attempt(
                        compensation,
                        spec.timeout_ms,
                        self.backoff(spec.compensate_backoff_ms.unwrap_or(spec.backoff_ms)),
                        spec.compensate_retries
                            .unwrap_or(self.compensation_attempts - 1),
                        true,
                        || {
                            let undo: BoxFuture<'_, Result<()>> = match spec.child {
                                // A child step is undone by its child's compensations.
                                Some(child) => Box::pin(self.compensate_child(id, spec, child)),
                                None => saga.compensate(i, &scope),
                            };
                            AssertUnwindSafe(undo).catch_unwind()
                        },
                    ),
                )
                .await?
            };
            let result = refuse_changed_output(id, result)?;
            match result {
                Ok(()) => {
                    let state = if n + 1 == pending.len() {
                        SagaState::Compensated
                    } else {
                        SagaState::Compensating
                    };
                    self.write(
                        claim,
                        &Transition::CompensationCompleted { index: i, attempts },
                        state,
                    )
                    .await?;
                    p.compensated.push(i);
                }
                Err(e) => {
                    let step = format!("compensate {}", spec.name);
                    self.write(
                        claim,
                        &Transition::Stuck {
                            step: step.clone(),
                            error: ErrorRecord::from(&e),
                            attempts,
                        },
                        SagaState::Stuck,
                    )
                    .await?;
                    tracing::error!(step = spec.name, error = %e, "compensation failed; saga stuck");
                    return Ok(SagaOutcome::Stuck {
                        saga_id: id,
                        step,
                        error: e,
                        remaining: pending[n..]
                            .iter()
                            .map(|&j| format!("compensate {}", steps[j].name))
                            .collect(),
                    });
                }
            }
        }
        Ok(p.outcome(steps, id))
    }
}

/// A logged output that no longer decodes (a changed type under the same name) is not
/// the step failing: the saga is refused as it stands, as a changed definition is, and
/// nothing is written.
fn refuse_changed_output<T>(id: Uuid, result: Result<T>) -> Result<Result<T>> {
    match result {
        Err(e) if is_changed_output(&e) => Err(Error::internal(
            e.code().to_owned(),
            format!(
                "saga {id} is left as it is: {}; restore the type the log was written with, or give the new field a serde default",
                e.message()
            ),
        )),
        other => Ok(other),
    }
}
