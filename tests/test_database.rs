//! One SQLite database for every store: what commits together, projections that never
//! skip or repeat an event, the outbox delivering at least once across a crash with an
//! inbox deduplicating, event-started sagas started once, and commands for one aggregate
//! run one at a time.

#![cfg(feature = "sqlite")]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use flext::aggregate::{Events, Repository};
use flext::database::{BusRelay, Relay, event_id_of};
use flext::event_store::{EventEnvelope, EventStore, NewEvent, StreamId};
use flext::prelude::*;
use flext::saga::{
    Fence, Lease, SagaFilter, SagaLog, SagaRecord, SagaRunner, SagaState, Transition,
    saga_id_for_event,
};
use flext::sqlite::rusqlite;
use flext::sqlite::{
    SqliteDatabase, SqliteOutboxRelay, SqliteProjection, SqliteProjectionRunner, SqliteUnitOfWork,
};
use flext::{BoxFuture, Uuid};
use serde::{Deserialize, Serialize};

struct Dir(std::path::PathBuf);

impl Dir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("flext-db-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }
    fn db(&self) -> SqliteDatabase {
        SqliteDatabase::open(self.0.join("flext.db")).unwrap()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

fn sql(e: rusqlite::Error) -> Error {
    Error::infrastructure("test.sql", e.to_string())
}

fn event(name: &str, n: u64, ctx: &Context) -> NewEvent {
    NewEvent::new(name, 1, serde_json::json!({ "n": n }), ctx)
}

/// A projection recording each applied event as (stream, sequence), refusing to record
/// one twice, and checking each stream's order; it fails on `poison` events.
struct Applied;

impl SqliteProjection for Applied {
    fn name(&self) -> &str {
        "applied"
    }
    fn tables(&self) -> &[&str] {
        &["applied"]
    }
    fn setup(&self, uow: &SqliteUnitOfWork<'_>) -> Result<()> {
        uow.connection()
            .execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {} (stream TEXT NOT NULL, sequence INTEGER NOT NULL, position INTEGER NOT NULL, PRIMARY KEY (stream, sequence))",
                uow.table("applied")
            ))
            .map_err(sql)
    }
    fn apply(&self, uow: &SqliteUnitOfWork<'_>, e: &EventEnvelope) -> Result<()> {
        if e.name == "poison" {
            return Err(Error::validation(
                "test.poison",
                "this event cannot be applied",
            ));
        }
        let table = uow.table("applied");
        let last: i64 = uow
            .connection()
            .query_row(
                &format!("SELECT COALESCE(MAX(sequence), 0) FROM {table} WHERE stream = ?1"),
                [&e.aggregate_id],
                |r| r.get(0),
            )
            .map_err(sql)?;
        if last + 1 != e.sequence as i64 {
            return Err(Error::internal(
                "test.order",
                format!("{}: {} after {last}", e.aggregate_id, e.sequence),
            ));
        }
        uow.connection()
            .execute(
                &format!("INSERT INTO {table} (stream, sequence, position) VALUES (?1, ?2, ?3)"),
                rusqlite::params![e.aggregate_id, e.sequence as i64, e.position as i64],
            )
            .map(|_| ())
            .map_err(sql)
    }
}

fn applied_rows(db: &SqliteDatabase, table: &str) -> Vec<(String, i64)> {
    db.transaction(|uow| {
        let mut stmt = uow
            .connection()
            .prepare(&format!(
                "SELECT stream, sequence FROM {table} ORDER BY position"
            ))
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql)?;
        Ok(rows)
    })
    .unwrap()
}

// ---------------------------------------------------------------- one transaction

