//! Recovery of a durable run: its log replayed by node name into the driver's graph,
//! the check before a claim, and the resume that recovery registers.

use tokio::time::Instant;
use uuid::Uuid;

use super::super::start::Drive;
use super::super::{ErrorRecord, OperatorAction, SagaOutcome, SagaRecord, SagaRunner, Transition};
use super::{DurableRun, DurableWorkflow, NodeCodec};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::future::BoxFuture;
use crate::workflow::{Graph, StepOutput, WorkflowRun, WorkflowStepSpec};

/// The graph a durable run's log leaves: completed nodes with their outputs decoded
/// (`decode`), failures, skips, compensations, a stuck compensation and the operators'
/// actions, in the order they were written.
///
/// # Errors
///
/// `flext.saga.definition_changed` for a node the linked workflow does not have;
/// `flext.saga.log_corrupt` for a saga's transition in a workflow's record; the
/// decoder's `flext.saga.output_mismatch`.
pub(super) fn replay(
    steps: &'static [WorkflowStepSpec],
    decode: fn(usize, serde_json::Value) -> Result<StepOutput>,
    record: &SagaRecord,
) -> Result<Graph> {
    let index = |node: &str| {
        steps.iter().position(|s| s.name == node).ok_or_else(|| {
            Error::internal(
                crate::codes::SAGA_DEFINITION_CHANGED,
                format!(
                    "workflow run {} of `{}` records node {}, which the linked workflow does not have; it is left as it is: restore the node, or accept the definition once the code can resume it",
                    record.id,
                    crate::input::echo(&record.name),
                    crate::input::echo(node)
                ),
            )
        })
    };
    let mut g = Graph::new(steps.len());
    for t in &record.transitions {
        match t {
            Transition::NodeStarted { node } => g.started(index(node)?),
            Transition::NodeCompleted { node, output, .. } => {
                let i = index(node)?;
                let output = decode(i, output.clone()).map_err(|e| {
                    Error::internal(
                        e.code().to_owned(),
                        format!(
                            "workflow run {} of `{}` is left as it is: {}; restore the type the log was written with, or give the new field a serde default",
                            record.id,
                            record.name,
                            e.message()
                        ),
                    )
                })?;
                g.complete(i, output);
            }
            Transition::NodeFailed {
                node,
                error,
                optional,
                ..
            } => g.fail(index(node)?, Error::from(error), !optional),
            Transition::NodeSkipped { node, missing } => {
                let missing = steps
                    .iter()
                    .find(|s| s.name == missing)
                    .map_or("?", |s| s.name);
                g.skip(index(node)?, missing);
            }
            Transition::NodeCompensated { node, .. } => g.compensate(index(node)?),
            Transition::Stuck { step, error, .. } => {
                let node = step.strip_prefix("compensate ").unwrap_or(step);
                g.compensation_failed(index(node)?, Error::from(error));
            }
            Transition::Operator {
                action: OperatorAction::Abort,
                principal,
                reason,
            } => {
                g.abort(
                    g.abort_point().unwrap_or(0),
                    Error::from(&ErrorRecord {
                        kind: crate::ErrorKind::Conflict,
                        code: crate::codes::SAGA_ABORTED.to_owned(),
                        message: format!("aborted by {principal}: {reason}"),
                    }),
                );
                g.clear_stuck();
            }
            // A resume goes back to the compensation that stuck; a resolve ends the
            // run as it stands (the log's state says so, and nothing more runs).
            Transition::Operator { .. } => g.clear_stuck(),
            other => {
                return Err(Error::infrastructure(
                    crate::codes::SAGA_LOG_CORRUPT,
                    format!(
                        "workflow run {} records a saga's transition ({:?}); it is left as it is",
                        record.id,
                        std::mem::discriminant(other)
                    ),
                ));
            }
        }
    }
    Ok(g)
}

