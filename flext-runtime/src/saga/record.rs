//! What the log keeps of one saga ([`SagaRecord`], [`SagaState`]) and the lease a runner
//! holds on it.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[cfg(doc)]
use super::log::{Fence, OperatorAction, SagaLog};
use super::log::{SagaSummary, StuckAt, Transition};
use crate::error::{Error, Result};

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
    /// [`ErrorKind::Validation`](crate::ErrorKind::Validation), `flext.saga.unknown_state`, naming the states there are.
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
    /// The fencing token of the current claim: 1 at creation, one more on every claim
    /// (a takeover by [`SagaLog::claim_expired`], an operator's action). A write states
    /// the epoch it was made under ([`Fence`]) and the log refuses it once the epoch has
    /// moved on. 0 in logs written before epochs were recorded.
    #[serde(default)]
    pub epoch: u64,
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
            stuck_at: StuckAt::of(self.state, &self.transitions),
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
