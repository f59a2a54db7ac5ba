//! The conformance suites of the durable parts that share one database: projections,
//! the outbox and the unit of work, run against every backend that has them (SQLite
//! and PostgreSQL; the in-memory stores have no transaction to share). A new backend
//! joins with one `conformance!` line and a [`Backend`].
//!
//! Contracts:
//! - projections: every event applied once, in global order, across restarts; a failing
//!   event stops the projection before it and nothing of it is written; the status
//!   reports the lag; eight concurrent writers and two runners at once: no event skipped
//!   or applied twice;
//! - outbox: every appended event delivered in global order, marked once delivered; a
//!   refused event and those after it stay pending; two relays at once deliver each
//!   event once;
//! - unit of work: events, outbox rows, checkpoint, inbox entry and saga commit together
//!   or not at all; the inbox answers "first delivery" once per consumer and event; a
//!   conflicting append fails the whole unit.
//!
//! The projection is one `#[projection]` type writing portable SQL (`Seen`), which both
//! backends' runners run.

#![cfg(any(feature = "sqlite", feature = "postgres"))]

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use flext::BoxFuture;
use flext::Uuid;
use flext::codes;
use flext::database::{CatchUp, ProjectionStatus, ProjectionWrites, Relay, SqlValue};
use flext::event_store::{EventEnvelope, EventStore, NewEvent, StreamId};
use flext::prelude::*;
use flext::saga::{SagaLog, SagaRecord, SagaState};
use serde::{Deserialize, Serialize};

/// What a contract needs of a backend: its stores, a test projection (`seen`: the
/// positions it applied, in the order it applied them; it fails at events named
/// `poison` while `poisoned` is set), its outbox relay, and one unit of work.
#[allow(async_fn_in_trait)]
trait Backend: Sized + Send + Sync + 'static {
    async fn new() -> Self;
    fn events(&self) -> Arc<dyn EventStore>;
    fn sagas(&self) -> Arc<dyn SagaLog>;
    /// One catch-up by a runner made for this call (as after a restart).
    fn catch_up(
        &self,
        poisoned: Arc<AtomicBool>,
    ) -> impl Future<Output = flext::Result<CatchUp>> + Send;
    async fn status(&self) -> ProjectionStatus;
    /// The positions the projection applied, in the order it applied them.
    async fn seen(&self) -> Vec<u64>;
    fn deliver(&self, relay: Recorder) -> impl Future<Output = flext::Result<u64>> + Send;
    fn pending(&self) -> impl Future<Output = u64> + Send;
    /// One unit of work: appends `events` at `expected`, saves checkpoint `("uow", 7)`,
    /// takes the inbox entry `("mailer", inbox)`, creates `saga`; commits when `commit`.
    /// Returns what `first_delivery` answered.
    async fn unit(
        &self,
        stream: &StreamId,
        expected: u64,
        events: &[NewEvent],
        inbox: Uuid,
        saga: &SagaRecord,
        commit: bool,
    ) -> flext::Result<bool>;
    async fn checkpoint(&self, name: &str) -> u64;
}

/// A relay recording the events it delivered; refuses events named `refuse` while
/// `refusing` is set.
#[derive(Clone, Default)]
struct Recorder {
    delivered: Arc<Mutex<Vec<u64>>>,
    refusing: Arc<AtomicBool>,
}

impl Recorder {
    fn delivered(&self) -> Vec<u64> {
        self.delivered.lock().unwrap().clone()
    }
}

impl Relay for Recorder {
    fn deliver<'a>(&'a self, event: &'a EventEnvelope) -> BoxFuture<'a, flext::Result<()>> {
        Box::pin(async move {
            if event.name == "refuse" && self.refusing.load(Ordering::SeqCst) {
                return Err(flext::Error::infrastructure("test.broker", "broker down"));
            }
            tokio::task::yield_now().await;
            self.delivered.lock().unwrap().push(event.position);
            Ok(())
        })
    }
}

fn event(name: &str) -> NewEvent {
    NewEvent::new(
        name,
        1,
        serde_json::json!({ "n": 1 }),
        &flext::Context::new(),
    )
}

fn stream(id: &str) -> StreamId {
    StreamId::new("Account", id)
}

