//! The driver: start every step whose dependencies have settled, poll the running ones
//! together, record each outcome, and compensate after a required step's failure.

use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tracing::Instrument;

use super::{StepOutput, StepRecord, StepStatus, Workflow, WorkflowRun, WorkflowScope};
use crate::attempt::{StepSpec, attempt};
use crate::backoff::Backoff;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::state::StateMap;

/// How compensations are retried: the saga runner's settings.
#[derive(Clone, Copy)]
pub(crate) struct Policy {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// The first wait between attempts, doubled after each.
    pub first: Duration,
    /// The longest wait.
    pub cap: Duration,
}

impl Policy {
    /// [`Workflow::run`]'s: 5 attempts from 100 ms, the saga cap.
    pub const DEFAULT: Policy = Policy {
        attempts: 5,
        first: Duration::from_millis(100),
        cap: Backoff::SAGA_CAP,
    };
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Waiting,
    Running,
    Settled,
}

/// Runs `workflow` to a [`WorkflowRun`]; see the module documentation.
pub(crate) async fn drive<W: Workflow>(
    workflow: &W,
    ctx: &Context,
    state: &StateMap,
    policy: Policy,
) -> WorkflowRun {
    let span = tracing::info_span!("flext.workflow", workflow = W::NAME, correlation_id = %ctx.correlation_id());
    drive_in_span(workflow, ctx, state, policy)
        .instrument(span)
        .await
}

async fn drive_in_span<W: Workflow>(
    workflow: &W,
    ctx: &Context,
    state: &StateMap,
    policy: Policy,
) -> WorkflowRun {
    let steps = W::STEPS;
    let stats = W::step_stats();
    let n = steps.len();
    let outputs: Vec<OnceLock<StepOutput>> = (0..n).map(|_| OnceLock::new()).collect();
    // One child context for the run: its steps are parts of one operation.
    let run_ctx = ctx.child();
    let scopes: Vec<WorkflowScope<'_>> = steps
        .iter()
        .map(|s| WorkflowScope {
            ctx: run_ctx.clone(),
            outputs: &outputs,
            state,
            step: s.name,
        })
        .collect();
    let mut slots = vec![Slot::Waiting; n];
    let mut records: Vec<StepRecord> = steps
        .iter()
        .map(|s| StepRecord {
            name: s.name,
            optional: s.optional,
            status: StepStatus::NotRun,
            duration: None,
        })
        .collect();
    let mut completed = Vec::with_capacity(n);
    let mut failed: Option<usize> = None;
    let mut running = FuturesUnordered::new();

    loop {
        if failed.is_none() {
            // Skipping a step settles it, which may make others ready: repeat until
            // nothing changes.
            let mut changed = true;
            while changed {
                changed = false;
                for (i, spec) in steps.iter().enumerate() {
                    let ready = slots[i] == Slot::Waiting
                        && spec
                            .depends_on
                            .iter()
                            .all(|&d| slots.get(d) == Some(&Slot::Settled));
                    if !ready {
                        continue;
                    }
                    if let Some(&missing) = spec
                        .needs
                        .iter()
                        .find(|&&d| outputs.get(d).and_then(OnceLock::get).is_none())
                    {
                        let missing = steps.get(missing).map_or("?", |s| s.name);
                        tracing::info!(
                            step = spec.name,
                            missing,
                            "workflow step skipped: an output it takes is missing"
                        );
                        records[i].status = StepStatus::Skipped { missing };
                        slots[i] = Slot::Settled;
                        changed = true;
                        continue;
                    }
                    slots[i] = Slot::Running;
                    let scope = &scopes[i];
                    let started = match stats.get(i) {
                        Some(s) => s.start(),
                        None => Instant::now(),
                    };
                    let step_span = tracing::info_span!("flext.workflow.step", step = spec.name);
                    running.push(
                        async move {
                            let run = AssertUnwindSafe(workflow.run_step(i, scope))
                                .catch_unwind()
                                .map(|r| r.unwrap_or_else(|_| Err(panicked(spec.name))));
                            let result = match spec.timeout_ms {
                                Some(ms) => tokio::time::timeout(Duration::from_millis(ms), run)
                                    .await
                                    .unwrap_or_else(|_| Err(timed_out(spec.name, ms))),
                                None => run.await,
                            };
                            (i, result, started.elapsed())
                        }
                        .instrument(step_span),
                    );
                }
            }
        }
        let Some((i, result, elapsed)) = running.next().await else {
            break;
        };
        let result: Result<StepOutput> = result;
        slots[i] = Slot::Settled;
        records[i].duration = Some(elapsed);
        if let Some(s) = stats.get(i) {
            s.record_duration(elapsed, result.is_err());
        }
        let spec = &steps[i];
        match result {
            Ok(output) => {
                // invariant: each index is started once, so its cell is empty.
                let _ = outputs[i].set(output);
                records[i].status = StepStatus::Completed;
                completed.push(i);
            }
            Err(error) => {
                if spec.optional {
                    tracing::warn!(step = spec.name, %error, "optional workflow step failed; going on");
                } else {
                    tracing::warn!(step = spec.name, %error, "required workflow step failed; stopping");
                    failed.get_or_insert(i);
                }
                records[i].status = StepStatus::Failed(error);
            }
        }
    }

    drop(running);
    let mut compensated = Vec::new();
    if failed.is_some() {
        for &i in completed.iter().rev() {
            let spec = &steps[i];
            let Some(compensation) = spec.compensation else {
                continue;
            };
            let as_saga = StepSpec {
                name: compensation,
                compensation: Some(compensation),
                pivot: false,
                retries: 0,
                backoff_ms: 0,
                timeout_ms: None,
                retry_on: None,
                compensate_retries: None,
                compensate_backoff_ms: None,
            };
            let scope = &scopes[i];
            let (result, attempts) = attempt(
                &as_saga,
                Backoff::new(policy.first, policy.cap),
                policy.attempts.saturating_sub(1),
                true,
                || AssertUnwindSafe(workflow.compensate(i, scope)).catch_unwind(),
            )
            .await;
            match result {
                Ok(()) => {
                    records[i].status = StepStatus::Compensated;
                    compensated.push(spec.name);
                }
                Err(error) => {
                    tracing::error!(step = spec.name, attempts, %error, "workflow compensation failed");
                    records[i].status = StepStatus::CompensationFailed(error);
                }
            }
        }
    }
    drop(scopes);
    WorkflowRun {
        workflow: W::NAME,
        steps: records,
        outputs: outputs.into_iter().map(OnceLock::into_inner).collect(),
        failed,
        compensated,
    }
}

fn panicked(step: &str) -> Error {
    Error::internal(
        crate::codes::SERVICE_STEP_PANICKED,
        format!("workflow step `{step}` panicked"),
    )
}

fn timed_out(step: &str, ms: u64) -> Error {
    Error::timeout(
        crate::codes::SERVICE_STEP_TIMED_OUT,
        format!("workflow step `{step}` did not finish within {ms} ms"),
    )
}
