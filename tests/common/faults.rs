//! Fault injection for saga logs, and the properties fencing promises, checked over
//! many seeded schedules.
//!
//! [`FaultyLog`] wraps any [`SagaLog`] for one runner: by a seeded plan it fails calls
//! before they reach the store, fails writes after they committed, delays calls (a
//! paused or partitioned runner, a slow store), and takes the store away for a while (an
//! outage seen by that runner alone). Every call that reached the store, and every
//! answer the runner saw, goes into a shared [`Journal`]; each step body records its
//! start with its fencing token. [`run_schedules`] drives sagas through three such
//! runners with recovery loops and then checks, per saga:
//!
//! 1. no write the store accepted was made under an epoch a claim had already replaced
//!    (the claim returned before the write was sent);
//! 2. no step or compensation attempt started after its runner's lease ran out by that
//!    runner's own clock (the start of the last call the log acknowledged to it, plus
//!    the lease);
//! 3. the accepted writes follow each other one by one (each predecessor taken once),
//!    and none follows a final state;
//! 4. every saga ends completed, compensated, or stuck with its reason;
//! 5. each step's completion and each compensation is recorded at most once.
//!
//! A schedule is one saga with its seed: the seed sets its steps' durations and
//! failures, and which of the calls that touch it fail, when, and how long they wait.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flext::prelude::*;
use flext::saga::{
    ClaimRequest, Claimed, Fence, HistoryEntry, Intervention, Lease, SagaFilter, SagaLog,
    SagaRecord, SagaRunner, SagaState, SagaSummary, Transition,
};
use flext::{BoxFuture, Uuid};
use serde::{Deserialize, Serialize};

/// SplitMix64: a seeded, well-mixed stream of numbers from one `u64`.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The lease every runner of a schedule holds, in milliseconds.
pub const LEASE_MS: u64 = 120;

// ----------------------------------------------------------------------- the journal

/// What reached the store and what each runner saw, for the properties.
#[derive(Default)]
pub struct Journal {
    inner: Mutex<Entries>,
    /// Each saga's schedule seed.
    seeds: Mutex<HashMap<Uuid, u64>>,
}

#[derive(Default)]
struct Entries {
    /// Appends the store accepted: (saga, fence, state, when the call was sent).
    accepted: Vec<(Uuid, Fence, SagaState, Instant)>,
    /// Claims the store made: (saga, new epoch, when the store answered).
    claims: Vec<(Uuid, u64, Instant)>,
    /// Calls acknowledged to a runner (create, claim, renew, append): (saga, epoch, when
    /// the call was sent).
    acknowledged: Vec<(Uuid, u64, Instant)>,
    /// Step and compensation starts: (saga, step, epoch, when).
    starts: Vec<(Uuid, String, u64, Instant)>,
}

impl Journal {
    fn with<T>(&self, f: impl FnOnce(&mut Entries) -> T) -> T {
        f(&mut self.inner.lock().unwrap())
    }

    fn seed(&self, id: Uuid) -> u64 {
        self.seeds.lock().unwrap().get(&id).copied().unwrap_or(0)
    }

    /// Records a step's start, from its context.
    pub fn started(&self, ctx: &Context, step: &str) {
        let key = ctx.idempotency_key().unwrap_or_default();
        let id: Uuid = key.split(':').next().unwrap_or_default().parse().unwrap();
        let epoch = ctx
            .fencing_token()
            .expect("a saga step has a fencing token");
        self.with(|e| e.starts.push((id, step.to_owned(), epoch, Instant::now())));
    }
}

// -------------------------------------------------------------------- the wrapper

/// One runner's view of the store, with faults.
pub struct FaultyLog {
    pub inner: Arc<dyn SagaLog>,
    pub journal: Arc<Journal>,
    /// Which runner this is: mixed into every decision.
    pub runner: u64,
    /// Calls made so far, per saga, for the plan.
    calls: Mutex<HashMap<Uuid, u64>>,
    /// The store is away for this runner during this window.
    pub outage: Mutex<Option<(Instant, Instant)>>,
    /// Fault decisions on; off lets a schedule settle at the end.
    pub faults: AtomicBool,
    claims: AtomicU64,
}