/// Events with their outbox rows, a saga's creation and transition, and a projection's
/// state with its checkpoint: all visible together after a commit, none after a failure.
#[tokio::test]
async fn events_outbox_saga_log_and_checkpoint_commit_in_one_transaction() {
    let dir = Dir::new();
    let db = dir.db();
    let ctx = Context::new();
    let stream = StreamId::new("Order", "o-1");
    let saga = SagaRecord {
        id: Uuid::new_v4(),
        name: "Fulfil".into(),
        input: serde_json::json!({ "order": "o-1" }),
        correlation_id: ctx.correlation_id(),
        state: SagaState::Running,
        transitions: Vec::new(),
        owner: "w/1".into(),
        lease_until_ms: flext::saga::now_ms() + 60_000,
        definition: String::new(),
        created_ms: 0,
        epoch: 1,
    };
    let lease = Lease {
        owner: "w/1".into(),
        duration_ms: 60_000,
    };
    let step = Transition::StepCompleted {
        index: 0,
        output: serde_json::json!("reserved"),
        attempts: 1,
    };
    let work = |fail: bool| {
        let (stream, saga, lease, step, ctx) = (&stream, &saga, &lease, &step, &ctx);
        move |uow: &SqliteUnitOfWork<'_>| -> Result<()> {
            uow.append_events(stream, 0, &[event("placed", 1, ctx), event("paid", 2, ctx)])?;
            uow.create_saga(saga)?;
            uow.append_saga(saga.id, step, SagaState::Running, lease, Fence::of(saga))?;
            Applied.setup(uow)?;
            uow.connection()
                .execute(
                    "INSERT INTO applied (stream, sequence, position) VALUES ('o-1', 1, 1)",
                    [],
                )
                .map_err(sql)?;
            uow.save_checkpoint("applied", 2)?;
            if fail {
                return Err(Error::internal("test.crash", "the last write failed"));
            }
            Ok(())
        }
    };
    assert!(db.transaction(work(true)).is_err());
    // Another connection sees none of it.
    let other = dir.db();
    let store = other.event_store().unwrap();
    let log = other.saga_log().unwrap();
    assert_eq!(store.version(&stream).await.unwrap(), 0);
    assert_eq!(other.outbox_pending().unwrap(), 0);
    assert_eq!(
        log.load(saga.id).await.unwrap_err().code(),
        codes::SAGA_NOT_FOUND
    );
    assert_eq!(
        other.transaction(|uow| uow.checkpoint("applied")).unwrap(),
        0
    );
    let table_exists = other
        .transaction(|uow| {
            uow.connection()
                .query_row(
                    "SELECT COUNT(*) FROM sqlite_master WHERE name = 'applied'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(sql)
        })
        .unwrap();
    assert_eq!(table_exists, 0);

    db.transaction(work(false)).unwrap();
    assert_eq!(store.version(&stream).await.unwrap(), 2);
    assert_eq!(other.outbox_pending().unwrap(), 2);
    assert_eq!(
        log.load(saga.id).await.unwrap().transitions,
        std::slice::from_ref(&step)
    );
    assert_eq!(
        other.transaction(|uow| uow.checkpoint("applied")).unwrap(),
        2
    );
    assert_eq!(applied_rows(&other, "applied"), [("o-1".to_owned(), 1)]);
}

use flext::codes;

// --------------------------------------------------------------------- projections

