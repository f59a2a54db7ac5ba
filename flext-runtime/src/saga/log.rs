//! The durable saga log: what the runner records, and the trait its backends implement.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, ErrorKind, Result};
use crate::future::BoxFuture;

/// Where a saga is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaState {
    /// Running its steps forward.
    Running,
    /// A step failed; undoing the completed steps in reverse order.
    Compensating,
    /// Every step succeeded.
    Completed,
    /// A step failed and every completed step was undone.
    Compensated,
    /// A step after the pivot, or a compensation, kept failing: an operator must act.
    Stuck,
    /// An operator marked the saga resolved by hand ([`OperatorAction::Resolve`]):
    /// finished, nothing more runs.
    Resolved,
}

impl SagaState {
    /// Whether the saga still has work to do (running or compensating).
    pub fn is_in_flight(self) -> bool {
        matches!(self, SagaState::Running | SagaState::Compensating)
    }

    /// The state as stored: `running`, `compensating`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            SagaState::Running => "running",
            SagaState::Compensating => "compensating",
            SagaState::Completed => "completed",
            SagaState::Compensated => "compensated",
            SagaState::Stuck => "stuck",
            SagaState::Resolved => "resolved",
        }
    }

    /// Every state, in the order a saga may pass through them.
    pub const ALL: [SagaState; 6] = [
        SagaState::Running,
        SagaState::Compensating,
        SagaState::Completed,
        SagaState::Compensated,
        SagaState::Stuck,
        SagaState::Resolved,
    ];
}

impl std::fmt::Display for SagaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for SagaState {
    type Err = Error;

    /// The state [`as_str`](SagaState::as_str) wrote: `running`, `compensating`, ...
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Validation`], `flext.saga.unknown_state`, naming the states there are.
    fn from_str(s: &str) -> Result<SagaState> {
        SagaState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                Error::validation(
                    crate::codes::SAGA_UNKNOWN_STATE,
                    format!(
                        "unknown saga state {}; the states are running, compensating, completed, compensated, stuck and resolved",
                        crate::input::echo(s)
                    ),
                )
            })
    }
}

/// An error as the log keeps it: enough to rebuild a [`Error`] after a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// The error's kind.
    pub kind: ErrorKind,
    /// The error's code.
    pub code: String,
    /// The error's message.
    pub message: String,
}

impl From<&Error> for ErrorRecord {
    fn from(e: &Error) -> Self {
        ErrorRecord {
            kind: e.kind(),
            code: e.code().to_owned(),
            message: e.message().to_owned(),
        }
    }
}

impl From<&ErrorRecord> for Error {
    fn from(r: &ErrorRecord) -> Self {
        Error::new(r.kind, r.code.clone(), r.message.clone())
    }
}

/// One recorded transition. Each is written in one transaction together with the
/// saga's new state, so the log never shows a state its transitions do not explain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Transition {
    /// Step `index` finished with `output` (serialised); the next step may start. For the
    /// last step this also completes the saga.
    StepCompleted {
        /// The step's position.
        index: usize,
        /// The step's output, as JSON.
        output: serde_json::Value,
        /// How many attempts the step took (0 in logs written before attempts were
        /// recorded).
        #[serde(default)]
        attempts: u32,
    },
    /// Step `index` failed for good; compensation starts.
    StepFailed {
        /// The step's position.
        index: usize,
        /// Why.
        error: ErrorRecord,
        /// How many attempts failed.
        #[serde(default)]
        attempts: u32,
    },
    /// The compensation of step `index` finished. When no completed step is left to
    /// undo, this also marks the saga compensated.
    CompensationCompleted {
        /// The compensated step's position.
        index: usize,
        /// How many attempts the compensation took.
        #[serde(default)]
        attempts: u32,
    },
    /// The saga cannot make progress on its own.
    Stuck {
        /// The step or compensation that kept failing.
        step: String,
        /// Its last error.
        error: ErrorRecord,
        /// How many attempts failed.
        #[serde(default)]
        attempts: u32,
    },
    /// An operator acted on the saga ([`SagaRunner::act`](super::SagaRunner::act), or the
    /// `flext-saga` tool).
    Operator {
        /// What the operator did.
        action: OperatorAction,
        /// Who did it, as they gave it.
        principal: String,
        /// Why, as they gave it.
        reason: String,
    },
}

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
}

impl OperatorAction {
    /// `resume`, `abort` or `resolve`.
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorAction::Resume => "resume",
            OperatorAction::Abort => "abort",
            OperatorAction::Resolve => "resolve",
        }
    }
}

impl std::fmt::Display for OperatorAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One recorded transition with when it was written: an entry of a saga's history
/// ([`SagaLog::history`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The transition's position in the saga's log, from 1.
    pub seq: u64,
    /// When it was written, in milliseconds since the Unix epoch (0 in logs written
    /// before times were recorded).
    pub at_ms: u64,
    /// The transition.
    #[serde(flatten)]
    pub transition: Transition,
}

/// Which sagas [`SagaLog::list`] returns: every field that is set must match. The
/// default matches every saga.
///
/// ```
/// use std::time::Duration;
/// use flext::saga::{SagaFilter, SagaState};
/// let stuck_for_an_hour = SagaFilter::default()
///     .state(SagaState::Stuck)
///     .older_than(Duration::from_secs(3600));
/// assert_eq!(stuck_for_an_hour.state, Some(SagaState::Stuck));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaFilter {
    /// Only sagas in this state.
    pub state: Option<SagaState>,
    /// Only sagas of this type (`SagaRecord::name`).
    pub name: Option<String>,
    /// Only sagas created before this time, in milliseconds since the Unix epoch.
    pub created_before_ms: Option<u64>,
    /// At most this many, oldest first.
    pub limit: Option<usize>,
}