fn saga(id: Uuid) -> SagaRecord {
    SagaRecord {
        id,
        name: "Transfer".into(),
        input: serde_json::json!({}),
        correlation_id: Uuid::new_v4(),
        state: SagaState::Running,
        transitions: vec![],
        owner: "w1".into(),
        lease_until_ms: 0,
        definition: String::new(),
        created_ms: 0,
        epoch: 1,
    }
}

async fn positions(b: &impl Backend) -> Vec<u64> {
    b.events()
        .read_all(0, usize::MAX)
        .await
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect()
}

fn calm() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

// ---- the projection every backend runs ------------------------------------------------

/// The events the contracts append, each `{"n": 1}`.
macro_rules! events {
    ($($ty:ident = $name:literal),* $(,)?) => {$(
        #[event(name = $name)]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        struct $ty {
            n: i64,
        }
    )*};
}

events!(
    Opened = "opened",
    Deposited = "deposited",
    Withdrawn = "withdrawn",
    Closed = "closed",
    Noted = "noted",
    Poison = "poison",
    Refuse = "refuse",
);

/// One `#[projection]` type, run by the SQLite and the PostgreSQL runners alike: it
/// records each event's position with the order it was applied in, and fails at
/// `poison` while its flag is set.
struct Seen(Arc<AtomicBool>);

impl Seen {
    fn record(&self, writes: &mut ProjectionWrites, event: &EventEnvelope) -> flext::Result<()> {
        writes.execute(
            "INSERT INTO seen (applied, position) VALUES ((SELECT COALESCE(MAX(applied), 0) + 1 FROM seen), $1)",
            [SqlValue::from(event.position)],
        );
        Ok(())
    }
}

#[projection(name = "seen", tables = ["seen"])]
impl Seen {
    fn setup(&self, writes: &mut ProjectionWrites) -> flext::Result<()> {
        writes.execute(
            "CREATE TABLE IF NOT EXISTS seen (applied BIGINT NOT NULL, position BIGINT NOT NULL)",
            [],
        );
        Ok(())
    }
    #[apply]
    fn opened(&self, w: &mut ProjectionWrites, _: &Opened, e: &EventEnvelope) -> flext::Result<()> {
        self.record(w, e)
    }
    #[apply]
    fn deposited(
        &self,
        w: &mut ProjectionWrites,
        _: &Deposited,
        e: &EventEnvelope,
    ) -> flext::Result<()> {
        self.record(w, e)
    }
    #[apply]
    fn withdrawn(
        &self,
        w: &mut ProjectionWrites,
        _: &Withdrawn,
        e: &EventEnvelope,
    ) -> flext::Result<()> {
        self.record(w, e)
    }
    #[apply]
    fn closed(&self, w: &mut ProjectionWrites, _: &Closed, e: &EventEnvelope) -> flext::Result<()> {
        self.record(w, e)
    }
    #[apply]
    fn noted(&self, w: &mut ProjectionWrites, _: &Noted, e: &EventEnvelope) -> flext::Result<()> {
        self.record(w, e)
    }
    #[apply]
    fn refused(
        &self,
        w: &mut ProjectionWrites,
        _: &Refuse,
        e: &EventEnvelope,
    ) -> flext::Result<()> {
        self.record(w, e)
    }
    #[apply]
    fn poison(&self, w: &mut ProjectionWrites, p: &Poison, e: &EventEnvelope) -> flext::Result<()> {
        if self.0.load(Ordering::SeqCst) {
            return Err(flext::Error::validation(
                "test.poison",
                format!("poisoned ({})", p.n),
            ));
        }
        self.record(w, e)
    }
}

// ---- projections ----------------------------------------------------------------------

