//! [`MemoryLog`]: the saga log in memory, for tests and single-process tools.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use uuid::Uuid;

use super::log::{
    Lease, SagaLog, SagaRecord, SagaState, SagaSummary, Transition, lease_lost, now_ms,
    unknown_saga,
};
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
    order: Vec<Uuid>,
}

impl Sagas {
    fn in_order(&self) -> impl Iterator<Item = &SagaRecord> {
        self.order.iter().filter_map(|id| self.by_id.get(id))
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

impl SagaLog for MemoryLog {
    fn create<'a>(&'a self, record: &'a SagaRecord) -> BoxFuture<'a, Result<()>> {
        let result = self.with(|sagas| {
            if sagas.by_id.contains_key(&record.id) {
                return Err(Error::conflict(
                    crate::codes::SAGA_EXISTS,
                    format!("saga {} is already in the log", record.id),
                ));
            }
            sagas.order.push(record.id);
            sagas.by_id.insert(record.id, record.clone());
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
    ) -> BoxFuture<'a, Result<()>> {
        let now = now_ms();
        let result = self.with(|sagas| {
            let saga = sagas.by_id.get_mut(&id).ok_or_else(|| unknown_saga(id))?;
            if saga.owner != lease.owner && saga.lease_until_ms > now {
                return Err(lease_lost(id, &saga.owner));
            }
            saga.transitions.push(transition.clone());
            saga.state = state;
            saga.owner.clone_from(&lease.owner);
            saga.lease_until_ms = now.saturating_add(lease.duration_ms);
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

    fn claim_expired<'a>(
        &'a self,
        lease: &'a Lease,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Vec<SagaRecord>>> {
        let result = self.with(|sagas| {
            let mut claimed = Vec::new();
            let Sagas { by_id, order } = sagas;
            for id in order.iter() {
                let Some(saga) = by_id.get_mut(id) else {
                    continue;
                };
                if saga.state.is_in_flight() && saga.lease_until_ms <= now_ms {
                    saga.owner.clone_from(&lease.owner);
                    saga.lease_until_ms = now_ms.saturating_add(lease.duration_ms);
                    claimed.push(saga.clone());
                }
            }
            Ok(claimed)
        });
        Box::pin(std::future::ready(result))
    }

    fn renew<'a>(&'a self, id: Uuid, lease: &'a Lease) -> BoxFuture<'a, Result<()>> {
        let result = self.with(|sagas| {
            let saga = sagas.by_id.get_mut(&id).ok_or_else(|| unknown_saga(id))?;
            let now = now_ms();
            if saga.owner != lease.owner || saga.lease_until_ms <= now {
                return Err(lease_lost(id, &saga.owner));
            }
            saga.lease_until_ms = now.saturating_add(lease.duration_ms);
            Ok(())
        });
        Box::pin(std::future::ready(result))
    }

    fn list<'a>(&'a self, state: SagaState) -> BoxFuture<'a, Result<Vec<SagaSummary>>> {
        let result = self.with(|sagas| {
            Ok(sagas
                .in_order()
                .filter(|s| s.state == state)
                .map(|s| SagaSummary {
                    id: s.id,
                    name: s.name.clone(),
                    state: s.state,
                    transitions: s.transitions.len(),
                    owner: s.owner.clone(),
                })
                .collect())
        });
        Box::pin(std::future::ready(result))
    }
}