/// Whether the linked `W` can drive the logged run `record`: its definition is `W`'s or
/// one `W` accepts, its input decodes as `W`, and every logged output decodes.
///
/// # Errors
///
/// `flext.saga.definition_changed`, `flext.saga.input_mismatch` or
/// `flext.saga.output_mismatch`, naming the run and what to do.
pub(crate) fn check<W: DurableWorkflow>(record: &SagaRecord) -> Result<()> {
    decode::<W>(record).map(drop)
}

fn decode<W: DurableWorkflow>(record: &SagaRecord) -> Result<(W, Graph)> {
    let accepted = record.definition.is_empty()
        || W::DEFINITION.is_empty()
        || record.definition == W::DEFINITION
        || W::ACCEPTS.contains(&record.definition.as_str());
    if !accepted {
        return Err(super::super::definition::changed(
            W::NAME,
            record.id,
            &record.definition,
            W::DEFINITION,
        ));
    }
    let workflow = W::from_log(record.input.clone()).map_err(|e| {
        Error::internal(
            crate::codes::SAGA_INPUT_MISMATCH,
            format!(
                "the logged input of workflow run {} does not decode as `{}`: {e}; it is left as it is",
                record.id,
                W::NAME
            ),
        )
    })?;
    let graph = replay(W::STEPS, W::decode_output, record)?;
    Ok((workflow, graph))
}

/// Resumes a claimed run of durable workflow `W` (the claim acknowledged by a log call
/// that started at `since`), reporting it as a saga outcome: completed with every
/// node's output as a JSON object by name, compensated, or stuck. Registered by
/// `#[workflow(durable)]`.
#[doc(hidden)]
pub fn resume_workflow<'a, W: DurableWorkflow>(
    runner: &'a SagaRunner,
    record: SagaRecord,
    since: Instant,
) -> BoxFuture<'a, Result<SagaOutcome<serde_json::Value>>> {
    Box::pin(async move {
        let (workflow, _) = decode::<W>(&record)?;
        let ctx = Context::new().with_correlation_id(record.correlation_id);
        let run = DurableRun {
            workflow: &workflow,
            codec: NodeCodec::of::<W>(),
        };
        let id = record.id;
        let done = run.claimed(runner, record, since, &ctx).await?;
        Ok(outcome(id, &done, W::encode_output))
    })
}

/// A finished durable run as recovery reports it.
fn outcome(
    id: Uuid,
    run: &WorkflowRun,
    encode: fn(usize, &StepOutput) -> Result<serde_json::Value>,
) -> SagaOutcome<serde_json::Value> {
    let copy = |e: &Error| Error::from(&ErrorRecord::from(e));
    if run.is_stuck() {
        let (step, error) = run
            .steps()
            .iter()
            .find_map(|s| match &s.status {
                crate::workflow::StepStatus::CompensationFailed(e) => {
                    Some((format!("compensate {}", s.name), copy(e)))
                }
                _ => None,
            })
            .unwrap_or_else(|| {
                (
                    String::new(),
                    Error::internal(crate::codes::SAGA_LOG_CORRUPT, "stuck without a stuck node"),
                )
            });
        let remaining = run
            .steps()
            .iter()
            .filter(|s| matches!(s.status, crate::workflow::StepStatus::Completed))
            .map(|s| format!("compensate {}", s.name))
            .collect();
        return SagaOutcome::Stuck {
            saga_id: id,
            step,
            error,
            remaining,
        };
    }
    if let Some(failed) = run.failed_step() {
        return SagaOutcome::Compensated {
            saga_id: id,
            failed_step: failed.name.to_owned(),
            error: run.error().map_or_else(
                || Error::conflict(crate::codes::SAGA_ABORTED, "the run was stopped"),
                copy,
            ),
            compensated: run.compensated().iter().map(|s| (*s).to_owned()).collect(),
        };
    }
    let mut outputs = serde_json::Map::new();
    for (i, s) in run.steps().iter().enumerate() {
        if let Some(value) = run.raw_output(s.name).and_then(|o| encode(i, o).ok()) {
            outputs.insert(s.name.to_owned(), value);
        }
    }
    SagaOutcome::Completed {
        saga_id: id,
        output: serde_json::Value::Object(outputs),
    }
}