/// What the plan does to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// The call never reaches the store.
    FailBefore,
    /// The call reaches the store; its answer is lost.
    FailAfter,
    /// The call waits this long before it is sent (a paused runner, a slow network).
    Delay(u64),
}

fn injected() -> flext::Error {
    flext::Error::infrastructure("test.injected", "injected store fault")
}

impl FaultyLog {
    pub fn new(inner: Arc<dyn SagaLog>, journal: Arc<Journal>, runner: u64) -> Self {
        FaultyLog {
            inner,
            journal,
            runner,
            calls: Mutex::default(),
            outage: Mutex::default(),
            faults: AtomicBool::new(true),
            claims: AtomicU64::new(0),
        }
    }

    fn down(&self) -> bool {
        self.faults.load(Ordering::SeqCst)
            && self
                .outage
                .lock()
                .unwrap()
                .is_some_and(|(from, to)| (from..to).contains(&Instant::now()))
    }

    /// The plan for the next call touching saga `id` (`kind` tells calls apart).
    fn plan(&self, id: Option<Uuid>, kind: u64) -> Fault {
        if !self.faults.load(Ordering::SeqCst) {
            return Fault::None;
        }
        if self.down() {
            return Fault::FailBefore;
        }
        let (seed, n) = match id {
            Some(id) => {
                let mut calls = self.calls.lock().unwrap();
                let n = calls.entry(id).or_default();
                *n += 1;
                (self.journal.seed(id), *n)
            }
            None => (0, self.claims.fetch_add(1, Ordering::SeqCst)),
        };
        let r = mix(seed ^ mix(self.runner ^ mix(n ^ mix(kind))));
        match r % 100 {
            0..=5 => Fault::FailBefore,
            6..=11 => Fault::FailAfter,
            12..=19 => Fault::Delay((r >> 8) % (LEASE_MS * 3 / 2)),
            _ => Fault::None,
        }
    }

    async fn before(&self, fault: Fault) -> flext::Result<()> {
        match fault {
            Fault::FailBefore => Err(injected()),
            Fault::Delay(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                if self.down() { Err(injected()) } else { Ok(()) }
            }
            _ => Ok(()),
        }
    }

    fn after<T>(&self, fault: Fault, result: flext::Result<T>) -> flext::Result<T> {
        match (fault, result) {
            (Fault::FailAfter, _) => Err(injected()),
            (_, result) => result,
        }
    }

    fn acknowledged(&self, id: Uuid, epoch: u64, sent: Instant) {
        self.journal
            .with(|e| e.acknowledged.push((id, epoch, sent)));
    }
}

impl SagaLog for FaultyLog {
    fn create<'a>(&'a self, record: &'a SagaRecord) -> BoxFuture<'a, flext::Result<()>> {
        Box::pin(async move {
            let fault = self.plan(Some(record.id), 1);
            self.before(fault).await?;
            let sent = Instant::now();
            let result = self.inner.create(record).await;
            let result = self.after(fault, result);
            if result.is_ok() {
                self.acknowledged(record.id, record.epoch, sent);
            }
            result
        })
    }

