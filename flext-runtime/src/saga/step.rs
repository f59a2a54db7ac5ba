//! What a running step sees ([`StepScope`]), its context, and how one attempt of a step
//! or compensation is run: timeout, panic, retries with [`Backoff`].

use std::any::type_name;
use std::time::Duration;

use super::{Durable, StepSpec};
use crate::backoff::Backoff;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::state::{FromState, StateMap};

/// What a running step can reach: its context (with its idempotency key), the outputs of
/// earlier steps as read back from the log, and the runner's state. Used by generated
/// code.
pub struct StepScope<'a> {
    pub(super) ctx: Context,
    pub(super) outputs: &'a [Option<serde_json::Value>],
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

/// Runs `f` up to `retries + 1` times with `backoff` between attempts (it starts at the
/// step's or compensation's first wait and stops growing at the runner's
/// [`backoff_cap`](super::SagaRunnerBuilder::backoff_cap), 60 s unless set), each
/// attempt bounded by the step's `timeout_ms`. Retries transient errors
/// only, or every error when `retry_any` (steps after the pivot, compensations). A panic
/// is an [`ErrorKind::Internal`](crate::ErrorKind::Internal) error. Returns the last
/// attempt's result and how many attempts were made.
pub(crate) async fn attempt<T, F, Fut>(
    spec: &StepSpec,
    backoff: Backoff,
    retries: u32,
    retry_any: bool,
    mut f: F,
) -> (Result<T>, u32)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::thread::Result<Result<T>>>,
{
    let mut tried = 0;
    loop {
        let run = async {
            match f().await {
                Ok(result) => result,
                Err(_) => Err(Error::internal(
                    crate::codes::SAGA_STEP_PANICKED,
                    format!("saga step `{}` panicked", spec.name),
                )),
            }
        };
        let result = match spec.timeout_ms {
            Some(ms) => tokio::time::timeout(Duration::from_millis(ms), run)
                .await
                .unwrap_or_else(|_| {
                    Err(Error::timeout(
                        crate::codes::SAGA_STEP_TIMED_OUT,
                        format!("saga step `{}` did not finish within {ms} ms", spec.name),
                    ))
                }),
            None => run.await,
        };
        match result {
            Err(e)
                if tried < retries
                    && (retry_any || e.kind().is_transient())
                    && !super::runner::is_changed_output(&e) =>
            {
                let wait = backoff.delay(tried + 1);
                tracing::info!(step = spec.name, attempt = tried + 1, wait_ms = wait.as_millis() as u64, error = %e, "retrying saga step");
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                tried += 1;
            }
            other => return (other, tried + 1),
        }
    }
}
