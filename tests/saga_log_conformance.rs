//! The `SagaLog` conformance suite: every contract a saga log keeps, run against every
//! backend through the runner, as users drive it. A new backend joins with one
//! `conformance!` line and a [`Backend`] that opens a connection to a fresh store.
//!
//! Contracts: creation and transitions, leases (a live one keeps others out, an expired
//! one is taken over, renewal), two runners of one name, idempotent start, the recovery
//! loop, retry settings and attempts, definitions (fingerprints), list filters, history,
//! operator actions (resume, abort, resolve, and what is refused), durable workflow
//! records (node transitions written together, a run resumed mid-graph), and durable
//! timers (a sleeping saga across a restart, woken once; aborted while asleep), and
//! signals (kept once per sender while no process runs, taken once after a restart;
//! kept before the wait; timeouts; aborted while waiting; the recovery loop woken), and
//! schedules (three processes fire each tick once; the catch-up policies).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flext::Uuid;
use flext::codes;
use flext::prelude::*;
#[cfg(feature = "sqlite")]
use flext::saga::SqliteLog;
use flext::saga::{
    ClaimRequest, Fence, Intervention, Lease, MemoryLog, OperatorAction, SagaFilter, SagaLog,
    SagaOutcome, SagaRecord, SagaRunner, SagaState, Transition,
};
use serde::{Deserialize, Serialize};

// ------------------------------------------------------------------------ backends

/// A store the suite runs against: each `connect` is another process's connection to
/// the same store.
#[allow(async_fn_in_trait)]
trait Backend: Sized {
    async fn new() -> Self;
    async fn connect(&self) -> Arc<dyn SagaLog>;
}

struct Memory(Arc<MemoryLog>);

impl Backend for Memory {
    async fn new() -> Self {
        Memory(Arc::new(MemoryLog::new()))
    }
    async fn connect(&self) -> Arc<dyn SagaLog> {
        self.0.clone()
    }
}

/// A SQLite file in a directory of its own, removed afterwards, opened at
/// `synchronous = NORMAL` (each write commits on the caller's thread) or `FULL` (writes
/// group-commit on a writer thread).
#[cfg(feature = "sqlite")]
struct Sqlite<const FULL: bool>(std::path::PathBuf);

#[cfg(feature = "sqlite")]
impl<const FULL: bool> Backend for Sqlite<FULL> {
    async fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("flext-conformance-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Sqlite(dir)
    }
    async fn connect(&self) -> Arc<dyn SagaLog> {
        let sync = if FULL {
            flext::saga::Synchronous::Full
        } else {
            flext::saga::Synchronous::Normal
        };
        Arc::new(SqliteLog::open_with(self.0.join("sagas.db"), sync).unwrap())
    }
}