    fn append<'a>(
        &'a self,
        id: Uuid,
        transition: &'a Transition,
        state: SagaState,
        lease: &'a Lease,
        fence: Fence,
    ) -> BoxFuture<'a, flext::Result<()>> {
        Box::pin(async move {
            let fault = self.plan(Some(id), 2);
            self.before(fault).await?;
            let sent = Instant::now();
            let result = self.inner.append(id, transition, state, lease, fence).await;
            if result.is_ok() {
                self.journal
                    .with(|e| e.accepted.push((id, fence, state, sent)));
            }
            let result = self.after(fault, result);
            if result.is_ok() {
                self.acknowledged(id, fence.epoch, sent);
            }
            result
        })
    }

    fn settle<'a>(
        &'a self,
        id: Uuid,
        state: SagaState,
        fence: Fence,
    ) -> BoxFuture<'a, flext::Result<()>> {
        Box::pin(async move {
            let fault = self.plan(Some(id), 3);
            self.before(fault).await?;
            let result = self.inner.settle(id, state, fence).await;
            self.after(fault, result)
        })
    }

    fn load<'a>(&'a self, id: Uuid) -> BoxFuture<'a, flext::Result<SagaRecord>> {
        Box::pin(async move {
            let fault = self.plan(Some(id), 4);
            self.before(fault).await?;
            let result = self.inner.load(id).await;
            self.after(fault, result)
        })
    }

    fn claim_expired<'a>(
        &'a self,
        request: &'a ClaimRequest,
    ) -> BoxFuture<'a, flext::Result<Claimed>> {
        Box::pin(async move {
            let fault = self.plan(request.only, 5);
            self.before(fault).await?;
            let sent = Instant::now();
            let result = self.inner.claim_expired(request).await;
            if let Ok(claimed) = &result {
                let answered = Instant::now();
                self.journal.with(|e| {
                    for saga in &claimed.sagas {
                        e.claims.push((saga.id, saga.epoch, answered));
                    }
                });
            }
            let result = self.after(fault, result);
            if let Ok(claimed) = &result {
                for saga in &claimed.sagas {
                    self.acknowledged(saga.id, saga.epoch, sent);
                }
            }
            result
        })
    }

    fn renew<'a>(
        &'a self,
        id: Uuid,
        lease: &'a Lease,
        epoch: u64,
    ) -> BoxFuture<'a, flext::Result<()>> {
        Box::pin(async move {
            let fault = self.plan(Some(id), 6);
            self.before(fault).await?;
            let sent = Instant::now();
            let result = self.inner.renew(id, lease, epoch).await;
            let result = self.after(fault, result);
            if result.is_ok() {
                self.acknowledged(id, epoch, sent);
            }
            result
        })
    }

    fn list<'a>(
        &'a self,
        filter: &'a SagaFilter,
    ) -> BoxFuture<'a, flext::Result<Vec<SagaSummary>>> {
        self.inner.list(filter)
    }

    fn history<'a>(&'a self, id: Uuid) -> BoxFuture<'a, flext::Result<Vec<HistoryEntry>>> {
        self.inner.history(id)
    }

    fn intervene<'a>(
        &'a self,
        id: Uuid,
        command: &'a Intervention,
        lease: Option<&'a Lease>,
        now_ms: u64,
    ) -> BoxFuture<'a, flext::Result<SagaRecord>> {
        self.inner.intervene(id, command, lease, now_ms)
    }
}

/// A log with the fence taken out: every append is sent under the saga's current
/// fence, whatever the runner stated. For checking that the properties catch it.
pub struct Unfenced(pub Arc<dyn SagaLog>);

