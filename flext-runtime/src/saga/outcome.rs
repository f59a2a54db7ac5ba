//! How a saga ended.

use serde::{Serialize, Serializer};
use uuid::Uuid;

use super::SagaState;
use crate::error::Error;

/// How a saga ended, or where it waits.
#[derive(Debug)]
#[non_exhaustive]
pub enum SagaOutcome<T> {
    /// Every step succeeded.
    Completed {
        /// The saga's id.
        saga_id: Uuid,
        /// The last step's output.
        output: T,
    },
    /// A step failed and every completed step was undone.
    Compensated {
        /// The saga's id.
        saga_id: Uuid,
        /// The step that failed.
        failed_step: String,
        /// Why it failed.
        error: Error,
        /// The steps undone, in the order they were undone.
        compensated: Vec<String>,
    },
    /// A step after the pivot, or a compensation, kept failing.
    Stuck {
        /// The saga's id.
        saga_id: Uuid,
        /// The step or compensation that kept failing.
        step: String,
        /// Its last error.
        error: Error,
        /// What is left for an operator: the steps still to run or to undo.
        remaining: Vec<String>,
    },
    /// An operator marked the saga resolved by hand
    /// ([`OperatorAction::Resolve`](super::OperatorAction::Resolve)).
    Resolved {
        /// The saga's id.
        saga_id: Uuid,
        /// Who resolved it.
        principal: String,
        /// Why.
        reason: String,
    },
    /// The saga sleeps at a `#[saga_step(sleep)]` step until `until_ms` (milliseconds
    /// since the Unix epoch): no runner holds it meanwhile, and the recovery loop of
    /// any runner wakes it once that time has come (its state stays running).
    Sleeping {
        /// The saga's id.
        saga_id: Uuid,
        /// The sleep step.
        step: String,
        /// When it wakes, in milliseconds since the Unix epoch.
        until_ms: u64,
    },
    /// The saga waits at a `#[saga_step(signal)]` step for a signal `signal` sent with
    /// [`SagaRunner::signal`](super::SagaRunner::signal), or until `until_ms`
    /// (milliseconds since the Unix epoch; `None`: no time limit). No runner holds it
    /// meanwhile; a signal, or the time limit, hands it to the recovery loop of any
    /// runner (its state stays running).
    Waiting {
        /// The saga's id.
        saga_id: Uuid,
        /// The signal step.
        step: String,
        /// The signal's name (its type's name).
        signal: String,
        /// When the wait times out, in milliseconds since the Unix epoch.
        until_ms: Option<u64>,
    },
}

impl<T> SagaOutcome<T> {
    /// The saga's id.
    pub fn saga_id(&self) -> Uuid {
        match self {
            SagaOutcome::Completed { saga_id, .. }
            | SagaOutcome::Compensated { saga_id, .. }
            | SagaOutcome::Stuck { saga_id, .. }
            | SagaOutcome::Resolved { saga_id, .. }
            | SagaOutcome::Sleeping { saga_id, .. }
            | SagaOutcome::Waiting { saga_id, .. } => *saga_id,
        }
    }

    /// The state the outcome leaves the saga in.
    pub fn state(&self) -> SagaState {
        match self {
            SagaOutcome::Completed { .. } => SagaState::Completed,
            SagaOutcome::Compensated { .. } => SagaState::Compensated,
            SagaOutcome::Stuck { .. } => SagaState::Stuck,
            SagaOutcome::Resolved { .. } => SagaState::Resolved,
            SagaOutcome::Sleeping { .. } | SagaOutcome::Waiting { .. } => SagaState::Running,
        }
    }
}

impl<T: Serialize> Serialize for SagaOutcome<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = s.serialize_struct("SagaOutcome", 5)?;
        out.serialize_field("saga_id", &self.saga_id())?;
        out.serialize_field("state", &self.state())?;
        match self {
            SagaOutcome::Completed { output, .. } => out.serialize_field("output", output)?,
            SagaOutcome::Compensated {
                failed_step,
                error,
                compensated,
                ..
            } => {
                out.serialize_field("failed_step", failed_step)?;
                out.serialize_field("error", error)?;
                out.serialize_field("compensated", compensated)?;
            }
            SagaOutcome::Stuck {
                step,
                error,
                remaining,
                ..
            } => {
                out.serialize_field("step", step)?;
                out.serialize_field("error", error)?;
                out.serialize_field("remaining", remaining)?;
            }
            SagaOutcome::Resolved {
                principal, reason, ..
            } => {
                out.serialize_field("principal", principal)?;
                out.serialize_field("reason", reason)?;
            }
            SagaOutcome::Sleeping { step, until_ms, .. } => {
                out.serialize_field("step", step)?;
                out.serialize_field("until_ms", until_ms)?;
            }
            SagaOutcome::Waiting {
                step,
                signal,
                until_ms,
                ..
            } => {
                out.serialize_field("step", step)?;
                out.serialize_field("signal", signal)?;
                out.serialize_field("until_ms", until_ms)?;
            }
        }
        out.end()
    }
}
