//! One contract per finding of issue 19 ("fenced saga ownership"), run by the saga
//! log conformance suite on every backend: each reproduces what was seen and checks
//! what now happens instead.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flext::codes;
use flext::prelude::*;
use flext::saga::{
    ClaimRequest, Claimed, Fence, HistoryEntry, Intervention, Lease, SagaFilter, SagaLog,
    SagaOutcome, SagaRecord, SagaRunner, SagaState, SagaSummary, Transition,
};
use flext::{BoxFuture, Uuid};
use serde::{Deserialize, Serialize};

/// A log whose renewals fail: the first `fail_first` of them, or all while `down`.
pub struct FlakyRenewals {
    pub inner: Arc<dyn SagaLog>,
    pub fail_first: usize,
    pub down: AtomicBool,
    pub renewals: AtomicUsize,
}

impl FlakyRenewals {
    pub fn new(inner: Arc<dyn SagaLog>, fail_first: usize, down: bool) -> Self {
        FlakyRenewals {
            inner,
            fail_first,
            down: AtomicBool::new(down),
            renewals: AtomicUsize::new(0),
        }
    }
}

impl SagaLog for FlakyRenewals {
    fn create<'a>(&'a self, record: &'a SagaRecord) -> BoxFuture<'a, flext::Result<()>> {
        self.inner.create(record)
    }
    fn append<'a>(
        &'a self,
        id: Uuid,
        t: &'a Transition,
        state: SagaState,
        lease: &'a Lease,
        fence: Fence,
    ) -> BoxFuture<'a, flext::Result<()>> {
        self.inner.append(id, t, state, lease, fence)
    }
    fn settle<'a>(
        &'a self,
        id: Uuid,
        state: SagaState,
        fence: Fence,
    ) -> BoxFuture<'a, flext::Result<()>> {
        self.inner.settle(id, state, fence)
    }
    fn load<'a>(&'a self, id: Uuid) -> BoxFuture<'a, flext::Result<SagaRecord>> {
        self.inner.load(id)
    }
    fn claim_expired<'a>(
        &'a self,
        request: &'a ClaimRequest,
    ) -> BoxFuture<'a, flext::Result<Claimed>> {
        self.inner.claim_expired(request)
    }
    fn renew<'a>(
        &'a self,
        id: Uuid,
        lease: &'a Lease,
        epoch: u64,
    ) -> BoxFuture<'a, flext::Result<()>> {
        let n = self.renewals.fetch_add(1, Ordering::SeqCst);
        if n < self.fail_first || self.down.load(Ordering::SeqCst) {
            return Box::pin(std::future::ready(Err(Error::infrastructure(
                "test.renewal",
                "the database blinked",
            ))));
        }
        self.inner.renew(id, lease, epoch)
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

/// When each attempt of the slow compensation ran: (epoch, started, ended or dropped).
#[derive(Default)]
pub struct Attempts(Mutex<Vec<(u64, Instant, Option<Instant>)>>);

/// Records an attempt's end when it finishes or is dropped mid-way.
struct Running<'a>(&'a Attempts, usize);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.0.lock().unwrap()[self.1].2 = Some(Instant::now());
    }
}

impl Attempts {
    fn start(&self, ctx: &Context) -> Running<'_> {
        let mut all = self.0.lock().unwrap();
        all.push((ctx.fencing_token().unwrap(), Instant::now(), None));
        Running(self, all.len() - 1)
    }

    pub fn all(&self) -> Vec<(u64, Instant, Option<Instant>)> {
        self.0.lock().unwrap().clone()
    }
}

/// The reproduction: a step that fails, then a compensation of one second.
#[derive(Serialize, Deserialize)]
pub struct SlowUndo {
    pub n: u32,
}

#[saga]
impl SlowUndo {
    #[saga_step(compensate = unhold)]
    async fn hold(&self) -> Result<u32> {
        Ok(self.n)
    }

    async fn unhold(&self, held: &u32, ctx: &Context, attempts: State<Attempts>) -> Result<()> {
        let _running = attempts.start(ctx);
        let _ = held;
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(())
    }

    #[saga_step]
    async fn fail(&self, held: &u32) -> Result<u32> {
        Err(Error::conflict("test.fail", format!("no {held}")))
    }
}

fn slow_runner(log: Arc<dyn SagaLog>, attempts: &Arc<Attempts>, owner: &str) -> SagaRunner {
    SagaRunner::builder_shared(log)
        .owner(owner)
        .lease(Duration::from_millis(1000))
        .compensation_attempts(1)
        .shared_state(attempts.clone())
        .build()
}