impl SagaLog for Unfenced {
    fn create<'a>(&'a self, record: &'a SagaRecord) -> BoxFuture<'a, flext::Result<()>> {
        self.0.create(record)
    }
    fn append<'a>(
        &'a self,
        id: Uuid,
        transition: &'a Transition,
        state: SagaState,
        lease: &'a Lease,
        _fence: Fence,
    ) -> BoxFuture<'a, flext::Result<()>> {
        Box::pin(async move {
            let now = Fence::of(&self.0.load(id).await?);
            self.0.append(id, transition, state, lease, now).await
        })
    }
    fn settle<'a>(
        &'a self,
        id: Uuid,
        state: SagaState,
        fence: Fence,
    ) -> BoxFuture<'a, flext::Result<()>> {
        self.0.settle(id, state, fence)
    }
    fn load<'a>(&'a self, id: Uuid) -> BoxFuture<'a, flext::Result<SagaRecord>> {
        self.0.load(id)
    }
    fn claim_expired<'a>(
        &'a self,
        request: &'a ClaimRequest,
    ) -> BoxFuture<'a, flext::Result<Claimed>> {
        self.0.claim_expired(request)
    }
    fn renew<'a>(
        &'a self,
        id: Uuid,
        lease: &'a Lease,
        _epoch: u64,
    ) -> BoxFuture<'a, flext::Result<()>> {
        Box::pin(async move {
            let epoch = self.0.load(id).await?.epoch;
            self.0.renew(id, lease, epoch).await
        })
    }
    fn list<'a>(
        &'a self,
        filter: &'a SagaFilter,
    ) -> BoxFuture<'a, flext::Result<Vec<SagaSummary>>> {
        self.0.list(filter)
    }
    fn history<'a>(&'a self, id: Uuid) -> BoxFuture<'a, flext::Result<Vec<HistoryEntry>>> {
        self.0.history(id)
    }
    fn intervene<'a>(
        &'a self,
        id: Uuid,
        command: &'a Intervention,
        lease: Option<&'a Lease>,
        now_ms: u64,
    ) -> BoxFuture<'a, flext::Result<SagaRecord>> {
        self.0.intervene(id, command, lease, now_ms)
    }
}

// ----------------------------------------------------------------------- the saga

/// A booking whose seed sets its steps' durations and whether it fails: 0 completes,
/// 1 fails at `ship` and compensates, 2 also fails to `release` and ends stuck.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Booking {
    pub seed: u64,
}

impl Booking {
    fn sleep_ms(&self, step: u64) -> u64 {
        // Mostly short; some longer than the lease, so the heartbeat must keep them.
        let r = mix(self.seed ^ mix(step + 100));
        if r.is_multiple_of(10) {
            LEASE_MS + r % LEASE_MS
        } else {
            r % (LEASE_MS / 2)
        }
    }

    pub fn ending(&self) -> u64 {
        mix(self.seed ^ 0xE4D) % 3
    }

    async fn work(&self, step: u64, ctx: &Context, name: &str, journal: &Journal) {
        journal.started(ctx, name);
        tokio::time::sleep(Duration::from_millis(self.sleep_ms(step))).await;
    }
}

#[saga]
impl Booking {
    #[saga_step(compensate = release)]
    async fn reserve(&self, ctx: &Context, journal: State<Journal>) -> Result<u64> {
        self.work(0, ctx, "reserve", &journal).await;
        Ok(self.seed)
    }

    async fn release(&self, seat: &u64, ctx: &Context, journal: State<Journal>) -> Result<()> {
        self.work(3, ctx, "release", &journal).await;
        if self.ending() == 2 {
            return Err(Error::conflict(
                "test.release",
                format!("seat {seat} is gone"),
            ));
        }
        Ok(())
    }

    #[saga_step(compensate = refund, retries = 1, backoff_ms = 5)]
    async fn charge(&self, seat: &u64, ctx: &Context, journal: State<Journal>) -> Result<u64> {
        self.work(1, ctx, "charge", &journal).await;
        Ok(*seat % 1000)
    }

    async fn refund(&self, cents: &u64, ctx: &Context, journal: State<Journal>) -> Result<()> {
        let _ = cents;
        self.work(4, ctx, "refund", &journal).await;
        Ok(())
    }

    #[saga_step(retries = 0)]
    async fn ship(&self, cents: &u64, ctx: &Context, journal: State<Journal>) -> Result<String> {
        self.work(2, ctx, "ship", &journal).await;
        if self.ending() != 0 {
            return Err(Error::conflict("test.ship", "no courier"));
        }
        Ok(format!("shipped {cents}"))
    }
}

// ------------------------------------------------------------------- the schedules

/// What a run of schedules found.
#[derive(Debug, Default)]
pub struct Findings {
    pub schedules: usize,
    /// How many ended completed, compensated and stuck.
    pub ended: [usize; 3],
    /// Takeovers: claims beyond each saga's first epoch.
    pub takeovers: usize,
    /// Every property that did not hold, naming the saga.
    pub violations: Vec<String>,
}

