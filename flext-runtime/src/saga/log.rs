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
        }
    }

    /// The state `as_str` wrote; read back by the SQL backends.
    #[cfg(feature = "sqlite")]
    pub(crate) fn parse(s: &str) -> Result<SagaState> {
        Ok(match s {
            "running" => SagaState::Running,
            "compensating" => SagaState::Compensating,
            "completed" => SagaState::Completed,
            "compensated" => SagaState::Compensated,
            "stuck" => SagaState::Stuck,
            other => {
                return Err(Error::infrastructure(
                    crate::codes::SAGA_LOG_CORRUPT,
                    format!("unknown saga state `{other}` in the log"),
                ));
            }
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
    },
    /// Step `index` failed for good; compensation starts.
    StepFailed {
        /// The step's position.
        index: usize,
        /// Why.
        error: ErrorRecord,
    },
    /// The compensation of step `index` finished. When no completed step is left to
    /// undo, this also marks the saga compensated.
    CompensationCompleted {
        /// The compensated step's position.
        index: usize,
    },
    /// The saga cannot make progress on its own.
    Stuck {
        /// The step or compensation that kept failing.
        step: String,
        /// Its last error.
        error: ErrorRecord,
    },
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
    /// The runner holding the lease.
    pub owner: String,
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

    /// The sagas in `state`, oldest first.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Infrastructure`] when the storage fails.
    fn list<'a>(&'a self, state: SagaState) -> BoxFuture<'a, Result<Vec<SagaSummary>>>;
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
