//! Durable workflows (`#[workflow(durable)]`): each node transition recorded by (run id,
//! node name), nodes that settle together in one write, idempotent starts by run id,
//! recovery that does not run finished nodes again, and a crash at every write of a
//! graph with two branches in flight at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flext::Uuid;
use flext::prelude::*;
use flext::saga::{
    HistoryEntry, Intervention, MemoryLog, OperatorAction, SagaFilter, SagaLog, SagaRunner,
    SagaState, Transition,
};
use flext::workflow::StepStatus;
use serde::{Deserialize, Serialize};

/// What the nodes did, by node: the idempotency keys they applied under, how many times
/// they were called, and the compensations, in the order they ran.
#[derive(Default)]
struct Ledger {
    inner: Mutex<Book>,
}

#[derive(Default)]
struct Book {
    applied: BTreeMap<String, BTreeSet<String>>,
    calls: BTreeMap<String, u32>,
    compensated: Vec<(String, String)>,
}

impl Ledger {
    /// Applies node `node`'s effect under `key`, once per key (as a step that
    /// deduplicates on its idempotency key does).
    fn apply(&self, node: &str, key: &str) {
        let mut b = self.inner.lock().unwrap();
        *b.calls.entry(node.to_owned()).or_default() += 1;
        b.applied
            .entry(node.to_owned())
            .or_default()
            .insert(key.to_owned());
    }

    fn undo(&self, node: &str, key: &str) {
        let mut b = self.inner.lock().unwrap();
        if !b.compensated.iter().any(|(_, k)| k == key) {
            b.compensated.push((node.to_owned(), key.to_owned()));
        }
    }

    /// Each node's count of distinct applications.
    fn applied(&self) -> BTreeMap<String, usize> {
        let b = self.inner.lock().unwrap();
        b.applied
            .iter()
            .map(|(n, k)| (n.clone(), k.len()))
            .collect()
    }

    fn compensated(&self) -> Vec<String> {
        let b = self.inner.lock().unwrap();
        b.compensated.iter().map(|(n, _)| n.clone()).collect()
    }
}

/// extract -> (transform_a, transform_b) -> load; audit is optional and fails, so
/// report (which takes its output) is skipped.
#[derive(Serialize, Deserialize)]
struct Etl {
    rows: u32,
    fail_load: bool,
}

fn key(ctx: &Context) -> String {
    ctx.idempotency_key().unwrap_or("none").to_owned()
}

#[workflow(durable)]
impl Etl {
    #[workflow_step(compensate = drop_staging)]
    async fn extract(&self, ledger: State<Ledger>, ctx: &Context) -> Result<Vec<u32>> {
        ledger.apply("extract", &key(ctx));
        Ok((1..=self.rows).collect())
    }
    async fn drop_staging(
        &self,
        _rows: &[u32],
        ledger: State<Ledger>,
        ctx: &Context,
    ) -> Result<()> {
        ledger.undo("extract", &key(ctx));
        Ok(())
    }

    #[workflow_step(depends_on = [extract], compensate = undo_a)]
    async fn transform_a(&self, rows: &[u32], ledger: State<Ledger>, ctx: &Context) -> Result<u64> {
        tokio::task::yield_now().await;
        ledger.apply("transform_a", &key(ctx));
        Ok(rows.iter().map(|&r| u64::from(r)).sum())
    }
    async fn undo_a(&self, _sum: &u64, ledger: State<Ledger>, ctx: &Context) -> Result<()> {
        ledger.undo("transform_a", &key(ctx));
        Ok(())
    }

    #[workflow_step(depends_on = [extract], compensate = undo_b)]
    async fn transform_b(&self, rows: &[u32], ledger: State<Ledger>, ctx: &Context) -> Result<u32> {
        tokio::task::yield_now().await;
        ledger.apply("transform_b", &key(ctx));
        Ok(rows.iter().copied().max().unwrap_or(0))
    }
    async fn undo_b(&self, _max: &u32, ledger: State<Ledger>, ctx: &Context) -> Result<()> {
        ledger.undo("transform_b", &key(ctx));
        Ok(())
    }

