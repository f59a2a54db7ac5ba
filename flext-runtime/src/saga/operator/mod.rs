//! Operator actions: resuming a stuck saga, aborting one, marking one resolved by hand.
//! Each is a transition in the log with who acted and why, so a saga's history tells
//! what people did to it as well as what its steps did.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::recovery::SagaRegistration;

mod state;

pub(crate) use self::state::done_for_good;
use self::state::next_state;
use super::{Lease, SagaOutcome, SagaRecord, SagaRunner, SagaState, Transition, now_ms};
use crate::error::{Error, Result};

/// What an operator may do to a saga. Each is recorded in the log as a
/// [`Transition::Operator`] with the acting principal and a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorAction {
    /// A [stuck](SagaState::Stuck) saga goes back to where it stuck: the step after the
    /// pivot, or the compensation, that kept failing runs again, with its attempts
    /// counted afresh.
    Resume,
    /// A stuck saga, or an in-flight one whose lease expired, compensates what can be
    /// compensated: every completed step that has a compensation, last first. Steps
    /// after the pivot have none and stay done.
    Abort,
    /// A stuck saga, or an in-flight one whose lease expired, is marked
    /// [resolved](SagaState::Resolved): an operator has put things right by hand and
    /// nothing more runs.
    Resolve,
    /// A [completed](SagaState::Completed) saga compensates every completed step, last
    /// first: what a parent saga's runner records on its child when the parent
    /// compensates (a `#[saga_step(child)]` step before the parent's pivot). Refused for
    /// a saga whose own pivot completed, and for any saga not completed.
    Compensate,
}

impl OperatorAction {
    /// `resume`, `abort`, `resolve` or `compensate`.
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorAction::Resume => "resume",
            OperatorAction::Abort => "abort",
            OperatorAction::Resolve => "resolve",
            OperatorAction::Compensate => "compensate",
        }
    }
}

impl std::fmt::Display for OperatorAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The longest principal [`Intervention::new`] takes, in bytes.
pub const MAX_PRINCIPAL_BYTES: usize = 256;
/// The longest reason [`Intervention::new`] takes, in bytes.
pub const MAX_REASON_BYTES: usize = 4096;

/// An operator's action on one saga, with who acts and why: what
/// [`SagaRunner::intervene`] and [`SagaLog::intervene`](super::SagaLog::intervene) take.
///
/// ```
/// use flext::saga::{OperatorAction, Intervention};
/// let resume = Intervention::new(OperatorAction::Resume, "alice", "the carrier is back").unwrap();
/// assert_eq!(resume.principal, "alice");
/// let nobody = Intervention::new(OperatorAction::Abort, "", "why not").unwrap_err();
/// assert_eq!(nobody.code(), flext::codes::SAGA_OPERATOR_INPUT);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intervention {
    /// What to do.
    pub action: OperatorAction,
    /// Who does it: a user name, an e-mail address, a service account.
    pub principal: String,
    /// Why, for whoever reads the saga's history later.
    pub reason: String,
    /// For an abort: go ahead although the saga is past its pivot, so that the steps
    /// from the pivot on stay done (set with [`past_pivot`](Self::past_pivot)). Without
    /// it such an abort is refused, naming those steps.
    #[serde(default)]
    pub past_pivot: bool,
}

impl Intervention {
    /// The command, allowed to abort a saga past its pivot: only the steps before the
    /// pivot are compensated, and the pivot and the steps after it stay done (the
    /// payment stays taken). `flext-saga abort --past-pivot`.
    ///
    /// ```
    /// use flext::saga::{OperatorAction, Intervention};
    /// let abort = Intervention::new(OperatorAction::Abort, "alice", "refunded by hand, ticket 7")
    ///     .unwrap()
    ///     .past_pivot();
    /// assert!(abort.past_pivot);
    /// ```
    pub fn past_pivot(mut self) -> Self {
        self.past_pivot = true;
        self
    }

