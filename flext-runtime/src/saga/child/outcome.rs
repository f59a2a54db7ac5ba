//! How a child saga ended: what its parent's child step records ([`Ended`], read from
//! the child's record) and receives ([`Child<S>`]).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, ErrorKind, Result};
use crate::saga::{ErrorRecord, OperatorAction, Saga, SagaRecord, SagaState, Transition};

/// What a child step (`#[saga_step(child)]`) receives: how its child saga `S` ended.
///
/// ```
/// use flext::prelude::*;
/// use flext::saga::{Child, MemoryLog, SagaOutcome, SagaRunner};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct ShipParcel { parcel: u32 }
///
/// #[saga]
/// impl ShipParcel {
///     #[saga_step]
///     async fn label(&self) -> Result<String> { Ok(format!("TRACK-{}", self.parcel)) }
/// }
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct ParcelOrder { parcel: u32 }
///
/// #[saga]
/// impl ParcelOrder {
///     /// An ordinary step returns the child saga: its input, logged like any output.
///     #[saga_step]
///     async fn plan(&self) -> Result<ShipParcel> { Ok(ShipParcel { parcel: self.parcel }) }
///
///     /// The child step runs once the child finished, with its outcome.
///     #[saga_step(child)]
///     async fn ship(&self, shipped: Child<ShipParcel>) -> Result<String> {
///         shipped.completed()
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let runner = SagaRunner::builder(MemoryLog::new()).build();
/// let outcome = runner.run(ParcelOrder { parcel: 7 }, &Context::new()).await.unwrap();
/// assert!(matches!(outcome, SagaOutcome::Completed { output, .. } if output == "TRACK-7"));
/// # });
/// ```
///
/// `Child<S>` holds the outcome as the log recorded it; [`completed`](Self::completed)
/// decodes the child's output as `S::Output`.
pub struct Child<S> {
    saga_id: Uuid,
    ended: Ended,
    saga: std::marker::PhantomData<fn() -> S>,
}

impl<S> Child<S> {
    /// The child saga's id ([`child_saga_id`](crate::saga::child_saga_id) of the parent's id and the step's name).
    pub fn saga_id(&self) -> Uuid {
        self.saga_id
    }

    /// How the child ended: [`SagaState::Completed`], [`SagaState::Compensated`] (a
    /// step failed and it compensated) or [`SagaState::Resolved`] (an operator resolved
    /// it by hand).
    pub fn state(&self) -> SagaState {
        match self.ended {
            Ended::Completed { .. } => SagaState::Completed,
            Ended::Compensated { .. } => SagaState::Compensated,
            Ended::Resolved { .. } => SagaState::Resolved,
        }
    }

    /// Why the child did not complete: the failure it compensated for, or the
    /// operator's resolution as a `flext.saga.child_failed` error; `None` when it
    /// completed.
    pub fn error(&self) -> Option<Error> {
        match &self.ended {
            Ended::Completed { .. } => None,
            Ended::Compensated { error, .. } => Some(Error::from(error)),
            Ended::Resolved {
                principal, reason, ..
            } => Some(Error::conflict(
                crate::codes::SAGA_CHILD_FAILED,
                format!(
                    "resolved by hand by {}: {}",
                    crate::input::echo(principal),
                    crate::input::echo(reason)
                ),
            )),
        }
    }
}

