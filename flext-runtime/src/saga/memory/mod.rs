//! [`MemoryLog`]: the saga log in memory, for tests and single-process tools.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use uuid::Uuid;

use super::Intervention;
use super::fence::fence_refused;
use super::log::{
    ClaimRequest, Claimed, Fence, HistoryEntry, Lease, SagaFilter, SagaLog, SagaRecord, SagaState,
    SagaSummary, Transition, lease_lost, now_ms, refuse_signal, unknown_saga,
};
use super::signal::waiting_owner;
use super::{DequeueRequest, Dequeued, Enqueued, QueueDepth, QueueItem, SignalRecord, SignalSent};

mod queue;

use self::queue::QueueRow;
use crate::error::{Error, Result};
use crate::future::BoxFuture;

/// A saga log in memory. Survives nothing but a dropped runner, which is what the crash
/// tests need: a fresh runner over the same log recovers what the first left in flight.
/// Cheap to share: clone the `Arc` it is held in.
#[derive(Default)]
pub struct MemoryLog {
    sagas: Mutex<Sagas>,
}

/// Sagas by id, plus their creation order for listing.
#[derive(Default)]
struct Sagas {
    by_id: HashMap<Uuid, SagaRecord>,
    /// When each saga's transitions were written, in step with `transitions`.
    times: HashMap<Uuid, Vec<u64>>,
    order: Vec<Uuid>,
    /// Each saga's signal inbox, in the order kept.
    signals: HashMap<Uuid, Vec<SignalRecord>>,
    /// Each child saga's parent ([`SagaLog::create_child`]).
    parents: HashMap<Uuid, Uuid>,
    /// Queue rows, in the order enqueued.
    queue: Vec<QueueRow>,
}

impl Sagas {
    /// Keeps `signal` in its saga's inbox unless its sender's is kept, and hands a saga
    /// waiting for it over (its lease expires).
    fn keep(&mut self, signal: &SignalRecord) -> Result<SignalSent> {
        let id = signal.saga_id;
        let saga = self.by_id.get_mut(&id).ok_or_else(|| unknown_saga(id))?;
        if let Some(refused) = refuse_signal(id, saga.state) {
            return Err(refused);
        }
        if saga.owner == waiting_owner(&signal.name) {
            saga.lease_until_ms = saga.lease_until_ms.min(now_ms());
        }
        let inbox = self.signals.entry(id).or_default();
        if inbox.iter().any(|kept| kept.sender == signal.sender) {
            return Ok(SignalSent::Duplicate);
        }
        inbox.push(signal.clone());
        Ok(SignalSent::Kept)
    }

    /// After a write to saga `id`: a child that reached a final state tells its parent,
    /// and a queued saga that finished or stuck leaves its queue's running count (in the
    /// same write, under the same lock).
    fn tell_parent(&mut self, id: Uuid) {
        if let Some(saga) = self.by_id.get(&id)
            && !saga.state.is_in_flight()
            && let Some(row) = self
                .queue
                .iter_mut()
                .find(|r| r.item.saga_id == id && r.finished_ms.is_none())
        {
            row.finished_ms = Some(now_ms());
        }
        let Some(&parent) = self.parents.get(&id) else {
            return;
        };
        let Some(child) = self.by_id.get(&id) else {
            return;
        };
        if !matches!(
            child.state,
            SagaState::Completed | SagaState::Compensated | SagaState::Resolved
        ) {
            return;
        }
        let signal = super::child::finished_signal(parent, child);
        // A parent that finished meanwhile waits for nothing: nothing to keep.
        let _ = self.keep(&signal);
    }

    fn in_order(&self) -> impl Iterator<Item = &SagaRecord> {
        self.order.iter().filter_map(|id| self.by_id.get(id))
    }

    fn push(
        &mut self,
        id: Uuid,
        transition: &Transition,
        state: SagaState,
        now: u64,
    ) -> Result<&mut SagaRecord> {
        self.times.entry(id).or_default().push(now);
        let saga = self.by_id.get_mut(&id).ok_or_else(|| unknown_saga(id))?;
        saga.transitions.push(transition.clone());
        saga.state = state;
        Ok(saga)
    }
}