/// Eight writers append to their own streams while a projection catches up in a loop:
/// at the end it has applied every event once, in each stream's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_running_beside_eight_writers_applies_every_event_once_in_order() {
    let dir = Dir::new();
    let runner = SqliteProjectionRunner::new(dir.db(), Applied).batch(7);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Set when the writers are done, or when this test panics before: the runtime's
    // drop waits for the projection's thread, which would otherwise loop for ever and
    // hide the panic behind a hang.
    struct Stop(Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let stop = Stop(done.clone());
    let projection = {
        let (runner, done) = (runner.clone(), done.clone());
        tokio::task::spawn_blocking(move || {
            let mut passes = 0;
            loop {
                let finished = done.load(Ordering::SeqCst);
                runner.catch_up().unwrap();
                passes += 1;
                if finished {
                    return passes;
                }
            }
        })
    };
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..8u64 {
        let store = dir.db().event_store().unwrap();
        writers.spawn(async move {
            let ctx = Context::new();
            let stream = StreamId::new("Writer", format!("w-{w}"));
            for n in 0..30u64 {
                store
                    .append(&stream, n, &[event("e", n, &ctx)])
                    .await
                    .unwrap();
                if n % 5 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        });
    }
    while let Some(w) = writers.join_next().await {
        w.unwrap();
    }
    drop(stop);
    let passes = projection.await.unwrap();
    assert!(passes > 1);
    let rows = applied_rows(&dir.db(), "applied");
    assert_eq!(rows.len(), 240, "every event once");
    let mut per_stream: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (stream, seq) in rows {
        per_stream.entry(stream).or_default().push(seq);
    }
    assert_eq!(per_stream.len(), 8);
    assert!(
        per_stream
            .values()
            .all(|s| *s == (1..=30).collect::<Vec<_>>())
    );
    let status = runner.status().unwrap();
    assert_eq!((status.events_behind, status.checkpoint), (0, 240));
}

/// A catch-up that finds nothing new only reads: it answers while another connection
/// holds the write lock, and one that finds an event waits for that lock as a write does.
#[tokio::test]
async fn a_catch_up_with_nothing_new_takes_no_write_lock() {
    let dir = Dir::new();
    let db = SqliteDatabase::open_with_options(
        dir.0.join("flext.db"),
        flext::sqlite::SqliteOptions::default().busy_timeout(std::time::Duration::from_millis(50)),
    )
    .unwrap();
    let ctx = Context::new();
    let stream = StreamId::new("S", "a");
    db.event_store()
        .unwrap()
        .append(&stream, 0, &[event("e", 1, &ctx)])
        .await
        .unwrap();
    let runner = SqliteProjectionRunner::new(db.clone(), Applied);
    assert_eq!(runner.catch_up().unwrap().applied, 1);

    let other = rusqlite::Connection::open(dir.0.join("flext.db")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let idle = runner.catch_up().unwrap();
    assert_eq!((idle.applied, idle.checkpoint), (0, 1));
    other
        .execute(
            "INSERT INTO flext_checkpoints (name, position, updated_ms) VALUES ('held', 0, 0)",
            [],
        )
        .unwrap();
    other.execute_batch("COMMIT").unwrap();

    db.event_store()
        .unwrap()
        .append(&stream, 1, &[event("e", 2, &ctx)])
        .await
        .unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let busy = runner.catch_up().unwrap_err();
    assert_eq!(busy.code(), codes::STORE_BUSY, "{busy}");
    other.execute_batch("ROLLBACK").unwrap();
    assert_eq!(runner.catch_up().unwrap().applied, 1);
    assert_eq!(
        applied_rows(&db, "applied"),
        [("a".to_owned(), 1), ("a".to_owned(), 2)]
    );
}

#[tokio::test]
async fn a_projection_stops_at_an_event_it_cannot_apply_and_resumes_after_a_restart() {
    let dir = Dir::new();
    let store = dir.db().event_store().unwrap();
    let ctx = Context::new();
    let stream = StreamId::new("S", "a");
    store
        .append(
            &stream,
            0,
            &[
                event("e", 1, &ctx),
                event("e", 2, &ctx),
                event("poison", 3, &ctx),
                event("e", 4, &ctx),
            ],
        )
        .await
        .unwrap();
    let runner = SqliteProjectionRunner::new(dir.db(), Applied);
    let err = runner.catch_up().unwrap_err();
    assert_eq!(err.code(), codes::PROJECTION_STOPPED);
    assert!(err.message().contains("stopped at event 3"), "{err}");
    let status = runner.status().unwrap();
    assert_eq!((status.checkpoint, status.events_behind), (2, 2));
    assert_eq!(status.stopped_at.as_ref().map(|s| s.0), Some(3));
    assert_eq!(
        applied_rows(&dir.db(), "applied").len(),
        2,
        "nothing skipped past it"
    );

    // The bus's registry report shows it, stopped and behind.
    let bus = Bus::builder()
        .state(Repository::<Counter>::new(Arc::new(
            dir.db().event_store().unwrap(),
        )))
        .state(dir.db())
        .shared_state(Arc::new(Effects::default()))
        .state(SagaRunner::builder(dir.db().saga_log().unwrap()).build())
        .report(runner.clone())
        .report(SqliteOutboxRelay::new(dir.db(), Nowhere))
        .build()
        .unwrap();
    let report = serde_json::to_value(bus.report()).unwrap();
    let components = report["components"].as_array().unwrap();
    assert_eq!(components[0]["kind"], "projection");
    assert_eq!(components[0]["healthy"], false);
    assert_eq!(components[0]["status"]["events_behind"], 2);
    assert_eq!(components[0]["status"]["stopped_at"][0], 3);
    assert_eq!(components[1]["kind"], "outbox");
    assert_eq!(
        components[1]["status"]["undelivered"], 4,
        "nothing delivered yet"
    );

    // A restart (a new runner on a new connection) resumes at the same event.
    let restarted = SqliteProjectionRunner::new(dir.db(), Applied);
    assert!(restarted.catch_up().is_err());
    assert_eq!(applied_rows(&dir.db(), "applied").len(), 2);
}

#[tokio::test]
async fn a_rebuild_fills_fresh_tables_and_swaps_them_in_with_their_checkpoint() {
    let dir = Dir::new();
    let db = dir.db();
    let store = db.event_store().unwrap();
    let ctx = Context::new();
    for s in ["a", "b"] {
        let stream = StreamId::new("S", s);
        store
            .append(&stream, 0, &[event("e", 1, &ctx), event("e", 2, &ctx)])
            .await
            .unwrap();
    }
    let runner = SqliteProjectionRunner::new(db.clone(), Applied);
    runner.catch_up().unwrap();
    // The live table is damaged by hand: a rebuild restores it from the events.
    db.transaction(|uow| {
        uow.connection()
            .execute("DELETE FROM applied WHERE stream = 'b'", [])
            .map_err(sql)
    })
    .unwrap();
    assert_eq!(applied_rows(&db, "applied").len(), 2);
    assert_eq!(runner.rebuild().unwrap(), 4);
    assert_eq!(applied_rows(&db, "applied").len(), 4);
    // It goes on from the swapped-in checkpoint.
    store
        .append(&StreamId::new("S", "a"), 2, &[event("e", 3, &ctx)])
        .await
        .unwrap();
    assert_eq!(runner.catch_up().unwrap().applied, 1);
    assert_eq!(runner.status().unwrap().checkpoint, 5);
}

// ------------------------------------------------------------------------ outbox

#[event(name = "order.placed")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderPlaced {
    order: String,
}

/// What the subscribers did, in order.
#[derive(Default)]
struct Effects {
    shipped: Mutex<Vec<String>>,
    deliveries: AtomicUsize,
}

/// A consumer that deduplicates on the event id with the inbox, in the same
/// transaction as its effect (a row per shipment).
#[event_handler]
async fn ship(
    e: OrderPlaced,
    ctx: &Context,
    db: State<SqliteDatabase>,
    effects: State<Effects>,
) -> Result<()> {
    effects.deliveries.fetch_add(1, Ordering::SeqCst);
    let id = event_id_of(ctx).ok_or_else(|| Error::internal("test.no_id", "no event id"))?;
    let first = db.transaction(|uow| {
        let first = uow.first_delivery("shipping", id)?;
        if first {
            uow.connection()
                .execute_batch("CREATE TABLE IF NOT EXISTS shipments (n INTEGER)")
                .map_err(sql)?;
            uow.connection()
                .execute("INSERT INTO shipments (n) VALUES (1)", [])
                .map_err(sql)?;
        }
        Ok(first)
    })?;
    if first {
        effects.shipped.lock().unwrap().push(e.order);
    }
    Ok(())
}

/// An event-started saga: its id derives from the event id, so every delivery of the
/// event starts the same saga, once.
#[derive(Serialize, Deserialize)]
struct Invoice {
    order: String,
}

#[saga]
impl Invoice {
    #[saga_step]
    async fn issue(&self, effects: State<Effects>) -> Result<String> {
        effects
            .shipped
            .lock()
            .unwrap()
            .push(format!("invoice {}", self.order));
        Ok(format!("inv-{}", self.order))
    }
}

#[event_handler]
async fn start_invoice(e: OrderPlaced, ctx: &Context, runner: State<SagaRunner>) -> Result<()> {
    let id = event_id_of(ctx).ok_or_else(|| Error::internal("test.no_id", "no event id"))?;
    runner
        .run_with_id(
            saga_id_for_event("Invoice", id),
            Invoice { order: e.order },
            ctx,
        )
        .await?;
    Ok(())
}

/// Accepts every event and does nothing with it.
struct Nowhere;

impl Relay for Nowhere {
    fn deliver<'a>(&'a self, _: &'a EventEnvelope) -> BoxFuture<'a, Result<()>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Delivers through the bus, but "crashes" once: after delivering the event at
/// `crash_at`, before the relay can mark it delivered.
struct CrashOnce {
    inner: BusRelay,
    crash_at: u64,
    crashed: std::sync::atomic::AtomicBool,
}

impl Relay for CrashOnce {
    fn deliver<'a>(&'a self, event: &'a EventEnvelope) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.inner.deliver(event).await?;
            if event.position == self.crash_at && !self.crashed.swap(true, Ordering::SeqCst) {
                return Err(Error::infrastructure(
                    "test.crash",
                    "died before marking it delivered",
                ));
            }
            Ok(())
        })
    }
}

