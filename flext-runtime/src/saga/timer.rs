//! Durable timers: a `#[saga_step(sleep)]` step puts its saga to sleep until a time
//! recorded in the log, leased to no runner, and the recovery loop wakes it.

use std::time::Duration;

use super::lease::Claim;
use super::progress::{Phase, Progress};
use super::{SagaOutcome, SagaRunner, SagaState, StepSpec, Transition};
use crate::error::{Error, Result};

impl SagaRunner {
    /// Records that saga `claim.id` sleeps at sleep step `index` until `until_ms` and
    /// lets it go: leased to no runner ([`SLEEPING_OWNER`]) until then, so that the
    /// recovery loop of whichever runner passes after that time wakes it.
    pub(super) async fn sleep(
        &self,
        claim: &Claim,
        spec: &StepSpec,
        index: usize,
        until_ms: u64,
        output: serde_json::Value,
    ) -> Result<SagaOutcome<serde_json::Value>> {
        let transition = Transition::Sleeping {
            index,
            until_ms,
            output,
        };
        self.park(claim, transition, SLEEPING_OWNER.to_owned(), until_ms)
            .await?;
        tracing::info!(step = spec.name, until_ms, "saga sleeps");
        Ok(SagaOutcome::Sleeping {
            saga_id: claim.id,
            step: spec.name.to_owned(),
            until_ms,
        })
    }

    /// Completes sleep step `index` of a saga whose wake-up time has come.
    pub(super) async fn wake(
        &self,
        claim: &Claim,
        p: &mut Progress,
        index: usize,
        output: serde_json::Value,
        steps: usize,
    ) -> Result<()> {
        let state = if index + 1 == steps {
            SagaState::Completed
        } else {
            SagaState::Running
        };
        self.write(
            claim,
            &Transition::StepCompleted {
                index,
                output: output.clone(),
                attempts: 1,
            },
            state,
        )
        .await?;
        p.outputs[index] = Some(output);
        p.sleeping = None;
        p.phase = Phase::Forward { next: index + 1 };
        Ok(())
    }
}

/// The owner a sleeping saga is leased to: no runner, so that the lease (the wake-up
/// time) is the timer. Without a `/`, so that no runner's restart takes it back early as
/// one of its own incarnations.
pub(crate) const SLEEPING_OWNER: &str = "timer";

/// When a sleep step whose output is `output` (a `Duration`, as the log keeps it) wakes
/// the saga, in milliseconds since the Unix epoch.
///
/// # Errors
///
/// `flext.saga.output_mismatch` when the output is not a duration (a hand-written
/// `Saga` impl: `#[saga_step(sleep)]` checks the return type when it compiles).
pub(super) fn sleep_until(step: &str, output: &serde_json::Value) -> Result<u64> {
    let d: Duration = serde_json::from_value(output.clone()).map_err(|e| {
        Error::internal(
            crate::codes::SAGA_OUTPUT_MISMATCH,
            format!("sleep step `{step}` must return a `Duration`: {e}"),
        )
    })?;
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    Ok(super::now_ms().saturating_add(ms))
}
