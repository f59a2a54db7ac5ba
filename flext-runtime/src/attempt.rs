//! One attempt loop for the steps of sagas and workflows, below both: how the runner
//! runs one step or compensation (timeout, panic, retries with [`Backoff`]). What a
//! saga's steps are (`saga::StepSpec`) and a workflow's (`workflow::WorkflowStepSpec`)
//! stays with each; an attempt takes only the step's name and time limit.

use std::time::Duration;

use crate::backoff::Backoff;
use crate::error::{Error, Result};

/// Runs `f` up to `retries + 1` times with `backoff` between attempts (it starts at the
/// step's or compensation's first wait and stops growing at the runner's
/// backoff cap, `SagaRunnerBuilder::backoff_cap`, 60 s unless set), each
/// attempt bounded by `timeout_ms` (none when `None`). Retries transient errors
/// only, or every error when `retry_any` (steps after the pivot, compensations). A panic
/// is an [`ErrorKind::Internal`](crate::ErrorKind::Internal) error. Returns the last
/// attempt's result and how many attempts were made.
pub(crate) async fn attempt<T, F, Fut>(
    name: &str,
    timeout_ms: Option<u64>,
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
                    format!("saga step `{name}` panicked"),
                )),
            }
        };
        let result = match timeout_ms {
            Some(ms) => tokio::time::timeout(Duration::from_millis(ms), run)
                .await
                .unwrap_or_else(|_| {
                    Err(Error::timeout(
                        crate::codes::SAGA_STEP_TIMED_OUT,
                        format!("saga step `{name}` did not finish within {ms} ms"),
                    ))
                }),
            None => run.await,
        };
        match result {
            Err(e)
                if tried < retries
                    && (retry_any || e.kind().is_transient())
                    && !is_changed_output(&e) =>
            {
                let wait = backoff.delay(tried + 1);
                tracing::info!(step = name, attempt = tried + 1, wait_ms = wait.as_millis() as u64, error = %e, "retrying saga step");
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                tried += 1;
            }
            other => return (other, tried + 1),
        }
    }
}

/// Whether `e` says a logged output does not decode into the linked code's type.
pub(crate) fn is_changed_output(e: &Error) -> bool {
    e.code() == crate::codes::SAGA_OUTPUT_MISMATCH || e.code() == crate::codes::SAGA_MISSING_OUTPUT
}