#[tokio::test]
async fn the_outbox_delivers_every_event_after_a_crash_and_consumers_and_sagas_act_once() {
    let dir = Dir::new();
    let db = dir.db();
    let effects = Arc::new(Effects::default());
    let runner = SagaRunner::builder(db.saga_log().unwrap())
        .shared_state(effects.clone())
        .build();
    let bus = Bus::builder()
        .state(Repository::<Counter>::new(Arc::new(
            db.event_store().unwrap(),
        )))
        .state(db.clone())
        .shared_state(effects.clone())
        .state(runner)
        .build()
        .unwrap();
    let store = db.event_store().unwrap();
    let ctx = Context::new();
    for order in ["o-1", "o-2", "o-3"] {
        let placed = NewEvent::new(
            "order.placed",
            1,
            serde_json::json!({ "order": order }),
            &ctx,
        );
        store
            .append(&StreamId::new("Order", order), 0, &[placed])
            .await
            .unwrap();
    }
    assert_eq!(db.outbox_pending().unwrap(), 3);
    let relay = SqliteOutboxRelay::new(
        db.clone(),
        CrashOnce {
            inner: BusRelay::new(bus.clone()),
            crash_at: 2,
            crashed: Default::default(),
        },
    );
    // The first pass delivers o-1, then o-2, and "crashes" before marking o-2.
    assert!(relay.deliver_pending().await.is_err());
    assert_eq!(db.outbox_pending().unwrap(), 2);
    // After the restart, everything left is delivered: o-2 a second time.
    let restarted = SqliteOutboxRelay::new(dir.db(), BusRelay::new(bus.clone()));
    assert_eq!(restarted.deliver_pending().await.unwrap(), 2);
    assert_eq!(db.outbox_pending().unwrap(), 0);
    assert_eq!(effects.deliveries.load(Ordering::SeqCst), 4, "o-2 twice");
    let mut shipped = effects.shipped.lock().unwrap().clone();
    shipped.sort();
    assert_eq!(
        shipped,
        [
            "invoice o-1",
            "invoice o-2",
            "invoice o-3",
            "o-1",
            "o-2",
            "o-3"
        ],
        "each shipment and each invoice once"
    );
    let shipments: i64 = db
        .transaction(|uow| {
            uow.connection()
                .query_row("SELECT COUNT(*) FROM shipments", [], |r| r.get(0))
                .map_err(sql)
        })
        .unwrap();
    assert_eq!(shipments, 3);
    let sagas = db
        .saga_log()
        .unwrap()
        .list(&SagaFilter::default().name("Invoice"))
        .await
        .unwrap();
    assert_eq!(
        sagas.len(),
        3,
        "one saga per event, whatever the deliveries"
    );
    assert!(sagas.iter().all(|s| s.state == SagaState::Completed));
}

