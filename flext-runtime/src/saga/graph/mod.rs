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
use super::{Durable, Fence, SagaRecord, SagaRunner};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::future::BoxFuture;
use crate::workflow::{
    ErasedWorkflow, Graph, Policy, StepOutput, Workflow, WorkflowRun, drive_graph,
};

mod recorder;
mod recovery;

use recorder::Recorder;
pub(crate) use recovery::check;
use recovery::replay;
#[doc(hidden)]
pub use recovery::resume_workflow;

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
    pub(super) encode: fn(usize, &StepOutput) -> Result<serde_json::Value>,
    pub(super) decode: fn(usize, serde_json::Value) -> Result<StepOutput>,
    pub(super) definition: &'static str,
    pub(super) check: fn(&SagaRecord) -> Result<()>,
}

impl NodeCodec {
    pub(super) fn of<W: DurableWorkflow>() -> NodeCodec {
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
    pub(super) workflow: &'a dyn ErasedWorkflow,
    pub(super) codec: NodeCodec,
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
