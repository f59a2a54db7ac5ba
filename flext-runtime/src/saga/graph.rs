//! Durable workflows: a `#[workflow(durable)]` graph run by the saga runner, every node
//! transition recorded by (run id, node name) in the saga log, so that a run a crash
//! interrupted resumes without running its finished nodes again.
//!
//! The run is a record of the saga log like any saga (same table, lease, fencing
//! token, idempotent start by id, definition check, recovery loop and operator actions);
//! its transitions are the node kinds of [`Transition`]. The graph driver is the one
//! in-memory workflows use (`crate::workflow`), given a recorder that writes each batch
//! of node transitions under the run's fence: the nodes that settle together, the skips
//! they cause and the starts they allow go into one write (one commit), so `k` nodes
//! running side by side that finish together cost one write, not `k`.
//!
//! Recovery replays the log into the driver's graph: completed nodes keep their logged
//! outputs (decoded to their types, fed to their dependants) and are not run again;
//! nodes that started and never settled run again under the same idempotency key
//! (`run id:node`); a failing run awaits those, then compensates in reverse completion
//! order, skipping compensations already logged.

use tokio::time::Instant;
use uuid::Uuid;

use super::lease::Claim;
use super::start::Drive;
use super::{
    Durable, ErrorRecord, Fence, OperatorAction, SagaOutcome, SagaRecord, SagaRunner, SagaState,
    Transition,
};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::future::BoxFuture;
use crate::workflow::{
    ErasedWorkflow, Graph, NodeEvent, Policy, Record, RunPhase, StepOutput, Workflow, WorkflowRun,
    WorkflowStepSpec, drive_graph,
};

/// A workflow whose runs are recorded in the saga log: `#[workflow(durable)]`
/// implements it, checking at compile time that the workflow struct (its input) and
/// every node's output are serde ([`Durable`]), one error per type.
///
/// Run one with [`SagaRunner::run_workflow_durable`] or
/// [`SagaRunner::run_workflow_with_id`]; a run a crash interrupted is finished by
/// [`SagaRunner::recover`] (or the recovery loop), which finds the type by its name.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a durable workflow",
    label = "its runs cannot be recorded in the saga log",
    note = "write `#[workflow(durable)]` on the `impl {Self}` block: its input and every step's output are then checked to be serde"
)]
pub trait DurableWorkflow: Workflow + Durable + 'static {
    /// The graph as the log records it when a run starts: one line per node, its name,
    /// output type, compensation (`-` for none), `optional` (or nothing) and the nodes
    /// it depends on, comma separated, by tabs (`#[workflow(durable)]` writes it).
    /// Recovery refuses to resume a run started under another definition, unless it is
    /// in [`ACCEPTS`](Self::ACCEPTS). Empty for a hand-written impl: not checked.
    const DEFINITION: &'static str = "";
    /// Older definitions this code still resumes (`#[workflow(durable, accepts = "...")]`).
    const ACCEPTS: &'static [&'static str] = &[];

    /// Node `index`'s output as the log keeps it. Written by `#[workflow(durable)]`.
    ///
    /// # Errors
    ///
    /// `flext.saga.output_not_serialisable` when it does not serialise.
    fn encode_output(index: usize, output: &StepOutput) -> Result<serde_json::Value>;

    /// Node `index`'s logged output read back. Written by `#[workflow(durable)]`.
    ///
    /// # Errors
    ///
    /// `flext.saga.output_mismatch` when it does not decode as the node's output type.
    fn decode_output(index: usize, output: serde_json::Value) -> Result<StepOutput>;
}

/// A durable workflow type's typed pieces, behind function pointers: how its outputs are
/// encoded and decoded, its definition and the check recovery runs before a claim.
#[derive(Clone, Copy)]
pub(super) struct NodeCodec {
    encode: fn(usize, &StepOutput) -> Result<serde_json::Value>,
    decode: fn(usize, serde_json::Value) -> Result<StepOutput>,
    definition: &'static str,
    check: fn(&SagaRecord) -> Result<()>,
}

impl NodeCodec {
    fn of<W: DurableWorkflow>() -> NodeCodec {
        NodeCodec {
            encode: W::encode_output,
            decode: W::decode_output,
            definition: W::DEFINITION,
            check: check::<W>,
        }
    }
}

/// A durable run as [`SagaRunner::start`](super::start) drives it.
pub(super) struct DurableRun<'a> {
    workflow: &'a dyn ErasedWorkflow,
    codec: NodeCodec,
}