impl<S: Saga> Child<S> {
    /// The child's output, or an error when it did not complete: `shipped.completed()?`
    /// in a step makes a failed child a failure the parent compensates.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::Conflict`], `flext.saga.child_failed`, naming the child and why it
    ///   compensated (its error's message and code) or who resolved it;
    /// - [`ErrorKind::Internal`], `flext.saga.output_mismatch`, when the child's logged
    ///   output does not decode as `S::Output` (its type changed while it ran): the
    ///   parent is then left as it is, as for any logged output that no longer decodes.
    pub fn completed(self) -> Result<S::Output> {
        let id = self.saga_id;
        match self.ended {
            Ended::Completed { output, .. } => <S::Output as crate::saga::Durable>::from_log(
                output,
            )
            .map_err(|e| {
                Error::internal(
                    crate::codes::SAGA_OUTPUT_MISMATCH,
                    format!(
                        "the logged output of child saga `{}` {id} does not decode as `{}`: {e}",
                        S::NAME,
                        std::any::type_name::<S::Output>()
                    ),
                )
            }),
            Ended::Compensated { error, .. } => Err(Error::conflict(
                crate::codes::SAGA_CHILD_FAILED,
                format!(
                    "child saga `{}` {id} compensated: {} ({})",
                    S::NAME,
                    error.message,
                    error.code
                ),
            )),
            Ended::Resolved {
                principal, reason, ..
            } => Err(Error::conflict(
                crate::codes::SAGA_CHILD_FAILED,
                format!(
                    "child saga `{}` {id} was resolved by hand by {}: {}",
                    S::NAME,
                    crate::input::echo(&principal),
                    crate::input::echo(&reason)
                ),
            )),
        }
    }
}

impl<S> std::fmt::Debug for Child<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child")
            .field("saga_id", &self.saga_id)
            .field("state", &self.state())
            .finish()
    }
}

/// How a child ended, as its parent's step records it
/// ([`Transition::SignalReceived`]'s payload).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(super) enum Ended {
    Completed {
        saga_id: Uuid,
        output: serde_json::Value,
    },
    Compensated {
        saga_id: Uuid,
        error: ErrorRecord,
    },
    Resolved {
        saga_id: Uuid,
        principal: String,
        reason: String,
    },
}

/// How `record` ended, read from its transitions; `None` while it has not finished.
pub(super) fn ended(record: &SagaRecord) -> Option<Ended> {
    let saga_id = record.id;
    let transitions = record.transitions.iter().rev();
    match record.state {
        SagaState::Completed => Some(Ended::Completed {
            saga_id,
            output: transitions
                .filter_map(|t| match t {
                    Transition::StepCompleted { output, .. } => Some(output.clone()),
                    _ => None,
                })
                .next()
                .unwrap_or(serde_json::Value::Null),
        }),
        SagaState::Compensated => Some(Ended::Compensated {
            saga_id,
            error: transitions
                .filter_map(|t| match t {
                    Transition::StepFailed { error, .. } => Some(error.clone()),
                    Transition::Operator {
                        action: action @ (OperatorAction::Abort | OperatorAction::Compensate),
                        principal,
                        reason,
                    } => Some(ErrorRecord {
                        kind: ErrorKind::Conflict,
                        code: if *action == OperatorAction::Abort {
                            crate::codes::SAGA_ABORTED
                        } else {
                            crate::codes::SAGA_PARENT_COMPENSATED
                        }
                        .to_owned(),
                        message: format!("{action} by {principal}: {reason}"),
                    }),
                    _ => None,
                })
                .next()?,
        }),
        SagaState::Resolved => transitions
            .filter_map(|t| match t {
                Transition::Operator {
                    action: OperatorAction::Resolve,
                    principal,
                    reason,
                } => Some(Ended::Resolved {
                    saga_id,
                    principal: principal.clone(),
                    reason: reason.clone(),
                }),
                _ => None,
            })
            .next(),
        _ => None,
    }
}

/// A child step's recorded outcome as a [`Child<S>`].
pub(in crate::saga) fn decode<S>(step: &str, payload: &serde_json::Value) -> Result<Child<S>> {
    let ended: Ended = serde_json::from_value(payload.clone()).map_err(|e| {
        Error::internal(
            crate::codes::SAGA_OUTPUT_MISMATCH,
            format!("the child outcome recorded for step `{step}` does not decode: {e}"),
        )
    })?;
    let saga_id = match &ended {
        Ended::Completed { saga_id, .. }
        | Ended::Compensated { saga_id, .. }
        | Ended::Resolved { saga_id, .. } => *saga_id,
    };
    Ok(Child {
        saga_id,
        ended,
        saga: std::marker::PhantomData,
    })
}
