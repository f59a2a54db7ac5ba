//! Configuring a [`SagaRunner`]: its state, owner name, lease, compensation attempts,
//! backoff cap and recovery batch.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::{Lease, SagaLog, SagaRunner};
use crate::backoff::Backoff;
use crate::state::StateMap;

/// Configures a [`SagaRunner`].
pub struct SagaRunnerBuilder {
    log: Arc<dyn SagaLog>,
    state: StateMap,
    owner: Option<String>,
    lease: Duration,
    compensation_attempts: u32,
    backoff_cap: Duration,
    recovery_batch: usize,
}

impl SagaRunnerBuilder {
    /// Registers state steps receive as `State<T>`.
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// Registers shared state the caller keeps a handle to.
    pub fn shared_state<T: Send + Sync + 'static>(mut self, value: Arc<T>) -> Self {
        self.state.insert_arc(value);
        self
    }

    /// The runner's name in the log's leases (default `runner`). The lease owner is this
    /// name and an incarnation id made when the runner is built (`name/incarnation`), so
    /// two runners never share a saga even under one name. A restarted process takes its
    /// old incarnation's in-flight sagas back at its first recovery pass when the log can
    /// prove that incarnation gone (SQLite: its lock file beside the database is free;
    /// PostgreSQL: its session advisory lock is free), and otherwise once their leases
    /// expire. Give each process a stable name of its own (a host name, a pod name) so
    /// that a restart is recognised; two processes sharing a name still never drive one
    /// saga at once (the fence sees to it), but may take each other's sagas early after
    /// a database restart.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// How long a lease lasts after each transition or renewal (default 30 s): how long
    /// another runner waits before taking over a saga whose runner stopped writing (it
    /// crashed, paused, or lost the database).
    ///
    /// While a step runs, a heartbeat renews the lease every third of it, retrying a
    /// failed renewal with backoff; a runner that has not had a renewal or a write
    /// acknowledged for four fifths of the lease (by its own clock) drops the step's
    /// attempt and stops driving the saga, before anyone may take it over. A step's
    /// timeout, retries and backoff may add up to more than the lease: the heartbeat
    /// keeps it. What the lease bounds is how long the log may be unreachable: a blip
    /// shorter than four fifths of the lease costs nothing; a longer one hands the saga
    /// to the next recovery pass of any runner, where the new owner's writes are fenced
    /// by a new epoch and the old owner's are refused. A step that blocks its thread
    /// starves the heartbeat (a WARN names the step when a heartbeat runs more than a
    /// third of the lease late). Under 3 ms no heartbeat runs and only the fence guards
    /// writes (tests).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// At most how many sagas one recovery pass claims (default 32, at least 1): they
    /// are driven concurrently, so a pass claims no more than it can drive within the
    /// lease; the rest wait for the next pass or another runner.
    pub fn recovery_batch(mut self, sagas: usize) -> Self {
        self.recovery_batch = sagas.max(1);
        self
    }

    /// How many times a compensation is tried before the saga is marked stuck (default
    /// 5, at least 1), with the step's backoff between attempts.
    pub fn compensation_attempts(mut self, attempts: u32) -> Self {
        self.compensation_attempts = attempts.max(1);
        self
    }

    /// The longest wait between two attempts of a step or compensation (default
    /// [`Backoff::SAGA_CAP`], 60 s): waits start at the step's `backoff_ms` and double
    /// up to this cap.
    pub fn backoff_cap(mut self, cap: Duration) -> Self {
        self.backoff_cap = cap;
        self
    }

    /// The runner.
    pub fn build(self) -> SagaRunner {
        SagaRunner {
            log: self.log,
            state: Arc::new(self.state),
            lease: Lease {
                // The incarnation makes every runner its own owner: two processes given
                // one name never drive the same saga.
                owner: format!(
                    "{}/{}",
                    self.owner.as_deref().unwrap_or("runner"),
                    Uuid::new_v4().simple()
                ),
                duration_ms: u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX),
            },
            compensation_attempts: self.compensation_attempts,
            backoff_cap: self.backoff_cap,
            recovery_batch: self.recovery_batch,
            liveness_asked: Arc::default(),
            running: Arc::default(),
            nudge: Arc::default(),
        }
    }
}

impl SagaRunner {
    /// A builder over `log`.
    pub fn builder(log: impl SagaLog) -> SagaRunnerBuilder {
        Self::builder_shared(Arc::new(log))
    }

    /// A builder over a log shared with other runners or with the caller.
    pub fn builder_shared(log: Arc<dyn SagaLog>) -> SagaRunnerBuilder {
        SagaRunnerBuilder {
            log,
            state: StateMap::default(),
            owner: None,
            lease: Duration::from_secs(30),
            compensation_attempts: 5,
            backoff_cap: Backoff::SAGA_CAP,
            recovery_batch: 32,
        }
    }
}