impl SagaRunner {
    /// Records a new run of the durable workflow `workflow` in this runner's log and
    /// drives it to its end: each node's start, completion with its output, failure,
    /// skip and compensation is written by (run id, node name), the nodes that settle
    /// together in one write. The run's id is a fresh random UUID (v4) and is on the
    /// returned run ([`WorkflowRun::run_id`]); use
    /// [`run_workflow_with_id`](Self::run_workflow_with_id) to name it yourself.
    ///
    /// Each node runs under the context `ctx.child()` with the idempotency key
    /// `run id:node` (`run id:node:compensate` for its compensation) and the claim's
    /// [fencing token](crate::Context::fencing_token): after a crash a node that was
    /// running runs again under the same key, so a node that deduplicates on it takes
    /// effect once. Compensations are retried as [`run_workflow`](Self::run_workflow)'s.
    ///
    /// ```
    /// use flext::prelude::*;
    /// use flext::saga::{MemoryLog, SagaRunner};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Nightly { day: u32 }
    ///
    /// #[workflow(durable)]
    /// impl Nightly {
    ///     #[workflow_step]
    ///     async fn orders(&self) -> Result<u32> { Ok(self.day * 10) }
    ///     #[workflow_step]
    ///     async fn refunds(&self) -> Result<u32> { Ok(3) }
    ///     #[workflow_step(depends_on = [orders, refunds])]
    ///     async fn report(&self, orders: &u32, refunds: &u32) -> Result<String> {
    ///         Ok(format!("{orders} orders, {refunds} refunds"))
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let runner = SagaRunner::builder(MemoryLog::new()).build();
    /// let run = runner.run_workflow_durable(Nightly { day: 4 }, &Context::new()).await.unwrap();
    /// assert_eq!(run.output::<String>("report").unwrap(), "40 orders, 3 refunds");
    /// let history = runner.history(run.run_id().unwrap()).await.unwrap();
    /// // The two roots start in one write; each settles, and the last starts the report.
    /// assert!(history.len() >= 6);
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run): only when the log fails or another runner took the run
    /// over; the run is then in flight in the log and [`recover`](Self::recover)
    /// finishes it. A failing node is not an error: the returned run says which failed
    /// and what was compensated ([`WorkflowRun::into_result`] turns it into one).
    pub fn run_workflow_durable<'a, W: DurableWorkflow>(
        &'a self,
        workflow: W,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<WorkflowRun>> {
        self.run_workflow_with_id(Uuid::new_v4(), workflow, ctx)
    }

    /// [`run_workflow_durable`](Self::run_workflow_durable) under the run id `id`, so
    /// that starting the same run twice runs it once: a second start returns the first
    /// one's run when it has finished (read back from the log, its outputs decoded),
    /// waits for it when it runs in this process, and takes it over when its runner's
    /// lease expired, exactly as [`run_with_id`](Self::run_with_id) does for sagas.
    ///
    /// # Errors
    ///
    /// As [`run_with_id`](Self::run_with_id): `flext.saga.id_reused` (another type or
    /// input under the id), `flext.saga.in_flight`, `flext.saga.definition_changed`,
    /// `flext.saga.input_mismatch` or `flext.saga.output_mismatch`.
    pub fn run_workflow_with_id<'a, W: DurableWorkflow>(
        &'a self,
        id: Uuid,
        workflow: W,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<WorkflowRun>> {
        Box::pin(async move {
            let input = workflow.to_log().map_err(|e| {
                Error::internal(
                    crate::codes::SAGA_INPUT_NOT_SERIALISABLE,
                    format!("workflow `{}`: {e}", W::NAME),
                )
            })?;
            let run = DurableRun {
                workflow: &workflow,
                codec: NodeCodec::of::<W>(),
            };
            self.start(id, &run, input, ctx).await
        })
    }

    /// Drives a durable run this runner holds `claim` on, from `graph`.
    async fn drive_workflow(
        &self,
        run: &DurableRun<'_>,
        claim: &Claim,
        graph: Graph,
        ctx: &Context,
    ) -> Result<WorkflowRun> {
        let recorder = Recorder {
            runner: self,
            claim,
            steps: run.workflow.steps(),
            name: run.workflow.name(),
            encode: run.codec.encode,
        };
        let policy = Policy {
            attempts: self.compensation_attempts.max(1),
            first: std::time::Duration::from_millis(100),
            cap: self.backoff_cap,
        };
        let run = drive_graph(
            run.workflow,
            ctx,
            &self.state,
            policy,
            graph,
            Some(&recorder),
        )
        .await?;
        Ok(run.with_run_id(claim.id))
    }
}

