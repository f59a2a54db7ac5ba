//! What the graph driver is compiled against: a workflow behind a vtable
//! ([`ErasedWorkflow`]), and what a durable run does around it ([`Record`]): the node
//! transitions it writes ([`NodeEvent`]) and the run's phase after each write
//! ([`RunPhase`]).

use std::sync::Arc;

use super::{StepOutput, Workflow, WorkflowScope, WorkflowStepSpec};
use crate::context::Context;
use crate::error::{ErrorRecord, Result};
use crate::future::BoxFuture;
use crate::service::ServiceStats;

/// A [`Workflow`] behind a vtable, so that the driver is compiled once for every
/// workflow type (as the saga runner's `ErasedSaga`).
pub(crate) trait ErasedWorkflow: Send + Sync {
    /// [`Workflow::NAME`].
    fn name(&self) -> &'static str;
    /// [`Workflow::STEPS`].
    fn steps(&self) -> &'static [WorkflowStepSpec];
    /// [`Workflow::step_stats`].
    fn stats(&self) -> &'static [Arc<ServiceStats>];
    /// [`Workflow::run_step`].
    fn run_step<'a>(
        &'a self,
        index: usize,
        scope: &'a WorkflowScope<'a>,
    ) -> BoxFuture<'a, Result<StepOutput>>;
    /// [`Workflow::compensate`].
    fn compensate<'a>(
        &'a self,
        index: usize,
        scope: &'a WorkflowScope<'a>,
    ) -> BoxFuture<'a, Result<()>>;
}

impl<W: Workflow> ErasedWorkflow for W {
    fn name(&self) -> &'static str {
        W::NAME
    }
    fn steps(&self) -> &'static [WorkflowStepSpec] {
        W::STEPS
    }
    fn stats(&self) -> &'static [Arc<ServiceStats>] {
        W::step_stats()
    }
    fn run_step<'a>(
        &'a self,
        index: usize,
        scope: &'a WorkflowScope<'a>,
    ) -> BoxFuture<'a, Result<StepOutput>> {
        Workflow::run_step(self, index, scope)
    }
    fn compensate<'a>(
        &'a self,
        index: usize,
        scope: &'a WorkflowScope<'a>,
    ) -> BoxFuture<'a, Result<()>> {
        Workflow::compensate(self, index, scope)
    }
}

/// Where a run stands after a write: what a durable log stores as the run's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunPhase {
    /// Nodes run or wait.
    Running,
    /// A required node failed: the running ones are awaited, then the completed ones
    /// compensated.
    Compensating,
    /// Every node settled and no required one failed.
    Completed,
    /// A required node failed and everything completed was undone.
    Compensated,
    /// A compensation kept failing.
    Stuck,
}

/// One node transition, by node index; a durable [`Record`] writes it by name.
#[derive(Debug)]
pub(crate) enum NodeEvent {
    /// The node started.
    Started(usize),
    /// The node returned its output (as the log keeps it).
    Completed {
        index: usize,
        output: serde_json::Value,
        attempts: u32,
    },
    /// The node failed.
    Failed {
        index: usize,
        error: ErrorRecord,
        attempts: u32,
    },
    /// The node did not run: it takes the output of `missing`, which has none.
    Skipped { index: usize, missing: usize },
    /// The node's compensation finished.
    Compensated { index: usize, attempts: u32 },
    /// The node's compensation failed on every attempt: the run is stuck.
    CompensationFailed {
        index: usize,
        error: ErrorRecord,
        attempts: u32,
    },
}

/// What a durable run does around the driver. `None` for an in-memory run.
pub(crate) trait Record: Send + Sync {
    /// The context node `step` runs under (its compensation when `compensation`): a
    /// child of `run` with the node's idempotency key and fencing token.
    fn node_ctx(&self, run: &Context, step: &'static str, compensation: bool) -> Context;

    /// Node `index`'s output as the log keeps it.
    ///
    /// # Errors
    ///
    /// When it does not serialise: the node fails with this error.
    fn encode(&self, index: usize, output: &StepOutput) -> Result<serde_json::Value>;

    /// Writes `events` in one write, the run moving to `phase`.
    fn record<'a>(&'a self, events: &'a [NodeEvent], phase: RunPhase) -> BoxFuture<'a, Result<()>>;

    /// Runs `work` (waiting for nodes, or a compensation's attempts) while keeping the
    /// run's claim; an error when the claim is lost (`work` is then dropped where it
    /// is).
    fn keep<'a>(&'a self, work: BoxFuture<'a, ()>) -> BoxFuture<'a, Result<()>>;
}