/// Runs `count` schedules from `first_seed` over `store` in rounds of `per_round`,
/// through three runners with faults and recovery loops, and checks the properties.
/// `wrap` may put something between each runner's faults and the store (the test of
/// the checker takes the fence out there).
pub async fn run_schedules(
    store: Arc<dyn SagaLog>,
    first_seed: u64,
    count: usize,
    per_round: usize,
    wrap: impl Fn(Arc<dyn SagaLog>) -> Arc<dyn SagaLog>,
) -> Findings {
    let mut findings = Findings::default();
    let mut seed = first_seed;
    while findings.schedules < count {
        let n = per_round.min(count - findings.schedules);
        let seeds: Vec<u64> = (0..n as u64).map(|i| mix(seed + i)).collect();
        seed += n as u64;
        round(&store, &seeds, &wrap, &mut findings).await;
        findings.schedules += n;
    }
    findings
}

async fn round(
    store: &Arc<dyn SagaLog>,
    seeds: &[u64],
    wrap: &impl Fn(Arc<dyn SagaLog>) -> Arc<dyn SagaLog>,
    findings: &mut Findings,
) {
    let journal = Arc::new(Journal::default());
    let round_seed = mix(seeds[0]);
    let logs: Vec<Arc<FaultyLog>> = (0..3)
        .map(|r| {
            let log = FaultyLog::new(wrap(store.clone()), journal.clone(), r);
            // Half the runners lose the store for up to two and a half leases.
            let x = mix(round_seed ^ r);
            if x.is_multiple_of(2) {
                let from = Instant::now() + Duration::from_millis((x >> 8) % 400);
                let lasts = Duration::from_millis(LEASE_MS / 2 + (x >> 20) % (LEASE_MS * 2));
                *log.outage.lock().unwrap() = Some((from, from + lasts));
            }
            Arc::new(log)
        })
        .collect();
    let runners: Vec<SagaRunner> = logs
        .iter()
        .enumerate()
        .map(|(r, log)| {
            SagaRunner::builder_shared(log.clone() as Arc<dyn SagaLog>)
                .owner(format!("worker-{r}"))
                .lease(Duration::from_millis(LEASE_MS))
                .compensation_attempts(2)
                .backoff_cap(Duration::from_millis(20))
                .shared_state(journal.clone())
                .build()
        })
        .collect();
    let loops: Vec<_> = runners
        .iter()
        .map(|r| r.spawn_recovery(Duration::from_millis(LEASE_MS / 2)))
        .collect();

    let ids: Vec<Uuid> = seeds.iter().map(|_| Uuid::new_v4()).collect();
    {
        let mut known = journal.seeds.lock().unwrap();
        for (id, seed) in ids.iter().zip(seeds) {
            known.insert(*id, *seed);
        }
    }
    let starts: Vec<_> = ids
        .iter()
        .zip(seeds)
        .map(|(&id, &seed)| {
            let runner = runners[(mix(seed) % 3) as usize].clone();
            let store = store.clone();
            tokio::spawn(async move {
                // A start the store never saw is started again, as a caller would, for as
                // long as an outage of this runner may last (it ends within 700 ms of
                // the schedule's start; random faults may fail a few tries after it).
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    let _ = runner
                        .run_with_id(id, Booking { seed }, &Context::new())
                        .await;
                    if store.load(id).await.is_ok() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect();
    for start in starts {
        start.await.unwrap();
    }
    // Let the faults go on for a while, then let everything settle.
    tokio::time::sleep(Duration::from_millis(LEASE_MS * 4)).await;
    for log in &logs {
        log.faults.store(false, Ordering::SeqCst);
    }
    let settled = async {
        loop {
            let mut left = 0;
            for id in &ids {
                if store.load(*id).await.unwrap().state.is_in_flight() {
                    left += 1;
                }
            }
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(LEASE_MS / 2)).await;
        }
    };
    let timed_out = tokio::time::timeout(Duration::from_secs(60), settled)
        .await
        .is_err();
    for l in loops {
        l.shutdown().await;
    }
    if timed_out {
        findings
            .violations
            .push("sagas still in flight a minute after the faults stopped".into());
    }
    check(store, &ids, &journal, findings).await;
}

async fn check(store: &Arc<dyn SagaLog>, ids: &[Uuid], journal: &Journal, findings: &mut Findings) {
    let mut logged = Vec::with_capacity(ids.len());
    for &id in ids {
        logged.push((
            id,
            store.load(id).await.unwrap(),
            store.history(id).await.unwrap(),
        ));
    }
    let entries = journal.inner.lock().unwrap();
    let lease = Duration::from_millis(LEASE_MS);
    for (id, record, history) in logged {
        let mut found = Vec::new();
        let mut bad = |what: String| found.push(format!("saga {id}: {what}"));
        findings.takeovers += record.epoch.saturating_sub(1) as usize;
        let ended = &mut findings.ended;
        match record.state {
            SagaState::Completed => ended[0] += 1,
            SagaState::Compensated => ended[1] += 1,
            SagaState::Stuck => {
                ended[2] += 1;
                if !matches!(
                    history.last().map(|h| &h.transition),
                    Some(Transition::Stuck { .. })
                ) {
                    bad("stuck without a recorded reason".into());
                }
            }
            other => bad(format!("ended {other}")),
        }
        // 1. No accepted write under an epoch a claim had already replaced.
        for (_, fence, _, sent) in entries.accepted.iter().filter(|a| a.0 == id) {
            if let Some((_, epoch, at)) = entries
                .claims
                .iter()
                .find(|c| c.0 == id && c.1 > fence.epoch && c.2 < *sent)
            {
                bad(format!(
                    "a write under epoch {} was accepted after epoch {epoch} was claimed ({:?} before it)",
                    fence.epoch,
                    sent.duration_since(*at)
                ));
            }
        }
        // 2. No attempt after the lease ran out by the runner's own clock.
        for (_, step, epoch, at) in entries.starts.iter().filter(|s| s.0 == id) {
            let last = entries
                .acknowledged
                .iter()
                .filter(|a| a.0 == id && a.1 == *epoch && a.2 <= *at)
                .map(|a| a.2)
                .max();
            match last {
                Some(last) if *at < last + lease => {}
                Some(last) => bad(format!(
                    "`{step}` started under epoch {epoch} {:?} after the last acknowledged call",
                    at.duration_since(last)
                )),
                None => bad(format!(
                    "`{step}` started under epoch {epoch}, never acknowledged"
                )),
            }
        }
        // 3. Writes follow each other one by one; nothing follows a final state.
        let mut accepted: Vec<_> = entries.accepted.iter().filter(|a| a.0 == id).collect();
        accepted.sort_by_key(|a| a.1.seq);
        for (i, (_, fence, state, _)) in accepted.iter().enumerate() {
            if fence.seq != i as u64 {
                bad(format!(
                    "the accepted writes' predecessors are {:?}",
                    accepted.iter().map(|a| a.1.seq).collect::<Vec<_>>()
                ));
                break;
            }
            if !state.is_in_flight() && i + 1 != accepted.len() {
                bad(format!(
                    "{} writes followed the {state} one",
                    accepted.len() - i - 1
                ));
            }
        }
        if accepted.len() != history.len() {
            bad(format!(
                "{} accepted writes, {} transitions",
                accepted.len(),
                history.len()
            ));
        }
        // 5. Each step's completion, and each compensation, at most once.
        let mut seen = HashMap::new();
        for h in &history {
            let key = match &h.transition {
                Transition::StepCompleted { index, .. } => Some(("step", *index)),
                Transition::CompensationCompleted { index, .. } => Some(("compensation", *index)),
                _ => None,
            };
            if let Some(key) = key {
                *seen.entry(key).or_insert(0) += 1;
            }
        }
        for ((what, index), n) in seen {
            if n > 1 {
                bad(format!("{what} {index} recorded {n} times"));
            }
        }
        findings.violations.extend(found);
    }
}
