//! Where a run stands ([`Graph`]): each node's slot, status and output, the completion
//! order and the failure; fresh for a new run, replayed from the log for a durable one
//! that recovers. And the [`WorkflowRun`] a graph ends in.

use std::sync::OnceLock;

use super::erased::{ErasedWorkflow, RunPhase};
use super::{StepOutput, StepRecord, StepStatus, WorkflowRun, WorkflowStepSpec};
use crate::error::Error;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    Waiting,
    Running,
    Settled,
}

/// Where a run stands: fresh ([`Graph::new`]), or replayed from a durable log.
pub(crate) struct Graph {
    pub(super) outputs: Vec<OnceLock<StepOutput>>,
    pub(super) status: Vec<StepStatus>,
    pub(super) slots: Vec<Slot>,
    /// Started and never settled: run again even when the run is failing (its effect
    /// may have happened; running it again under its key completes it, so that it can
    /// be compensated).
    pub(super) restart: Vec<bool>,
    /// Completed node indexes, in completion order.
    pub(super) completed: Vec<usize>,
    pub(super) failed: Option<usize>,
    pub(super) compensated: Vec<usize>,
}

impl Graph {
    /// A run of `n` nodes where nothing happened yet.
    pub(crate) fn new(n: usize) -> Graph {
        Graph {
            outputs: (0..n).map(|_| OnceLock::new()).collect(),
            status: (0..n).map(|_| StepStatus::NotRun).collect(),
            slots: vec![Slot::Waiting; n],
            restart: vec![false; n],
            completed: Vec::new(),
            failed: None,
            compensated: Vec::new(),
        }
    }

    /// Node `i` started (and has not settled yet).
    pub(crate) fn started(&mut self, i: usize) {
        if let Some(r) = self.restart.get_mut(i) {
            *r = self.slots[i] == Slot::Waiting;
        }
    }

    /// Node `i` completed with `output`.
    pub(crate) fn complete(&mut self, i: usize, output: StepOutput) {
        if i >= self.slots.len() || self.slots[i] == Slot::Settled {
            return;
        }
        // invariant: a node settles once, so its cell is empty.
        let _ = self.outputs[i].set(output);
        self.completed_here(i);
    }

    /// Node `i` completed; its output is in the driver's cells.
    pub(super) fn completed_here(&mut self, i: usize) {
        self.settle(i, StepStatus::Completed);
        self.completed.push(i);
    }

    /// Node `i` failed with `error`; `required` turns the run to compensation.
    pub(crate) fn fail(&mut self, i: usize, error: Error, required: bool) {
        if i >= self.slots.len() || self.slots[i] == Slot::Settled {
            return;
        }
        self.settle(i, StepStatus::Failed(error));
        if required {
            self.failed.get_or_insert(i);
        }
    }

    /// The run is stopped as if node `i` had failed with `error` (an operator's abort):
    /// nothing more starts, and what completed is compensated.
    pub(crate) fn abort(&mut self, i: usize, error: Error) {
        if self.failed.is_some() {
            return;
        }
        if let Some(s) = self.status.get_mut(i) {
            *s = StepStatus::Failed(error);
        }
        self.failed = Some(i);
    }

    /// Node `i` was skipped for want of `missing`'s output.
    pub(crate) fn skip(&mut self, i: usize, missing: &'static str) {
        if i >= self.slots.len() || self.slots[i] == Slot::Settled {
            return;
        }
        self.settle(i, StepStatus::Skipped { missing });
    }

    /// Node `i`'s compensation finished.
    pub(crate) fn compensate(&mut self, i: usize) {
        if i < self.status.len() && !self.compensated.contains(&i) {
            self.status[i] = StepStatus::Compensated;
            self.compensated.push(i);
        }
    }

    /// Node `i`'s compensation failed for good.
    pub(crate) fn compensation_failed(&mut self, i: usize, error: Error) {
        if let Some(s) = self.status.get_mut(i) {
            *s = StepStatus::CompensationFailed(error);
        }
    }

    /// An operator resumed (or aborted, or resolved) a stuck run: the compensation that
    /// stuck is pending again.
    pub(crate) fn clear_stuck(&mut self) {
        for s in &mut self.status {
            if matches!(s, StepStatus::CompensationFailed(_)) {
                *s = StepStatus::Completed;
            }
        }
    }

    /// The node an operator's abort names as the failed one: the first in declaration
    /// order that has not started (a node that was running runs again, to be
    /// compensated), else the first that has not settled.
    pub(crate) fn abort_point(&self) -> Option<usize> {
        let unstarted =
            (0..self.slots.len()).find(|&i| self.slots[i] == Slot::Waiting && !self.restart[i]);
        unstarted.or_else(|| self.slots.iter().position(|s| *s != Slot::Settled))
    }

    fn settle(&mut self, i: usize, status: StepStatus) {
        self.slots[i] = Slot::Settled;
        self.restart[i] = false;
        self.status[i] = status;
    }

    /// Completed nodes with a compensation not yet undone, last completed first.
    pub(super) fn to_undo(&self, steps: &[WorkflowStepSpec]) -> Vec<usize> {
        self.completed
            .iter()
            .rev()
            .copied()
            .filter(|&i| steps[i].compensation.is_some() && !self.compensated.contains(&i))
            .collect()
    }

    /// The phase a run whose graph is this one is in, with `running` nodes running.
    pub(super) fn phase(&self, steps: &[WorkflowStepSpec], running: usize) -> RunPhase {
        match (self.failed, running) {
            (None, 0) => RunPhase::Completed,
            (None, _) => RunPhase::Running,
            (Some(_), 0) if self.to_undo(steps).is_empty() => RunPhase::Compensated,
            (Some(_), _) => RunPhase::Compensating,
        }
    }

    /// The run as the graph leaves it, without running anything: for a run the log
    /// shows finished.
    pub(crate) fn into_run(self, workflow: &dyn ErasedWorkflow) -> WorkflowRun {
        finish(workflow.name(), workflow.steps(), self)
    }
}

/// The [`WorkflowRun`] `g` ends in.
pub(super) fn finish(
    workflow: &'static str,
    steps: &'static [WorkflowStepSpec],
    g: Graph,
) -> WorkflowRun {
    let compensated = g
        .compensated
        .iter()
        .filter_map(|&i| steps.get(i))
        .map(|s| s.name)
        .collect();
    let mut outputs: Vec<Option<StepOutput>> =
        g.outputs.into_iter().map(OnceLock::into_inner).collect();
    // A compensated step's output is no longer the run's.
    for &i in &g.compensated {
        if let Some(o) = outputs.get_mut(i) {
            *o = None;
        }
    }
    WorkflowRun {
        workflow,
        steps: steps
            .iter()
            .zip(g.status)
            .map(|(s, status)| StepRecord {
                name: s.name,
                optional: s.optional,
                status,
                duration: None,
            })
            .collect(),
        outputs,
        failed: g.failed,
        compensated,
        run_id: None,
    }
}
