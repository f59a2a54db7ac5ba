//! Where an operator's action takes a saga, and what it refuses: the rules every log
//! applies inside its write ([`Intervention::next_state`]).

use super::{Intervention, OperatorAction};
use crate::error::{Error, Result};
use crate::saga::{SagaRecord, SagaState, Transition};

pub(super) fn next_state(
    record: &SagaRecord,
    command: &Intervention,
    now_ms: u64,
) -> Result<SagaState> {
    let id = record.id;
    let state = record.state;
    if command.action == OperatorAction::Compensate {
        return reopen(record);
    }
    if matches!(
        state,
        SagaState::Completed | SagaState::Compensated | SagaState::Resolved
    ) {
        return Err(Error::conflict(
            crate::codes::SAGA_FINISHED,
            format!(
                "saga {id} is {state}: there is nothing left to {}",
                command.action
            ),
        ));
    }
    if state.is_in_flight() {
        // A sleeping or waiting saga is leased to no runner: its lease is when it is due.
        let asleep = crate::saga::parked(&record.owner);
        if record.lease_until_ms > now_ms && !asleep {
            return Err(Error::conflict(
                crate::codes::SAGA_LEASE_LIVE,
                format!(
                    "saga {id} is {state} under `{}`, whose lease runs {} ms more: stop that runner or wait for its lease to expire, then {} it",
                    record.owner,
                    record.lease_until_ms - now_ms,
                    command.action
                ),
            ));
        }
        if command.action == OperatorAction::Resume {
            return Err(Error::conflict(
                crate::codes::SAGA_NOT_STUCK,
                format!(
                    "saga {id} is {state}, not stuck: the next recovery pass finishes it; abort or resolve it to stop it"
                ),
            ));
        }
    }
    if command.action == OperatorAction::Abort && !command.past_pivot {
        let done = done_for_good(record);
        if !done.is_empty() {
            return Err(Error::conflict(
                crate::codes::SAGA_PAST_PIVOT,
                format!(
                    "saga {id} is past its pivot: {} cannot be undone and would stay done while the steps before the pivot are compensated; resolve it by hand, or abort it with --past-pivot (Intervention::past_pivot) knowing that",
                    done.iter()
                        .map(|s| format!("`{}`", crate::input::echo(s)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    Ok(match command.action {
        OperatorAction::Resume => {
            if stuck_compensating(&record.transitions) {
                SagaState::Compensating
            } else {
                SagaState::Running
            }
        }
        OperatorAction::Abort => SagaState::Compensating,
        OperatorAction::Resolve => SagaState::Resolved,
        OperatorAction::Compensate => SagaState::Compensating,
    })
}

/// Where [`OperatorAction::Compensate`] takes `record`: a completed saga whose pivot (if
/// any) did not complete compensates.
fn reopen(record: &SagaRecord) -> Result<SagaState> {
    let (id, state) = (record.id, record.state);
    match state {
        SagaState::Completed => {}
        SagaState::Compensated | SagaState::Resolved => {
            return Err(Error::conflict(
                crate::codes::SAGA_FINISHED,
                format!("saga {id} is {state}: there is nothing left to compensate"),
            ));
        }
        _ => {
            return Err(Error::conflict(
                crate::codes::SAGA_IN_FLIGHT,
                format!(
                    "saga {id} is {state}, not completed: only a completed saga is compensated this way; abort it instead"
                ),
            ));
        }
    }
    let done = done_for_good(record);
    if !done.is_empty() {
        return Err(Error::conflict(
            crate::codes::SAGA_PAST_PIVOT,
            format!(
                "saga {id} completed past its pivot: {} cannot be undone; a child saga its parent may compensate has no pivot",
                done.iter()
                    .map(|s| format!("`{}`", crate::input::echo(s)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(SagaState::Compensating)
}

/// The completed steps of `record` from its pivot on (steps with no compensation), read
/// from the definition it was logged with; empty when the pivot has not completed or
/// the definition is unknown.
pub(crate) fn done_for_good(record: &SagaRecord) -> Vec<String> {
    let steps: Vec<(&str, bool, bool)> = record
        .definition
        .lines()
        .map(|line| {
            let mut fields = line.split('\t');
            let name = fields.next().unwrap_or_default();
            let _output = fields.next();
            let compensated = fields.next().is_some_and(|c| c != "-");
            (name, compensated, fields.next() == Some("pivot"))
        })
        .collect();
    let Some(pivot) = steps.iter().position(|s| s.2) else {
        return Vec::new();
    };
    let mut completed = vec![false; steps.len()];
    for t in &record.transitions {
        if let Transition::StepCompleted { index, .. } = t
            && let Some(c) = completed.get_mut(*index)
        {
            *c = true;
        }
    }
    if !completed[pivot] {
        return Vec::new();
    }
    steps
        .iter()
        .enumerate()
        .filter(|(i, s)| *i >= pivot && completed[*i] && !s.1)
        .map(|(_, s)| s.0.to_owned())
        .collect()
}

/// Whether the last stuck point of `transitions` was a compensation (the saga was
/// compensating when it stuck) rather than a step after the pivot.
fn stuck_compensating(transitions: &[Transition]) -> bool {
    let mut compensating = false;
    for t in transitions {
        match t {
            Transition::StepFailed { .. }
            | Transition::NodeFailed {
                optional: false, ..
            }
            | Transition::Operator {
                action: OperatorAction::Abort | OperatorAction::Compensate,
                ..
            } => compensating = true,
            _ => {}
        }
    }
    compensating
}