// ------------------------------------------------------------ per-aggregate queue

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Bump {
    #[aggregate_id]
    counter: String,
}

#[event(name = "counter.bumped")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Bumped;

#[aggregate]
#[derive(Debug, Default)]
struct Counter {
    #[aggregate_id]
    id: String,
    n: u64,
}

#[aggregate]
impl Counter {
    #[command_handler]
    fn bump(&self, _: &Bump) -> Result<Events<Self>> {
        Ok(Events::one(Bumped))
    }

    #[apply]
    fn bumped(&mut self, _: &Bumped) {
        self.n += 1;
    }
}

/// Commands for one hot aggregate queue and run one at a time: no conflict, no retry,
/// every command applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_for_one_aggregate_run_one_at_a_time_without_conflicts() {
    let dir = Dir::new();
    let store: Arc<dyn EventStore> = Arc::new(dir.db().event_store().unwrap());
    let repo = Repository::<Counter>::new(store.clone()).one_command_at_a_time();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let repo = repo.clone();
        tasks.spawn(async move {
            let mut attempts = 0;
            for _ in 0..10 {
                attempts += repo
                    .execute(
                        &Bump {
                            counter: "hot".into(),
                        },
                        &Context::new(),
                    )
                    .await
                    .unwrap()
                    .attempts;
            }
            attempts
        });
    }
    let mut attempts = 0;
    while let Some(t) = tasks.join_next().await {
        attempts += t.unwrap();
    }
    assert_eq!(
        attempts, 80,
        "every command decided once: no conflict to retry"
    );
    let loaded = Repository::<Counter>::new(store).load("hot").await.unwrap();
    assert_eq!((loaded.version, loaded.state.n), (80, 80));
}
