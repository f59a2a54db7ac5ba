//! Sagas as users rely on them: what runs, what is compensated and in which order, what
//! is retried, what is left for an operator, and what a fresh runner makes of a log that
//! a crash left behind, at every transition point.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flext::Uuid;
use flext::prelude::*;
#[cfg(feature = "sqlite")]
use flext::saga::SqliteLog;
#[cfg(feature = "sqlite")]
use flext::saga::{Fence, Lease, SagaRecord, Transition};
use flext::saga::{MemoryLog, SagaFilter, SagaLog, SagaOutcome, SagaRunner, SagaState};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------- the effect ledger

/// Side effects keyed by idempotency key: applying or undoing twice has no further
/// effect, as a real service deduplicating on the key would behave.
#[derive(Default)]
struct Ledger {
    entries: Mutex<BTreeMap<String, Entry>>,
    /// Every call in order: `apply reserve`, `undo reserve`, ...
    calls: Mutex<Vec<String>>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Entry {
    applied: u32,
    undone: u32,
}

impl Ledger {
    fn apply(&self, step: &str, key: &str) {
        self.calls.lock().unwrap().push(format!("apply {step}"));
        let mut entries = self.entries.lock().unwrap();
        let e = entries.entry(key.to_owned()).or_default();
        if e.applied == 0 {
            e.applied = 1;
        }
    }

    fn undo(&self, step: &str, key: &str) {
        self.calls.lock().unwrap().push(format!("undo {step}"));
        let mut entries = self.entries.lock().unwrap();
        let e = entries.entry(key.to_owned()).or_default();
        if e.applied == 1 && e.undone == 0 {
            e.undone = 1;
        }
    }