#[cfg(feature = "sqlite")]
impl<const FULL: bool> Drop for Sqlite<FULL> {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// A PostgreSQL server of its own (or a fresh database on `DATABASE_URL`'s), stopped
/// when the test ends.
#[cfg(feature = "postgres")]
struct Postgres {
    _cluster: flext::postgres::TestCluster,
    url: String,
}

#[cfg(feature = "postgres")]
impl Backend for Postgres {
    async fn new() -> Self {
        let cluster = flext::postgres::TestCluster::start().unwrap_or_else(|e| panic!("{e}"));
        let url = cluster.fresh_database().await.unwrap();
        Postgres {
            _cluster: cluster,
            url,
        }
    }
    async fn connect(&self) -> Arc<dyn SagaLog> {
        let db = flext::postgres::PgDatabase::connect(&self.url)
            .await
            .unwrap();
        Arc::new(db.saga_log())
    }
}

/// One test per contract for `$backend`.
macro_rules! conformance {
    ($module:ident, $backend:ty) => {
        mod $module {
            use super::*;

            async fn backend() -> $backend {
                <$backend as Backend>::new().await
            }

            #[tokio::test]
            async fn creation_and_transitions() {
                creation_contract(backend().await.connect().await).await;
            }

            #[tokio::test]
            async fn a_live_lease_keeps_others_out_and_an_expired_one_is_taken_over() {
                lease_contract(&*backend().await.connect().await).await;
            }

            #[tokio::test]
            async fn only_the_holder_renews_a_live_lease() {
                renewal_contract(backend().await.connect().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn two_runners_with_one_name_never_drive_the_same_saga() {
                same_name_contract(&backend().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_long_step_keeps_its_lease_by_heartbeat() {
                heartbeat_contract(backend().await.connect().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_saga_started_twice_runs_once() {
                idempotent_start_contract(backend().await.connect().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_recovery_loop_finishes_what_a_dead_runner_left() {
                recovery_loop_contract(backend().await.connect().await).await;
            }

            #[tokio::test]
            async fn a_step_and_a_compensation_follow_their_own_retry_settings() {
                retry_policy_contract(backend().await.connect().await).await;
            }

            #[tokio::test]
            async fn a_saga_logged_by_another_definition_is_refused() {
                definition_contract(backend().await.connect().await).await;
            }

            #[tokio::test]
            async fn list_filters_by_state_name_and_age() {
                filter_contract(backend().await.connect().await).await;
            }

            #[tokio::test]
            async fn an_operator_resumes_a_stuck_saga() {
                resume_contract(backend().await.connect().await).await;
            }

            #[tokio::test]
            async fn an_operator_aborts_a_stuck_saga_and_what_can_be_compensated_is() {
                abort_contract(backend().await.connect().await).await;
            }

            #[tokio::test]
            async fn an_operator_resolves_a_stuck_saga_by_hand() {
                resolve_contract(backend().await.connect().await).await;
            }

            #[tokio::test]
            async fn an_action_recorded_without_a_runner_is_carried_out_by_recovery() {
                recorded_action_contract(&backend().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn actions_that_do_not_apply_are_refused_and_write_nothing() {
                refusal_contract(backend().await.connect().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_failed_renewal_is_retried_and_a_runner_that_cannot_renew_stops_in_time() {
                found::renewal_faults_contract(backend().await.connect().await).await;
            }

            #[tokio::test]
            async fn a_saga_whose_transitions_end_it_gets_its_final_state_once() {
                found::finished_in_flight_contract(backend().await.connect().await).await;
            }

            #[tokio::test]
            async fn changed_code_is_refused_on_every_path_without_writing() {
                found::changed_code_contract(backend().await.connect().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_start_claims_an_expired_saga_and_recovery_reports_every_pass() {
                found::restart_and_report_contract(backend().await.connect().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_restarted_process_takes_back_its_sagas_at_its_first_recovery_pass() {
                let backend = backend().await;
                let provable = stringify!($module) != "memory";
                found::restart_contract(|| backend.connect(), provable).await;
            }

            #[tokio::test]
            async fn node_transitions_written_together_are_one_fenced_write() {
                workflow_records::append_all_contract(backend().await.connect().await).await;
            }

            #[tokio::test]
            async fn a_durable_workflow_left_mid_graph_resumes_without_rerunning_finished_nodes() {
                workflow_records::resume_contract(backend().await.connect().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_sleeping_saga_survives_its_process_and_wakes_once_when_due() {
                let backend = backend().await;
                timers::sleep_contract(|| backend.connect()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_signal_sent_while_no_process_runs_is_taken_once_after_a_restart() {
                let backend = backend().await;
                signals::signal_contract(|| backend.connect()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_child_saga_parks_its_parent_and_a_compensated_parent_compensates_its_child()
            {
                let backend = backend().await;
                children::child_contract(|| backend.connect()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_queue_holds_its_limits_across_three_processes_in_priority_order() {
                let backend = backend().await;
                queues::queue_contract(|| backend.connect()).await;
            }

            #[cfg(feature = "schedules")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_schedule_run_by_three_processes_fires_each_tick_once() {
                let backend = backend().await;
                schedules::schedule_contract(|| backend.connect()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fencing_holds_under_injected_faults_over_many_seeded_schedules() {
                fault_contract(stringify!($module), backend().await.connect().await).await;
            }
        }
    };
}

conformance!(memory, Memory);
#[cfg(feature = "sqlite")]
conformance!(sqlite, Sqlite<false>);
#[cfg(feature = "sqlite")]
conformance!(sqlite_group_commit, Sqlite<true>);
#[cfg(feature = "postgres")]
conformance!(postgres, Postgres);

// ------------------------------------------------------------------ injected faults

#[path = "common/children.rs"]
mod children;
#[path = "common/faults.rs"]
mod faults;
#[path = "common/found.rs"]
mod found;
#[path = "common/queues.rs"]
mod queues;
#[cfg(feature = "schedules")]
#[path = "common/schedules.rs"]
mod schedules;
#[path = "common/signals.rs"]
mod signals;
#[path = "common/timers.rs"]
mod timers;
#[path = "common/workflow_records.rs"]
mod workflow_records;

/// How many seeded schedules each backend runs (`FLEXT_FAULT_SCHEDULES`, default 1000).
fn fault_schedules() -> usize {
    std::env::var("FLEXT_FAULT_SCHEDULES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
}

/// Three runners drive sagas through a store that fails calls before and after they
/// commit, delays them past the lease and goes away for a while: the properties of
/// `common/faults.rs` hold on every schedule.
async fn fault_contract(backend: &str, log: Arc<dyn SagaLog>) {
    let count = fault_schedules();
    let seed = std::env::var("FLEXT_FAULT_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let found = faults::run_schedules(log, seed, count, 100, |log| log).await;
    println!(
        "fault schedules on {backend}: {} run (seed {seed}), completed/compensated/stuck {:?}, takeovers {}, violations {}",
        found.schedules,
        found.ended,
        found.takeovers,
        found.violations.len()
    );
    assert_eq!(found.schedules, count);
    assert_eq!(
        found.ended.iter().sum::<usize>(),
        count,
        "{:#?}",
        found.violations
    );
    assert!(
        found.violations.is_empty(),
        "{:#?}",
        &found.violations[..found.violations.len().min(20)]
    );
}

/// The properties are not vacuous: with the fence taken out of the store (writes sent
/// under the saga's current epoch, whatever the runner held), the same schedules find
/// stale writes accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fault_checker_catches_a_log_without_the_fence() {
    let log: Arc<dyn SagaLog> = Arc::new(MemoryLog::new());
    let found = faults::run_schedules(log, 7, 300, 100, |log| {
        Arc::new(faults::Unfenced(log)) as Arc<dyn SagaLog>
    })
    .await;
    println!(
        "unfenced: {} violations, e.g. {:?}",
        found.violations.len(),
        found.violations.first()
    );
    assert!(
        found
            .violations
            .iter()
            .any(|v| v.contains("was accepted after epoch")),
        "{:#?}",
        found.violations
    );
}

// ---------------------------------------------------------------- creation, leases

/// A created saga reads back as written; each transition moves its state and is kept
/// in order, with when it was written.
async fn creation_contract(log: Arc<dyn SagaLog>) {
    let id = Uuid::new_v4();
    let record = SagaRecord {
        id,
        name: "Paused".into(),
        input: serde_json::json!({ "n": 1 }),
        correlation_id: Uuid::new_v4(),
        state: SagaState::Running,
        transitions: Vec::new(),
        owner: "w/1".into(),
        lease_until_ms: flext::saga::now_ms() + 60_000,
        definition: "reserve\tu32\tunreserve\t".into(),
        created_ms: 1_000,
        epoch: 1,
    };
    log.create(&record).await.unwrap();
    assert_eq!(log.load(id).await.unwrap(), record);
    let again = log.create(&record).await.unwrap_err();
    assert_eq!(again.code(), codes::SAGA_EXISTS);

    let lease = Lease {
        owner: "w/1".into(),
        duration_ms: 60_000,
    };
    let steps = [
        (
            Transition::StepCompleted {
                index: 0,
                output: serde_json::json!(1),
                attempts: 1,
            },
            SagaState::Running,
        ),
        (
            Transition::StepFailed {
                index: 1,
                error: flext::saga::ErrorRecord::from(&Error::conflict("test.no", "no")),
                attempts: 2,
            },
            SagaState::Compensating,
        ),
        (
            Transition::CompensationCompleted {
                index: 0,
                attempts: 1,
            },
            SagaState::Compensated,
        ),
    ];
    let before = flext::saga::now_ms();
    for (seq, (t, state)) in steps.iter().enumerate() {
        let fence = Fence {
            epoch: 1,
            seq: seq as u64,
        };
        log.append(id, t, *state, &lease, fence).await.unwrap();
        assert_eq!(log.load(id).await.unwrap().state, *state);
    }
    // Nothing follows a final state, whoever writes.
    let after_end = log
        .append(
            id,
            &steps[0].0,
            SagaState::Running,
            &lease,
            Fence { epoch: 1, seq: 3 },
        )
        .await
        .unwrap_err();
    assert_eq!(after_end.code(), codes::SAGA_LEASE_LOST);
    assert!(after_end.message().contains("compensated"), "{after_end}");
    let loaded = log.load(id).await.unwrap();
    let written: Vec<Transition> = steps.iter().map(|(t, _)| t.clone()).collect();
    assert_eq!(loaded.transitions, written);
    let history = log.history(id).await.unwrap();
    assert_eq!(history.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(history.iter().all(|e| e.at_ms >= before), "{history:?}");
    assert_eq!(
        history
            .into_iter()
            .map(|e| e.transition)
            .collect::<Vec<_>>(),
        written
    );

    let unknown = Uuid::new_v4();
    for err in [
        log.load(unknown).await.unwrap_err(),
        log.history(unknown).await.unwrap_err(),
        log.append(
            unknown,
            &steps[0].0,
            SagaState::Running,
            &lease,
            Fence { epoch: 1, seq: 0 },
        )
        .await
        .unwrap_err(),
    ] {
        assert_eq!(err.code(), codes::SAGA_NOT_FOUND, "{err}");
    }
}

/// A live lease keeps other runners out; an expired one is taken over under a new
/// epoch, and from then on the old holder's writes are refused: a stale epoch, a stale
/// predecessor, and anything after a final state.
async fn lease_contract(log: &dyn SagaLog) {
    let id = Uuid::new_v4();
    let record = SagaRecord {
        id,
        name: "Fulfil".into(),
        input: serde_json::json!({"order": "o-9", "fail_at": null}),
        correlation_id: Uuid::new_v4(),
        state: SagaState::Running,
        transitions: Vec::new(),
        owner: "process-a".into(),
        lease_until_ms: flext::saga::now_ms() + 60_000,
        definition: String::new(),
        created_ms: 0,
        epoch: 1,
    };
    log.create(&record).await.unwrap();
    let a = Lease {
        owner: "process-a".into(),
        duration_ms: 60_000,
    };
    let b = Lease {
        owner: "process-b".into(),
        duration_ms: 60_000,
    };
    let step = |index: usize| Transition::StepCompleted {
        index,
        output: serde_json::json!({"step": index, "key": "k"}),
        attempts: 1,
    };
    let t = step(0);
    log.append(id, &t, SagaState::Running, &a, Fence { epoch: 1, seq: 0 })
        .await
        .unwrap();
    // A second write following the same transition loses: another write came first.
    let twice = log
        .append(
            id,
            &step(1),
            SagaState::Running,
            &a,
            Fence { epoch: 1, seq: 0 },
        )
        .await
        .unwrap_err();
    assert_eq!(
        (twice.kind(), twice.code()),
        (ErrorKind::Conflict, codes::SAGA_LEASE_LOST)
    );
    assert!(
        twice.message().contains("another write came first"),
        "{twice}"
    );
    assert!(
        log.claim_expired(&ClaimRequest::any(&b, flext::saga::now_ms()))
            .await
            .unwrap()
            .sagas
            .is_empty(),
        "a's lease is live"
    );
    // Much later, a has stopped renewing: b takes over, under epoch 2.
    let later = flext::saga::now_ms() + 120_000;
    let claimed = log
        .claim_expired(&ClaimRequest::any(&b, later))
        .await
        .unwrap()
        .sagas;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].owner, "process-b");
    assert_eq!(claimed[0].epoch, 2);
    assert_eq!(claimed[0].transitions, std::slice::from_ref(&t));
    assert_eq!(log.load(id).await.unwrap().epoch, 2);
    // a wakes up and writes under its old epoch: refused, nothing written.
    let stale = log
        .append(
            id,
            &step(1),
            SagaState::Completed,
            &a,
            Fence { epoch: 1, seq: 1 },
        )
        .await
        .unwrap_err();
    assert_eq!(stale.code(), codes::SAGA_LEASE_LOST);
    assert!(stale.message().contains("claimed again"), "{stale}");
    assert_eq!(
        log.load(id).await.unwrap().transitions,
        std::slice::from_ref(&t)
    );
    log.append(
        id,
        &step(1),
        SagaState::Completed,
        &b,
        Fence::of(&claimed[0]),
    )
    .await
    .unwrap();
    // A finished saga is never claimed again, however old its lease.
    let much_later = flext::saga::now_ms() + 10_000_000;
    assert!(
        log.claim_expired(&ClaimRequest::any(&a, much_later))
            .await
            .unwrap()
            .sagas
            .is_empty()
    );
    let settled = log
        .settle(id, SagaState::Compensated, Fence { epoch: 2, seq: 2 })
        .await
        .unwrap_err();
    assert_eq!(settled.code(), codes::SAGA_LEASE_LOST);
    assert_eq!(log.load(id).await.unwrap().state, SagaState::Completed);
}

/// Renewal is fenced by the epoch: the holder renews (an expired lease too, while
/// nobody claimed the saga); once it is claimed again, the old holder cannot renew it
/// back.
async fn renewal_contract(log: Arc<dyn SagaLog>) {
    let id = Uuid::new_v4();
    let now = flext::saga::now_ms();
    log.create(&SagaRecord {
        id,
        name: "Paused".into(),
        input: serde_json::json!({ "n": 1 }),
        correlation_id: Uuid::new_v4(),
        state: SagaState::Running,
        transitions: Vec::new(),
        owner: "a/1".into(),
        lease_until_ms: now + 60_000,
        definition: String::new(),
        created_ms: now,
        epoch: 1,
    })
    .await
    .unwrap();
    let lease = |owner: &str, duration_ms| Lease {
        owner: owner.into(),
        duration_ms,
    };
    log.renew(id, &lease("a/1", 120_000), 1).await.unwrap();
    assert!(log.load(id).await.unwrap().lease_until_ms >= now + 120_000);
    // Once expired and taken over, the old holder cannot renew it back.
    let later = flext::saga::now_ms() + 200_000;
    let claimed = log
        .claim_expired(&ClaimRequest::any(&lease("b/1", 60_000), later))
        .await
        .unwrap()
        .sagas;
    assert_eq!(claimed.len(), 1);
    let lost = log.renew(id, &lease("a/1", 60_000), 1).await.unwrap_err();
    assert_eq!(lost.code(), codes::SAGA_LEASE_LOST);
    assert!(lost.message().contains("b/1"), "{lost}");
    log.renew(id, &lease("b/1", 60_000), 2).await.unwrap();
    let unknown = log
        .renew(Uuid::new_v4(), &lease("a/1", 1), 1)
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), codes::SAGA_NOT_FOUND);
}

// ------------------------------------------------- one owner per saga, across processes

/// Holds a compensation until the test lets it go, and counts compensations.
#[derive(Default)]
struct Gate {
    entered: tokio::sync::Notify,
    release: tokio::sync::Notify,
    undone: AtomicUsize,
}

#[derive(Serialize, Deserialize)]
struct Paused {
    n: u32,
}

#[saga]
impl Paused {
    #[saga_step(compensate = unreserve)]
    async fn reserve(&self) -> Result<u32> {
        Ok(self.n)
    }

    async fn unreserve(&self, reserved: &u32, gate: State<Gate>) -> Result<()> {
        let _ = reserved;
        gate.entered.notify_one();
        gate.release.notified().await;
        gate.undone.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    #[saga_step]
    async fn charge(&self, reserved: &u32) -> Result<u64> {
        Err(Error::conflict(
            "test.declined",
            format!("{reserved} declined"),
        ))
    }
}

/// Two runners named `worker` over one store, one held mid-compensation by a `Notify`
/// (not a sleep): the other's recovery claims nothing; one compensation runs, one is
/// in the log.
async fn same_name_contract(backend: &impl Backend) {
    let gate = Arc::new(Gate::default());
    // Two processes' runners: one store, one name, each its own connection.
    let runner = |log: Arc<dyn SagaLog>, gate: &Arc<Gate>| {
        SagaRunner::builder_shared(log)
            .owner("worker")
            .lease(Duration::from_secs(60))
            .shared_state(gate.clone())
            .build()
    };
    let (a, b) = (
        runner(backend.connect().await, &gate),
        runner(backend.connect().await, &gate),
    );

    let task = tokio::spawn(async move { a.run(Paused { n: 3 }, &Context::new()).await });
    // `a` is inside the compensation now, its lease live.
    gate.entered.notified().await;
    // Had `b` taken the saga, its recovery would wait in the compensation: the guard
    // turns that into a failure instead of a hang.
    let report = tokio::time::timeout(Duration::from_secs(30), b.recover())
        .await
        .expect("b claimed the saga and is compensating it again")
        .unwrap();
    assert!(report.is_empty(), "b took a live lease: {report:?}");
    assert_eq!(gate.undone.load(Ordering::SeqCst), 0);

    gate.release.notify_one();
    let outcome = task.await.unwrap().unwrap();
    assert_eq!(outcome.state(), SagaState::Compensated);
    assert_eq!(gate.undone.load(Ordering::SeqCst), 1, "compensated once");
    assert!(b.recover().await.unwrap().is_empty());

    // The log holds one record of the compensation.
    let log = backend.connect().await;
    let id = outcome.saga_id();
    let record = log.load(id).await.unwrap();
    let compensations = record
        .transitions
        .iter()
        .filter(|t| matches!(t, Transition::CompensationCompleted { .. }))
        .count();
    assert_eq!(compensations, 1);
    assert!(record.owner.starts_with("worker/"), "{}", record.owner);
}

/// Leases are wall-clock times in the log, so this test waits in real time: two and a
/// half leases' worth, with a heartbeat every third of one. (The lease is long enough
/// that a renewal slowed by the other tests' commits still lands in time.)
async fn heartbeat_contract(log: Arc<dyn SagaLog>) {
    let gate = Arc::new(Gate::default());
    let runner = |log: &Arc<dyn SagaLog>| {
        SagaRunner::builder_shared(log.clone())
            .owner("worker")
            .lease(Duration::from_millis(1500))
            .shared_state(gate.clone())
            .build()
    };
    let a = runner(&log);
    let task = tokio::spawn(async move { a.run(Paused { n: 1 }, &Context::new()).await });
    gate.entered.notified().await;
    // Two and a half leases' worth of time inside the compensation.
    tokio::time::sleep(Duration::from_millis(3750)).await;
    // Another runner would find nothing to take over (asked of the log directly, so
    // that a failure shows here instead of hanging in a second compensation).
    let other = Lease {
        owner: "worker/other".into(),
        duration_ms: 1500,
    };
    let claimable = log
        .claim_expired(&ClaimRequest::any(&other, flext::saga::now_ms()))
        .await
        .unwrap();
    assert!(claimable.sagas.is_empty(), "the heartbeat kept the lease");
    gate.release.notify_one();
    assert_eq!(task.await.unwrap().unwrap().state(), SagaState::Compensated);
    assert_eq!(gate.undone.load(Ordering::SeqCst), 1);
}

// ------------------------------------------------------------------ idempotent start

/// A second start of one saga id: on every backend.
async fn idempotent_start_contract(log: Arc<dyn SagaLog>) {
    let gate = Arc::new(Gate::default());
    let runner = |lease: Duration| {
        SagaRunner::builder_shared(log.clone())
            .owner("starter")
            .lease(lease)
            .shared_state(gate.clone())
            .build()
    };
    let a = runner(Duration::from_secs(60));

    // Started twice at once in one process: the second waits for the first.
    let id = Uuid::new_v4();
    let first = tokio::spawn({
        let a = a.clone();
        async move { a.run_with_id(id, Paused { n: 2 }, &Context::new()).await }
    });
    gate.entered.notified().await;
    let second = tokio::spawn({
        let a = a.clone();
        async move { a.run_with_id(id, Paused { n: 2 }, &Context::new()).await }
    });
    // Another process's runner is told it is in flight, and runs nothing.
    let elsewhere = runner(Duration::from_secs(60))
        .run_with_id(id, Paused { n: 2 }, &Context::new())
        .await
        .unwrap_err();
    assert_eq!(elsewhere.code(), codes::SAGA_IN_FLIGHT, "{elsewhere}");
    assert!(elsewhere.message().contains("starter/"), "{elsewhere}");
    gate.release.notify_one();
    let (first, second) = (
        first.await.unwrap().unwrap(),
        second.await.unwrap().unwrap(),
    );
    assert_eq!(first.state(), SagaState::Compensated);
    assert_eq!(
        (second.saga_id(), second.state()),
        (id, SagaState::Compensated)
    );
    assert_eq!(gate.undone.load(Ordering::SeqCst), 1, "compensated once");

    // Started again later: the recorded outcome, nothing run.
    let again = a
        .run_with_id(id, Paused { n: 2 }, &Context::new())
        .await
        .unwrap();
    match again {
        SagaOutcome::Compensated {
            failed_step,
            compensated,
            error,
            ..
        } => {
            assert_eq!(failed_step, "charge");
            assert_eq!(compensated, ["reserve"]);
            assert_eq!(error.code(), "test.declined");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(gate.undone.load(Ordering::SeqCst), 1);
    let record = log.load(id).await.unwrap();
    assert_eq!(
        record.transitions.len(),
        3,
        "step, failure, compensation: nothing more"
    );

    // The same id for another input is refused.
    let reused = a
        .run_with_id(id, Paused { n: 9 }, &Context::new())
        .await
        .unwrap_err();
    assert_eq!(reused.code(), codes::SAGA_ID_REUSED);
}

// ------------------------------------------------------------------- recovery loop

/// A saga a dead runner left in flight is finished by a recovery loop on every backend,
/// and the loop stops on shutdown.
async fn recovery_loop_contract(log: Arc<dyn SagaLog>) {
    let gate = Arc::new(Gate::default());
    gate.release.notify_one(); // the compensation may run straight through
    let id = Uuid::new_v4();
    log.create(&SagaRecord {
        id,
        name: "Paused".into(),
        input: serde_json::json!({ "n": 4 }),
        correlation_id: Uuid::new_v4(),
        state: SagaState::Running,
        transitions: Vec::new(),
        owner: "dead/0".into(),
        lease_until_ms: flext::saga::now_ms().saturating_sub(1),
        definition: String::new(),
        created_ms: 0,
        epoch: 1,
    })
    .await
    .unwrap();
    let runner = SagaRunner::builder_shared(log.clone())
        .owner("recoverer")
        .shared_state(gate.clone())
        .build();
    let recovery = runner.spawn_recovery(Duration::from_millis(20));
    // Nobody calls `recover()`: the loop finds the saga. The guard bounds a failure.
    let finished = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if log.load(id).await.unwrap().state == SagaState::Compensated {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        finished.is_ok(),
        "the recovery loop never finished the saga"
    );
    assert_eq!(gate.undone.load(Ordering::SeqCst), 1);
    recovery.shutdown().await;
}

// ------------------------------------------------------------------- retry policy

#[derive(Default)]
struct Tries {
    step: AtomicUsize,
    compensation: AtomicUsize,
}

#[derive(Serialize, Deserialize)]
struct Policy;

#[saga]
impl Policy {
    #[saga_step(compensate = cancel, compensate_retries = 1, compensate_backoff_ms = 0)]
    async fn book(&self) -> Result<u32> {
        Ok(1)
    }

    async fn cancel(&self, booked: &u32, tries: State<Tries>) -> Result<()> {
        let _ = booked;
        tries.compensation.fetch_add(1, Ordering::SeqCst);
        Err(Error::conflict("test.cancel", "refused"))
    }

    #[saga_step(retries = 2, backoff_ms = 0, retry_on = any)]
    async fn pay(&self, booked: &u32, tries: State<Tries>) -> Result<u64> {
        let _ = booked;
        tries.step.fetch_add(1, Ordering::SeqCst);
        Err(Error::conflict("test.declined", "declined"))
    }
}

async fn retry_policy_contract(log: Arc<dyn SagaLog>) {
    let tries = Arc::new(Tries::default());
    let runner = SagaRunner::builder_shared(log.clone())
        .shared_state(tries.clone())
        .build();
    let outcome = runner.run(Policy, &Context::new()).await.unwrap();
    // `retry_on = any`: a Conflict, which is not transient, is retried twice all the same.
    assert_eq!(tries.step.load(Ordering::SeqCst), 3);
    // `compensate_retries = 1`: two attempts, not the runner's five, then stuck.
    assert_eq!(tries.compensation.load(Ordering::SeqCst), 2);
    assert_eq!(outcome.state(), SagaState::Stuck);
    // The log keeps how many attempts each took.
    let history = log.history(outcome.saga_id()).await.unwrap();
    let attempts: Vec<(&str, u32)> = history
        .iter()
        .map(|e| match &e.transition {
            Transition::StepCompleted { attempts, .. } => ("completed", *attempts),
            Transition::StepFailed { attempts, .. } => ("failed", *attempts),
            Transition::Stuck { attempts, .. } => ("stuck", *attempts),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(attempts, [("completed", 1), ("failed", 3), ("stuck", 2)]);
}

// ------------------------------------------------------------- versioned definitions

#[derive(Serialize, Deserialize)]
struct Renamed {
    n: u32,
}

/// A second version of a saga whose first version had a step `notify` after `reserve`;
/// it says it still resumes sagas started under that one.
#[saga(accepts = "reserve\\tu32\\t-\\t\\nnotify\\tu32\\t-\\t")]
impl Renamed {
    #[saga_step]
    async fn reserve(&self) -> Result<u32> {
        Ok(self.n)
    }
}

/// A saga logged by an older definition: refused and left as it is, unless accepted.
async fn definition_contract(log: Arc<dyn SagaLog>) {
    let gate = Arc::new(Gate::default());
    gate.release.notify_one();
    let stale = |name: &str, definition: &str, n: u32| SagaRecord {
        id: Uuid::new_v4(),
        name: name.into(),
        input: serde_json::json!({ "n": n }),
        correlation_id: Uuid::new_v4(),
        state: SagaState::Running,
        transitions: Vec::new(),
        owner: "old-version/0".into(),
        lease_until_ms: flext::saga::now_ms().saturating_sub(1),
        definition: definition.into(),
        created_ms: 0,
        epoch: 1,
    };
    // `Paused` once had a step `notify` between `reserve` and `charge`, and `charge`
    // returned a `u32`.
    let changed = stale(
        "Paused",
        "reserve\tu32\tunreserve\t\nnotify\t()\t-\t\ncharge\tu32\t-\t",
        5,
    );
    let accepted = stale("Renamed", "reserve\tu32\t-\t\nnotify\tu32\t-\t", 6);
    log.create(&changed).await.unwrap();
    log.create(&accepted).await.unwrap();
    let runner = SagaRunner::builder_shared(log.clone())
        .shared_state(gate.clone())
        .build();
    let report = runner.recover().await.unwrap();
    assert_eq!(report.len(), 1, "only the accepted saga is claimed");
    assert_eq!(report.refused.len(), 1, "the changed one is reported");
    let result = |id| {
        &report
            .sagas
            .iter()
            .chain(&report.refused)
            .find(|s| s.saga_id == id)
            .unwrap()
            .result
    };
    let err = result(changed.id).as_ref().unwrap_err();
    assert_eq!(err.code(), codes::SAGA_DEFINITION_CHANGED);
    // Untouched: the refusal changed no owner, lease or epoch, and wrote nothing.
    let left = log.load(changed.id).await.unwrap();
    assert_eq!(
        (
            left.owner.as_str(),
            left.lease_until_ms,
            left.epoch,
            left.state
        ),
        (
            "old-version/0",
            changed.lease_until_ms,
            1,
            SagaState::Running
        )
    );
    // Every pass reports it again, and still touches nothing.
    let again = runner.recover().await.unwrap();
    assert_eq!((again.len(), again.refused.len()), (0, 1));
    assert_eq!(log.load(changed.id).await.unwrap(), left);
    for change in [
        "step `notify` was removed or renamed",
        "the output of `charge` changed from `u32` to `u64`",
    ] {
        assert!(err.message().contains(change), "{err}");
    }
    assert!(
        log.load(changed.id).await.unwrap().transitions.is_empty(),
        "the changed saga is left as it is"
    );
    assert_eq!(gate.undone.load(Ordering::SeqCst), 0);
    assert_eq!(
        result(accepted.id).as_ref().unwrap().state(),
        SagaState::Completed
    );
}

// --------------------------------------------------------------------------- filters

async fn filter_contract(log: Arc<dyn SagaLog>) {
    let base = flext::saga::now_ms() - 100_000;
    let lease = Lease {
        owner: "w/1".into(),
        duration_ms: 60_000,
    };
    let mut ids = Vec::new();
    for (n, (name, state)) in [
        ("Paused", SagaState::Running),
        ("Renamed", SagaState::Stuck),
        ("Paused", SagaState::Stuck),
        ("Paused", SagaState::Completed),
    ]
    .into_iter()
    .enumerate()
    {
        let id = Uuid::new_v4();
        log.create(&SagaRecord {
            id,
            name: name.into(),
            input: serde_json::json!({ "n": n }),
            correlation_id: Uuid::new_v4(),
            state: SagaState::Running,
            transitions: Vec::new(),
            owner: "w/1".into(),
            lease_until_ms: base + 200_000,
            definition: String::new(),
            created_ms: base + n as u64 * 10_000,
            epoch: 1,
        })
        .await
        .unwrap();
        if state != SagaState::Running {
            let t = Transition::Stuck {
                step: "x".into(),
                error: flext::saga::ErrorRecord::from(&Error::conflict("test.x", "x")),
                attempts: 1,
            };
            log.append(id, &t, state, &lease, Fence { epoch: 1, seq: 0 })
                .await
                .unwrap();
        }
        ids.push(id);
    }
    let ids_of = |filter: SagaFilter| {
        let log = log.clone();
        async move {
            log.list(&filter)
                .await
                .unwrap()
                .into_iter()
                .map(|s| s.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(ids_of(SagaFilter::default()).await, ids, "oldest first");
    assert_eq!(
        ids_of(SagaFilter::default().state(SagaState::Stuck)).await,
        [ids[1], ids[2]]
    );
    // A stuck saga lists where it stuck and why; the others list nothing there.
    let listed = log.list(&SagaFilter::default()).await.unwrap();
    let at = listed[1].stuck_at.as_ref().expect("stuck at");
    assert_eq!(
        (at.step.as_str(), at.code.as_str(), at.message.as_str()),
        ("x", "test.x", "x")
    );
    assert!(listed[0].stuck_at.is_none() && listed[3].stuck_at.is_none());
    assert_eq!(
        ids_of(SagaFilter::default().state(SagaState::Stuck).name("Paused")).await,
        [ids[2]]
    );
    let older = SagaFilter {
        created_before_ms: Some(base + 15_000),
        ..SagaFilter::default()
    };
    assert_eq!(ids_of(older).await, [ids[0], ids[1]]);
    assert_eq!(ids_of(SagaFilter::default().limit(3)).await, ids[..3]);
    // A shortened id, as an operator types it.
    let short = ids[2].to_string()[..8].to_owned();
    assert_eq!(
        ids_of(SagaFilter::default().id_prefix(short)).await,
        [ids[2]]
    );
    assert!(
        ids_of(SagaFilter::default().id_prefix("zz"))
            .await
            .is_empty()
    );
    assert!(
        ids_of(SagaFilter::default().older_than(Duration::from_secs(3600)))
            .await
            .is_empty()
    );
    let summary = &log
        .list(&SagaFilter::default().state(SagaState::Completed))
        .await
        .unwrap()[0];
    assert_eq!(
        (
            summary.name.as_str(),
            summary.transitions,
            summary.created_ms
        ),
        ("Paused", 1, base + 30_000)
    );
}

// ------------------------------------------------------------------ operator actions

/// A parcel desk: what each step did, in order, and the switches that make a step or a
/// compensation fail.
#[derive(Default)]
struct Desk {
    effects: Mutex<Vec<String>>,
    carrier_down: AtomicBool,
    scale_broken: AtomicBool,
    release_down: AtomicBool,
}

impl Desk {
    fn did(&self, what: &str) {
        self.effects.lock().unwrap().push(what.to_owned());
    }
    fn effects(&self) -> Vec<String> {
        self.effects.lock().unwrap().clone()
    }
}

#[derive(Serialize, Deserialize)]
struct Parcel {
    n: u32,
}

#[saga]
impl Parcel {
    #[saga_step(compensate = release, compensate_retries = 0)]
    async fn reserve(&self, desk: State<Desk>) -> Result<u32> {
        desk.did("reserve");
        Ok(self.n)
    }

    async fn release(&self, reserved: &u32, desk: State<Desk>) -> Result<()> {
        if desk.release_down.load(Ordering::SeqCst) {
            return Err(Error::infrastructure(
                "test.stock_down",
                format!("cannot release {reserved}"),
            ));
        }
        desk.did("release");
        Ok(())
    }

    #[saga_step]
    async fn weigh(&self, reserved: &u32, desk: State<Desk>) -> Result<u32> {
        if desk.scale_broken.load(Ordering::SeqCst) {
            return Err(Error::conflict("test.scale", "the scale is broken"));
        }
        Ok(*reserved * 10)
    }

    #[saga_step(pivot)]
    async fn pay(&self, grams: &u32, desk: State<Desk>) -> Result<u64> {
        desk.did("pay");
        Ok(u64::from(*grams))
    }

    #[saga_step(retries = 0)]
    async fn label(&self, paid: &u64, desk: State<Desk>) -> Result<String> {
        if desk.carrier_down.load(Ordering::SeqCst) {
            return Err(Error::infrastructure(
                "test.carrier_down",
                "no labels today",
            ));
        }
        desk.did("label");
        Ok(format!("label-{paid}"))
    }
}

fn desk_runner(log: &Arc<dyn SagaLog>, desk: &Arc<Desk>) -> SagaRunner {
    SagaRunner::builder_shared(log.clone())
        .owner("desk")
        .shared_state(desk.clone())
        .compensation_attempts(1)
        .build()
}

fn command(action: OperatorAction) -> Intervention {
    Intervention::new(
        action,
        "alice@example.com",
        format!("ticket OPS-1: {action}"),
    )
    .unwrap()
}

/// The operator transitions in a saga's history: (action, principal).
async fn operator_entries(log: &Arc<dyn SagaLog>, id: Uuid) -> Vec<(OperatorAction, String)> {
    log.history(id)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.transition {
            Transition::Operator {
                action, principal, ..
            } => Some((action, principal)),
            _ => None,
        })
        .collect()
}

/// A saga stuck after its pivot, resumed once while the cause remains (stuck again),
/// then once it is gone (completed): the stuck step runs again, nothing else does.
async fn resume_contract(log: Arc<dyn SagaLog>) {
    let desk = Arc::new(Desk::default());
    desk.carrier_down.store(true, Ordering::SeqCst);
    let runner = desk_runner(&log, &desk);
    let stuck = runner.run(Parcel { n: 2 }, &Context::new()).await.unwrap();
    assert_eq!(stuck.state(), SagaState::Stuck);
    let id = stuck.saga_id();

    let again = runner
        .intervene(id, &command(OperatorAction::Resume))
        .await
        .unwrap();
    assert_eq!(again.state(), SagaState::Stuck, "the carrier is still down");
    desk.carrier_down.store(false, Ordering::SeqCst);
    match runner
        .intervene(id, &command(OperatorAction::Resume))
        .await
        .unwrap()
    {
        SagaOutcome::Completed { output, .. } => assert_eq!(output, serde_json::json!("label-20")),
        other => panic!("{other:?}"),
    }
    assert_eq!(desk.effects(), ["reserve", "pay", "label"]);
    assert_eq!(
        operator_entries(&log, id).await,
        [
            (OperatorAction::Resume, "alice@example.com".to_owned()),
            (OperatorAction::Resume, "alice@example.com".to_owned())
        ]
    );
    let kinds: Vec<String> = log
        .history(id)
        .await
        .unwrap()
        .iter()
        .map(|e| match &e.transition {
            Transition::StepCompleted { index, .. } => format!("done {index}"),
            Transition::Stuck { step, .. } => format!("stuck {step}"),
            Transition::Operator { action, .. } => action.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "done 0",
            "done 1",
            "done 2",
            "stuck label",
            "resume",
            "stuck label",
            "resume",
            "done 3"
        ]
    );
    assert_eq!(log.load(id).await.unwrap().state, SagaState::Completed);

    // A compensation that stuck resumes as a compensation.
    let desk = Arc::new(Desk::default());
    desk.scale_broken.store(true, Ordering::SeqCst);
    desk.release_down.store(true, Ordering::SeqCst);
    let runner = desk_runner(&log, &desk);
    let stuck = runner.run(Parcel { n: 3 }, &Context::new()).await.unwrap();
    match &stuck {
        SagaOutcome::Stuck { step, .. } => assert_eq!(step, "compensate reserve"),
        other => panic!("{other:?}"),
    }
    desk.release_down.store(false, Ordering::SeqCst);
    match runner
        .intervene(stuck.saga_id(), &command(OperatorAction::Resume))
        .await
        .unwrap()
    {
        SagaOutcome::Compensated {
            failed_step,
            compensated,
            ..
        } => {
            assert_eq!(failed_step, "weigh");
            assert_eq!(compensated, ["reserve"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(desk.effects(), ["reserve", "release"]);
}

/// An abort compensates the completed steps that have compensations, last first; steps
/// after the pivot have none.
async fn abort_contract(log: Arc<dyn SagaLog>) {
    let desk = Arc::new(Desk::default());
    desk.carrier_down.store(true, Ordering::SeqCst);
    let runner = desk_runner(&log, &desk);
    let stuck = runner.run(Parcel { n: 4 }, &Context::new()).await.unwrap();
    let id = stuck.saga_id();
    // Past the pivot: refused, naming what would stay done, and nothing written.
    let before = log.load(id).await.unwrap();
    let refused = runner
        .intervene(id, &command(OperatorAction::Abort))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), codes::SAGA_PAST_PIVOT);
    assert!(refused.message().contains("`pay`"), "{refused}");
    assert!(refused.message().contains("--past-pivot"), "{refused}");
    assert_eq!(log.load(id).await.unwrap(), before);
    // Said so: the steps before the pivot are compensated, the payment stays.
    match runner
        .intervene(id, &command(OperatorAction::Abort).past_pivot())
        .await
        .unwrap()
    {
        SagaOutcome::Compensated {
            failed_step,
            error,
            compensated,
            ..
        } => {
            assert_eq!(failed_step, "label");
            assert_eq!(error.code(), codes::SAGA_ABORTED);
            assert!(error.message().contains("alice@example.com"), "{error}");
            assert_eq!(compensated, ["reserve"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(desk.effects(), ["reserve", "pay", "release"]);
    assert_eq!(log.load(id).await.unwrap().state, SagaState::Compensated);
    assert_eq!(
        operator_entries(&log, id).await,
        [(OperatorAction::Abort, "alice@example.com".to_owned())]
    );
}

/// A resolved saga is finished: nothing runs, a second start returns the resolution,
/// and it lists as resolved.
async fn resolve_contract(log: Arc<dyn SagaLog>) {
    let desk = Arc::new(Desk::default());
    desk.carrier_down.store(true, Ordering::SeqCst);
    let runner = desk_runner(&log, &desk);
    let id = Uuid::new_v4();
    let stuck = runner
        .run_with_id(id, Parcel { n: 5 }, &Context::new())
        .await
        .unwrap();
    assert_eq!(stuck.state(), SagaState::Stuck);
    let resolved = runner
        .intervene(id, &command(OperatorAction::Resolve))
        .await
        .unwrap();
    assert!(
        matches!(resolved, SagaOutcome::Resolved { .. }),
        "{resolved:?}"
    );
    match runner
        .run_with_id(id, Parcel { n: 5 }, &Context::new())
        .await
        .unwrap()
    {
        SagaOutcome::Resolved {
            principal, reason, ..
        } => {
            assert_eq!(principal, "alice@example.com");
            assert_eq!(reason, "ticket OPS-1: resolve");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(desk.effects(), ["reserve", "pay"]);
    let listed = log
        .list(&SagaFilter::default().state(SagaState::Resolved))
        .await
        .unwrap();
    assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), [id]);
    assert!(runner.recover().await.unwrap().is_empty());
}

/// The `flext-saga` tool's path: the action is recorded with no runner to drive it; the
/// next recovery pass of a runner that has the type carries it out.
async fn recorded_action_contract(backend: &impl Backend) {
    let log = backend.connect().await;
    let desk = Arc::new(Desk::default());
    desk.carrier_down.store(true, Ordering::SeqCst);
    let stuck = desk_runner(&log, &desk)
        .run(Parcel { n: 6 }, &Context::new())
        .await
        .unwrap();
    let id = stuck.saga_id();
    let tool = backend.connect().await;
    let record = tool
        .intervene(
            id,
            &command(OperatorAction::Resume),
            None,
            flext::saga::now_ms(),
        )
        .await
        .unwrap();
    assert_eq!(record.state, SagaState::Running);
    assert_eq!(record.owner, "operator/alice@example.com");
    desk.carrier_down.store(false, Ordering::SeqCst);
    let report = desk_runner(&log, &desk).recover().await.unwrap();
    assert_eq!((report.len(), report.completed()), (1, 1), "{report:?}");
    assert_eq!(desk.effects(), ["reserve", "pay", "label"]);
}

/// What does not apply is refused with a code that says why, and writes nothing.
async fn refusal_contract(log: Arc<dyn SagaLog>) {
    let desk = Arc::new(Desk::default());
    let runner = desk_runner(&log, &desk);
    let done = runner.run(Parcel { n: 7 }, &Context::new()).await.unwrap();
    assert_eq!(done.state(), SagaState::Completed);
    let length = |id| {
        let log = log.clone();
        async move { log.history(id).await.unwrap().len() }
    };
    let before = length(done.saga_id()).await;
    for action in [
        OperatorAction::Resume,
        OperatorAction::Abort,
        OperatorAction::Resolve,
    ] {
        let err = runner
            .intervene(done.saga_id(), &command(action))
            .await
            .unwrap_err();
        assert_eq!(err.code(), codes::SAGA_FINISHED, "{err}");
    }
    assert_eq!(length(done.saga_id()).await, before);

    // In flight under a live lease: held in a compensation by the gate.
    let gate = Arc::new(Gate::default());
    let holder = SagaRunner::builder_shared(log.clone())
        .lease(Duration::from_secs(60))
        .shared_state(gate.clone())
        .build();
    let task = tokio::spawn(async move { holder.run(Paused { n: 1 }, &Context::new()).await });
    gate.entered.notified().await;
    let id = log
        .list(&SagaFilter::default().state(SagaState::Compensating))
        .await
        .unwrap()[0]
        .id;
    let before = length(id).await;
    for action in [
        OperatorAction::Resume,
        OperatorAction::Abort,
        OperatorAction::Resolve,
    ] {
        let err = log
            .intervene(id, &command(action), None, flext::saga::now_ms())
            .await
            .unwrap_err();
        assert_eq!(err.code(), codes::SAGA_LEASE_LIVE, "{err}");
        assert!(
            err.message().contains("wait for its lease to expire"),
            "{err}"
        );
    }
    // Once the lease has expired, a running saga is not stuck: recovery finishes it.
    let later = flext::saga::now_ms() + 120_000;
    let err = log
        .intervene(id, &command(OperatorAction::Resume), None, later)
        .await
        .unwrap_err();
    assert_eq!(err.code(), codes::SAGA_NOT_STUCK, "{err}");
    assert_eq!(length(id).await, before);
    gate.release.notify_one();
    assert_eq!(task.await.unwrap().unwrap().state(), SagaState::Compensated);

    let unknown = runner
        .intervene(Uuid::new_v4(), &command(OperatorAction::Resolve))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), codes::SAGA_NOT_FOUND);
    let anonymous = Intervention {
        action: OperatorAction::Resolve,
        principal: " ".into(),
        reason: "because".into(),
        past_pivot: false,
    };
    let err = log
        .intervene(done.saga_id(), &anonymous, None, flext::saga::now_ms())
        .await
        .unwrap_err();
    assert_eq!(err.code(), codes::SAGA_OPERATOR_INPUT);
    let long = Intervention::new(OperatorAction::Resolve, "bob", "x".repeat(5000)).unwrap_err();
    assert!(long.message().contains("5000 bytes"), "{long}");
}
