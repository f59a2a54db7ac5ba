//! The durable saga log: what the runner records, and the trait its backends implement.

use uuid::Uuid;

pub use crate::error::ErrorRecord;
use crate::error::{Error, Result};
use crate::future::BoxFuture;

pub use super::fence::{ClaimRequest, Claimed, Fence};
pub use super::listing::{SagaFilter, SagaSummary, StuckAt};
pub use super::operator::OperatorAction;
pub use super::record::{Lease, SagaRecord, SagaState, now_ms};
pub use super::transition::{HistoryEntry, Transition};

/// Storage for saga progress. Backends: [`MemoryLog`](super::MemoryLog) for tests,
/// [`SqliteLog`](super::SqliteLog) as the embedded default and `PgSagaLog` (the
/// `postgres` feature) for several processes on several machines.
///
/// The contract every backend keeps, each inside one atomic write (and checked by the
/// conformance suite, `tests/saga_log_conformance.rs`):
///
/// - **Fencing.** Every saga carries an epoch ([`SagaRecord::epoch`]) that changes on
///   every claim. [`append`](Self::append), [`settle`](Self::settle) and
///   [`renew`](Self::renew) state the epoch they are made under ([`Fence`]) and are
///   refused with `flext.saga.lease_lost` once it moved on; an append also states the
///   transition it follows and is refused when another write came first.
/// - **Nothing after the end.** A saga that is completed, compensated, resolved or stuck
///   takes no runner's write; only an [`intervene`](Self::intervene) moves it on: an
///   operator's on a stuck one, or a parent's [`OperatorAction::Compensate`] on a
///   completed child.
/// - **Leases say when to take over.** [`claim_expired`](Self::claim_expired) takes only
///   sagas whose lease expired, and moves their epoch on.
///
/// Every method is async and object safe, so the runner holds an `Arc<dyn SagaLog>`.
pub trait SagaLog: Send + Sync + 'static {
    /// Records a new saga in state [`SagaState::Running`], leased to `record.owner`
    /// under `record.epoch` (the runner gives 1).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Conflict`](crate::ErrorKind::Conflict) when the id exists; [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure) when
    /// the storage fails.
    fn create<'a>(&'a self, record: &'a SagaRecord) -> BoxFuture<'a, Result<()>>;

    /// Appends `transition` and sets the saga's state to `state`, atomically, renewing
    /// the lease to `lease`; refused, writing nothing, unless the saga is in flight (running
    /// or compensating), its epoch is `fence.epoch` and it has exactly `fence.seq`
    /// transitions.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Conflict`](crate::ErrorKind::Conflict), `flext.saga.lease_lost`, when the fence is stale (the
    /// saga was claimed again, or another write came first) or the saga is no longer in
    /// flight; [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) for an unknown id; [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure)
    /// when the storage fails (the write may or may not have committed: read it back).
    fn append<'a>(
        &'a self,
        id: Uuid,
        transition: &'a Transition,
        state: SagaState,
        lease: &'a Lease,
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>>;

    /// Appends `transitions` in order and sets the saga's state to `state`, as one
    /// atomic write under `fence` (the first follows `fence.seq`, each next one the
    /// last): what a durable workflow writes when several nodes settle together, one
    /// commit for all of them. Refused, writing nothing, as [`append`](Self::append) is.
    ///
    /// The default appends them one at a time (the states between are `state` while it
    /// is in flight, and the run's in-flight state before a final one), which is not
    /// atomic: a crash between two leaves the first ones written, which recovery reads
    /// as nodes that settled one after the other. Every flext backend overrides it with
    /// one transaction.
    ///
    /// # Errors
    ///
    /// As [`append`](Self::append); an empty `transitions` writes nothing and succeeds.
    fn append_all<'a>(
        &'a self,
        id: Uuid,
        transitions: &'a [Transition],
        state: SagaState,
        lease: &'a Lease,
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let between = if state.is_in_flight() {
                state
            } else {
                self.load(id).await?.state
            };
            for (n, t) in transitions.iter().enumerate() {
                let last = n + 1 == transitions.len();
                let fence = Fence {
                    epoch: fence.epoch,
                    seq: fence.seq + n as u64,
                };
                self.append(id, t, if last { state } else { between }, lease, fence)
                    .await?;
            }
            Ok(())
        })
    }

    /// Writes the final `state` that a saga's transitions already reach but its record
    /// does not show (a log written by an older version, or repaired by hand), without a
    /// transition; fenced as [`append`](Self::append) is.
    ///
    /// # Errors
    ///
    /// As [`append`](Self::append).
    fn settle<'a>(&'a self, id: Uuid, state: SagaState, fence: Fence) -> BoxFuture<'a, Result<()>>;

    /// One saga.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) for an unknown id; [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure) when the
    /// storage fails.
    fn load<'a>(&'a self, id: Uuid) -> BoxFuture<'a, Result<SagaRecord>>;

    /// Takes over in-flight sagas whose lease expired (as of `request.now_ms`), of the
    /// types `request.names`, at most `request.limit`, oldest first: each accepted
    /// candidate is leased to `request.lease.owner` and its epoch moves on by one, in one
    /// atomic write per saga (two runners never claim one saga under one epoch). A live
    /// lease is never taken, whoever holds it: not even by a runner of the same owner
    /// name (each runner's `owner` carries its incarnation, so a restarted process is
    /// another owner). A candidate that does not decode, or that `request.accept`
    /// refuses, is left untouched and reported.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure) when the storage fails.
    fn claim_expired<'a>(&'a self, request: &'a ClaimRequest) -> BoxFuture<'a, Result<Claimed>>;

    /// Extends the lease of saga `id` by `lease.duration_ms` from now, when it is in
    /// flight under `epoch`: the heartbeat that keeps a long step's saga from being taken
    /// over. An expired lease is extended too while nobody claimed the saga meanwhile
    /// (the epoch says so).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Conflict`](crate::ErrorKind::Conflict), `flext.saga.lease_lost`, when the saga was claimed again
    /// or is no longer in flight; [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) for an unknown id;
    /// [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure) when the storage fails.
    fn renew<'a>(&'a self, id: Uuid, lease: &'a Lease, epoch: u64) -> BoxFuture<'a, Result<()>>;

    /// Takes the liveness lock of runner incarnation `owner` (`name/incarnation`), held
    /// until this log value is dropped or the process ends (SQLite: an `flock` on a file
    /// beside the database; PostgreSQL: a session advisory lock on a connection of its
    /// own). While it is held, the incarnation's sagas wait for their lease; once its
    /// process is gone, a restarted runner of the same name takes them back at once
    /// ([`ClaimRequest::takeover_gone`]) instead of waiting out the lease. Returns
    /// whether the lock is held; the runner calls it before its first write and at every
    /// recovery pass (taking it again after, say, a database restart dropped it).
    ///
    /// The default holds nothing and returns `false`: takeovers wait for the lease
    /// ([`MemoryLog`](super::MemoryLog) lives in one process, where a restart loses it
    /// anyway).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure) when the lock cannot be taken (the runner then
    /// goes on without it: takeovers wait for the lease).
    fn hold_liveness<'a>(&'a self, owner: &'a str) -> BoxFuture<'a, Result<bool>> {
        let _ = owner;
        Box::pin(std::future::ready(Ok(false)))
    }

    /// Keeps `signal` in its saga's inbox, unless the saga already holds a signal from
    /// `signal.sender` ([`SignalSent::Duplicate`](super::SignalSent::Duplicate), nothing changes); and, when the saga
    /// waits for a signal of this name (leased to the waiting owner `signal:<name>`),
    /// expires its lease, so that the next recovery pass of any runner takes it. Both
    /// in one atomic write. A duplicate still expires the lease: a runner that parked
    /// the saga just as the signal came sends it again for that.
    ///
    /// The default refuses: a backend that keeps no signals.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound), `flext.saga.not_found`, for
    /// an unknown saga; [`ErrorKind::Conflict`](crate::ErrorKind::Conflict),
    /// `flext.saga.finished`, when the saga completed, was compensated or resolved
    /// (nothing is kept); [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure)
    /// when the storage fails; `flext.saga.signals_unsupported` from the default.
    fn send_signal<'a>(
        &'a self,
        signal: &'a super::SignalRecord,
    ) -> BoxFuture<'a, Result<super::SignalSent>> {
        let _ = signal;
        Box::pin(std::future::ready(Err(signals_unsupported())))
    }

    /// The signals kept for saga `id`, in the order they were kept (taken ones too:
    /// the saga's [`Transition::SignalReceived`] records say which were taken).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure) when the storage
    /// fails; `flext.saga.signals_unsupported` from the default.
    fn signals<'a>(&'a self, id: Uuid) -> BoxFuture<'a, Result<Vec<super::SignalRecord>>> {
        let _ = id;
        Box::pin(std::future::ready(Err(signals_unsupported())))
    }

    /// Records a new child saga, as [`create`](Self::create) does, linked to saga
    /// `parent` in the same atomic write: once the child reaches a final state
    /// (completed, compensated or resolved), by whatever write (a runner's, an
    /// operator's), that same write keeps a signal named `child:<record.name>` from
    /// sender `record.id` (payload `null`) in the parent's inbox and expires the
    /// parent's lease when it waits for that signal, as
    /// [`send_signal`](Self::send_signal) would. So a parent parked on its child wakes
    /// once the child finishes, and a crash between the two cannot lose the wake-up.
    ///
    /// The default refuses: a backend that keeps no children.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create); `flext.saga.children_unsupported` from the default.
    fn create_child<'a>(
        &'a self,
        record: &'a SagaRecord,
        parent: Uuid,
    ) -> BoxFuture<'a, Result<()>> {
        let _ = (record, parent);
        Box::pin(std::future::ready(Err(Error::internal(
            crate::codes::SAGA_CHILDREN_UNSUPPORTED,
            "this saga log keeps no child sagas: implement `SagaLog::create_child`, or use a flext backend",
        ))))
    }

    /// Records saga `record` (leased to its queue, `queue:<name>`, no runner) and its
    /// queue row `item`, in one atomic write; a saga of that id already in the log
    /// changes nothing ([`Enqueued::Duplicate`](super::Enqueued::Duplicate)).
    ///
    /// The default refuses: a backend that keeps no queues.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure) when the storage
    /// fails; `flext.saga.queues_unsupported` from the default.
    fn enqueue<'a>(
        &'a self,
        record: &'a SagaRecord,
        item: &'a super::QueueItem,
    ) -> BoxFuture<'a, Result<super::Enqueued>> {
        let _ = (record, item);
        Box::pin(std::future::ready(Err(queues_unsupported())))
    }

    /// One dispatch pass of `request.queue`, in one atomic write that no other pass of
    /// the queue interleaves with (whatever process makes it): counts the queue's
    /// running items (claimed, their saga neither finished nor stuck), per partition
    /// key, and its starts within the rate limit's period; picks the waiting items
    /// those limits let start, highest priority first, oldest first within one; and
    /// claims their sagas for `request.lease` (owner, lease, epoch moved on), marking
    /// them started. A saga's final or stuck write marks its item finished in the same
    /// transaction. Returns the claimed sagas and the queue's depth after the pass.
    ///
    /// The default refuses: a backend that keeps no queues.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure) when the storage
    /// fails; `flext.saga.queues_unsupported` from the default.
    fn dequeue<'a>(
        &'a self,
        request: &'a super::DequeueRequest,
    ) -> BoxFuture<'a, Result<super::Dequeued>> {
        let _ = request;
        Box::pin(std::future::ready(Err(queues_unsupported())))
    }

    /// Where every queue stands (waiting, running, the oldest waiting item), by name.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure) when the storage
    /// fails; `flext.saga.queues_unsupported` from the default.
    fn queue_depths<'a>(&'a self) -> BoxFuture<'a, Result<Vec<super::QueueDepth>>> {
        Box::pin(std::future::ready(Err(queues_unsupported())))
    }

    /// The sagas `filter` matches, oldest first.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure) when the storage fails.
    fn list<'a>(&'a self, filter: &'a SagaFilter) -> BoxFuture<'a, Result<Vec<SagaSummary>>>;

    /// Every transition of saga `id`, oldest first, with when it was written.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) for an unknown id; [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure) when the
    /// storage fails.
    fn history<'a>(&'a self, id: Uuid) -> BoxFuture<'a, Result<Vec<HistoryEntry>>>;

    /// Records an operator's `command` on saga `id` as a [`Transition::Operator`] and
    /// moves the saga to the state [`Intervention::next_state`](super::Intervention::next_state) gives, in
    /// one atomic write that also moves the saga's epoch on (whatever runner held it can
    /// no longer write). With `lease`, a resumed or aborted saga is leased to it (the
    /// runner that acted drives it at once); without, its lease is left expired, so the
    /// next recovery pass of any runner takes it. Returns the saga as it now is.
    ///
    /// # Errors
    ///
    /// The errors of [`Intervention::next_state`](super::Intervention::next_state) when the action does not apply
    /// to the saga as it is; [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) for an unknown id;
    /// [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure) when the storage fails.
    fn intervene<'a>(
        &'a self,
        id: Uuid,
        command: &'a super::Intervention,
        lease: Option<&'a Lease>,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<SagaRecord>>;
}

fn queues_unsupported() -> Error {
    Error::internal(
        crate::codes::SAGA_QUEUES_UNSUPPORTED,
        "this saga log keeps no queues: implement `SagaLog::{enqueue, dequeue, queue_depths}`, or use a flext backend",
    )
}

fn signals_unsupported() -> Error {
    Error::internal(
        crate::codes::SAGA_SIGNALS_UNSUPPORTED,
        "this saga log keeps no signals: implement `SagaLog::send_signal` and `SagaLog::signals`, or use a flext backend",
    )
}

/// Why a signal is refused for a saga in `state`: a saga that finished for good waits
/// for nothing more (a stuck one may still be resumed, so it keeps them).
pub(crate) fn refuse_signal(id: Uuid, state: SagaState) -> Option<Error> {
    matches!(
        state,
        SagaState::Completed | SagaState::Compensated | SagaState::Resolved
    )
    .then(|| {
        Error::conflict(
            crate::codes::SAGA_FINISHED,
            format!("saga {id} is {state} and waits for no signal; nothing was kept"),
        )
    })
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
