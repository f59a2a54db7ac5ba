//! The graph driver: start every step whose dependencies have settled, poll the running
//! ones together, record each outcome, and compensate after a required step's failure.
//!
//! One driver, compiled once, serves both kinds of run: an in-memory run records
//! nothing; a durable run (the saga runner's, `crate::saga`) hands every batch of node
//! transitions to a [`Record`] that writes them to the log under its fence, keeps its
//! lease while nodes run, and gives each node its idempotency key. A durable run that
//! recovers starts from a [`Graph`] replayed from the log.
//!
//! [`Record`]: super::erased::Record
//! [`Graph`]: super::graph::Graph

use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tracing::Instrument;

use super::erased::{ErasedWorkflow, NodeEvent, Record, RunPhase};
use super::graph::{Graph, Slot, finish};
use super::{Workflow, WorkflowRun, WorkflowScope, WorkflowStepSpec};
use crate::attempt::attempt;
use crate::backoff::Backoff;
use crate::context::Context;
use crate::error::{Error, ErrorRecord, Result};
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

/// Runs `workflow` in memory to a [`WorkflowRun`]; see the module documentation.
pub(crate) async fn drive<W: Workflow>(
    workflow: &W,
    ctx: &Context,
    state: &StateMap,
    policy: Policy,
) -> WorkflowRun {
    let graph = Graph::new(W::STEPS.len());
    // invariant: without a `Record` nothing the driver calls returns an error.
    drive_graph(workflow, ctx, state, policy, graph, None)
        .await
        .unwrap_or_else(|e| failed_run(W::NAME, W::STEPS, e))
}

/// Runs `workflow` from `graph` to a [`WorkflowRun`], recording through `record` when
/// given, in a `flext.workflow` span.
///
/// # Errors
///
/// Only `record`'s: the run stopped where the log has it (a lost claim, a log that
/// stayed down).
pub(crate) async fn drive_graph(
    workflow: &dyn ErasedWorkflow,
    ctx: &Context,
    state: &StateMap,
    policy: Policy,
    graph: Graph,
    record: Option<&dyn Record>,
) -> Result<WorkflowRun> {
    let span = tracing::info_span!("flext.workflow", workflow = workflow.name(), correlation_id = %ctx.correlation_id());
    drive_in_span(workflow, ctx, state, policy, graph, record)
        .instrument(span)
        .await
}

