//! A saga's progress rebuilt from its logged transitions: what the runner replays after
//! a crash to decide what runs next.

use uuid::Uuid;

use super::{ErrorRecord, OperatorAction, SagaOutcome, SagaState, StepSpec, Transition};
use crate::error::{Error, ErrorKind};

#[derive(Debug, Clone)]
pub(super) enum Phase {
    Forward { next: usize },
    Compensating { failed: usize, error: ErrorRecord },
    Stuck { step: String, error: ErrorRecord },
    Resolved { principal: String, reason: String },
}

/// A saga's progress, rebuilt from its transitions.
#[derive(Debug, Clone)]
pub(super) struct Progress {
    pub(super) outputs: Vec<Option<serde_json::Value>>,
    pub(super) phase: Phase,
    pub(super) compensated: Vec<usize>,
    /// The sleep step the saga sleeps at, when it wakes (milliseconds since the Unix
    /// epoch) and the step's output.
    pub(super) sleeping: Option<(usize, u64, serde_json::Value)>,
    /// The signal step the saga waits at, and until when (`None`: no time limit).
    pub(super) waiting: Option<(usize, Option<u64>)>,
    /// What each signal step received (by step index), once recorded.
    pub(super) receipts: Vec<Option<super::signal::Receipt>>,
}

impl Progress {
    pub(super) fn new(steps: usize) -> Self {
        Progress {
            outputs: vec![None; steps],
            phase: Phase::Forward { next: 0 },
            compensated: Vec::new(),
            sleeping: None,
            waiting: None,
            receipts: vec![None; steps],
        }
    }

    pub(super) fn replay(steps: usize, transitions: &[Transition]) -> Self {
        let mut p = Progress::new(steps);
        // Where the saga was when it stuck: what an operator's resume goes back to.
        let mut before_stuck = p.phase.clone();
        for t in transitions {
            match t {
                Transition::StepCompleted { index, output, .. } => {
                    if let Some(slot) = p.outputs.get_mut(*index) {
                        *slot = Some(output.clone());
                    }
                    p.phase = Phase::Forward { next: index + 1 };
                    p.sleeping = None;
                    p.waiting = None;
                }
                Transition::Waiting {
                    index, until_ms, ..
                } => p.waiting = Some((*index, *until_ms)),
                Transition::SignalReceived {
                    index,
                    sender,
                    payload,
                    ..
                } => {
                    if let Some(slot) = p.receipts.get_mut(*index) {
                        *slot = Some(super::signal::Receipt {
                            sender: sender.clone(),
                            payload: payload.clone(),
                        });
                    }
                    p.waiting = None;
                }
                Transition::Sleeping {
                    index,
                    until_ms,
                    output,
                } => p.sleeping = Some((*index, *until_ms, output.clone())),
                Transition::StepFailed { index, error, .. } => {
                    p.phase = Phase::Compensating {
                        failed: *index,
                        error: error.clone(),
                    };
                }
                Transition::CompensationCompleted { index, .. } => p.compensated.push(*index),
                Transition::Stuck { step, error, .. } => {
                    if !matches!(p.phase, Phase::Stuck { .. }) {
                        before_stuck = p.phase.clone();
                    }
                    p.phase = Phase::Stuck {
                        step: step.clone(),
                        error: error.clone(),
                    };
                }
                Transition::Operator {
                    action,
                    principal,
                    reason,
                } => p.operate(*action, principal, reason, &before_stuck),
                // A durable workflow's transitions: not a saga's (see `saga::graph`).
                _ => {}
            }
        }
        p
    }

    fn operate(
        &mut self,
        action: OperatorAction,
        principal: &str,
        reason: &str,
        before_stuck: &Phase,
    ) {
        let current = match &self.phase {
            Phase::Stuck { .. } => before_stuck.clone(),
            other => other.clone(),
        };
        self.phase = match action {
            OperatorAction::Resume => current,
            OperatorAction::Abort => match current {
                // Already undoing: the abort resumes that.
                Phase::Compensating { .. } | Phase::Resolved { .. } | Phase::Stuck { .. } => {
                    current
                }
                // The step that would have run next is named as the failed one.
                Phase::Forward { next } => Phase::Compensating {
                    failed: next.min(self.outputs.len().saturating_sub(1)),
                    error: ErrorRecord {
                        kind: ErrorKind::Conflict,
                        code: crate::codes::SAGA_ABORTED.to_owned(),
                        message: format!("aborted by {principal}: {reason}"),
                    },
                },
            },
            // A completed saga (a child) compensates because its parent does: every
            // completed step is undone, the last named as the one that failed.
            OperatorAction::Compensate => Phase::Compensating {
                failed: self.outputs.len().saturating_sub(1),
                error: ErrorRecord {
                    kind: ErrorKind::Conflict,
                    code: crate::codes::SAGA_PARENT_COMPENSATED.to_owned(),
                    message: format!("compensated with its parent ({principal}): {reason}"),
                },
            },
            OperatorAction::Resolve => Phase::Resolved {
                principal: principal.to_owned(),
                reason: reason.to_owned(),
            },
        };
    }