async fn projection_once_in_order_contract(b: impl Backend) {
    let events = b.events();
    events
        .append(&stream("a"), 0, &[event("opened"), event("deposited")])
        .await
        .unwrap();
    events
        .append(&stream("b"), 0, &[event("opened")])
        .await
        .unwrap();
    events
        .append(&stream("a"), 2, &[event("withdrawn")])
        .await
        .unwrap();
    let first = b.catch_up(calm()).await.unwrap();
    assert_eq!(first.applied, 4);
    let all = positions(&b).await;
    assert_eq!(b.seen().await, all, "every event, in global order");
    assert_eq!(first.checkpoint, *all.last().unwrap());
    // A restarted runner applies nothing twice.
    assert_eq!(b.catch_up(calm()).await.unwrap().applied, 0);
    events
        .append(&stream("b"), 1, &[event("closed")])
        .await
        .unwrap();
    assert_eq!(b.catch_up(calm()).await.unwrap().applied, 1);
    assert_eq!(b.seen().await, positions(&b).await);
}

async fn projection_stops_at_a_failing_event_contract(b: impl Backend) {
    let events = b.events();
    events
        .append(
            &stream("a"),
            0,
            &[
                event("opened"),
                event("deposited"),
                event("poison"),
                event("closed"),
            ],
        )
        .await
        .unwrap();
    let all = positions(&b).await;
    let poisoned = Arc::new(AtomicBool::new(true));
    let err = b.catch_up(poisoned.clone()).await.unwrap_err();
    assert_eq!(err.code(), codes::PROJECTION_STOPPED, "{err}");
    assert_eq!(b.seen().await, all[..2], "the events before it are applied");
    assert_eq!(
        b.checkpoint("seen").await,
        all[1],
        "the checkpoint stays before it"
    );
    // Fixed (here: the poison cured), the next catch-up starts at the failing event.
    poisoned.store(false, Ordering::SeqCst);
    assert_eq!(b.catch_up(poisoned).await.unwrap().applied, 2);
    assert_eq!(b.seen().await, all);
}

async fn projection_status_contract(b: impl Backend) {
    let events = b.events();
    let five: Vec<NewEvent> = (0..5).map(|_| event("deposited")).collect();
    events.append(&stream("a"), 0, &five).await.unwrap();
    let behind = b.status().await;
    assert_eq!((behind.checkpoint, behind.events_behind), (0, 5));
    assert_eq!(behind.head, *positions(&b).await.last().unwrap());
    assert_eq!(behind.name, "seen");
    b.catch_up(calm()).await.unwrap();
    let caught_up = b.status().await;
    assert_eq!((caught_up.events_behind, caught_up.ms_behind), (0, 0));
    assert_eq!(caught_up.checkpoint, caught_up.head);
}

