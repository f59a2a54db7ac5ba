//! The recorder a durable run's graph driver writes through: each batch of node
//! transitions as one fenced write, the lease kept while nodes run, and each node's
//! idempotency key.

use super::super::lease::Claim;
use super::super::{SagaRunner, SagaState, Transition};
use crate::context::Context;
use crate::error::Result;
use crate::future::BoxFuture;
use crate::workflow::{NodeEvent, Record, RunPhase, StepOutput, WorkflowStepSpec};

/// Writes a durable run's node transitions under its claim.
pub(super) struct Recorder<'a> {
    pub(super) runner: &'a SagaRunner,
    pub(super) claim: &'a Claim,
    pub(super) steps: &'static [WorkflowStepSpec],
    pub(super) name: &'static str,
    pub(super) encode: fn(usize, &StepOutput) -> Result<serde_json::Value>,
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
