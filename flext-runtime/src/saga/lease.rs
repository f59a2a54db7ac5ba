//! A runner's claim on one saga while it drives it: the epoch its writes are fenced
//! with, the transition they follow, and how long this process may go on by its own
//! clock; the heartbeat that keeps the lease while a long step runs.
//!
//! The lease says when another runner may take over; the fence (the epoch) says who may
//! write. A runner stops before its lease ends by its own clock: it starts no attempt and
//! makes no write once `valid_until` (the start of the last call the log acknowledged,
//! plus the lease, less a fifth of it as a margin for clock drift and scheduling) has
//! passed, so a runner that cannot reach the log gives the saga up before anyone else
//! may take it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use super::{Fence, SagaRunner, SagaState, Transition};
use crate::error::{Error, ErrorKind, Result};

/// One runner's claim on one saga, for one drive.
pub(super) struct Claim {
    pub(super) id: Uuid,
    pub(super) epoch: u64,
    /// Transitions written so far: the `seq` of the next write's fence.
    seq: AtomicU64,
    /// Until when this runner may start attempts and write; `None` when the runner keeps
    /// no lease worth the name (under 3 ms: tests), and the fence alone guards writes.
    valid_until: Mutex<Option<Instant>>,
}

impl Claim {
    /// A claim under `fence`, acknowledged by a log call that started at `since`.
    pub(super) fn new(runner: &SagaRunner, id: Uuid, fence: Fence, since: Instant) -> Claim {
        Claim {
            id,
            epoch: fence.epoch,
            seq: AtomicU64::new(fence.seq),
            valid_until: Mutex::new(runner.lease_clock().map(|usable| since + usable)),
        }
    }

    pub(super) fn fence(&self) -> Fence {
        Fence {
            epoch: self.epoch,
            seq: self.seq.load(Ordering::Acquire),
        }
    }

    fn valid_until(&self) -> Option<Instant> {
        *self
            .valid_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The log acknowledged a call that started at `since`: the lease runs from there.
    fn extend(&self, runner: &SagaRunner, since: Instant) {
        if let Some(usable) = runner.lease_clock() {
            let mut until = self
                .valid_until
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *until = Some(until.map_or(since + usable, |u| u.max(since + usable)));
        }
    }

    /// `flext.saga.lease_lost` when this runner's lease ran out by its own clock.
    pub(super) fn check(&self) -> Result<()> {
        match self.valid_until() {
            Some(until) if Instant::now() >= until => Err(Error::conflict(
                crate::codes::SAGA_LEASE_LOST,
                format!(
                    "saga {}: this runner could not renew its lease in time (epoch {}); it stops driving the saga before its lease runs out",
                    self.id, self.epoch
                ),
            )),
            _ => Ok(()),
        }
    }
}

impl SagaRunner {
    /// How long a claim lasts by this process's clock after the log acknowledged a call:
    /// the lease less a fifth; `None` under 3 ms.
    fn lease_clock(&self) -> Option<Duration> {
        (self.lease.duration_ms >= 3)
            .then(|| Duration::from_millis(self.lease.duration_ms - self.lease.duration_ms / 5))
    }

    /// Writes `transition` (the saga moves to `state`) under `claim`'s fence. A write
    /// the log could not confirm (an error that may have come after the commit) is read
    /// back, and retried when it did not land, until the claim runs out by this
    /// process's clock.
    ///
    /// # Errors
    ///
    /// `flext.saga.lease_lost` when the fence is stale or the claim ran out; the log's
    /// error when it stays down.
    pub(super) async fn write(
        &self,
        claim: &Claim,
        transition: &Transition,
        state: SagaState,
    ) -> Result<()> {
        self.write_all(claim, std::slice::from_ref(transition), state)
            .await
    }

    /// [`write`](Self::write) for several transitions in one atomic write
    /// ([`SagaLog::append_all`](super::SagaLog::append_all)): a durable workflow's nodes
    /// that settled together.
    ///
    /// # Errors
    ///
    /// As [`write`](Self::write).
    pub(super) async fn write_all(
        &self,
        claim: &Claim,
        transitions: &[Transition],
        state: SagaState,
    ) -> Result<()> {
        self.write_leased(claim, transitions, state, &self.lease)
            .await
    }

    /// Writes `transition` and parks the saga: leased to `owner`, no runner (a timer,
    /// a wait for a signal), until `until_ms` (milliseconds since the Unix epoch), when
    /// the recovery loop of any runner takes it up.
    pub(super) async fn park(
        &self,
        claim: &Claim,
        transition: Transition,
        owner: String,
        until_ms: u64,
    ) -> Result<()> {
        let lease = super::Lease {
            owner,
            duration_ms: until_ms.saturating_sub(super::now_ms()).max(1),
        };
        self.write_leased(
            claim,
            std::slice::from_ref(&transition),
            SagaState::Running,
            &lease,
        )
        .await
    }