/// Finding 1 and 2: a renewal that fails once no longer stops the heartbeat (runner A
/// keeps its saga; B, recovering at 400 ms, finds nothing); and a runner that cannot
/// renew at all drops its attempt before its lease ends, so that B's takeover never
/// overlaps it and the compensation is recorded once. (The reproduction had a
/// 300 ms lease; a one-second one keeps the test steady beside the other tests' load.)
pub async fn renewal_faults_contract(log: Arc<dyn SagaLog>) {
    // A renewal fails once.
    let attempts = Arc::new(Attempts::default());
    let flaky: Arc<dyn SagaLog> = Arc::new(FlakyRenewals::new(log.clone(), 1, false));
    let a = slow_runner(flaky, &attempts, "a");
    let b = slow_runner(log.clone(), &attempts, "b");
    let task = tokio::spawn(async move { a.run(SlowUndo { n: 1 }, &Context::new()).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let report = b.recover().await.unwrap();
    assert!(report.is_empty(), "b took a saga a still held: {report:?}");
    let outcome = task.await.unwrap().unwrap();
    assert_eq!(outcome.state(), SagaState::Compensated);
    assert_eq!(attempts.all().len(), 1, "the compensation started once");

    // Renewals fail for good: a gives the saga up before its lease runs out.
    let attempts = Arc::new(Attempts::default());
    let down = Arc::new(FlakyRenewals::new(log.clone(), 0, true));
    let a = slow_runner(down.clone(), &attempts, "a");
    let b = slow_runner(log.clone(), &attempts, "b");
    let task = tokio::spawn(async move { a.run(SlowUndo { n: 2 }, &Context::new()).await });
    let lost = task.await.unwrap().unwrap_err();
    // Past the lease a gave up on: b takes the saga over.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(lost.code(), codes::SAGA_LEASE_LOST, "{lost}");
    let report = b.recover().await.unwrap();
    assert_eq!(report.compensated(), 1, "{report:?}");
    let id = report.sagas[0].saga_id;
    let all = attempts.all();
    assert_eq!(all.len(), 2, "a's dropped attempt, then b's");
    let (a_epoch, _, a_ended) = all[0];
    let (b_epoch, b_started, _) = all[1];
    assert!(b_epoch > a_epoch, "b runs under a newer fencing token");
    assert!(
        a_ended.unwrap() <= b_started,
        "a's attempt was dropped before b's started"
    );
    let record = log.load(id).await.unwrap();
    let undone = record
        .transitions
        .iter()
        .filter(|t| matches!(t, Transition::CompensationCompleted { .. }))
        .count();
    assert_eq!(undone, 1);
}

/// A one-step saga for records written by hand.
#[derive(Serialize, Deserialize)]
pub struct Seat {
    pub row: u32,
}

/// What `Seat` once returned, before `col` was added without a serde default.
#[derive(Serialize, Deserialize)]
pub struct Place {
    pub row: u32,
    pub col: u32,
}

#[saga]
impl Seat {
    #[saga_step]
    async fn pick(&self) -> Result<Place> {
        Ok(Place {
            row: self.row,
            col: 1,
        })
    }

    #[saga_step]
    async fn confirm(&self, place: &Place) -> Result<u32> {
        Ok(place.row * 100 + place.col)
    }
}

fn seat_record(state: SagaState, definition: &str) -> SagaRecord {
    SagaRecord {
        id: Uuid::new_v4(),
        name: "Seat".into(),
        input: serde_json::json!({ "row": 7 }),
        correlation_id: Uuid::new_v4(),
        state,
        transitions: Vec::new(),
        owner: "dead/0".into(),
        lease_until_ms: flext::saga::now_ms().saturating_sub(1),
        definition: definition.into(),
        created_ms: 0,
        epoch: 1,
    }
}

fn dead() -> Lease {
    Lease {
        owner: "dead/0".into(),
        duration_ms: 0,
    }
}

fn picked(output: serde_json::Value) -> Transition {
    Transition::StepCompleted {
        index: 0,
        output,
        attempts: 1,
    }
}

/// Finding 3: a saga whose transitions say it is finished while its record is still in
/// flight gets its final state written by recovery, once, instead of being claimed
/// again every lease period.
pub async fn finished_in_flight_contract(log: Arc<dyn SagaLog>) {
    let record = seat_record(SagaState::Running, "");
    let id = record.id;
    log.create(&record).await.unwrap();
    let writes = [
        picked(serde_json::json!({ "row": 7, "col": 1 })),
        Transition::StepCompleted {
            index: 1,
            output: serde_json::json!(701),
            attempts: 1,
        },
    ];
    for (seq, t) in writes.iter().enumerate() {
        // Written as an older version might have: the state left running.
        let fence = Fence {
            epoch: 1,
            seq: seq as u64,
        };
        log.append(id, t, SagaState::Running, &dead(), fence)
            .await
            .unwrap();
    }
    let runner = SagaRunner::builder_shared(log.clone()).build();
    let report = runner.recover().await.unwrap();
    assert_eq!(report.completed(), 1, "{report:?}");
    let after = log.load(id).await.unwrap();
    assert_eq!(after.state, SagaState::Completed);
    assert_eq!(after.transitions.len(), 2, "nothing written but the state");
    let again = runner.recover().await.unwrap();
    assert!(again.is_empty() && again.refused.is_empty(), "{again:?}");
}

/// Finding 4: changed code is refused on every path without side effects. A finished
/// saga started again under a changed definition writes nothing; a logged output that
/// no longer decodes is a refusal naming the step, the type and serde's reason, and
/// leaves the saga untouched (no owner, lease or epoch change) instead of failing the
/// step and compensating.
pub async fn changed_code_contract(log: Arc<dyn SagaLog>) {
    let runner = SagaRunner::builder_shared(log.clone()).build();

    // Finished under a one-step definition; the linked code has two steps.
    let old = "pick\tPlace\t-\t";
    let finished = seat_record(SagaState::Running, old);
    let id = finished.id;
    log.create(&finished).await.unwrap();
    log.append(
        id,
        &picked(serde_json::json!({ "row": 7, "col": 1 })),
        SagaState::Completed,
        &dead(),
        Fence { epoch: 1, seq: 0 },
    )
    .await
    .unwrap();
    let before = log.load(id).await.unwrap();
    let refused = runner
        .run_with_id(id, Seat { row: 7 }, &Context::new())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), codes::SAGA_DEFINITION_CHANGED, "{refused}");
    assert_eq!(log.load(id).await.unwrap(), before, "nothing written");

    // Finished under the linked definition: the recorded outcome, nothing written.
    let done = runner.run(Seat { row: 3 }, &Context::new()).await.unwrap();
    let done_id = done.saga_id();
    let kept = log.load(done_id).await.unwrap();
    match runner
        .run_with_id(done_id, Seat { row: 3 }, &Context::new())
        .await
        .unwrap()
    {
        SagaOutcome::Completed { output, .. } => assert_eq!(output, 301),
        other => panic!("{other:?}"),
    }
    assert_eq!(log.load(done_id).await.unwrap(), kept);

    // A logged `Place` without the field added since.
    let stale = seat_record(SagaState::Running, "");
    let stale_id = stale.id;
    log.create(&stale).await.unwrap();
    log.append(
        stale_id,
        &picked(serde_json::json!({ "row": 7 })),
        SagaState::Running,
        &dead(),
        Fence { epoch: 1, seq: 0 },
    )
    .await
    .unwrap();
    let untouched = log.load(stale_id).await.unwrap();
    let report = runner.recover().await.unwrap();
    assert!(report.is_empty(), "{report:?}");
    let error = report.refused[0].result.as_ref().unwrap_err();
    assert_eq!(error.code(), codes::SAGA_OUTPUT_MISMATCH);
    for part in ["`pick`", "Place", "missing field `col`", "left as it is"] {
        assert!(error.message().contains(part), "{part}: {error}");
    }
    assert_eq!(log.load(stale_id).await.unwrap(), untouched);
    // A start of the same id is refused the same way, and writes nothing either.
    let start = runner
        .run_with_id(stale_id, Seat { row: 7 }, &Context::new())
        .await
        .unwrap_err();
    assert_eq!(start.code(), codes::SAGA_OUTPUT_MISMATCH, "{start}");
    assert_eq!(log.load(stale_id).await.unwrap(), untouched);
}