impl SagaFilter {
    /// Only sagas in `state`.
    pub fn state(mut self, state: SagaState) -> Self {
        self.state = Some(state);
        self
    }

    /// Only sagas of the type named `name`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Only sagas created at least `age` ago (from now).
    pub fn older_than(mut self, age: std::time::Duration) -> Self {
        let age = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        self.created_before_ms = Some(now_ms().saturating_sub(age));
        self
    }

    /// At most `limit` sagas.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Whether `summary` passes the filter (the limit aside).
    pub fn matches(&self, summary: &SagaSummary) -> bool {
        self.state.is_none_or(|s| s == summary.state)
            && self.name.as_deref().is_none_or(|n| n == summary.name)
            && self
                .created_before_ms
                .is_none_or(|before| summary.created_ms < before)
    }
}

/// Everything the log knows about one saga: its input, its state, the transitions so far,
/// and who runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaRecord {
    /// The saga's id (also the prefix of every step's idempotency key).
    pub id: Uuid,
    /// The saga type's name (`#[saga]` on `FulfilOrder` gives `FulfilOrder`).
    pub name: String,
    /// The saga's input (the `#[saga]` struct), as JSON.
    pub input: serde_json::Value,
    /// The correlation id of the context the saga was started under.
    pub correlation_id: Uuid,
    /// The current state.
    pub state: SagaState,
    /// The transitions, oldest first.
    pub transitions: Vec<Transition>,
    /// The runner holding the lease.
    pub owner: String,
    /// Until when (milliseconds since the Unix epoch) the owner's lease runs.
    pub lease_until_ms: u64,
    /// The saga type's definition when the saga started ([`Saga::DEFINITION`]); empty
    /// in logs written before definitions were recorded.
    ///
    /// [`Saga::DEFINITION`]: super::Saga::DEFINITION
    #[serde(default)]
    pub definition: String,
    /// When the saga was created, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub created_ms: u64,
}

/// A saga as listed for operators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaSummary {
    /// The saga's id.
    pub id: Uuid,
    /// The saga type's name.
    pub name: String,
    /// The current state.
    pub state: SagaState,
    /// How many transitions are recorded.
    pub transitions: usize,
    /// The runner holding the lease (or the operator who acted last).
    pub owner: String,
    /// When the saga was created, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Until when the owner's lease runs, in milliseconds since the Unix epoch.
    pub lease_until_ms: u64,
}

impl SagaRecord {
    /// The record as listed.
    pub fn summary(&self) -> SagaSummary {
        SagaSummary {
            id: self.id,
            name: self.name.clone(),
            state: self.state,
            transitions: self.transitions.len(),
            owner: self.owner.clone(),
            created_ms: self.created_ms,
            lease_until_ms: self.lease_until_ms,
        }
    }
}

/// The claim a runner holds on a saga while it runs it: the log refuses transitions from
/// anyone else until the lease expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The runner's identity: its name and its incarnation, `name/incarnation`.
    pub owner: String,
    /// How long a transition extends the lease, in milliseconds.
    pub duration_ms: u64,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Storage for saga progress. Backends: [`MemoryLog`](super::MemoryLog) for tests and
