//! What a running step sees ([`StepScope`]) and its context. One attempt of a step or
//! compensation (timeout, panic, retries) is `crate::attempt`, shared with workflows.

use std::any::type_name;

use super::{Durable, Signal};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::state::{FromState, StateMap};

/// What a running step can reach: its context (with its idempotency key), the outputs of
/// earlier steps as read back from the log, and the runner's state. Used by generated
/// code.
pub struct StepScope<'a> {
    pub(super) ctx: Context,
    pub(super) outputs: &'a [Option<serde_json::Value>],
    /// What a signal step received (`None` for any other step).
    pub(super) receipt: Option<&'a super::signal::Receipt>,
    pub(super) state: &'a StateMap,
    pub(super) step: &'static str,
}

impl StepScope<'_> {
    /// The step's context: a child of the saga's, with its idempotency key set.
    pub fn ctx(&self) -> &Context {
        &self.ctx
    }

    /// The output of step `index`, decoded from the log.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Internal`](crate::ErrorKind::Internal) when the step has no recorded output or it does not decode
    /// as `T` (a log written by another version of the saga).
    pub fn output<T: Durable>(&self, index: usize) -> Result<T> {
        let value = self
            .outputs
            .get(index)
            .and_then(Option::as_ref)
            .ok_or_else(|| {
                Error::internal(
                    crate::codes::SAGA_MISSING_OUTPUT,
                    format!(
                        "step `{}` needs the output of step {index}, which the log does not hold",
                        self.step
                    ),
                )
            })?;
        T::from_log(value.clone()).map_err(|e| {
            Error::internal(
                crate::codes::SAGA_OUTPUT_MISMATCH,
                format!(
                    "the logged output of step {index} does not decode as `{}` for step `{}`: {e}",
                    type_name::<T>(),
                    self.step
                ),
            )
        })
    }

    /// What this signal step received, decoded as `T`: [`Signal::Received`] with the
    /// recorded signal, or [`Signal::TimedOut`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Internal`](crate::ErrorKind::Internal): `flext.saga.missing_output`
    /// when the step is not a signal step; `flext.saga.output_mismatch` when the
    /// recorded signal does not decode as `T` (a signal type changed while the saga
    /// waited: restore the type it was sent with, or give the new field a serde
    /// default).
    pub fn signal<T: Durable>(&self) -> Result<Signal<T>> {
        let receipt = self.receipt.ok_or_else(|| {
            Error::internal(
                crate::codes::SAGA_MISSING_OUTPUT,
                format!(
                    "step `{}` takes a `Signal<{}>`, and no signal is recorded for it: only a `#[saga_step(signal)]` step takes one",
                    self.step,
                    type_name::<T>()
                ),
            )
        })?;
        let Some(payload) = &receipt.payload else {
            return Ok(Signal::TimedOut);
        };
        T::from_log(payload.clone())
            .map(Signal::Received)
            .map_err(|e| {
                Error::internal(
                    crate::codes::SAGA_OUTPUT_MISMATCH,
                    format!(
                        "the signal recorded for step `{}` does not decode as `{}`: {e}",
                        self.step,
                        type_name::<T>()
                    ),
                )
            })
    }

    /// How this child step's child saga ended, as a [`Child<S>`](super::Child).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Internal`](crate::ErrorKind::Internal): `flext.saga.missing_output`
    /// when the step is not a child step; `flext.saga.output_mismatch` when the
    /// recorded outcome does not decode (a log written by another version).
    pub fn child<S>(&self) -> Result<super::Child<S>> {
        let payload = self
            .receipt
            .and_then(|r| r.payload.as_ref())
            .ok_or_else(|| {
                Error::internal(
                    crate::codes::SAGA_MISSING_OUTPUT,
                    format!(
                        "step `{}` takes a `Child<{}>`, and no child outcome is recorded for it: only a `#[saga_step(child)]` step takes one",
                        self.step,
                        type_name::<S>()
                    ),
                )
            })?;
        super::child::decode(self.step, payload)
    }

    /// Injected state, as a bus handler gets it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when the runner has no such state.
    pub fn state<T: FromState>(&self) -> Result<T> {
        T::from_state(self.state, self.step)
    }

    /// Encodes a step's output for the log.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Internal`](crate::ErrorKind::Internal) when the output does not serialise.
    pub fn encode<T: Durable>(&self, value: &T) -> Result<serde_json::Value> {
        value.to_log().map_err(|e| {
            Error::internal(
                crate::codes::SAGA_OUTPUT_NOT_SERIALISABLE,
                format!("the output of step `{}` does not serialise: {e}", self.step),
            )
        })
    }
}

pub(super) fn step_context(
    ctx: &Context,
    claim: &super::lease::Claim,
    step: &str,
    compensation: bool,
) -> Context {
    let id = claim.id;
    let key = if compensation {
        format!("{id}:{step}:compensate")
    } else {
        format!("{id}:{step}")
    };
    ctx.child()
        .with_idempotency_key(key)
        .with_fencing_token(claim.epoch)
}
