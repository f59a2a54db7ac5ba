//! The saga as the runner drives it: one small vtable per saga type over [`Saga`]'s
//! constants and step methods, so that the driver (the forward loop, compensation, the
//! heartbeat, fenced writes, idempotent starts and recovery) is compiled once, in
//! flext-runtime, instead of once per saga type in the user's crate. The typed edges
//! stay generic and thin: encoding the input, decoding the last output
//! ([`typed_outcome`]), and decoding a logged input in recovery.
//!
//! The pattern is the one `dyn Any`-based registries and `erased-serde` use: a
//! blanket implementation of an object-safe trait for every type of a trait that is not
//! object safe (here because of its associated constants and output type).

use super::{Durable, Saga};
use super::{SagaOutcome, SagaRecord, StepScope, StepSpec};
use crate::error::{Error, Result};
use crate::future::BoxFuture;

/// A [`Saga`] behind a vtable. Implemented for every `Saga`.
pub(super) trait ErasedSaga: Send + Sync {
    /// [`Saga::NAME`].
    fn name(&self) -> &'static str;
    /// [`Saga::STEPS`].
    fn steps(&self) -> &'static [StepSpec];
    /// [`Saga::DEFINITION`].
    fn definition(&self) -> &'static str;
    /// Whether this code can drive a logged saga of the type
    /// ([`check`](super::recovery::check) for the type).
    fn check(&self) -> fn(&SagaRecord) -> Result<()>;
    /// [`Saga::run_step`].
    fn run_step<'a>(
        &'a self,
        index: usize,
        scope: &'a StepScope<'a>,
    ) -> BoxFuture<'a, Result<serde_json::Value>>;
    /// [`Saga::compensate`].
    fn compensate<'a>(
        &'a self,
        index: usize,
        scope: &'a StepScope<'a>,
    ) -> BoxFuture<'a, Result<()>>;
}

impl<S: Saga> ErasedSaga for S {
    fn name(&self) -> &'static str {
        S::NAME
    }
    fn steps(&self) -> &'static [StepSpec] {
        S::STEPS
    }
    fn definition(&self) -> &'static str {
        S::DEFINITION
    }
    fn check(&self) -> fn(&SagaRecord) -> Result<()> {
        super::recovery::check::<S>
    }
    fn run_step<'a>(
        &'a self,
        index: usize,
        scope: &'a StepScope<'a>,
    ) -> BoxFuture<'a, Result<serde_json::Value>> {
        Saga::run_step(self, index, scope)
    }
    fn compensate<'a>(
        &'a self,
        index: usize,
        scope: &'a StepScope<'a>,
    ) -> BoxFuture<'a, Result<()>> {
        Saga::compensate(self, index, scope)
    }
}

/// The outcome the erased driver reports (the last output as logged JSON) with that
/// output decoded as `S::Output`.
///
/// # Errors
///
/// `flext.saga.output_mismatch` when the last step's logged output does not decode as
/// `S::Output`.
pub(super) fn typed_outcome<S: Saga>(
    outcome: SagaOutcome<serde_json::Value>,
) -> Result<SagaOutcome<S::Output>> {
    Ok(match outcome {
        SagaOutcome::Completed { saga_id, output } => match S::Output::from_log(output) {
            Ok(output) => SagaOutcome::Completed { saga_id, output },
            Err(e) => return Err(output_mismatch(saga_id, S::NAME, &e)),
        },
        SagaOutcome::Compensated {
            saga_id,
            failed_step,
            error,
            compensated,
        } => SagaOutcome::Compensated {
            saga_id,
            failed_step,
            error,
            compensated,
        },
        SagaOutcome::Stuck {
            saga_id,
            step,
            error,
            remaining,
        } => SagaOutcome::Stuck {
            saga_id,
            step,
            error,
            remaining,
        },
        SagaOutcome::Resolved {
            saga_id,
            principal,
            reason,
        } => SagaOutcome::Resolved {
            saga_id,
            principal,
            reason,
        },
        SagaOutcome::Sleeping {
            saga_id,
            step,
            until_ms,
        } => SagaOutcome::Sleeping {
            saga_id,
            step,
            until_ms,
        },
        SagaOutcome::Waiting {
            saga_id,
            step,
            signal,
            until_ms,
        } => SagaOutcome::Waiting {
            saga_id,
            step,
            signal,
            until_ms,
        },
    })
}

#[cold]
fn output_mismatch(saga_id: uuid::Uuid, name: &str, e: &serde_json::Error) -> Error {
    Error::internal(
        crate::codes::SAGA_OUTPUT_MISMATCH,
        format!("saga {saga_id}: the last output of `{name}` does not decode: {e}"),
    )
}