/// The fence check of every runner write: the saga is in flight, under `fence.epoch`,
/// with `fence.seq` transitions.
fn check_fence(sagas: &Sagas, id: Uuid, fence: Fence) -> Result<()> {
    let saga = sagas.by_id.get(&id).ok_or_else(|| unknown_saga(id))?;
    let seq = saga.transitions.len() as u64;
    if saga.state.is_in_flight() && saga.epoch == fence.epoch && seq == fence.seq {
        Ok(())
    } else {
        Err(fence_refused(
            id,
            saga.state,
            &saga.owner,
            saga.epoch,
            seq,
            fence,
        ))
    }
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Sagas) -> Result<T>) -> Result<T> {
        f(&mut self.sagas.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Records a new saga; refuses (writing nothing) when the id exists.
fn insert(sagas: &mut Sagas, record: &SagaRecord) -> Result<()> {
    if sagas.by_id.contains_key(&record.id) {
        return Err(Error::conflict(
            crate::codes::SAGA_EXISTS,
            format!("saga {} is already in the log", record.id),
        ));
    }
    sagas.order.push(record.id);
    sagas.by_id.insert(record.id, record.clone());
    sagas
        .times
        .insert(record.id, vec![now_ms(); record.transitions.len()]);
    Ok(())
}

impl SagaLog for MemoryLog {
    fn create<'a>(&'a self, record: &'a SagaRecord) -> BoxFuture<'a, Result<()>> {
        let result = self.with(|sagas| insert(sagas, record));
        Box::pin(std::future::ready(result))
    }

    fn create_child<'a>(
        &'a self,
        record: &'a SagaRecord,
        parent: Uuid,
    ) -> BoxFuture<'a, Result<()>> {
        let result = self.with(|sagas| {
            insert(sagas, record)?;
            sagas.parents.insert(record.id, parent);
            Ok(())
        });
        Box::pin(std::future::ready(result))
    }

    fn append<'a>(
        &'a self,
        id: Uuid,
        transition: &'a Transition,
        state: SagaState,
        lease: &'a Lease,
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>> {
        let now = now_ms();
        let result = self.with(|sagas| {
            check_fence(sagas, id, fence)?;
            let saga = sagas.push(id, transition, state, now)?;
            saga.owner.clone_from(&lease.owner);
            saga.lease_until_ms = now.saturating_add(lease.duration_ms);
            sagas.tell_parent(id);
            Ok(())
        });
        Box::pin(std::future::ready(result))
    }

    fn append_all<'a>(
        &'a self,
        id: Uuid,
        transitions: &'a [Transition],
        state: SagaState,
        lease: &'a Lease,
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>> {
        let now = now_ms();
        let result = self.with(|sagas| {
            if transitions.is_empty() {
                return Ok(());
            }
            check_fence(sagas, id, fence)?;
            for t in transitions {
                sagas.push(id, t, state, now)?;
            }
            if let Some(saga) = sagas.by_id.get_mut(&id) {
                saga.owner.clone_from(&lease.owner);
                saga.lease_until_ms = now.saturating_add(lease.duration_ms);
            }
            sagas.tell_parent(id);
            Ok(())
        });
        Box::pin(std::future::ready(result))
    }

    fn settle<'a>(&'a self, id: Uuid, state: SagaState, fence: Fence) -> BoxFuture<'a, Result<()>> {
        let result = self.with(|sagas| {
            check_fence(sagas, id, fence)?;
            if let Some(saga) = sagas.by_id.get_mut(&id) {
                saga.state = state;
            }
            sagas.tell_parent(id);
            Ok(())
        });
        Box::pin(std::future::ready(result))
    }

    fn load<'a>(&'a self, id: Uuid) -> BoxFuture<'a, Result<SagaRecord>> {
        let result = self.with(|sagas| {
            sagas
                .by_id
                .get(&id)
                .cloned()
                .ok_or_else(|| unknown_saga(id))
        });
        Box::pin(std::future::ready(result))
    }

    fn claim_expired<'a>(&'a self, request: &'a ClaimRequest) -> BoxFuture<'a, Result<Claimed>> {
        let result = self.with(|sagas| {
            let mut claimed = Claimed::default();
            let Sagas { by_id, order, .. } = sagas;
            let until = request.now_ms.saturating_add(request.lease.duration_ms);
            for id in order.iter() {
                if !claimed.wants_more(request) {
                    break;
                }
                let Some(saga) = by_id.get_mut(id) else {
                    continue;
                };
                if !(saga.state.is_in_flight()
                    && saga.lease_until_ms <= request.now_ms
                    && request.wants(saga.id, &saga.name))
                {
                    continue;
                }
                if claimed
                    .screen(request, saga.id, Ok(saga.clone()))?
                    .is_none()
                {
                    continue;
                }
                claimed.take(request, saga.clone(), until);
                saga.owner.clone_from(&request.lease.owner);
                saga.lease_until_ms = until;
                saga.epoch += 1;
            }
            Ok(claimed)
        });
        Box::pin(std::future::ready(result))
    }

    fn renew<'a>(&'a self, id: Uuid, lease: &'a Lease, epoch: u64) -> BoxFuture<'a, Result<()>> {
        let result = self.with(|sagas| {
            let saga = sagas.by_id.get_mut(&id).ok_or_else(|| unknown_saga(id))?;
            if !saga.state.is_in_flight() || saga.epoch != epoch {
                return Err(lease_lost(id, &saga.owner));
            }
            saga.lease_until_ms = now_ms().saturating_add(lease.duration_ms);
            Ok(())
        });
        Box::pin(std::future::ready(result))
    }

    fn list<'a>(&'a self, filter: &'a SagaFilter) -> BoxFuture<'a, Result<Vec<SagaSummary>>> {
        let result = self.with(|sagas| {
            let mut matching: Vec<SagaSummary> = sagas
                .in_order()
                .map(SagaRecord::summary)
                .filter(|s| filter.matches(s))
                .collect();
            if filter.stuck_first {
                // A stable sort: each group keeps its creation order.
                matching.sort_by_key(|s| s.state != SagaState::Stuck);
            }
            Ok(matching
                .into_iter()
                .skip(filter.offset)
                .take(filter.limit.unwrap_or(usize::MAX))
                .collect())
        });
        Box::pin(std::future::ready(result))
    }

    fn send_signal<'a>(&'a self, signal: &'a SignalRecord) -> BoxFuture<'a, Result<SignalSent>> {
        let result = self.with(|sagas| sagas.keep(signal));
        Box::pin(std::future::ready(result))
    }

    fn signals<'a>(&'a self, id: Uuid) -> BoxFuture<'a, Result<Vec<SignalRecord>>> {
        let result = self.with(|sagas| Ok(sagas.signals.get(&id).cloned().unwrap_or_default()));
        Box::pin(std::future::ready(result))
    }

    fn enqueue<'a>(
        &'a self,
        record: &'a SagaRecord,
        item: &'a QueueItem,
    ) -> BoxFuture<'a, Result<Enqueued>> {
        let result = self.with(|sagas| queue::enqueue(sagas, record, item));
        Box::pin(std::future::ready(result))
    }

    fn dequeue<'a>(&'a self, request: &'a DequeueRequest) -> BoxFuture<'a, Result<Dequeued>> {
        let result = self.with(|sagas| Ok(queue::dequeue(sagas, request)));
        Box::pin(std::future::ready(result))
    }

    fn queue_depths<'a>(&'a self) -> BoxFuture<'a, Result<Vec<QueueDepth>>> {
        let result = self.with(|sagas| Ok(queue::depths(sagas)));
        Box::pin(std::future::ready(result))
    }

    fn history<'a>(&'a self, id: Uuid) -> BoxFuture<'a, Result<Vec<HistoryEntry>>> {
        let result = self.with(|sagas| {
            let saga = sagas.by_id.get(&id).ok_or_else(|| unknown_saga(id))?;
            let times = sagas.times.get(&id).map(Vec::as_slice).unwrap_or_default();
            Ok(saga
                .transitions
                .iter()
                .enumerate()
                .map(|(i, t)| HistoryEntry {
                    seq: i as u64 + 1,
                    at_ms: times.get(i).copied().unwrap_or(0),
                    transition: t.clone(),
                })
                .collect())
        });
        Box::pin(std::future::ready(result))
    }

    fn intervene<'a>(
        &'a self,
        id: Uuid,
        command: &'a Intervention,
        lease: Option<&'a Lease>,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<SagaRecord>> {
        let result = self.with(|sagas| {
            command.check()?;
            let saga = sagas.by_id.get_mut(&id).ok_or_else(|| unknown_saga(id))?;
            command.apply_to(saga, lease, now_ms)?;
            let saga = saga.clone();
            sagas.times.entry(id).or_default().push(now_ms);
            sagas.tell_parent(id);
            Ok(saga)
        });
        Box::pin(std::future::ready(result))
    }
}