    /// `(step, applied, undone)` sorted by step name.
    fn summary(&self) -> Vec<(String, u32, u32)> {
        let entries = self.entries.lock().unwrap();
        let mut out: Vec<_> = entries
            .iter()
            .map(|(k, e)| {
                (
                    k.rsplit(':').next().unwrap_or_default().to_owned(),
                    e.applied,
                    e.undone,
                )
            })
            .collect();
        out.sort();
        out
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------- the saga under test

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Receipt {
    step: String,
    key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Fulfil {
    order: String,
    /// The step that fails (for good) in this run, if any.
    fail_at: Option<String>,
}

impl Fulfil {
    fn effect(&self, step: &str, ctx: &Context, ledger: &Ledger) -> Result<Receipt> {
        if self.fail_at.as_deref() == Some(step) {
            return Err(Error::conflict(
                format!("{step}.refused"),
                format!("{step} refused order {}", self.order),
            ));
        }
        let key = ctx
            .idempotency_key()
            .expect("a step has an idempotency key")
            .to_owned();
        ledger.apply(step, &key);
        Ok(Receipt {
            step: step.to_owned(),
            key,
        })
    }
}

#[saga]
impl Fulfil {
    #[saga_step(compensate = release_stock)]
    async fn reserve_stock(&self, ctx: &Context, ledger: State<Ledger>) -> Result<Receipt> {
        self.effect("reserve_stock", ctx, &ledger)
    }
    async fn release_stock(&self, r: &Receipt, ledger: State<Ledger>) -> Result<()> {
        ledger.undo(&r.step, &r.key);
        Ok(())
    }

    #[saga_step(compensate = refund)]
    async fn charge_payment(
        &self,
        _reserved: &Receipt,
        ctx: &Context,
        ledger: State<Ledger>,
    ) -> Result<Receipt> {
        self.effect("charge_payment", ctx, &ledger)
    }
    fn refund(&self, r: &Receipt, ledger: State<Ledger>) -> Result<()> {
        ledger.undo(&r.step, &r.key);
        Ok(())
    }

    #[saga_step(compensate = cancel_order)]
    fn create_order(&self, ctx: &Context, ledger: State<Ledger>) -> Result<Receipt> {
        self.effect("create_order", ctx, &ledger)
    }
    fn cancel_order(&self, r: &Receipt, ledger: State<Ledger>) -> Result<()> {
        ledger.undo(&r.step, &r.key);
        Ok(())
    }

    #[saga_step(compensate = cancel_shipping)]
    async fn schedule_shipping(&self, ctx: &Context, ledger: State<Ledger>) -> Result<Receipt> {
        self.effect("schedule_shipping", ctx, &ledger)
    }
    fn cancel_shipping(&self, r: &Receipt, ledger: State<Ledger>) -> Result<()> {
        ledger.undo(&r.step, &r.key);
        Ok(())
    }
}

fn runner(log: Arc<dyn SagaLog>, ledger: &Arc<Ledger>) -> SagaRunner {
    SagaRunner::builder_shared(log)
        .shared_state(ledger.clone())
        .lease(Duration::ZERO)
        .build()
}

fn order(fail_at: Option<&str>) -> Fulfil {
    Fulfil {
        order: "o-1".into(),
        fail_at: fail_at.map(str::to_owned),
    }
}

// ---------------------------------------------------------------- behaviour

#[tokio::test]
async fn a_saga_runs_every_step_in_order_and_returns_the_last_output() {
    let ledger = Arc::new(Ledger::default());
    let log = Arc::new(MemoryLog::new());
    let outcome = runner(log.clone(), &ledger)
        .run(order(None), &Context::new())
        .await
        .unwrap();
    let SagaOutcome::Completed { saga_id, output } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(output.step, "schedule_shipping");
    assert_eq!(
        output.key,
        format!("{saga_id}:schedule_shipping"),
        "the idempotency key is saga id + step"
    );
    assert_eq!(
        ledger.calls(),
        [
            "apply reserve_stock",
            "apply charge_payment",
            "apply create_order",
            "apply schedule_shipping"
        ]
    );
    let record = log.load(saga_id).await.unwrap();
    assert_eq!(record.state, SagaState::Completed);
    assert_eq!(record.transitions.len(), 4, "n steps: creation + n writes");
}

#[tokio::test]
async fn a_failure_compensates_every_completed_step_in_reverse_order() {
    let ledger = Arc::new(Ledger::default());
    let log = Arc::new(MemoryLog::new());
    let outcome = runner(log.clone(), &ledger)
        .run(order(Some("schedule_shipping")), &Context::new())
        .await
        .unwrap();
    let SagaOutcome::Compensated {
        failed_step,
        error,
        compensated,
        saga_id,
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(failed_step, "schedule_shipping");
    assert_eq!(error.code(), "schedule_shipping.refused");
    assert_eq!(
        compensated,
        ["create_order", "charge_payment", "reserve_stock"]
    );
    assert_eq!(
        ledger.calls(),
        [
            "apply reserve_stock",
            "apply charge_payment",
            "apply create_order",
            "undo create_order",
            "undo charge_payment",
            "undo reserve_stock"
        ]
    );
    assert!(
        ledger
            .summary()
            .iter()
            .all(|(_, applied, undone)| (*applied, *undone) == (1, 1))
    );
    assert_eq!(
        log.load(saga_id).await.unwrap().state,
        SagaState::Compensated
    );
}

#[tokio::test]
async fn a_failing_first_step_compensates_nothing() {
    let ledger = Arc::new(Ledger::default());
    let outcome = runner(Arc::new(MemoryLog::new()), &ledger)
        .run(order(Some("reserve_stock")), &Context::new())
        .await
        .unwrap();
    let SagaOutcome::Compensated { compensated, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(compensated.is_empty());
    assert!(ledger.calls().is_empty());
}

// Retries, the pivot, stuck sagas, timeouts.

#[derive(Default)]
struct Flaky {
    step_failures: AtomicUsize,
    compensation_failures: AtomicUsize,
    calls: Mutex<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Payout {
    /// How many times `send` fails (transiently) before it succeeds.
    send_failures: usize,
    /// How many times `recall` fails before it succeeds.
    recall_failures: usize,
    /// Whether `notify`, after the pivot, always fails.
    notify_fails: bool,
    /// Whether `reconcile` hangs.
    hang: bool,
}

#[saga]
impl Payout {
    #[saga_step(compensate = recall, retries = 3, backoff_ms = 10)]
    async fn send(&self, flaky: State<Flaky>) -> Result<u32> {
        flaky.calls.lock().unwrap().push("send".into());
        if flaky.step_failures.fetch_add(1, Ordering::SeqCst) < self.send_failures {
            return Err(Error::infrastructure("bank.busy", "try again"));
        }
        Ok(100)
    }
    async fn recall(&self, amount: &u32, flaky: State<Flaky>) -> Result<()> {
        flaky.calls.lock().unwrap().push(format!("recall {amount}"));
        if flaky.compensation_failures.fetch_add(1, Ordering::SeqCst) < self.recall_failures {
            return Err(Error::infrastructure("bank.busy", "recall failed"));
        }
        Ok(())
    }

    #[saga_step(timeout_ms = 50)]
    async fn reconcile(&self, amount: &u32) -> Result<u32> {
        if self.hang {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Ok(*amount)
    }

    #[saga_step(pivot)]
    fn commit(&self, amount: &u32) -> Result<String> {
        Ok(format!("committed {amount}"))
    }

    #[saga_step(retries = 2, backoff_ms = 10)]
    fn notify(&self, committed: &str, flaky: State<Flaky>) -> Result<String> {
        flaky.calls.lock().unwrap().push("notify".into());
        if self.notify_fails {
            return Err(Error::validation("mail.rejected", "the address is invalid"));
        }
        Ok(format!("{committed}, notified"))
    }
}

fn payout(send_failures: usize, recall_failures: usize, notify_fails: bool, hang: bool) -> Payout {
    Payout {
        send_failures,
        recall_failures,
        notify_fails,
        hang,
    }
}

fn flaky_runner(flaky: &Arc<Flaky>) -> SagaRunner {
    SagaRunner::builder(MemoryLog::new())
        .shared_state(flaky.clone())
        .compensation_attempts(3)
        .build()
}

#[tokio::test(start_paused = true)]
async fn a_transient_step_failure_is_retried_with_backoff() {
    let flaky = Arc::new(Flaky::default());
    let started = tokio::time::Instant::now();
    let outcome = flaky_runner(&flaky)
        .run(payout(2, 0, false, false), &Context::new())
        .await
        .unwrap();
    assert!(
        matches!(&outcome, SagaOutcome::Completed { output, .. } if output == "committed 100, notified"),
        "{outcome:?}"
    );
    assert_eq!(
        flaky
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| *c == "send")
            .count(),
        3
    );
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(10 + 20),
        "waited 10 ms, then 20 ms"
    );
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_step_is_compensated_like_a_failed_one() {
    let flaky = Arc::new(Flaky::default());
    let outcome = flaky_runner(&flaky)
        .run(payout(0, 0, false, true), &Context::new())
        .await
        .unwrap();
    let SagaOutcome::Compensated {
        failed_step,
        error,
        compensated,
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(failed_step, "reconcile");
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(compensated, ["send"]);
}

#[tokio::test(start_paused = true)]
async fn a_failing_compensation_is_retried_then_the_saga_is_stuck() {
    let flaky = Arc::new(Flaky::default());
    // reconcile hangs -> compensate send; recall fails once, then succeeds.
    let outcome = flaky_runner(&flaky)
        .run(payout(0, 1, false, true), &Context::new())
        .await
        .unwrap();
    assert!(
        matches!(outcome, SagaOutcome::Compensated { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        *flaky.calls.lock().unwrap(),
        ["send", "recall 100", "recall 100"]
    );

    // recall always fails: after 3 attempts the saga is stuck, with the recall left.
    let flaky = Arc::new(Flaky::default());
    let runner = flaky_runner(&flaky);
    let outcome = runner
        .run(payout(0, 10, false, true), &Context::new())
        .await
        .unwrap();
    let SagaOutcome::Stuck {
        step,
        error,
        remaining,
        saga_id,
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(step, "compensate send");
    assert_eq!(error.message(), "recall failed");
    assert_eq!(remaining, ["compensate send"]);
    let stuck: Vec<Uuid> = runner
        .list(&SagaFilter::default().state(SagaState::Stuck))
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(stuck, [saga_id], "operators find it by state");
}

#[tokio::test(start_paused = true)]
async fn steps_after_the_pivot_are_retried_never_compensated() {
    let flaky = Arc::new(Flaky::default());
    let outcome = flaky_runner(&flaky)
        .run(payout(0, 0, true, false), &Context::new())
        .await
        .unwrap();
    let SagaOutcome::Stuck {
        step, remaining, ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(step, "notify");
    assert_eq!(remaining, ["notify"]);
    let calls = flaky.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        ["send", "notify", "notify", "notify"],
        "retried twice, nothing recalled"
    );
}

#[tokio::test]
async fn the_outcome_serialises_for_an_operator() {
    let ledger = Arc::new(Ledger::default());
    let outcome = runner(Arc::new(MemoryLog::new()), &ledger)
        .run(order(Some("create_order")), &Context::new())
        .await
        .unwrap();
    let json = serde_json::to_value(&outcome).unwrap();
    assert_eq!(json["state"], "compensated");
    assert_eq!(json["failed_step"], "create_order");
    assert_eq!(
        json["compensated"],
        serde_json::json!(["charge_payment", "reserve_stock"])
    );
    assert_eq!(json["error"]["code"], "create_order.refused");
}

// ---------------------------------------------------------------- crashes

#[path = "common/crashing.rs"]
mod crashing;
use crashing::CrashingLog;

/// Runs the saga, crashing at write `crash_at`, then recovers with a fresh runner and
/// returns the final state and the ledger.
async fn crash_and_recover(
    fail_at: Option<&str>,
    crash_at: usize,
    after_commit: bool,
) -> (SagaState, Vec<(String, u32, u32)>) {
    let ledger = Arc::new(Ledger::default());
    let memory = Arc::new(MemoryLog::new());
    let crashing = Arc::new(CrashingLog {
        inner: memory.clone(),
        crash_at,
        after_commit,
        writes: AtomicUsize::new(0),
    });
    let first = runner(crashing, &ledger);
    let err = first
        .run(order(fail_at), &Context::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "test.crash");
    drop(first);

    let fresh = runner(memory.clone(), &ledger);
    let recovered = fresh.recover().await.unwrap();
    assert!(recovered.len() <= 1);
    for saga in &recovered.sagas {
        assert!(saga.result.is_ok(), "{saga:?}");
    }
    assert_eq!(recovered.failed(), 0);
    assert!(
        fresh.recover().await.unwrap().is_empty(),
        "nothing left in flight"
    );

    // The saga's final state, from the log.
    let mut states = Vec::new();
    for state in [
        SagaState::Running,
        SagaState::Compensating,
        SagaState::Completed,
        SagaState::Compensated,
        SagaState::Stuck,
    ] {
        for _ in memory
            .list(&SagaFilter::default().state(state))
            .await
            .unwrap()
        {
            states.push(state);
        }
    }
    match states.as_slice() {
        // Crashed before the saga was created: nothing may have run.
        [] => {
            assert!(
                ledger.calls().is_empty(),
                "a saga that was never logged never ran a step"
            );
            (SagaState::Completed, Vec::new())
        }
        [state] => (*state, ledger.summary()),
        more => panic!("one saga expected, found {more:?}"),
    }
}

#[tokio::test]
async fn after_a_crash_at_any_transition_every_effect_is_applied_once_or_undone_once() {
    let steps = [
        "charge_payment",
        "create_order",
        "reserve_stock",
        "schedule_shipping",
    ];
    let mut points = 0;

    // Success path: creation + 4 step completions = 5 writes, crash before and after each.
    for crash_at in 0..5 {
        for after_commit in [false, true] {
            let (state, ledger) = crash_and_recover(None, crash_at, after_commit).await;
            points += 1;
            if ledger.is_empty() {
                continue;
            }
            assert_eq!(
                state,
                SagaState::Completed,
                "crash at write {crash_at}, after commit: {after_commit}"
            );
            let expected: Vec<_> = steps.iter().map(|s| ((*s).to_owned(), 1, 0)).collect();
            assert_eq!(
                ledger, expected,
                "crash at write {crash_at}, after commit: {after_commit}"
            );
        }
    }

    // Failure path: creation, 3 completions, the failure, 3 compensations = 8 writes.
    for crash_at in 0..8 {
        for after_commit in [false, true] {
            let (state, ledger) =
                crash_and_recover(Some("schedule_shipping"), crash_at, after_commit).await;
            points += 1;
            if ledger.is_empty() {
                continue;
            }
            assert_eq!(
                state,
                SagaState::Compensated,
                "crash at write {crash_at}, after commit: {after_commit}"
            );
            let expected: Vec<_> = steps[..3].iter().map(|s| ((*s).to_owned(), 1, 1)).collect();
            assert_eq!(
                ledger, expected,
                "crash at write {crash_at}, after commit: {after_commit}"
            );
        }
    }
    println!("crash points exercised: {points}");
    assert_eq!(points, 26);
}

// ---------------------------------------------------------------- the SQLite log

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn the_sqlite_log_survives_reopening_and_recovery_finishes_the_saga() {
    let dir = std::env::temp_dir().join(format!("flext-saga-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sagas.db");
    let ledger = Arc::new(Ledger::default());

    // The first process crashes right after committing the second step's completion
    // (writes: the creation, then one per completed step).
    {
        let log: Arc<dyn SagaLog> = Arc::new(SqliteLog::open(&path).unwrap());
        let crashing = Arc::new(CrashingLog {
            inner: log,
            crash_at: 2,
            after_commit: true,
            writes: AtomicUsize::new(0),
        });
        let first = runner(crashing, &ledger);
        assert!(first.run(order(None), &Context::new()).await.is_err());
    }
    // A new process opens the same file.
    let log: Arc<dyn SagaLog> = Arc::new(SqliteLog::open(&path).unwrap());
    let in_flight = log
        .list(&SagaFilter::default().state(SagaState::Running))
        .await
        .unwrap();
    assert_eq!(in_flight.len(), 1);
    assert_eq!(
        in_flight[0].transitions, 2,
        "two completed steps were committed"
    );
    let fresh = runner(log.clone(), &ledger);
    let recovered = fresh.recover().await.unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(
        recovered.sagas[0].result.as_ref().unwrap().state(),
        SagaState::Completed
    );
    assert_eq!(recovered.completed(), 1);
    assert!(ledger.summary().iter().all(|(_, a, u)| (*a, *u) == (1, 0)));
    assert_eq!(ledger.summary().len(), 4);
    assert_eq!(
        log.list(&SagaFilter::default().state(SagaState::Completed))
            .await
            .unwrap()
            .len(),
        1
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_log_written_before_definitions_were_recorded_opens_and_reads() {
    let dir = std::env::temp_dir().join(format!("flext-old-log-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("old.db");
    let id = Uuid::new_v4();
    {
        // The schema as it was, with one saga in it.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE flext_sagas (id TEXT PRIMARY KEY, name TEXT NOT NULL, input TEXT NOT NULL,
                 correlation_id TEXT NOT NULL, state TEXT NOT NULL, owner TEXT NOT NULL,
                 lease_until_ms INTEGER NOT NULL, created_ms INTEGER NOT NULL);
             CREATE TABLE flext_saga_transitions (saga_id TEXT NOT NULL, seq INTEGER NOT NULL,
                 body TEXT NOT NULL, PRIMARY KEY (saga_id, seq));",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO flext_sagas VALUES (?1, 'Paused', '{\"n\":1}', ?2, 'completed', 'w', 0, 0)",
            rusqlite::params![id.to_string(), Uuid::new_v4().to_string()],
        )
        .unwrap();
    }
    for _ in 0..2 {
        // Opened twice: the column is added once.
        let log = SqliteLog::open(&path).unwrap();
        let record = log.load(id).await.unwrap();
        assert_eq!(
            (record.state, record.definition.as_str()),
            (SagaState::Completed, "")
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// At `synchronous = FULL` writes waiting together share one commit, and a write the
/// log refuses (here, a stale epoch: the saga was claimed by another runner) rolls back alone: the others in
/// its group are committed.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_refused_write_in_a_group_commit_rolls_back_alone() {
    let dir = std::env::temp_dir().join(format!("flext-group-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sagas.db");
    let log = SqliteLog::open_with(&path, flext::saga::Synchronous::Full).unwrap();
    let ours = Lease {
        owner: "ours/1".into(),
        duration_ms: 60_000,
    };
    let saga = |owner: &str| SagaRecord {
        id: Uuid::new_v4(),
        name: "Fulfil".into(),
        input: serde_json::json!({}),
        correlation_id: Uuid::new_v4(),
        state: SagaState::Running,
        transitions: Vec::new(),
        owner: owner.into(),
        lease_until_ms: flext::saga::now_ms() + 60_000,
        definition: String::new(),
        created_ms: 0,
        epoch: 1,
    };
    let (mine, theirs) = (saga("ours/1"), saga("theirs/1"));
    log.create(&mine).await.unwrap();
    log.create(&theirs).await.unwrap();
    let before = log.stats();

    // Another connection holds the write lock while 40 writes queue up behind it.
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let transitions: Vec<Transition> = (0..40)
        .map(|i| Transition::StepCompleted {
            index: i,
            output: serde_json::json!(i),
            attempts: 1,
        })
        .collect();
    let writes: Vec<_> = transitions
        .iter()
        .enumerate()
        .map(|(i, t)| {
            // Ours follow each other under our epoch; theirs state an epoch gone by.
            let (id, fence) = if i % 2 == 0 {
                (
                    mine.id,
                    Fence {
                        epoch: 1,
                        seq: i as u64 / 2,
                    },
                )
            } else {
                (theirs.id, Fence { epoch: 0, seq: 0 })
            };
            (id, log.append(id, t, SagaState::Running, &ours, fence))
        })
        .collect();
    blocker.execute_batch("COMMIT").unwrap();

    let mut refused = 0;
    for (id, write) in writes {
        let result = write.await;
        if id == theirs.id {
            assert_eq!(result.unwrap_err().code(), flext::codes::SAGA_LEASE_LOST);
            refused += 1;
        } else {
            result.unwrap();
        }
    }
    assert_eq!(refused, 20);
    let kept = log.load(mine.id).await.unwrap().transitions;
    assert_eq!(kept, transitions.into_iter().step_by(2).collect::<Vec<_>>());
    assert!(log.load(theirs.id).await.unwrap().transitions.is_empty());
    let after = log.stats();
    assert_eq!(after.writes - before.writes, 40);
    assert!(
        after.commits - before.commits <= 2,
        "the writes queued behind the lock shared a commit: {before:?} -> {after:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A record that no longer decodes (here a transition body mangled by hand) is set aside
/// with its reason, untouched, and the rest of the log is recovered: before, one such
/// record made every recovery pass fail.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_record_that_does_not_decode_is_set_aside_and_the_rest_recovered() {
    let dir = std::env::temp_dir().join(format!("flext-corrupt-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sagas.db");
    let ledger = Arc::new(Ledger::default());
    let log: Arc<dyn SagaLog> = Arc::new(SqliteLog::open(&path).unwrap());
    let expired = |id| SagaRecord {
        id,
        name: "Fulfil".into(),
        input: serde_json::to_value(order(None)).unwrap(),
        correlation_id: Uuid::new_v4(),
        state: SagaState::Running,
        transitions: Vec::new(),
        owner: "dead/0".into(),
        lease_until_ms: 0,
        definition: String::new(),
        created_ms: 0,
        epoch: 1,
    };
    let (bad, good) = (Uuid::new_v4(), Uuid::new_v4());
    log.create(&expired(bad)).await.unwrap();
    log.create(&expired(good)).await.unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "INSERT INTO flext_saga_transitions (saga_id, seq, body, at_ms) VALUES (?1, 1, '{\"kind\": \"teleported\"}', 0)",
        [bad.to_string()],
    )
    .unwrap();
    raw.execute(
        "UPDATE flext_sagas SET seq = 1 WHERE id = ?1",
        [bad.to_string()],
    )
    .unwrap();
    let before: (String, i64, i64) = raw
        .query_row(
            "SELECT owner, lease_until_ms, epoch FROM flext_sagas WHERE id = ?1",
            [bad.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();

    let report = runner(log.clone(), &ledger).recover().await.unwrap();
    assert_eq!(report.completed(), 1, "{report:?}");
    assert_eq!(report.sagas[0].saga_id, good);
    assert_eq!(report.refused.len(), 1);
    let (id, why) = (
        &report.refused[0].saga_id,
        report.refused[0].result.as_ref().unwrap_err(),
    );
    assert_eq!((*id, why.code()), (bad, flext::codes::SAGA_LOG_CORRUPT));
    assert!(why.message().contains("teleported"), "{why}");
    let after: (String, i64, i64) = raw
        .query_row(
            "SELECT owner, lease_until_ms, epoch FROM flext_sagas WHERE id = ?1",
            [bad.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(after, before, "the undecodable saga is left untouched");
    std::fs::remove_dir_all(&dir).ok();
}

// ------------------------------------------------------------ two types, one name

/// Two modules each with a saga type `Twin` under one recorded name, as two bounded
/// contexts of one service might write them (`#[saga]` names a type by its own name).
mod twin_a {
    use flext::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    pub struct Twin {
        pub n: u32,
    }

    #[saga(name = "test.twin")]
    impl Twin {
        #[saga_step]
        fn only(&self) -> Result<u32> {
            Ok(self.n)
        }
    }
}

mod twin_b {
    use flext::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    pub struct Twin {
        pub n: u32,
    }

    #[saga(name = "test.twin")]
    impl Twin {
        #[saga_step]
        fn only(&self) -> Result<u32> {
            Ok(self.n + 1)
        }
    }
}

/// A logged saga whose name two linked types answer to is driven by neither: recovery
/// sets it aside untouched with `flext.saga.duplicate_name`, naming both types and the
/// fix, and an operator's resume is refused before anything is written.
#[tokio::test]
async fn a_saga_whose_name_two_linked_types_share_is_left_as_it_is() {
    let log = Arc::new(MemoryLog::new());
    let id = Uuid::new_v4();
    let record = flext::saga::SagaRecord {
        id,
        name: "test.twin".into(),
        input: serde_json::json!({ "n": 1 }),
        correlation_id: Uuid::new_v4(),
        state: SagaState::Running,
        transitions: Vec::new(),
        owner: "dead/0".into(),
        lease_until_ms: 0,
        definition: String::new(),
        created_ms: 0,
        epoch: 1,
    };
    log.create(&record).await.unwrap();
    let runner = SagaRunner::builder_shared(log.clone()).build();

    let report = runner.recover().await.unwrap();
    assert!(report.sagas.is_empty(), "{report:?}");
    assert_eq!(report.refused.len(), 1, "{report:?}");
    assert_eq!(report.refused[0].saga_id, id);
    let why = report.refused[0].result.as_ref().unwrap_err();
    assert_eq!(why.code(), flext::codes::SAGA_DUPLICATE_NAME);
    for part in ["twin_a::Twin", "twin_b::Twin", "#[saga(name = "] {
        assert!(why.message().contains(part), "{why}");
    }
    assert_eq!(log.load(id).await.unwrap(), record, "left untouched");

    let resume =
        flext::saga::Intervention::new(flext::saga::OperatorAction::Resume, "alice", "try it")
            .unwrap();
    let refused = runner.intervene(id, &resume).await.unwrap_err();
    assert_eq!(refused.code(), flext::codes::SAGA_DUPLICATE_NAME);
    assert_eq!(log.load(id).await.unwrap(), record, "nothing written");

    // What a user does next: either type, run under its own id, still runs in-process.
    let outcome = runner
        .run(twin_a::Twin { n: 4 }, &Context::new())
        .await
        .unwrap();
    assert!(
        matches!(outcome, SagaOutcome::Completed { .. }),
        "{outcome:?}"
    );
}
