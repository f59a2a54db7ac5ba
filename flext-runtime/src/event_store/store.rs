//! The [`EventStore`] trait.

use super::{EventEnvelope, NewEvent, Snapshot, StreamId};
use crate::error::{Error, Result};
use crate::future::BoxFuture;

/// Storage for event streams. Backends: [`MemoryEventStore`](super::MemoryEventStore)
/// and [`SqliteEventStore`](super::SqliteEventStore); the contract (expected-version
/// appends, all-or-nothing batches, a global order readers cannot outrun) is what a
/// PostgreSQL backend implements with a unique key on (stream, sequence) and
/// transaction-id snapshots for the global order.
///
/// Object safe: repositories hold an `Arc<dyn EventStore>`.
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream`, which must be at `expected_version` (0 for a stream
    /// that does not exist yet), all of them or none. Returns the stream's new version.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Conflict`](crate::ErrorKind::Conflict), `flext.event.conflict`, when the
    /// stream is at another version (another writer appended first): nothing is written;
    /// [`ErrorKind::Conflict`](crate::ErrorKind::Conflict), `flext.event.duplicate_id`,
    /// when an event id is already stored; [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure)
    /// when the storage fails.
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected_version: u64,
        events: &'a [NewEvent],
    ) -> BoxFuture<'a, Result<u64>>;

    /// Appends as [`append`](Self::append) and, in the same transaction, stores
    /// `response` for the idempotency key `claim` holds, so that the events and the
    /// response commit together ([`idempotency`](crate::idempotency)). The SQLite and
    /// PostgreSQL stores do; the default appends and leaves the claim to its caller,
    /// who completes it after the append.
    ///
    /// # Errors
    ///
    /// As [`append`](Self::append); [`ErrorKind::Conflict`](crate::ErrorKind::Conflict),
    /// `flext.idempotency.claim_lost`, when the claim was taken over by a repeat of the
    /// request (its in-flight time ran out): nothing is written.
    fn append_claimed<'a>(
        &'a self,
        stream: &'a StreamId,
        expected_version: u64,
        events: &'a [NewEvent],
        claim: &'a crate::idempotency::IdempotencyClaim,
        response: &'a crate::idempotency::Response,
    ) -> BoxFuture<'a, Result<u64>> {
        let _ = (claim, response);
        self.append(stream, expected_version, events)
    }

    /// The events of `stream` after version `after` (0 for all of them), in order. An
    /// unknown stream has none.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure) when the storage fails.
    fn load<'a>(
        &'a self,
        stream: &'a StreamId,
        after: u64,
    ) -> BoxFuture<'a, Result<Vec<EventEnvelope>>>;

    /// Hands the events of `stream` after version `after` to `apply`, in order, by
    /// reference: what [`Repository`](crate::aggregate::Repository) replays an aggregate
    /// with. The provided method [`load`](Self::load)s them and hands each on; a store
    /// that keeps its events in memory overrides it to hand them on without copying
    /// (`MemoryEventStore` does).
    ///
    /// # Errors
    ///
    /// The first error `apply` returns, which stops the replay; what [`load`](Self::load)
    /// returns.
    fn replay<'a>(
        &'a self,
        stream: &'a StreamId,
        after: u64,
        apply: &'a mut (dyn FnMut(&EventEnvelope) -> Result<()> + Send),
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for event in self.load(stream, after).await? {
                apply(&event)?;
            }
            Ok(())
        })
    }

    /// The stream's current version: the sequence of its last event, 0 when it has none.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure) when the storage fails.
    fn version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<u64>>;

    /// Up to `limit` events of every stream after global position `after`, in global
    /// order.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure) when the storage fails.
    fn read_all<'a>(
        &'a self,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<EventEnvelope>>>;

    /// Keeps `snapshot` as the stream's latest (replacing an older one).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure) when the storage fails.
    fn save_snapshot<'a>(&'a self, snapshot: &'a Snapshot) -> BoxFuture<'a, Result<()>>;

    /// The stream's latest snapshot, if any.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure) when the storage fails.
    fn load_snapshot<'a>(&'a self, stream: &'a StreamId)
    -> BoxFuture<'a, Result<Option<Snapshot>>>;
}

/// The error for an append whose expected version is not the stream's.
pub(crate) fn conflict(stream: &StreamId, expected: u64, actual: u64) -> Error {
    Error::conflict(
        crate::codes::EVENT_CONFLICT,
        format!(
            "stream {} is at version {actual}, not {expected}: another writer appended first; reload and decide again",
            crate::input::echo_display(stream)
        ),
    )
}

/// The error for an event id that is already stored.
pub(crate) fn duplicate_id(id: uuid::Uuid) -> Error {
    Error::conflict(
        crate::codes::EVENT_DUPLICATE_ID,
        format!("event {id} is already stored: an event id is stored once"),
    )
}
