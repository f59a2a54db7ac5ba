//! What operators list: which sagas ([`SagaFilter`]) and how each is shown
//! ([`SagaSummary`]).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::log::{SagaState, Transition, now_ms};

/// Which sagas [`SagaLog::list`](super::SagaLog::list) returns: every field that is set must match. The
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
    /// At most this many, oldest first (stuck ones first with
    /// [`stuck_first`](Self::stuck_first)).
    pub limit: Option<usize>,
    /// Skip this many of the matching sagas first: with [`limit`](Self::limit), one page
    /// of a long list.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: usize,
    /// List [stuck](SagaState::Stuck) sagas before the others (each group oldest first):
    /// what an operator looks at first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stuck_first: bool,
    /// Only sagas whose id, written as lower-case hyphenated hex, starts with this (an
    /// operator's shortened id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_prefix: Option<String>,
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

    /// Skip the first `offset` matching sagas (paging).
    pub fn offset(mut self, offset: usize) -> Self {
        self.offset = offset;
        self
    }

    /// Stuck sagas first, then the others; each group oldest first.
    pub fn stuck_first(mut self) -> Self {
        self.stuck_first = true;
        self
    }

    /// Only sagas whose id starts with `prefix` (lower-case hyphenated hex: `3f2a`,
    /// `3f2a91c0-`).
    pub fn id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.id_prefix = Some(prefix.into());
        self
    }

    /// Whether `summary` passes the filter (the limit aside).
    pub fn matches(&self, summary: &SagaSummary) -> bool {
        self.state.is_none_or(|s| s == summary.state)
            && self.name.as_deref().is_none_or(|n| n == summary.name)
            && self
                .created_before_ms
                .is_none_or(|before| summary.created_ms < before)
            && self
                .id_prefix
                .as_deref()
                .is_none_or(|p| summary.id.to_string().starts_with(p))
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
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
    /// The step or compensation a [stuck](SagaState::Stuck) saga stuck at, with its last
    /// error's code and message; `None` for a saga that is not stuck.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuck_at: Option<StuckAt>,
}

/// Where a stuck saga stuck ([`SagaSummary::stuck_at`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StuckAt {
    /// The step (`ship`) or compensation (`compensate charge`) that kept failing.
    pub step: String,
    /// Its last error's code.
    pub code: String,
    /// Its last error's message.
    pub message: String,
}

impl StuckAt {
    /// Where the last [`Transition::Stuck`] of `transitions` stuck, when the saga is
    /// stuck.
    pub fn of(state: SagaState, transitions: &[Transition]) -> Option<StuckAt> {
        if state != SagaState::Stuck {
            return None;
        }
        transitions.iter().rev().find_map(|t| match t {
            Transition::Stuck { step, error, .. } => Some(StuckAt {
                step: step.clone(),
                code: error.code.clone(),
                message: error.message.clone(),
            }),
            _ => None,
        })
    }
}