async fn drive_in_span(
    workflow: &dyn ErasedWorkflow,
    ctx: &Context,
    state: &StateMap,
    policy: Policy,
    mut g: Graph,
    record: Option<&dyn Record>,
) -> Result<WorkflowRun> {
    let steps = workflow.steps();
    let stats = workflow.stats();
    let outputs = std::mem::take(&mut g.outputs);
    // One child context for the run: its steps are parts of one operation.
    let run_ctx = ctx.child();
    let node_ctx = |step: &'static str, compensation: bool| match record {
        Some(r) => r.node_ctx(&run_ctx, step, compensation),
        None => run_ctx.clone(),
    };
    let scopes: Vec<WorkflowScope<'_>> = steps
        .iter()
        .map(|s| WorkflowScope {
            ctx: node_ctx(s.name, false),
            outputs: &outputs,
            state,
            step: s.name,
        })
        .collect();
    let mut durations: Vec<Option<Duration>> = vec![None; steps.len()];
    let mut running = FuturesUnordered::new();
    let mut events: Vec<NodeEvent> = Vec::new();

    loop {
        // Skipping a step settles it, which may make others ready: repeat until nothing
        // changes.
        let mut changed = true;
        while changed {
            changed = false;
            for (i, spec) in steps.iter().enumerate() {
                let ready = g.slots[i] == Slot::Waiting
                    && (g.failed.is_none() || g.restart[i])
                    && spec
                        .depends_on
                        .iter()
                        .all(|&d| g.slots.get(d) == Some(&Slot::Settled));
                if !ready {
                    continue;
                }
                if let Some(&missing) = spec
                    .needs
                    .iter()
                    .find(|&&d| outputs.get(d).and_then(OnceLock::get).is_none())
                {
                    let name = steps.get(missing).map_or("?", |s| s.name);
                    tracing::info!(
                        step = spec.name,
                        missing = name,
                        "workflow step skipped: an output it takes is missing"
                    );
                    g.skip(i, name);
                    events.push(NodeEvent::Skipped { index: i, missing });
                    changed = true;
                    continue;
                }
                if !g.restart[i] {
                    events.push(NodeEvent::Started(i));
                }
                g.slots[i] = Slot::Running;
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
        // One write for everything that happened since the last: the nodes that settled
        // together, the skips they caused and the starts they allowed (group commit).
        if let Some(r) = record
            && !events.is_empty()
        {
            r.record(&events, g.phase(steps, running.len())).await?;
        }
        events.clear();
        let next = match record {
            Some(r) => {
                let mut next = None;
                r.keep(Box::pin(async { next = running.next().await }))
                    .await?;
                next
            }
            None => running.next().await,
        };
        let Some(first) = next else {
            break;
        };
        let mut settled = vec![first];
        while let Some(Some(more)) = running.next().now_or_never() {
            settled.push(more);
        }
        for (i, result, elapsed) in settled {
            durations[i] = Some(elapsed);
            if let Some(s) = stats.get(i) {
                s.record_duration(elapsed, result.is_err());
            }
            let spec = &steps[i];
            let result = match (result, record) {
                (Ok(output), Some(r)) => r.encode(i, &output).map(|json| (output, json)),
                (Ok(output), None) => Ok((output, serde_json::Value::Null)),
                (Err(e), _) => Err(e),
            };
            match result {
                Ok((output, json)) => {
                    // invariant: a node settles once, so its cell is empty.
                    let _ = outputs[i].set(output);
                    g.completed_here(i);
                    events.push(NodeEvent::Completed {
                        index: i,
                        output: json,
                        attempts: 1,
                    });
                }
                Err(error) => {
                    if spec.optional {
                        tracing::warn!(step = spec.name, %error, "optional workflow step failed; going on");
                    } else {
                        tracing::warn!(step = spec.name, %error, "required workflow step failed; stopping");
                    }
                    events.push(NodeEvent::Failed {
                        index: i,
                        error: ErrorRecord::from(&error),
                        attempts: 1,
                    });
                    g.fail(i, error, !spec.optional);
                }
            }
        }
    }
    drop(running);

    if g.failed.is_some() {
        let pending = g.to_undo(steps);
        for (n, &i) in pending.iter().enumerate() {
            let spec = &steps[i];
            let Some(compensation) = spec.compensation else {
                continue;
            };
            let scope = WorkflowScope {
                ctx: node_ctx(spec.name, true),
                outputs: &outputs,
                state,
                step: compensation,
            };
            let work = attempt(
                compensation,
                None,
                Backoff::new(policy.first, policy.cap),
                policy.attempts.saturating_sub(1),
                true,
                || AssertUnwindSafe(workflow.compensate(i, &scope)).catch_unwind(),
            );
            let (result, attempts) = match record {
                Some(r) => {
                    let mut done = None;
                    r.keep(Box::pin(async { done = Some(work.await) })).await?;
                    // invariant: `keep` returned Ok, so `work` ran to its end.
                    done.unwrap_or_else(|| (Err(lost(spec.name)), 0))
                }
                None => work.await,
            };
            match result {
                Ok(()) => {
                    g.compensate(i);
                    if let Some(r) = record {
                        let phase = if n + 1 == pending.len() {
                            RunPhase::Compensated
                        } else {
                            RunPhase::Compensating
                        };
                        r.record(&[NodeEvent::Compensated { index: i, attempts }], phase)
                            .await?;
                    }
                }
                Err(error) => {
                    tracing::error!(step = spec.name, attempts, %error, "workflow compensation failed");
                    if let Some(r) = record {
                        let event = NodeEvent::CompensationFailed {
                            index: i,
                            error: ErrorRecord::from(&error),
                            attempts,
                        };
                        r.record(&[event], RunPhase::Stuck).await?;
                    }
                    g.compensation_failed(i, error);
                    break;
                }
            }
        }
    }
    drop(scopes);
    g.outputs = outputs;
    let mut run = finish(workflow.name(), steps, g);
    for (record, duration) in run.steps.iter_mut().zip(durations) {
        record.duration = duration;
    }
    Ok(run)
}

/// A run that could not be driven (unreachable without a `Record`).
#[cold]
fn failed_run(workflow: &'static str, steps: &'static [WorkflowStepSpec], e: Error) -> WorkflowRun {
    let mut g = Graph::new(steps.len());
    g.abort(0, e);
    finish(workflow, steps, g)
}

#[cold]
fn lost(step: &str) -> Error {
    Error::conflict(
        crate::codes::SAGA_LEASE_LOST,
        format!("workflow compensation `{step}` stopped: the run's claim was lost"),
    )
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