/// [`SqliteLog`](super::SqliteLog) as the embedded default; the contract (leases checked
/// on every write, one atomic write per transition) is what a PostgreSQL backend for
/// several processes on several machines implements with `SELECT ... FOR UPDATE` or a
/// conditional `UPDATE ... WHERE owner = $1 OR lease_until < now()`.
///
/// Every method is async and object safe, so the runner holds an `Arc<dyn SagaLog>`.
pub trait SagaLog: Send + Sync + 'static {
    /// Records a new saga in state [`SagaState::Running`], leased to `lease.owner`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Conflict`] when the id exists; [`ErrorKind::Infrastructure`] when
    /// the storage fails.
    fn create<'a>(&'a self, record: &'a SagaRecord) -> BoxFuture<'a, Result<()>>;

    /// Appends `transition` and sets the saga's state to `state`, atomically, renewing
    /// the lease; refused unless `lease.owner` holds the lease or the lease expired.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Conflict`], `flext.saga.lease_lost`, when another runner holds the
    /// lease; [`ErrorKind::NotFound`] for an unknown id; [`ErrorKind::Infrastructure`]
    /// when the storage fails.
    fn append<'a>(
        &'a self,
        id: Uuid,
        transition: &'a Transition,
        state: SagaState,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<()>>;

    /// One saga.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] for an unknown id; [`ErrorKind::Infrastructure`] when the
    /// storage fails.
    fn load<'a>(&'a self, id: Uuid) -> BoxFuture<'a, Result<SagaRecord>>;

    /// Takes over every in-flight saga whose lease expired (as of `now_ms`), leasing it to
    /// `lease.owner`, and returns them. A live lease is never taken, whoever holds it:
    /// not even by a runner of the same owner name (each runner's `owner` carries its
    /// incarnation, so a restarted process is another owner).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Infrastructure`] when the storage fails.
    fn claim_expired<'a>(
        &'a self,
        lease: &'a Lease,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Vec<SagaRecord>>>;

    /// Extends the lease of saga `id` by `lease.duration_ms` from now, when `lease.owner`
    /// still holds it: the heartbeat that keeps a long step's saga from being taken over.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Conflict`], `flext.saga.lease_lost`, when another runner holds the
    /// lease or it expired; [`ErrorKind::NotFound`] for an unknown id;
    /// [`ErrorKind::Infrastructure`] when the storage fails.
    fn renew<'a>(&'a self, id: Uuid, lease: &'a Lease) -> BoxFuture<'a, Result<()>>;

    /// The sagas `filter` matches, oldest first.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Infrastructure`] when the storage fails.
    fn list<'a>(&'a self, filter: &'a SagaFilter) -> BoxFuture<'a, Result<Vec<SagaSummary>>>;

    /// Every transition of saga `id`, oldest first, with when it was written.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] for an unknown id; [`ErrorKind::Infrastructure`] when the
    /// storage fails.
    fn history<'a>(&'a self, id: Uuid) -> BoxFuture<'a, Result<Vec<HistoryEntry>>>;

    /// Records an operator's `command` on saga `id` as a [`Transition::Operator`] and
    /// moves the saga to the state [`OperatorCommand::next_state`](super::OperatorCommand::next_state) gives, in
    /// one atomic write. With `lease`, a resumed or aborted saga is leased to it (the
    /// runner that acted drives it at once); without, its lease is left expired, so the
    /// next recovery pass of any runner takes it. Returns the saga as it now is.
    ///
    /// # Errors
    ///
    /// The errors of [`OperatorCommand::next_state`](super::OperatorCommand::next_state) when the action does not apply
    /// to the saga as it is; [`ErrorKind::NotFound`] for an unknown id;
    /// [`ErrorKind::Infrastructure`] when the storage fails.
    fn act<'a>(
        &'a self,
        id: Uuid,
        command: &'a super::OperatorCommand,
        lease: Option<&'a Lease>,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<SagaRecord>>;
}

pub(crate) fn lease_lost(id: Uuid, owner: &str) -> Error {
    Error::conflict(
        crate::codes::SAGA_LEASE_LOST,
        format!("saga {id} is leased to `{owner}`; this runner stops driving it"),
    )
}

pub(crate) fn unknown_saga(id: Uuid) -> Error {
    Error::not_found(
        crate::codes::SAGA_NOT_FOUND,
        format!("no saga {id} in the log"),
    )
}
