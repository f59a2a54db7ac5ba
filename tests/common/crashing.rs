//! A saga log that "crashes" the runner at one write, for the crash-point tests of sagas
//! and durable workflows: the write fails before it reaches the store, or right after
//! it committed; from then on nothing the runner does reaches the log, as with a killed
//! process.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use flext::prelude::*;
use flext::saga::{
    ClaimRequest, Claimed, Fence, HistoryEntry, Intervention, Lease, SagaFilter, SagaLog,
    SagaRecord, SagaState, SagaSummary, Transition,
};
use flext::{BoxFuture, Uuid};

/// A log that "crashes" the runner at one write, before it commits or right after.
pub struct CrashingLog {
    pub inner: Arc<dyn SagaLog>,
    pub crash_at: usize,
    pub after_commit: bool,
    pub writes: AtomicUsize,
}

impl CrashingLog {
    fn crash<T>(&self) -> Result<T> {
        Err(Error::infrastructure("test.crash", "the process died here"))
    }
    fn is_crash_point(&self) -> bool {
        self.writes.fetch_add(1, Ordering::SeqCst) == self.crash_at
    }
    fn dead(&self) -> bool {
        self.writes.load(Ordering::SeqCst) > self.crash_at
    }
    async fn write(&self, write: BoxFuture<'_, Result<()>>) -> Result<()> {
        if self.dead() {
            return self.crash();
        }
        if !self.is_crash_point() {
            return write.await;
        }
        if self.after_commit {
            write.await?;
        }
        self.crash()
    }
}

impl SagaLog for CrashingLog {
    fn create<'a>(&'a self, record: &'a SagaRecord) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.write(self.inner.create(record)))
    }
    fn append<'a>(
        &'a self,
        id: Uuid,
        t: &'a Transition,
        state: SagaState,
        lease: &'a Lease,
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.write(self.inner.append(id, t, state, lease, fence)))
    }
    fn append_all<'a>(
        &'a self,
        id: Uuid,
        t: &'a [Transition],
        state: SagaState,
        lease: &'a Lease,
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.write(self.inner.append_all(id, t, state, lease, fence)))
    }
    fn settle<'a>(&'a self, id: Uuid, state: SagaState, fence: Fence) -> BoxFuture<'a, Result<()>> {
        self.inner.settle(id, state, fence)
    }
    fn load<'a>(&'a self, id: Uuid) -> BoxFuture<'a, Result<SagaRecord>> {
        if self.dead() {
            return Box::pin(std::future::ready(self.crash()));
        }
        self.inner.load(id)
    }
    fn claim_expired<'a>(&'a self, request: &'a ClaimRequest) -> BoxFuture<'a, Result<Claimed>> {
        self.inner.claim_expired(request)
    }
    fn renew<'a>(&'a self, id: Uuid, lease: &'a Lease, epoch: u64) -> BoxFuture<'a, Result<()>> {
        self.inner.renew(id, lease, epoch)
    }
    fn list<'a>(&'a self, filter: &'a SagaFilter) -> BoxFuture<'a, Result<Vec<SagaSummary>>> {
        self.inner.list(filter)
    }
    fn history<'a>(&'a self, id: Uuid) -> BoxFuture<'a, Result<Vec<HistoryEntry>>> {
        self.inner.history(id)
    }
    fn intervene<'a>(
        &'a self,
        id: Uuid,
        command: &'a Intervention,
        lease: Option<&'a Lease>,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<SagaRecord>> {
        self.inner.intervene(id, command, lease, now_ms)
    }
}