/// Finding 5 (in part): `run_with_id` on a saga whose runner died and whose lease
/// expired claims it under a new epoch and drives it, instead of answering `in_flight`
/// until some recovery pass runs; a live lease still answers `in_flight` with how long
/// it runs. Recovery claims only linked types, at most `recovery_batch` a pass, and a
/// recovery loop hands every pass's report to its callback and its watch channel.
pub async fn restart_and_report_contract(log: Arc<dyn SagaLog>) {
    let runner = SagaRunner::builder_shared(log.clone())
        .recovery_batch(2)
        .build();
    let orphan = seat_record(SagaState::Running, "");
    log.create(&orphan).await.unwrap();
    match runner
        .run_with_id(orphan.id, Seat { row: 7 }, &Context::new())
        .await
        .unwrap()
    {
        SagaOutcome::Completed { output, .. } => assert_eq!(output, 701),
        other => panic!("{other:?}"),
    }
    assert_eq!(log.load(orphan.id).await.unwrap().epoch, 2);

    let live = SagaRecord {
        lease_until_ms: flext::saga::now_ms() + 60_000,
        ..seat_record(SagaState::Running, "")
    };
    log.create(&live).await.unwrap();
    let busy = runner
        .run_with_id(live.id, Seat { row: 7 }, &Context::new())
        .await
        .unwrap_err();
    assert_eq!(busy.code(), codes::SAGA_IN_FLIGHT);
    assert!(busy.message().contains("ms more"), "{busy}");

    // A type this program does not have is not claimed, whatever its lease.
    let foreign = SagaRecord {
        name: "NotLinkedHere".into(),
        ..seat_record(SagaState::Running, "")
    };
    log.create(&foreign).await.unwrap();
    let foreign = log.load(foreign.id).await.unwrap();
    // Five orphans: a pass claims two.
    for _ in 0..5 {
        log.create(&seat_record(SagaState::Running, ""))
            .await
            .unwrap();
    }
    assert_eq!(runner.recover().await.unwrap().completed(), 2);
    assert_eq!(log.load(foreign.id).await.unwrap(), foreign);

    // A refused saga reaches the loop's callback and its watch channel.
    let stale = seat_record(SagaState::Running, "changed\tu8\t-\t");
    log.create(&stale).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_by_callback = seen.clone();
    let recovery = runner.spawn_recovery_with(Duration::from_millis(20), move |report| {
        let ids = report.refused.iter().map(|r| r.saga_id);
        seen_by_callback.lock().unwrap().extend(ids);
    });
    let mut reports = recovery.reports();
    let report = tokio::time::timeout(
        Duration::from_secs(10),
        reports.wait_for(|r| r.refused.iter().any(|s| s.saga_id == stale.id)),
    )
    .await
    .expect("the refusal is reported")
    .unwrap()
    .clone();
    recovery.shutdown().await;
    assert!(seen.lock().unwrap().contains(&stale.id));
    let json = serde_json::to_value(&*report).unwrap();
    assert!(
        json["refused"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["error"]["code"] == codes::SAGA_DEFINITION_CHANGED),
        "{json}"
    );
}

