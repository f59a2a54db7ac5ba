//! A saga's progress rebuilt from its logged transitions: what the runner replays after
//! a crash to decide what runs next.

use super::{ErrorRecord, StepSpec, Transition};

#[derive(Debug, Clone)]
pub(super) enum Phase {
    Forward { next: usize },
    Compensating { failed: usize, error: ErrorRecord },
    Stuck { step: String, error: ErrorRecord },
}

/// A saga's progress, rebuilt from its transitions.
#[derive(Debug, Clone)]
pub(super) struct Progress {
    pub(super) outputs: Vec<Option<serde_json::Value>>,
    pub(super) phase: Phase,
    pub(super) compensated: Vec<usize>,
}

impl Progress {
    pub(super) fn new(steps: usize) -> Self {
        Progress {
            outputs: vec![None; steps],
            phase: Phase::Forward { next: 0 },
            compensated: Vec::new(),
        }
    }

    pub(super) fn replay(steps: usize, transitions: &[Transition]) -> Self {
        let mut p = Progress::new(steps);
        for t in transitions {
            match t {
                Transition::StepCompleted { index, output } => {
                    if let Some(slot) = p.outputs.get_mut(*index) {
                        *slot = Some(output.clone());
                    }
                    p.phase = Phase::Forward { next: index + 1 };
                }
                Transition::StepFailed { index, error } => {
                    p.phase = Phase::Compensating {
                        failed: *index,
                        error: error.clone(),
                    };
                }
                Transition::CompensationCompleted { index } => p.compensated.push(*index),
                Transition::Stuck { step, error } => {
                    p.phase = Phase::Stuck {
                        step: step.clone(),
                        error: error.clone(),
                    };
                }
            }
        }
        p
    }

    /// Completed compensatable steps not yet undone, last first.
    pub(super) fn to_undo(&self, steps: &[StepSpec]) -> Vec<usize> {
        (0..steps.len())
            .rev()
            .filter(|&i| {
                self.outputs[i].is_some()
                    && steps[i].compensation.is_some()
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
            },
            Transition::CompensationCompleted { index: 2 },
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

    #[test]
    fn an_index_beyond_the_steps_is_ignored_rather_than_panicking() {
        // A log written by a longer version of the saga.
        let p = Progress::replay(2, &[completed(0), completed(5)]);
        assert_eq!(p.outputs, [Some(json!(0)), None]);
        assert!(matches!(p.phase, Phase::Forward { next: 6 }));
    }
}