    #[workflow_step(depends_on = [extract], optional)]
    async fn audit(&self, _rows: &[u32]) -> Result<String> {
        Err(Error::infrastructure("audit.down", "no auditor today"))
    }

    #[workflow_step(depends_on = [audit], optional)]
    async fn report(&self, audit: &str) -> Result<String> {
        Ok(format!("audited: {audit}"))
    }

    #[workflow_step(depends_on = [transform_a, transform_b])]
    async fn load(
        &self,
        sum: &u64,
        max: &u32,
        ledger: State<Ledger>,
        ctx: &Context,
    ) -> Result<String> {
        if self.fail_load {
            return Err(Error::infrastructure("warehouse.full", "no room"));
        }
        ledger.apply("load", &key(ctx));
        Ok(format!("sum {sum}, max {max}"))
    }
}

fn runner(log: Arc<dyn SagaLog>, ledger: &Arc<Ledger>) -> SagaRunner {
    SagaRunner::builder_shared(log)
        .shared_state(ledger.clone())
        .lease(Duration::ZERO)
        .compensation_attempts(1)
        .build()
}

fn kinds(history: &[HistoryEntry]) -> Vec<String> {
    history
        .iter()
        .map(|e| match &e.transition {
            Transition::NodeStarted { node } => format!("started {node}"),
            Transition::NodeCompleted { node, .. } => format!("completed {node}"),
            Transition::NodeFailed { node, .. } => format!("failed {node}"),
            Transition::NodeSkipped { node, missing } => format!("skipped {node} for {missing}"),
            Transition::NodeCompensated { node, .. } => format!("compensated {node}"),
            other => format!("{other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn a_durable_run_records_each_node_by_name_and_returns_its_outputs() {
    let ledger = Arc::new(Ledger::default());
    let memory = Arc::new(MemoryLog::new());
    let runner = runner(memory.clone(), &ledger);
    let run = runner
        .run_workflow_durable(
            Etl {
                rows: 4,
                fail_load: false,
            },
            &Context::new(),
        )
        .await
        .unwrap();
    assert!(run.is_success(), "{run:?}");
    assert_eq!(run.output::<String>("load").unwrap(), "sum 10, max 4");
    assert!(matches!(
        run.step("audit").unwrap().status,
        StepStatus::Failed(_)
    ));
    assert!(matches!(
        run.step("report").unwrap().status,
        StepStatus::Skipped { missing: "audit" }
    ));
    let id = run.run_id().expect("a durable run has an id");
    let record = memory.load(id).await.unwrap();
    assert_eq!(record.state, SagaState::Completed);
    assert_eq!(record.name, "Etl");
    assert!(
        record
            .definition
            .starts_with("extract\tVec<u32>\tdrop_staging\t\t\n"),
        "{}",
        record.definition
    );

    let kinds = kinds(&runner.history(id).await.unwrap());
    // Every node by name: started, then settled; none by position.
    for node in ["extract", "transform_a", "transform_b", "audit", "load"] {
        let started = kinds
            .iter()
            .position(|k| *k == format!("started {node}"))
            .unwrap();
        let settled = kinds
            .iter()
            .position(|k| *k == format!("completed {node}") || *k == format!("failed {node}"))
            .unwrap();
        assert!(started < settled, "{node}: {kinds:?}");
    }
    assert!(
        kinds.contains(&"skipped report for audit".to_owned()),
        "{kinds:?}"
    );
    assert!(
        !kinds.iter().any(|k| k.contains("started report")),
        "{kinds:?}"
    );
    // The three branches after extract start in the write that completes extract.
    let completed_extract = kinds.iter().position(|k| k == "completed extract").unwrap();
    assert_eq!(
        kinds[completed_extract + 1..completed_extract + 4],
        [
            "started transform_a",
            "started transform_b",
            "started audit"
        ]
    );
    assert_eq!(
        ledger.applied().values().copied().collect::<Vec<_>>(),
        [1, 1, 1, 1]
    );
}

#[tokio::test]
async fn nodes_that_settle_together_are_one_write() {
    let dir = std::env::temp_dir().join(format!("flext-wf-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = Arc::new(flext::saga::SqliteLog::open(dir.join("wf.db")).unwrap());
    let ledger = Arc::new(Ledger::default());
    let runner = runner(log.clone(), &ledger);
    let before = log.stats();
    let run = runner
        .run_workflow_durable(
            Etl {
                rows: 3,
                fail_load: false,
            },
            &Context::new(),
        )
        .await
        .unwrap();
    let writes = log.stats().writes - before.writes;
    let transitions = runner.history(run.run_id().unwrap()).await.unwrap().len() as u64;
    // 6 nodes settle (one of them skipped) and 5 start: 11 transitions, written with the
    // creation in fewer writes than transitions, because the starts a settle allows, and
    // nodes that settle together, share one.
    assert_eq!(
        transitions,
        11,
        "{:?}",
        kinds(&runner.history(run.run_id().unwrap()).await.unwrap())
    );
    println!("{writes} writes (the creation included) for {transitions} transitions");
    assert!(writes <= 8, "{writes} writes for {transitions} transitions");
    drop(runner);
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_failing_required_node_compensates_what_completed_in_reverse_completion_order() {
    let ledger = Arc::new(Ledger::default());
    let memory = Arc::new(MemoryLog::new());
    let runner = runner(memory.clone(), &ledger);
    let run = runner
        .run_workflow_durable(
            Etl {
                rows: 2,
                fail_load: true,
            },
            &Context::new(),
        )
        .await
        .unwrap();
    assert_eq!(run.failed_step().unwrap().name, "load");
    let history = runner.history(run.run_id().unwrap()).await.unwrap();
    let completed: Vec<String> = history
        .iter()
        .filter_map(|e| match &e.transition {
            Transition::NodeCompleted { node, .. } => Some(node.clone()),
            _ => None,
        })
        .collect();
    let mut expected: Vec<String> = completed.iter().rev().cloned().collect();
    expected.retain(|n| n != "audit" && n != "report");
    assert_eq!(ledger.compensated(), expected);
    assert_eq!(
        run.compensated(),
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(
        memory.load(run.run_id().unwrap()).await.unwrap().state,
        SagaState::Compensated
    );
}

#[tokio::test]
async fn a_second_start_under_the_same_id_runs_nothing_and_returns_the_recorded_run() {
    let ledger = Arc::new(Ledger::default());
    let runner = runner(Arc::new(MemoryLog::new()), &ledger);
    let id = Uuid::new_v4();
    let first = runner
        .run_workflow_with_id(
            id,
            Etl {
                rows: 5,
                fail_load: false,
            },
            &Context::new(),
        )
        .await
        .unwrap();
    let again = runner
        .run_workflow_with_id(
            id,
            Etl {
                rows: 5,
                fail_load: false,
            },
            &Context::new(),
        )
        .await
        .unwrap();
    assert_eq!((first.run_id(), again.run_id()), (Some(id), Some(id)));
    // Read back from the log, decoded to the node's type.
    assert_eq!(again.output::<String>("load").unwrap(), "sum 15, max 5");
    assert_eq!(ledger.inner.lock().unwrap().calls["load"], 1);
    let other = runner
        .run_workflow_with_id(
            id,
            Etl {
                rows: 6,
                fail_load: false,
            },
            &Context::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(other.code(), flext::codes::SAGA_ID_REUSED);
}

// ---------------------------------------------------------------- crashes

#[path = "common/crashing.rs"]
mod crashing;
use crashing::CrashingLog;

/// Runs the workflow, crashing at write `crash_at`, recovers with a fresh runner, and
/// checks that every node's effect happened once, and was compensated once when the run
/// failed, in reverse completion order. Returns whether the crash point was reached.
async fn crash_and_recover(fail_load: bool, crash_at: usize, after_commit: bool) -> bool {
    let ledger = Arc::new(Ledger::default());
    let memory = Arc::new(MemoryLog::new());
    let crashing = Arc::new(CrashingLog {
        inner: memory.clone(),
        crash_at,
        after_commit,
        writes: AtomicUsize::new(0),
    });
    let first = runner(crashing.clone(), &ledger);
    let ran = first
        .run_workflow_durable(Etl { rows: 3, fail_load }, &Context::new())
        .await;
    let reached = crashing.writes.load(Ordering::SeqCst) > crash_at;
    let at =
        format!("crash at write {crash_at}, after commit: {after_commit}, failing: {fail_load}");
    match &ran {
        Err(e) => assert_eq!(e.code(), "test.crash", "{at}"),
        Ok(_) => assert!(!reached, "{at}: the run ended although it crashed"),
    }
    drop(first);

    let fresh = runner(memory.clone(), &ledger);
    let recovered = fresh.recover().await.unwrap();
    assert_eq!(recovered.failed(), 0, "{at}: {recovered:?}");
    assert!(
        fresh.recover().await.unwrap().is_empty(),
        "{at}: nothing left in flight"
    );

    let runs = memory.list(&SagaFilter::default()).await.unwrap();
    let Some(run) = runs.first() else {
        assert!(
            ledger.applied().is_empty(),
            "{at}: a run never logged ran nothing"
        );
        return reached;
    };
    assert_eq!(runs.len(), 1, "{at}");
    let applied = ledger.applied();
    let history = fresh.history(run.id).await.unwrap();
    if fail_load {
        assert_eq!(run.state, SagaState::Compensated, "{at}");
        // Each node that took effect took effect once and was undone once, last
        // completed first.
        for (node, n) in &applied {
            assert_eq!(*n, 1, "{at}: {node} applied {n} times");
        }
        assert!(!applied.contains_key("load"), "{at}");
        let completed: Vec<String> = history
            .iter()
            .filter_map(|e| match &e.transition {
                Transition::NodeCompleted { node, .. } if node != "audit" => Some(node.clone()),
                _ => None,
            })
            .collect();
        let reversed: Vec<String> = completed.into_iter().rev().collect();
        assert_eq!(ledger.compensated(), reversed, "{at}");
        let mut undone: Vec<String> = ledger.compensated();
        undone.sort();
        assert_eq!(
            undone,
            applied.keys().cloned().collect::<Vec<_>>(),
            "{at}: every effect undone"
        );
    } else {
        assert_eq!(run.state, SagaState::Completed, "{at}");
        assert_eq!(
            applied,
            BTreeMap::from([
                ("extract".to_owned(), 1),
                ("load".to_owned(), 1),
                ("transform_a".to_owned(), 1),
                ("transform_b".to_owned(), 1),
            ]),
            "{at}"
        );
        assert!(ledger.compensated().is_empty(), "{at}");
    }
    // No node completed twice in the log.
    let mut seen = BTreeSet::new();
    for e in &history {
        if let Transition::NodeCompleted { node, .. } = &e.transition {
            assert!(seen.insert(node.clone()), "{at}: {node} completed twice");
        }
    }
    reached
}

#[tokio::test]
async fn after_a_crash_at_any_write_every_node_takes_effect_once_or_is_undone_once() {
    let mut points = 0;
    for fail_load in [false, true] {
        let mut crash_at = 0;
        loop {
            let mut reached_any = false;
            for after_commit in [false, true] {
                if crash_and_recover(fail_load, crash_at, after_commit).await {
                    points += 1;
                    reached_any = true;
                }
            }
            if !reached_any {
                break;
            }
            crash_at += 1;
        }
        assert!(crash_at >= 5, "the run wrote {crash_at} times");
    }
    println!("workflow crash points exercised: {points}");
}

#[tokio::test]
async fn an_aborted_run_compensates_what_completed() {
    let ledger = Arc::new(Ledger::default());
    let memory = Arc::new(MemoryLog::new());
    // Crash right after the write that completes extract and starts the branches.
    let crashing = Arc::new(CrashingLog {
        inner: memory.clone(),
        crash_at: 2,
        after_commit: true,
        writes: AtomicUsize::new(0),
    });
    let first = runner(crashing, &ledger);
    let id = Uuid::new_v4();
    first
        .run_workflow_with_id(
            id,
            Etl {
                rows: 3,
                fail_load: false,
            },
            &Context::new(),
        )
        .await
        .unwrap_err();
    let fresh = runner(memory.clone(), &ledger);
    let abort = Intervention::new(OperatorAction::Abort, "alice", "wrong day").unwrap();
    let outcome = fresh.intervene(id, &abort).await.unwrap();
    match &outcome {
        // The first node that had not started is named; the branches that were running
        // ran again under their keys and were compensated with extract.
        flext::saga::SagaOutcome::Compensated {
            failed_step, error, ..
        } => {
            assert_eq!(failed_step, "report", "{outcome:?}");
            assert_eq!(error.code(), flext::codes::SAGA_ABORTED);
            assert!(error.message().contains("alice: wrong day"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        ledger.compensated().last().map(String::as_str),
        Some("extract")
    );
    assert!(!ledger.applied().contains_key("load"));
}

/// reserve -> charge -> (ship fails); refund fails until the bank is back.
#[derive(Serialize, Deserialize)]
struct Payment {
    cents: u64,
}

#[derive(Default)]
struct Bank {
    down: std::sync::atomic::AtomicBool,
    refunds: AtomicUsize,
    releases: AtomicUsize,
}

#[workflow(durable)]
impl Payment {
    #[workflow_step(compensate = release)]
    async fn reserve(&self) -> Result<u64> {
        Ok(self.cents)
    }
    async fn release(&self, _held: &u64, bank: State<Bank>) -> Result<()> {
        bank.releases.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    #[workflow_step(depends_on = [reserve], compensate = refund)]
    async fn charge(&self, held: &u64) -> Result<u64> {
        Ok(*held)
    }
    async fn refund(&self, _charged: &u64, bank: State<Bank>) -> Result<()> {
        if bank.down.load(Ordering::SeqCst) {
            return Err(Error::infrastructure(
                "bank.down",
                "the bank refuses refunds",
            ));
        }
        bank.refunds.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    #[workflow_step(depends_on = [charge])]
    async fn ship(&self, _charged: &u64) -> Result<()> {
        Err(Error::infrastructure("carrier.down", "no carrier"))
    }
}

#[tokio::test]
async fn a_stuck_compensation_waits_for_an_operator_and_a_resume_finishes_it() {
    let bank = Arc::new(Bank::default());
    bank.down.store(true, Ordering::SeqCst);
    let memory = Arc::new(MemoryLog::new());
    let runner = SagaRunner::builder_shared(memory.clone())
        .shared_state(bank.clone())
        .lease(Duration::ZERO)
        .compensation_attempts(1)
        .build();
    let run = runner
        .run_workflow_durable(Payment { cents: 500 }, &Context::new())
        .await
        .unwrap();
    assert!(run.is_stuck(), "{run:?}");
    assert!(matches!(
        run.step("charge").unwrap().status,
        StepStatus::CompensationFailed(_)
    ));
    let id = run.run_id().unwrap();
    let summary = memory.load(id).await.unwrap().summary();
    assert_eq!(summary.state, SagaState::Stuck);
    assert_eq!(summary.stuck_at.unwrap().step, "compensate charge");
    // Nothing more runs on its own: release waits behind the stuck refund.
    assert!(runner.recover().await.unwrap().is_empty());
    assert_eq!(bank.releases.load(Ordering::SeqCst), 0);

    bank.down.store(false, Ordering::SeqCst);
    let resume = Intervention::new(OperatorAction::Resume, "alice", "the bank is back").unwrap();
    let outcome = runner.intervene(id, &resume).await.unwrap();
    match outcome {
        flext::saga::SagaOutcome::Compensated {
            failed_step,
            compensated,
            ..
        } => {
            assert_eq!(failed_step, "ship");
            assert_eq!(compensated, ["charge", "reserve"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(bank.refunds.load(Ordering::SeqCst), 1);
    assert_eq!(bank.releases.load(Ordering::SeqCst), 1);
    assert_eq!(memory.load(id).await.unwrap().state, SagaState::Compensated);
}
