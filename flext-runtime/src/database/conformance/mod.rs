//! The conformance suite of the durable parts that share one database (projections, the
//! outbox and the unit of work), for every backend, flext's and yours: each contract as
//! a function that panics (like `assert!`) when the backend breaks it, in the manner of
//! `tower-test`. Run them all with
//! [`database_conformance!`](crate::database_conformance) and a [`Backend`]; flext's
//! own SQLite and PostgreSQL backends run it in `tests/database_conformance.rs`.
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
//! The backend's projection records each event's position in the order it applied
//! them and fails at events named `poison` while its flag is set: [`Seen`] is one, for
//! any backend that runs a [`PortableProjection`]. The
//! caller needs `tokio` with its `macros` and `rt-multi-thread` features.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use super::{CatchUp, PortableProjection, ProjectionStatus, ProjectionWrites, Relay, SqlValue};
use crate::codes;
use crate::event_store::{EventEnvelope, EventStore, NewEvent, StreamId};
use crate::future::BoxFuture;
use crate::saga::{SagaLog, SagaRecord, SagaState};

/// What a contract needs of a backend: its stores, a test projection (`seen`: the
/// positions it applied, in the order it applied them; it fails at events named
/// `poison` while `poisoned` is set), its outbox relay, and one unit of work.
#[allow(async_fn_in_trait)]
pub trait Backend: Sized + Send + Sync + 'static {
    /// A fresh, empty database.
    async fn new() -> Self;
    /// Its event store (appends write outbox rows).
    fn events(&self) -> Arc<dyn EventStore>;
    /// Its saga log.
    fn sagas(&self) -> Arc<dyn SagaLog>;
    /// One catch-up by a runner made for this call (as after a restart).
    fn catch_up(
        &self,
        poisoned: Arc<AtomicBool>,
    ) -> impl Future<Output = crate::Result<CatchUp>> + Send;
    /// The projection's status.
    async fn status(&self) -> ProjectionStatus;
    /// The positions the projection applied, in the order it applied them.
    async fn seen(&self) -> Vec<u64>;
    /// One pass of the outbox relay into `relay`.
    fn deliver(&self, relay: Recorder) -> impl Future<Output = crate::Result<u64>> + Send;
    /// How many outbox rows are not delivered.
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
    ) -> crate::Result<bool>;
    /// The checkpoint `name` (0 before its first event).
    async fn checkpoint(&self, name: &str) -> u64;
}

/// A relay recording the events it delivered; refuses events named `refuse` while
/// `refusing` is set.
#[derive(Clone, Default)]
pub struct Recorder {
    delivered: Arc<Mutex<Vec<u64>>>,
    refusing: Arc<AtomicBool>,
}

impl Recorder {
    /// The positions delivered, in order.
    pub fn delivered(&self) -> Vec<u64> {
        self.delivered.lock().unwrap().clone()
    }
}

impl Relay for Recorder {
    fn deliver<'a>(&'a self, event: &'a EventEnvelope) -> BoxFuture<'a, crate::Result<()>> {
        Box::pin(async move {
            if event.name == "refuse" && self.refusing.load(Ordering::SeqCst) {
                return Err(crate::Error::infrastructure("test.broker", "broker down"));
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
        &crate::Context::new(),
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

/// A flag that is not set: the projection applies `poison` like any event.
pub fn calm() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

/// The projection the contracts expect, for any backend that runs a
/// [`PortableProjection`]: it records each event's position, with the order it applied
/// them, in a table `seen (applied BIGINT, position BIGINT)`, and fails at events named
/// `poison` while its flag is set. Read what it recorded with
/// `SELECT position FROM seen ORDER BY applied`.
pub struct Seen(pub Arc<AtomicBool>);

impl PortableProjection for Seen {
    fn name(&self) -> &str {
        "seen"
    }
    fn tables(&self) -> &[&str] {
        &["seen"]
    }
    fn setup(&self, writes: &mut ProjectionWrites) -> crate::Result<()> {
        writes.execute(
            "CREATE TABLE IF NOT EXISTS seen (applied BIGINT NOT NULL, position BIGINT NOT NULL)",
            [],
        );
        Ok(())
    }
    fn apply(&self, writes: &mut ProjectionWrites, event: &EventEnvelope) -> crate::Result<()> {
        if event.name == "poison" && self.0.load(Ordering::SeqCst) {
            return Err(crate::Error::validation("test.poison", "poisoned"));
        }
        writes.execute(
            "INSERT INTO seen (applied, position) VALUES ((SELECT COALESCE(MAX(applied), 0) + 1 FROM seen), $1)",
            [SqlValue::from(event.position)],
        );
        Ok(())
    }
}

mod contracts;

pub use self::contracts::*;

/// One `#[tokio::test]` per contract of [`conformance`](crate::database::conformance), in
/// a module named `$module`, for the [`Backend`](crate::database::conformance::Backend)
/// `$backend`.
#[macro_export]
macro_rules! database_conformance {
    ($module:ident, $backend:ty) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            use $crate::database::conformance as suite;

            async fn backend() -> $backend {
                <$backend as suite::Backend>::new().await
            }

            #[tokio::test]
            async fn a_projection_applies_every_event_once_in_global_order() {
                suite::projection_once_in_order_contract(backend().await).await;
            }

            #[tokio::test]
            async fn a_projection_stops_before_an_event_it_cannot_apply() {
                suite::projection_stops_at_a_failing_event_contract(backend().await).await;
            }

            #[tokio::test]
            async fn a_projection_reports_its_lag() {
                suite::projection_status_contract(backend().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn two_runners_and_eight_writers_skip_nothing_and_apply_nothing_twice() {
                suite::projection_under_concurrent_writers_contract(backend().await).await;
            }

            #[tokio::test]
            async fn the_outbox_delivers_every_event_in_global_order() {
                suite::outbox_delivers_in_order_contract(backend().await).await;
            }

            #[tokio::test]
            async fn the_outbox_keeps_a_refused_event_and_those_after_it() {
                suite::outbox_keeps_what_was_refused_contract(backend().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn two_outbox_relays_deliver_each_event_once() {
                suite::outbox_one_publisher_at_a_time_contract(backend().await).await;
            }

            #[tokio::test]
            async fn a_unit_of_work_commits_everything_or_nothing() {
                suite::unit_of_work_all_or_nothing_contract(backend().await).await;
            }

            #[tokio::test]
            async fn the_inbox_answers_first_delivery_once() {
                suite::unit_of_work_inbox_contract(backend().await).await;
            }

            #[tokio::test]
            async fn a_conflicting_append_fails_the_whole_unit_of_work() {
                suite::unit_of_work_conflict_contract(backend().await).await;
            }
        }
    };
}
