//! What a workflow run did: each step's status and time, the outputs, the failure and
//! the compensations.

use std::any::Any;
use std::fmt;
use std::time::Duration;

use super::StepOutput;
use crate::error::{Error, Result};

/// How one step of a run ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum StepStatus {
    /// It returned its output.
    Completed,
    /// It returned this error (or timed out, or panicked). For an optional step the
    /// workflow went on; for a required one it stopped and compensated.
    Failed(Error),
    /// It did not run: it takes the output of `missing`, an optional step that failed or
    /// was skipped.
    Skipped {
        /// The step whose output was missing.
        missing: &'static str,
    },
    /// It did not run: a required step failed before it could start.
    NotRun,
    /// It completed, and its compensation undid it after a required step failed.
    Compensated,
    /// It completed, and its compensation failed on every attempt: its effect is still
    /// there, for an operator to undo.
    CompensationFailed(Error),
}

/// One step of a run.
#[derive(Debug)]
pub struct StepRecord {
    /// The step's method name.
    pub name: &'static str,
    /// Whether the step is `optional`.
    pub optional: bool,
    /// How it ended.
    pub status: StepStatus,
    /// How long the step ran (not its compensation); `None` when it did not run.
    pub duration: Option<Duration>,
}

/// What a workflow run did, returned by [`Workflow::run`](super::Workflow::run) and
/// [`SagaRunner::run_workflow`](crate::saga::SagaRunner::run_workflow): each step's
/// [`StepRecord`] in declaration order, the outputs of the steps that completed (and were
/// not compensated), the required step that failed, if one did, and the compensations.
pub struct WorkflowRun {
    pub(super) workflow: &'static str,
    pub(super) steps: Vec<StepRecord>,
    pub(super) outputs: Vec<Option<StepOutput>>,
    pub(super) failed: Option<usize>,
    pub(super) compensated: Vec<&'static str>,
    pub(super) run_id: Option<uuid::Uuid>,
}

impl WorkflowRun {
    /// The workflow's name.
    pub fn workflow(&self) -> &'static str {
        self.workflow
    }

    /// The durable run's id (its record in the saga log, the prefix of each node's
    /// idempotency key); `None` for a run in memory.
    pub fn run_id(&self) -> Option<uuid::Uuid> {
        self.run_id
    }

    /// Sets the durable run's id.
    pub(crate) fn with_run_id(mut self, id: uuid::Uuid) -> Self {
        self.run_id = Some(id);
        self
    }

    /// Whether no required step failed (optional steps may have).
    pub fn is_success(&self) -> bool {
        self.failed.is_none()
    }

    /// Whether a compensation failed: some effect of this run was neither kept by a
    /// successful run nor undone.
    pub fn is_stuck(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s.status, StepStatus::CompensationFailed(_)))
    }

    /// Every step, in declaration order.
    pub fn steps(&self) -> &[StepRecord] {
        &self.steps
    }

    /// The step named `name`, if the workflow has one.
    pub fn step(&self, name: &str) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// The required step that failed, if one did.
    pub fn failed_step(&self) -> Option<&StepRecord> {
        self.failed.and_then(|i| self.steps.get(i))
    }

    /// The error of the required step that failed, if one did.
    pub fn error(&self) -> Option<&Error> {
        match &self.failed_step()?.status {
            StepStatus::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// The steps whose compensations ran to success, in the order they ran (the reverse
    /// of the order the steps completed).
    pub fn compensated(&self) -> &[&'static str] {
        &self.compensated
    }

    /// The output of step `name`: `None` when there is no such step, it did not
    /// complete, its output was compensated or taken, or it is not a `T`.
    pub fn output<T: Any>(&self, name: &str) -> Option<&T> {
        let i = self.index(name)?;
        self.outputs.get(i)?.as_ref()?.downcast_ref()
    }

    /// The output of step `name` as the run keeps it (boxed), when it completed.
    pub(crate) fn raw_output(&self, name: &str) -> Option<&StepOutput> {
        let i = self.index(name)?;
        self.outputs.get(i)?.as_ref()
    }

    /// Moves the output of step `name` out of the run; `None` as for
    /// [`output`](Self::output).
    pub fn take_output<T: Any>(&mut self, name: &str) -> Option<T> {
        let i = self.index(name)?;
        let slot = self.outputs.get_mut(i)?;
        if !slot.as_ref()?.is::<T>() {
            return None;
        }
        slot.take()?.downcast().ok().map(|b| *b)
    }

    /// The run, or the error of the required step that failed.
    ///
    /// # Errors
    ///
    /// That step's error, as it returned it (after the compensations ran).
    pub fn into_result(mut self) -> Result<Self> {
        let Some(i) = self.failed else {
            return Ok(self);
        };
        let status = std::mem::replace(&mut self.steps[i].status, StepStatus::NotRun);
        match status {
            StepStatus::Failed(e) => Err(e),
            other => {
                self.steps[i].status = other;
                Ok(self)
            }
        }
    }

    fn index(&self, name: &str) -> Option<usize> {
        let i = self.steps.iter().position(|s| s.name == name)?;
        match self.steps[i].status {
            StepStatus::Completed => Some(i),
            _ => None,
        }
    }
}

impl fmt::Debug for WorkflowRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkflowRun")
            .field("workflow", &self.workflow)
            .field("run_id", &self.run_id)
            .field("steps", &self.steps)
            .field("compensated", &self.compensated)
            .finish_non_exhaustive()
    }
}