    /// The state the transitions end in when no work is left (completed, compensated,
    /// stuck or resolved); `None` while a step or compensation remains.
    pub(super) fn final_state(&self, steps: &[StepSpec]) -> Option<SagaState> {
        match &self.phase {
            Phase::Forward { next } => (*next >= steps.len()).then_some(SagaState::Completed),
            Phase::Compensating { .. } => self
                .to_undo(steps)
                .is_empty()
                .then_some(SagaState::Compensated),
            Phase::Stuck { .. } => Some(SagaState::Stuck),
            Phase::Resolved { .. } => Some(SagaState::Resolved),
        }
    }

    /// The outcome of a saga of `steps` whose progress is this and that has nothing left
    /// to run: completed (with its last output as logged), compensated, stuck (with what
    /// remains to compensate) or resolved. A saga still forward (steps left) is reported
    /// as completed only when its last step ran; callers ask once no work is left.
    /// [`typed_outcome`](super::erased::typed_outcome) decodes the output.
    pub(super) fn outcome(
        &self,
        steps: &[StepSpec],
        saga_id: Uuid,
    ) -> SagaOutcome<serde_json::Value> {
        match self.phase.clone() {
            Phase::Forward { .. } => {
                let output = steps
                    .len()
                    .checked_sub(1)
                    .and_then(|i| self.outputs[i].clone())
                    .unwrap_or(serde_json::Value::Null);
                SagaOutcome::Completed { saga_id, output }
            }
            Phase::Compensating { failed, error } => SagaOutcome::Compensated {
                saga_id,
                failed_step: steps.get(failed).map_or("", |s| s.name).to_owned(),
                error: Error::from(&error),
                compensated: self
                    .compensated
                    .iter()
                    .filter_map(|&i| steps.get(i))
                    .map(|s| s.name.to_owned())
                    .collect(),
            },
            Phase::Stuck { step, error } => SagaOutcome::Stuck {
                saga_id,
                step,
                error: Error::from(&error),
                remaining: self
                    .to_undo(steps)
                    .iter()
                    .map(|&i| format!("compensate {}", steps[i].name))
                    .collect(),
            },
            Phase::Resolved { principal, reason } => SagaOutcome::Resolved {
                saga_id,
                principal,
                reason,
            },
        }
    }

