//! Fencing: what a write states about the claim it is made under, and what a claim
//! takes over.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::log::{Lease, SagaRecord, SagaState};
use crate::error::{Error, Result};

/// What a write to a saga states about the claim it is made under: the fencing token
/// (Kleppmann, "How to do distributed locking", 2016) and the transition it follows.
/// The log refuses a write whose `epoch` is not the saga's current one or whose `seq`
/// is not the saga's last transition, so that a runner that lost its claim (paused,
/// partitioned, or slow past its lease) never writes again, and two writes never both
/// follow one transition.
///
/// ```
/// use flext::saga::{Fence, SagaRecord};
/// # fn f(record: &SagaRecord) {
/// let fence = Fence::of(record);
/// assert_eq!(fence.seq, record.transitions.len() as u64);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fence {
    /// The epoch of the claim the write is made under ([`SagaRecord::epoch`]).
    pub epoch: u64,
    /// How many transitions the saga has before this write: the position (from 1) of
    /// the last transition the write follows, 0 for none.
    pub seq: u64,
}

impl Fence {
    /// The fence for the next write to `record` as it was read.
    pub fn of(record: &SagaRecord) -> Fence {
        Fence {
            epoch: record.epoch,
            seq: record.transitions.len() as u64,
        }
    }
}

/// The check [`ClaimRequest::accept`] runs on each candidate before it is claimed.
pub type Accept = Arc<dyn Fn(&SagaRecord) -> Result<()> + Send + Sync>;

/// What [`SagaLog::claim_expired`](super::SagaLog::claim_expired) takes over. Owned, so that a backend can hand it to
/// another thread.
#[derive(Clone)]
pub struct ClaimRequest {
    /// The runner claiming: the saga's new owner and lease.
    pub lease: Lease,
    /// The time a lease is expired by, in milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// Only sagas of these types (the ones linked into the claiming program); every
    /// type when empty.
    pub names: Vec<&'static str>,
    /// At most this many sagas are claimed.
    pub limit: usize,
    /// Only this saga, when set (a start of an id whose lease expired).
    pub only: Option<Uuid>,
    /// The owner prefix (`name/`) of the claiming runner's other incarnations, when the
    /// claiming runner holds its own liveness lock ([`SagaLog::hold_liveness`]): their
    /// in-flight sagas are claimed at once, live lease or not, when the store can prove
    /// the incarnation gone (its liveness lock is free). `None`: leases only.
    ///
    /// [`SagaLog::hold_liveness`]: super::SagaLog::hold_liveness
    pub takeover_gone: Option<String>,
    /// Called with each candidate as read, before it is claimed: an error leaves the
    /// saga untouched (owner, lease and epoch as they were) and reports it in
    /// [`Claimed::refused`]. The runner checks the definition and the input here.
    pub accept: Accept,
}

impl ClaimRequest {
    /// Every expired in-flight saga, of any type, for `lease`, as of `now_ms`; no limit,
    /// nothing refused.
    pub fn any(lease: &Lease, now_ms: u64) -> ClaimRequest {
        ClaimRequest {
            lease: lease.clone(),
            now_ms,
            names: Vec::new(),
            limit: usize::MAX,
            only: None,
            takeover_gone: None,
            accept: Arc::new(|_| Ok(())),
        }
    }

    /// Whether a saga of type `name` (and id `id`) is a candidate, its lease and state
    /// aside.
    pub fn wants(&self, id: Uuid, name: &str) -> bool {
        self.only.is_none_or(|only| only == id)
            && (self.names.is_empty() || self.names.contains(&name))
    }
}

impl std::fmt::Debug for ClaimRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimRequest")
            .field("lease", &self.lease)
            .field("now_ms", &self.now_ms)
            .field("names", &self.names)
            .field("limit", &self.limit)
            .field("only", &self.only)
            .field("takeover_gone", &self.takeover_gone)
            .finish_non_exhaustive()
    }
}

/// What [`SagaLog::claim_expired`](super::SagaLog::claim_expired) took over, and what it set aside.
#[derive(Debug, Default)]
pub struct Claimed {
    /// The sagas now leased to the claiming runner, each with its new epoch, oldest
    /// first.
    pub sagas: Vec<SagaRecord>,
    /// Candidates left untouched: a record that does not decode, or one the request's
    /// `accept` refused, with why.
    pub refused: Vec<(Uuid, Error)>,
}

/// Why a backend refused a fenced write to saga `id`, from the row as it is now: its
/// state, epoch and transition count against the `fence` the write stated.
pub(crate) fn fence_refused(
    id: Uuid,
    state: SagaState,
    owner: &str,
    epoch: u64,
    seq: u64,
    fence: Fence,
) -> Error {
    let why = if !state.is_in_flight() {
        format!("it is {state}: nothing more is written to it")
    } else if epoch != fence.epoch {
        format!(
            "it was claimed again (epoch {epoch}, this runner's is {}) and is leased to `{owner}`",
            fence.epoch
        )
    } else {
        format!(
            "another write came first (it has {seq} transitions, this write follows {})",
            fence.seq
        )
    };
    Error::conflict(
        crate::codes::SAGA_LEASE_LOST,
        format!("saga {id} refused a write: {why}; this runner stops driving it"),
    )
}

impl Claimed {
    /// Whether another candidate may be claimed under `request`'s limit.
    pub(crate) fn wants_more(&self, request: &ClaimRequest) -> bool {
        self.sagas.len() < request.limit
    }

    /// Screens candidate `id` as a backend read it: the record to claim, or `None` when
    /// it is set aside (it does not decode, or `request.accept` refused it: recorded in
    /// [`refused`](Self::refused)).
    ///
    /// # Errors
    ///
    /// The read's error when the storage failed (the whole claim fails).
    pub(crate) fn screen(
        &mut self,
        request: &ClaimRequest,
        id: Uuid,
        read: Result<SagaRecord>,
    ) -> Result<Option<SagaRecord>> {
        let record = match read {
            Ok(record) => record,
            Err(e) if e.code() == crate::codes::SAGA_LOG_CORRUPT => {
                self.refused.push((id, e));
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        match (request.accept)(&record) {
            Ok(()) => Ok(Some(record)),
            Err(e) => {
                self.refused.push((id, e));
                Ok(None)
            }
        }
    }

    /// Adds `record`, as a backend has just claimed it for `request`: leased to the
    /// claiming runner until `until` (milliseconds since the Unix epoch), its epoch one
    /// more.
    pub(crate) fn take(&mut self, request: &ClaimRequest, mut record: SagaRecord, until: u64) {
        record.owner.clone_from(&request.lease.owner);
        record.lease_until_ms = until;
        record.epoch += 1;
        self.sagas.push(record);
    }
}

/// The range of owners `[start, end)` that begin with `prefix` (a runner's name and
/// `/`), bytewise: what a takeover of a gone incarnation reads through an index on the
/// owner, instead of scanning every saga under a live lease (a parked saga's lease runs
/// until it is due).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn owner_range(prefix: &str) -> (String, String) {
    let end = match prefix.strip_suffix('/') {
        // '0' is the byte after '/'.
        Some(name) => format!("{name}0"),
        None => format!("{prefix}\u{10FFFF}"),
    };
    (prefix.to_owned(), end)
}