impl Drive for DurableRun<'_> {
    type Out = WorkflowRun;

    fn name(&self) -> &'static str {
        self.workflow.name()
    }
    fn definition(&self) -> &'static str {
        self.codec.definition
    }
    fn check(&self) -> fn(&SagaRecord) -> Result<()> {
        self.codec.check
    }
    fn fresh<'a>(
        &'a self,
        runner: &'a SagaRunner,
        claim: Claim,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<WorkflowRun>> {
        Box::pin(async move {
            let graph = Graph::new(self.workflow.steps().len());
            runner.drive_workflow(self, &claim, graph, ctx).await
        })
    }
    fn claimed<'a>(
        &'a self,
        runner: &'a SagaRunner,
        record: SagaRecord,
        since: Instant,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<WorkflowRun>> {
        Box::pin(async move {
            let graph = replay(self.workflow.steps(), self.codec.decode, &record)?;
            let claim = Claim::new(runner, record.id, Fence::of(&record), since);
            runner.drive_workflow(self, &claim, graph, ctx).await
        })
    }
    fn recorded(&self, record: &SagaRecord) -> Result<WorkflowRun> {
        let graph = replay(self.workflow.steps(), self.codec.decode, record)?;
        Ok(graph.into_run(self.workflow).with_run_id(record.id))
    }
}

/// Writes a durable run's node transitions under its claim.
struct Recorder<'a> {
    runner: &'a SagaRunner,
    claim: &'a Claim,
    steps: &'static [WorkflowStepSpec],
    name: &'static str,
    encode: fn(usize, &StepOutput) -> Result<serde_json::Value>,
}

impl Recorder<'_> {
    fn node(&self, index: usize) -> String {
        self.steps.get(index).map_or("?", |s| s.name).to_owned()
    }
}

impl Record for Recorder<'_> {
    fn node_ctx(&self, run: &Context, step: &'static str, compensation: bool) -> Context {
        let id = self.claim.id;
        let key = if compensation {
            format!("{id}:{step}:compensate")
        } else {
            format!("{id}:{step}")
        };
        run.child()
            .with_idempotency_key(key)
            .with_fencing_token(self.claim.epoch)
    }

    fn encode(&self, index: usize, output: &StepOutput) -> Result<serde_json::Value> {
        (self.encode)(index, output)
    }

    fn record<'a>(&'a self, events: &'a [NodeEvent], phase: RunPhase) -> BoxFuture<'a, Result<()>> {
        let transitions: Vec<Transition> = events
            .iter()
            .map(|e| match e {
                NodeEvent::Started(i) => Transition::NodeStarted {
                    node: self.node(*i),
                },
                NodeEvent::Completed {
                    index,
                    output,
                    attempts,
                } => Transition::NodeCompleted {
                    node: self.node(*index),
                    output: output.clone(),
                    attempts: *attempts,
                },
                NodeEvent::Failed {
                    index,
                    error,
                    attempts,
                } => Transition::NodeFailed {
                    node: self.node(*index),
                    error: error.clone(),
                    optional: self.steps.get(*index).is_some_and(|s| s.optional),
                    attempts: *attempts,
                },
                NodeEvent::Skipped { index, missing } => Transition::NodeSkipped {
                    node: self.node(*index),
                    missing: self.node(*missing),
                },
                NodeEvent::Compensated { index, attempts } => Transition::NodeCompensated {
                    node: self.node(*index),
                    attempts: *attempts,
                },
                NodeEvent::CompensationFailed {
                    index,
                    error,
                    attempts,
                } => Transition::Stuck {
                    step: format!("compensate {}", self.node(*index)),
                    error: error.clone(),
                    attempts: *attempts,
                },
            })
            .collect();
        let state = match phase {
            RunPhase::Running => SagaState::Running,
            RunPhase::Compensating => SagaState::Compensating,
            RunPhase::Completed => SagaState::Completed,
            RunPhase::Compensated => SagaState::Compensated,
            RunPhase::Stuck => SagaState::Stuck,
        };
        Box::pin(async move { self.runner.write_all(self.claim, &transitions, state).await })
    }

    fn keep<'a>(&'a self, work: BoxFuture<'a, ()>) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.runner.with_heartbeat(self.claim, self.name, work))
    }
}

/// The graph a durable run's log leaves: completed nodes with their outputs decoded
/// (`decode`), failures, skips, compensations, a stuck compensation and the operators'
/// actions, in the order they were written.
///
/// # Errors
///
/// `flext.saga.definition_changed` for a node the linked workflow does not have;
/// `flext.saga.log_corrupt` for a saga's transition in a workflow's record; the
/// decoder's `flext.saga.output_mismatch`.
fn replay(
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
pub(super) fn check<W: DurableWorkflow>(record: &SagaRecord) -> Result<()> {
    decode::<W>(record).map(drop)
}

fn decode<W: DurableWorkflow>(record: &SagaRecord) -> Result<(W, Graph)> {
    let accepted = record.definition.is_empty()
        || W::DEFINITION.is_empty()
        || record.definition == W::DEFINITION
        || W::ACCEPTS.contains(&record.definition.as_str());
    if !accepted {
        return Err(super::definition::changed(
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