/// Whether the parcel step waits (the first incarnation's run) or goes through.
#[derive(Default)]
pub struct Hold {
    pub blocking: AtomicBool,
    pub entered: tokio::sync::Notify,
}

#[derive(Serialize, Deserialize)]
pub struct ShopOrder {
    pub id: u32,
}

#[saga]
impl ShopOrder {
    #[saga_step]
    async fn pack(&self, hold: State<Hold>) -> Result<u32> {
        if hold.blocking.load(Ordering::SeqCst) {
            hold.entered.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(self.id)
    }
}

fn shop(log: Arc<dyn SagaLog>, hold: &Arc<Hold>) -> SagaRunner {
    SagaRunner::builder_shared(log)
        .owner("shop")
        .lease(Duration::from_secs(60))
        .shared_state(hold.clone())
        .build()
}

/// Finding 5: a restarted process takes back its dead incarnation's sagas at its first
/// recovery pass, without waiting out the lease, where the store can prove the old
/// incarnation gone (`provable`: SQLite's lock file, PostgreSQL's advisory lock); while
/// the old incarnation lives, a runner of the same name leaves its sagas alone.
/// `connect` opens another process's connection to the same store.
pub async fn restart_contract<F, Fut>(connect: F, provable: bool)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn SagaLog>>,
{
    let hold = Arc::new(Hold::default());
    hold.blocking.store(true, Ordering::SeqCst);
    let first = shop(connect().await, &hold);
    let running = {
        let first = first.clone();
        tokio::spawn(async move { first.run(ShopOrder { id: 4 }, &Context::new()).await })
    };
    hold.entered.notified().await;

    // The first incarnation lives: another of the same name takes nothing.
    let neighbour = shop(connect().await, &hold);
    let report = neighbour.recover().await.unwrap();
    assert!(
        report.is_empty(),
        "a live incarnation's saga was taken: {report:?}"
    );
    drop(neighbour);

    // It dies (its task and its connection with it), 60 s of lease left.
    running.abort();
    let _ = running.await;
    drop(first);
    hold.blocking.store(false, Ordering::SeqCst);

    let restarted = shop(connect().await, &hold);
    let report = restarted.recover().await.unwrap();
    if provable {
        assert_eq!(report.completed(), 1, "taken back at once: {report:?}");
    } else {
        assert!(report.is_empty(), "nothing proves the old incarnation gone");
    }
}