    /// A command, checked.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Validation`](crate::ErrorKind::Validation), `flext.saga.operator_input`,
    /// when the principal or the reason is empty or blank, or longer than
    /// [`MAX_PRINCIPAL_BYTES`] or [`MAX_REASON_BYTES`].
    pub fn new(
        action: OperatorAction,
        principal: impl Into<String>,
        reason: impl Into<String>,
    ) -> Result<Self> {
        let command = Intervention {
            action,
            principal: principal.into(),
            reason: reason.into(),
            past_pivot: false,
        };
        command.check()?;
        Ok(command)
    }

    /// Checks a command built by hand as [`new`](Self::new) does; the logs call it
    /// before they write.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn check(&self) -> Result<()> {
        for (what, text, max) in [
            ("principal", &self.principal, MAX_PRINCIPAL_BYTES),
            ("reason", &self.reason, MAX_REASON_BYTES),
        ] {
            if text.trim().is_empty() {
                return Err(Error::validation(
                    crate::codes::SAGA_OPERATOR_INPUT,
                    format!("an operator's {what} is required: say who acts and why"),
                ));
            }
            if text.len() > max {
                return Err(Error::validation(
                    crate::codes::SAGA_OPERATOR_INPUT,
                    format!(
                        "the operator's {what} is {} bytes; at most {max} are kept: {}",
                        text.len(),
                        crate::input::echo(text)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The transition that records the command.
    pub fn transition(&self) -> Transition {
        Transition::Operator {
            action: self.action,
            principal: self.principal.clone(),
            reason: self.reason.clone(),
        }
    }

    /// Where the command takes the saga `record` at time `now_ms` (milliseconds since
    /// the Unix epoch): the state a log writes with the command's
    /// [`transition`](Self::transition). Every [`SagaLog`](super::SagaLog) calls it
    /// inside the write, so the check and the write are one atomic step.
    ///
    /// | action | applies to | state after |
    /// |---|---|---|
    /// | resume | stuck | running (a step after the pivot stuck) or compensating (a compensation stuck) |
    /// | abort | stuck; running or compensating with an expired lease | compensating |
    /// | resolve | stuck; running or compensating with an expired lease | resolved |
    /// | compensate | completed, its pivot (if any) not completed | compensating |
    ///
    /// A saga in flight under a live lease is being driven by a runner: acting on it would
    /// race that runner, so it is refused until the lease expires (stop the runner, or wait).
    ///
    /// # Errors
    ///
    /// All [`ErrorKind::Conflict`](crate::ErrorKind::Conflict), the message naming the saga,
    /// its state and what to do instead:
    /// - `flext.saga.finished` when the saga completed, was compensated or was resolved
    ///   (for compensate: when it was compensated or resolved);
    /// - `flext.saga.in_flight` when compensating a saga that has not completed (abort it
    ///   instead);
    /// - `flext.saga.lease_live` when it is in flight and its owner's lease is live;
    /// - `flext.saga.not_stuck` when resuming a saga that is in flight (recovery finishes it);
    /// - `flext.saga.past_pivot` when aborting a saga whose pivot completed, without
    ///   [`past_pivot`](Self::past_pivot): the message names the steps that cannot be
    ///   undone (read from the definition the saga was logged with; a saga logged
    ///   without one is not checked).
    pub fn next_state(&self, record: &SagaRecord, now_ms: u64) -> Result<SagaState> {
        next_state(record, self, now_ms)
    }

    /// Applies the command to `record` as a log stores it: the state
    /// [`next_state`](Self::next_state) gives, the command's transition appended, and the
    /// lease given to `lease` when the saga goes on under it (a runner that acts drives it
    /// at once), or left expired under `operator/<principal>` otherwise (the next
    /// recovery pass of any runner takes it). The saga's epoch moves on, fencing out the
    /// runner that held it. Every [`SagaLog`](super::SagaLog) calls it inside its write,
    /// then stores the record's state, owner, lease and epoch and the new transition.
    ///
    /// # Errors
    ///
    /// Those of [`next_state`](Self::next_state); `record` is then unchanged.
    pub fn apply_to(
        &self,
        record: &mut SagaRecord,
        lease: Option<&Lease>,
        now_ms: u64,
    ) -> Result<()> {
        record.state = self.next_state(record, now_ms)?;
        match lease {
            Some(lease) if record.state.is_in_flight() => {
                record.owner.clone_from(&lease.owner);
                record.lease_until_ms = now_ms.saturating_add(lease.duration_ms);
            }
            _ => {
                record.owner = format!("operator/{}", self.principal);
                record.lease_until_ms = 0;
            }
        }
        record.transitions.push(self.transition());
        // Whatever runner held the saga can no longer write to it.
        record.epoch += 1;
        Ok(())
    }
}

impl SagaRunner {
    /// Carries out an operator's `command` on saga `id`: records it in the log with the
    /// principal and the reason, then, for [resume](OperatorAction::Resume) and
    /// [abort](OperatorAction::Abort), drives the saga at once under this runner's lease
    /// and returns how it ended (its output as JSON); for
    /// [resolve](OperatorAction::Resolve), returns [`SagaOutcome::Resolved`].
    ///
    /// When the saga's type is not linked into this program, the command is still
    /// recorded and the saga's lease left expired, so that a runner that has the type
    /// takes it on its next recovery pass; the call then returns
    /// `flext.saga.unknown_type`. That is what the `flext-saga` tool does for every
    /// resume and abort.
    ///
    /// ```
    /// use flext::prelude::*;
    /// use flext::saga::{MemoryLog, OperatorAction, Intervention, SagaOutcome, SagaRunner, SagaState};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Ship { parcel: u32 }
    ///
    /// #[saga]
    /// impl Ship {
    ///     #[saga_step(pivot)]
    ///     fn pay(&self) -> Result<u32> { Ok(self.parcel) }
    ///     #[saga_step(retries = 0)]
    ///     fn label(&self, paid: &u32) -> Result<String> {
    ///         Err(Error::infrastructure("carrier.down", format!("no label for {paid}")))
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let runner = SagaRunner::builder(MemoryLog::new()).build();
    /// let stuck = runner.run(Ship { parcel: 3 }, &Context::new()).await.unwrap();
    /// assert_eq!(stuck.state(), SagaState::Stuck);
    ///
    /// // The labels were printed by hand.
    /// let resolve = Intervention::new(OperatorAction::Resolve, "alice", "labels printed by hand").unwrap();
    /// let outcome = runner.intervene(stuck.saga_id(), &resolve).await.unwrap();
    /// assert!(matches!(outcome, SagaOutcome::Resolved { .. }));
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// Those of [`Intervention::next_state`] when the action does not apply (nothing is written);
    /// `flext.saga.not_found` for an unknown id; `flext.saga.unknown_type` as above;
    /// and, while driving, those of [`recover`](Self::recover) for one saga.
    pub async fn intervene(
        &self,
        id: Uuid,
        command: &Intervention,
    ) -> Result<SagaOutcome<serde_json::Value>> {
        command.check()?;
        tracing::info!(saga_id = %id, action = %command.action, principal = %crate::input::echo(&command.principal), "operator action on a saga");
        if command.action == OperatorAction::Resolve {
            self.log.intervene(id, command, None, now_ms()).await?;
            return Ok(SagaOutcome::Resolved {
                saga_id: id,
                principal: command.principal.clone(),
                reason: command.reason.clone(),
            });
        }
        // Know the type, and that this code can drive the saga, before taking the lease,
        // so a saga this program cannot drive is left for one that can.
        let record = self.log.load(id).await?;
        match SagaRegistration::find(&record.name)? {
            Some(r) => {
                (r.check)(&record)?;
                let since = tokio::time::Instant::now();
                let record = self
                    .log
                    .intervene(id, command, Some(&self.lease), now_ms())
                    .await?;
                (r.resume)(self, record, since).await
            }
            None => {
                self.log.intervene(id, command, None, now_ms()).await?;
                Err(Error::not_found(
                    crate::codes::SAGA_UNKNOWN_TYPE,
                    format!(
                        "the {} of saga {id} is recorded; it is a `{}`, which is not linked into this program, so a runner that has it takes the saga on its next recovery pass",
                        command.action, record.name
                    ),
                ))
            }
        }
    }
}