/// Eight writers append while two runners catch up over and over: when they are done,
/// the projection has every event once, in global order.
async fn projection_under_concurrent_writers_contract(b: impl Backend) {
    let b = Arc::new(b);
    let writing = Arc::new(AtomicBool::new(true));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let events = b.events();
            tokio::spawn(async move {
                for n in 0..15 {
                    events
                        .append(&stream(&format!("w{w}")), n, &[event("deposited")])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let runners: Vec<_> = (0..2)
        .map(|_| {
            let (b, writing) = (b.clone(), writing.clone());
            tokio::spawn(async move {
                while writing.load(Ordering::SeqCst) {
                    b.catch_up(calm()).await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    writing.store(false, Ordering::SeqCst);
    for r in runners {
        r.await.unwrap();
    }
    b.catch_up(calm()).await.unwrap();
    let all = positions(&*b).await;
    assert_eq!(all.len(), 120);
    assert_eq!(b.seen().await, all, "no event skipped, none applied twice");
}

// ---- outbox ---------------------------------------------------------------------------

async fn outbox_delivers_in_order_contract(b: impl Backend) {
    let events = b.events();
    events
        .append(&stream("a"), 0, &[event("opened"), event("deposited")])
        .await
        .unwrap();
    events
        .append(&stream("b"), 0, &[event("opened")])
        .await
        .unwrap();
    assert_eq!(b.pending().await, 3, "each append wrote its outbox rows");
    let relay = Recorder::default();
    assert_eq!(b.deliver(relay.clone()).await.unwrap(), 3);
    assert_eq!(relay.delivered(), positions(&b).await);
    assert_eq!(b.pending().await, 0);
    assert_eq!(b.deliver(relay.clone()).await.unwrap(), 0, "delivered once");
    assert_eq!(relay.delivered().len(), 3);
}

async fn outbox_keeps_what_was_refused_contract(b: impl Backend) {
    let events = b.events();
    events
        .append(
            &stream("a"),
            0,
            &[event("opened"), event("refuse"), event("closed")],
        )
        .await
        .unwrap();
    let all = positions(&b).await;
    let relay = Recorder::default();
    relay.refusing.store(true, Ordering::SeqCst);
    let err = b.deliver(relay.clone()).await.unwrap_err();
    assert_eq!(err.code(), "test.broker");
    assert_eq!(relay.delivered(), all[..1]);
    assert_eq!(
        b.pending().await,
        2,
        "the refused event and the one after it"
    );
    relay.refusing.store(false, Ordering::SeqCst);
    assert_eq!(b.deliver(relay.clone()).await.unwrap(), 2);
    assert_eq!(relay.delivered(), all, "in order, each once");
}

async fn outbox_one_publisher_at_a_time_contract(b: impl Backend) {
    let b = Arc::new(b);
    for s in 0..10 {
        let batch: Vec<NewEvent> = (0..30).map(|_| event("deposited")).collect();
        b.events()
            .append(&stream(&format!("s{s}")), 0, &batch)
            .await
            .unwrap();
    }
    let relay = Recorder::default();
    let publishers: Vec<_> = (0..2)
        .map(|_| {
            let (b, relay) = (b.clone(), relay.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while b.pending().await > 0 {
                    n += b.deliver(relay.clone()).await.unwrap();
                    // Let the other publisher, holding the outbox, go on (a busy loop
                    // would starve it on this worker thread).
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for p in publishers {
        total += p.await.unwrap();
    }
    assert_eq!(total, 300);
    assert_eq!(
        relay.delivered(),
        positions(&*b).await,
        "each event delivered once, in order"
    );
}

// ---- unit of work ---------------------------------------------------------------------

async fn unit_of_work_all_or_nothing_contract(b: impl Backend) {
    let inbox = Uuid::new_v4();
    let rolled_back = Uuid::new_v4();
    let first = b
        .unit(
            &stream("a"),
            0,
            &[event("opened")],
            inbox,
            &saga(rolled_back),
            false,
        )
        .await
        .unwrap();
    assert!(first);
    assert_eq!(b.events().version(&stream("a")).await.unwrap(), 0);
    assert_eq!(b.pending().await, 0, "no outbox row");
    assert_eq!(b.checkpoint("uow").await, 0);
    let err = b.sagas().load(rolled_back).await.unwrap_err();
    assert_eq!(err.code(), codes::SAGA_NOT_FOUND);

    let committed = Uuid::new_v4();
    assert!(
        b.unit(
            &stream("a"),
            0,
            &[event("opened")],
            inbox,
            &saga(committed),
            true
        )
        .await
        .unwrap(),
        "the rolled-back inbox entry is not there"
    );
    assert_eq!(b.events().version(&stream("a")).await.unwrap(), 1);
    assert_eq!(b.pending().await, 1);
    assert_eq!(b.checkpoint("uow").await, 7);
    assert_eq!(b.sagas().load(committed).await.unwrap().name, "Transfer");
}

async fn unit_of_work_inbox_contract(b: impl Backend) {
    let inbox = Uuid::new_v4();
    let unit = |n: u64| {
        let b = &b;
        async move {
            b.unit(
                &stream("a"),
                n,
                &[event("noted")],
                inbox,
                &saga(Uuid::new_v4()),
                true,
            )
            .await
            .unwrap()
        }
    };
    assert!(unit(0).await, "first delivery");
    assert!(!unit(1).await, "a redelivery");
}

async fn unit_of_work_conflict_contract(b: impl Backend) {
    b.events()
        .append(&stream("a"), 0, &[event("opened")])
        .await
        .unwrap();
    let id = Uuid::new_v4();
    let err = b
        .unit(
            &stream("a"),
            0,
            &[event("opened")],
            Uuid::new_v4(),
            &saga(id),
            true,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), codes::EVENT_CONFLICT, "{err}");
    assert_eq!(b.events().version(&stream("a")).await.unwrap(), 1);
    assert_eq!(
        b.checkpoint("uow").await,
        0,
        "nothing of the unit committed"
    );
    assert!(b.sagas().load(id).await.is_err());
}

macro_rules! conformance {
    ($module:ident, $backend:ty) => {
        mod $module {
            use super::*;

            async fn backend() -> $backend {
                <$backend as Backend>::new().await
            }

            #[tokio::test]
            async fn a_projection_applies_every_event_once_in_global_order() {
                projection_once_in_order_contract(backend().await).await;
            }

            #[tokio::test]
            async fn a_projection_stops_before_an_event_it_cannot_apply() {
                projection_stops_at_a_failing_event_contract(backend().await).await;
            }

            #[tokio::test]
            async fn a_projection_reports_its_lag() {
                projection_status_contract(backend().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn two_runners_and_eight_writers_skip_nothing_and_apply_nothing_twice() {
                projection_under_concurrent_writers_contract(backend().await).await;
            }

            #[tokio::test]
            async fn the_outbox_delivers_every_event_in_global_order() {
                outbox_delivers_in_order_contract(backend().await).await;
            }

            #[tokio::test]
            async fn the_outbox_keeps_a_refused_event_and_those_after_it() {
                outbox_keeps_what_was_refused_contract(backend().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn two_outbox_relays_deliver_each_event_once() {
                outbox_one_publisher_at_a_time_contract(backend().await).await;
            }

            #[tokio::test]
            async fn a_unit_of_work_commits_everything_or_nothing() {
                unit_of_work_all_or_nothing_contract(backend().await).await;
            }

            #[tokio::test]
            async fn the_inbox_answers_first_delivery_once() {
                unit_of_work_inbox_contract(backend().await).await;
            }

            #[tokio::test]
            async fn a_conflicting_append_fails_the_whole_unit_of_work() {
                unit_of_work_conflict_contract(backend().await).await;
            }
        }
    };
}

// ---- SQLite ---------------------------------------------------------------------------

#[cfg(feature = "sqlite")]
mod sqlite_backend {
    use super::*;
    use flext::sqlite::{
        SqliteDatabase, SqliteOutboxRelay, SqliteProjection, SqliteProjectionRunner,
    };

    pub struct Sqlite {
        db: SqliteDatabase,
        dir: std::path::PathBuf,
    }

    fn sql(e: flext::sqlite::rusqlite::Error) -> flext::Error {
        flext::Error::infrastructure("test.sql", e.to_string())
    }

    impl Backend for Sqlite {
        async fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("flext-db-{}", Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            Sqlite {
                db: SqliteDatabase::open(dir.join("app.db")).unwrap(),
                dir,
            }
        }
        fn events(&self) -> Arc<dyn EventStore> {
            Arc::new(self.db.event_store().unwrap())
        }
        fn sagas(&self) -> Arc<dyn SagaLog> {
            Arc::new(self.db.saga_log().unwrap())
        }
        async fn catch_up(&self, poisoned: Arc<AtomicBool>) -> flext::Result<CatchUp> {
            SqliteProjectionRunner::new(self.db.clone(), Seen(poisoned))
                .batch(16)
                .catch_up()
        }
        async fn status(&self) -> ProjectionStatus {
            SqliteProjectionRunner::new(self.db.clone(), Seen(calm()))
                .status()
                .unwrap()
        }
        async fn seen(&self) -> Vec<u64> {
            self.db
                .transaction(|uow| {
                    SqliteProjection::setup(&Seen(calm()), uow)?;
                    let mut stmt = uow
                        .connection()
                        .prepare("SELECT position FROM seen ORDER BY applied")
                        .map_err(sql)?;
                    let rows = stmt
                        .query_map([], |r| r.get::<_, i64>(0))
                        .map_err(sql)?
                        .map(|p| p.map(|p| p as u64).map_err(sql))
                        .collect::<flext::Result<Vec<_>>>()?;
                    Ok(rows)
                })
                .unwrap()
        }
        async fn deliver(&self, relay: Recorder) -> flext::Result<u64> {
            SqliteOutboxRelay::new(self.db.clone(), relay)
                .deliver_pending()
                .await
        }
        async fn pending(&self) -> u64 {
            self.db.outbox_pending().unwrap()
        }
        async fn unit(
            &self,
            stream: &StreamId,
            expected: u64,
            events: &[NewEvent],
            inbox: Uuid,
            saga: &SagaRecord,
            commit: bool,
        ) -> flext::Result<bool> {
            let mut first = false;
            let outcome = self.db.transaction(|uow| {
                first = uow.first_delivery("mailer", inbox)?;
                uow.append_events(stream, expected, events)?;
                uow.save_checkpoint("uow", 7)?;
                uow.create_saga(saga)?;
                if commit {
                    Ok(())
                } else {
                    Err(flext::Error::internal("test.rollback", "rolled back"))
                }
            });
            match outcome {
                Err(e) if e.code() == "test.rollback" => Ok(first),
                Err(e) => Err(e),
                Ok(()) => Ok(first),
            }
        }
        async fn checkpoint(&self, name: &str) -> u64 {
            self.db.transaction(|uow| uow.checkpoint(name)).unwrap()
        }
    }

    impl Drop for Sqlite {
        fn drop(&mut self) {
            std::fs::remove_dir_all(&self.dir).ok();
        }
    }
}

#[cfg(feature = "sqlite")]
conformance!(sqlite, super::sqlite_backend::Sqlite);

// ---- PostgreSQL -----------------------------------------------------------------------

#[cfg(feature = "postgres")]
mod postgres_backend {
    use super::*;
    use flext::postgres::{PgDatabase, PgOutboxRelay, PgProjectionRunner, TestCluster};

    /// A PostgreSQL server of its own (or a fresh database on `DATABASE_URL`'s).
    pub struct Postgres {
        _cluster: TestCluster,
        db: PgDatabase,
    }

    impl Backend for Postgres {
        async fn new() -> Self {
            let cluster = TestCluster::start().unwrap_or_else(|e| panic!("{e}"));
            let url = cluster.fresh_database().await.unwrap();
            let db = PgDatabase::connect(&url).await.unwrap();
            Postgres {
                _cluster: cluster,
                db,
            }
        }
        fn events(&self) -> Arc<dyn EventStore> {
            Arc::new(self.db.event_store())
        }
        fn sagas(&self) -> Arc<dyn SagaLog> {
            Arc::new(self.db.saga_log())
        }
        async fn catch_up(&self, poisoned: Arc<AtomicBool>) -> flext::Result<CatchUp> {
            PgProjectionRunner::new(self.db.clone(), Seen(poisoned))
                .batch(16)
                .catch_up()
                .await
        }
        async fn status(&self) -> ProjectionStatus {
            PgProjectionRunner::new(self.db.clone(), Seen(calm()))
                .status()
                .await
                .unwrap()
        }
        async fn seen(&self) -> Vec<u64> {
            self.db
                .client()
                .await
                .unwrap()
                .query("SELECT position FROM seen ORDER BY applied", &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, i64>(0) as u64)
                .collect()
        }
        async fn deliver(&self, relay: Recorder) -> flext::Result<u64> {
            PgOutboxRelay::new(self.db.clone(), relay)
                .deliver_pending()
                .await
        }
        async fn pending(&self) -> u64 {
            self.db.outbox_pending().await.unwrap()
        }
        async fn unit(
            &self,
            stream: &StreamId,
            expected: u64,
            events: &[NewEvent],
            inbox: Uuid,
            saga: &SagaRecord,
            commit: bool,
        ) -> flext::Result<bool> {
            let uow = self.db.begin().await?;
            let first = uow.first_delivery("mailer", inbox).await?;
            uow.append_events(stream, expected, events).await?;
            uow.save_checkpoint("uow", 7).await?;
            uow.create_saga(saga).await?;
            if commit {
                uow.commit().await?;
            } else {
                uow.rollback().await?;
            }
            Ok(first)
        }
        async fn checkpoint(&self, name: &str) -> u64 {
            self.db
                .client()
                .await
                .unwrap()
                .query_opt(
                    "SELECT position FROM flext_checkpoints WHERE name = $1",
                    &[&name],
                )
                .await
                .unwrap()
                .map_or(0, |r| r.get::<_, i64>(0) as u64)
        }
    }
}

#[cfg(feature = "postgres")]
conformance!(postgres, super::postgres_backend::Postgres);