    /// Completed compensatable steps not yet undone, last first: a step with a
    /// compensation, or a child step before the pivot (its child is compensated).
    pub(super) fn to_undo(&self, steps: &[StepSpec]) -> Vec<usize> {
        (0..steps.len())
            .rev()
            .filter(|&i| {
                self.outputs[i].is_some()
                    && (steps[i].compensation.is_some()
                        || steps[i].child.is_some_and(|c| c.compensated))
                    && !self.compensated.contains(&i)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::error::ErrorKind;

    const fn step(name: &'static str, compensation: Option<&'static str>) -> StepSpec {
        StepSpec {
            name,
            compensation,
            pivot: false,
            retries: 0,
            backoff_ms: 0,
            timeout_ms: None,
            retry_on: None,
            compensate_retries: None,
            compensate_backoff_ms: None,
            sleep: false,
            signal: None,
            child: None,
        }
    }

    const STEPS: [StepSpec; 4] = [
        step("reserve", Some("release")),
        step("notify", None),
        step("charge", Some("refund")),
        step("ship", Some("recall")),
    ];

    fn error() -> ErrorRecord {
        ErrorRecord {
            kind: ErrorKind::Infrastructure,
            code: "bank.down".into(),
            message: "no bank".into(),
        }
    }

    fn completed(index: usize) -> Transition {
        Transition::StepCompleted {
            index,
            output: json!(index * 10),
            attempts: 1,
        }
    }

    #[test]
    fn nothing_logged_starts_at_the_first_step() {
        let p = Progress::replay(4, &[]);
        assert!(matches!(p.phase, Phase::Forward { next: 0 }));
        assert!(p.outputs.iter().all(Option::is_none));
        assert!(p.to_undo(&STEPS).is_empty());
    }

    #[test]
    fn completed_steps_keep_their_outputs_and_the_next_step_is_the_one_after() {
        let p = Progress::replay(4, &[completed(0), completed(1)]);
        assert!(matches!(p.phase, Phase::Forward { next: 2 }));
        assert_eq!(p.outputs, [Some(json!(0)), Some(json!(10)), None, None]);
    }

    #[test]
    fn a_failed_step_turns_to_compensation_of_the_completed_compensatable_steps_last_first() {
        let failed = Transition::StepFailed {
            index: 3,
            error: error(),
            attempts: 1,
        };
        let p = Progress::replay(4, &[completed(0), completed(1), completed(2), failed]);
        assert!(matches!(p.phase, Phase::Compensating { failed: 3, .. }));
        // `notify` has no compensation; `ship` never completed.
        assert_eq!(p.to_undo(&STEPS), [2, 0]);
    }

    #[test]
    fn compensations_already_logged_are_not_run_again() {
        let log = [
            completed(0),
            completed(1),
            completed(2),
            Transition::StepFailed {
                index: 3,
                error: error(),
                attempts: 1,
            },
            Transition::CompensationCompleted {
                index: 2,
                attempts: 1,
            },
        ];
        let p = Progress::replay(4, &log);
        assert_eq!(p.compensated, [2]);
        assert_eq!(p.to_undo(&STEPS), [0]);
    }

    #[test]
    fn a_stuck_saga_stays_stuck_with_its_step_and_error() {
        let log = [
            completed(0),
            Transition::Stuck {
                step: "release".into(),
                error: error(),
                attempts: 1,
            },
        ];
        match Progress::replay(4, &log).phase {
            Phase::Stuck { step, error } => {
                assert_eq!(step, "release");
                assert_eq!(error.code, "bank.down");
            }
            other => panic!("{other:?}"),
        }
    }

    fn operator(action: OperatorAction) -> Transition {
        Transition::Operator {
            action,
            principal: "alice".into(),
            reason: "ticket 7".into(),
        }
    }

    fn stuck(step: &str) -> Transition {
        Transition::Stuck {
            step: step.into(),
            error: error(),
            attempts: 3,
        }
    }

    #[test]
    fn a_resumed_saga_goes_back_to_the_step_or_compensation_that_stuck() {
        let forward = [completed(0), completed(1), completed(2), stuck("ship")];
        let p = Progress::replay(
            4,
            &[&forward[..], &[operator(OperatorAction::Resume)]].concat(),
        );
        assert!(matches!(p.phase, Phase::Forward { next: 3 }));

        let failed = Transition::StepFailed {
            index: 3,
            error: error(),
            attempts: 1,
        };
        let backward = [
            completed(0),
            completed(2),
            failed,
            stuck("compensate charge"),
        ];
        let p = Progress::replay(
            4,
            &[&backward[..], &[operator(OperatorAction::Resume)]].concat(),
        );
        assert!(matches!(p.phase, Phase::Compensating { failed: 3, .. }));
        assert_eq!(p.to_undo(&STEPS), [2, 0]);
        // Stuck again after the resume, then resumed again: still the compensation.
        let twice = [
            &backward[..],
            &[operator(OperatorAction::Resume), stuck("compensate charge")],
            &[operator(OperatorAction::Resume)],
        ]
        .concat();
        assert!(matches!(
            Progress::replay(4, &twice).phase,
            Phase::Compensating { .. }
        ));
    }

    #[test]
    fn an_aborted_saga_compensates_what_it_completed_naming_the_next_step_as_failed() {
        let log = [
            completed(0),
            completed(1),
            completed(2),
            stuck("ship"),
            operator(OperatorAction::Abort),
        ];
        let p = Progress::replay(4, &log);
        match &p.phase {
            Phase::Compensating { failed, error } => {
                assert_eq!(*failed, 3);
                assert_eq!(error.code, crate::codes::SAGA_ABORTED);
                assert!(
                    error.message.contains("alice: ticket 7"),
                    "{}",
                    error.message
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.to_undo(&STEPS), [2, 0]);
    }

    #[test]
    fn a_resolved_saga_is_resolved_whatever_came_before() {
        let log = [
            completed(0),
            stuck("notify"),
            operator(OperatorAction::Resolve),
        ];
        match Progress::replay(4, &log).phase {
            Phase::Resolved { principal, reason } => {
                assert_eq!((principal.as_str(), reason.as_str()), ("alice", "ticket 7"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_index_beyond_the_steps_is_ignored_rather_than_panicking() {
        // A log written by a longer version of the saga.
        let p = Progress::replay(2, &[completed(0), completed(5)]);
        assert_eq!(p.outputs, [Some(json!(0)), None]);
        assert!(matches!(p.phase, Phase::Forward { next: 6 }));
    }
}