    /// [`write_all`](Self::write_all) with the saga leased to `lease` afterwards: a
    /// sleeping saga is leased to no runner until it wakes.
    pub(super) async fn write_leased(
        &self,
        claim: &Claim,
        transitions: &[Transition],
        state: SagaState,
        lease: &super::Lease,
    ) -> Result<()> {
        let n = transitions.len() as u64;
        if n == 0 {
            return Ok(());
        }
        let mut tries = 0u32;
        let mut fence = claim.fence();
        loop {
            claim.check()?;
            let since = Instant::now();
            let appended = match transitions {
                [one] => self.log.append(claim.id, one, state, lease, fence),
                all => self.log.append_all(claim.id, all, state, lease, fence),
            };
            let error = match appended.await {
                Ok(()) => {
                    claim.seq.store(fence.seq + n, Ordering::Release);
                    claim.extend(self, since);
                    return Ok(());
                }
                Err(e) if e.kind() != ErrorKind::Infrastructure => return Err(e),
                Err(e) => e,
            };
            // Read it back (under one epoch only this runner writes, so a transition
            // count one past the fence means this write committed before the error),
            // or give up: the saga stays in flight for the next recovery pass.
            loop {
                tries += 1;
                tracing::warn!(saga_id = %claim.id, error = %error, tries, "saga log write failed; reading it back");
                let out_of_time = match self.lease_clock() {
                    None => tries >= 3,
                    Some(_) => claim.check().is_err(),
                };
                if out_of_time {
                    return Err(error);
                }
                tokio::time::sleep(self.backoff(10).delay(tries)).await;
                match self.log.load(claim.id).await {
                    Ok(record) => {
                        let count = record.transitions.len() as u64;
                        if record.epoch == claim.epoch
                            && record.state == state
                            && count == fence.seq + n
                        {
                            claim.seq.store(count, Ordering::Release);
                            return Ok(());
                        }
                        if record.epoch != claim.epoch || count != fence.seq {
                            return Err(super::fence::fence_refused(
                                claim.id,
                                record.state,
                                &record.owner,
                                record.epoch,
                                count,
                                fence,
                            ));
                        }
                        // Not written: write it again.
                        fence = claim.fence();
                        break;
                    }
                    Err(e) if e.kind() != ErrorKind::Infrastructure => return Err(e),
                    Err(_) => {}
                }
            }
        }
    }

    /// Runs `work` (step `step`'s attempts) while renewing the claim's lease every third
    /// of its duration, so that a step longer than the lease keeps its saga. A renewal
    /// that fails for a transient reason is retried with backoff; one the log refuses
    /// (the saga was claimed again), or a claim that runs out by this process's clock
    /// before a renewal succeeds, ends `work` where it is (its attempt is dropped) with
    /// `flext.saga.lease_lost`, and this runner stops driving the saga.
    ///
    /// A step that blocks its thread (no `.await`) starves the heartbeat; a heartbeat
    /// that runs later than a third of the lease is logged at WARN naming the step.
    pub(super) async fn with_heartbeat<T>(
        &self,
        claim: &Claim,
        step: &str,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T> {
        let Some(usable) = self.lease_clock() else {
            return Ok(work.await);
        };
        let lease = Duration::from_millis(self.lease.duration_ms);
        let period = lease / 3;
        let heartbeat = async {
            let mut next = Instant::now() + period;
            let mut failures = 0u32;
            loop {
                let Some(deadline) = claim.valid_until() else {
                    return std::future::pending::<Error>().await;
                };
                let wake = next.min(deadline);
                tokio::time::sleep_until(wake).await;
                let now = Instant::now();
                if now.saturating_duration_since(wake) > period {
                    tracing::warn!(
                        saga_id = %claim.id,
                        step,
                        late_ms = now.saturating_duration_since(wake).as_millis() as u64,
                        lease_ms = self.lease.duration_ms,
                        "saga heartbeat ran late: a step that blocks its thread (no .await) starves it, and the saga may be taken over"
                    );
                }
                if let Err(e) = claim.check() {
                    return e;
                }
                match tokio::time::timeout_at(
                    deadline,
                    self.log.renew(claim.id, &self.lease, claim.epoch),
                )
                .await
                {
                    Ok(Ok(())) => {
                        claim.extend(self, now);
                        failures = 0;
                        next = now + period;
                    }
                    Ok(Err(e)) if e.kind() != ErrorKind::Infrastructure => return e,
                    Ok(Err(e)) => {
                        failures += 1;
                        tracing::warn!(saga_id = %claim.id, step, error = %e, failures, "lease renewal failed; retrying");
                        next = now + self.backoff(10).delay(failures).min(usable / 4);
                    }
                    Err(_) => {}
                }
            }
        };
        // The heartbeat is polled first: once the claim ran out, no attempt starts.
        let heartbeat = std::pin::pin!(heartbeat);
        let work = std::pin::pin!(work);
        match futures_util::future::select(heartbeat, work).await {
            futures_util::future::Either::Left((lost, _)) => {
                tracing::warn!(saga_id = %claim.id, step, error = %lost, "saga lease lost mid-step; stopping");
                Err(lost)
            }
            futures_util::future::Either::Right((out, _)) => Ok(out),
        }
    }
}
