//! Projections: read models built from the events in global order, each event applied in
//! the same transaction as the checkpoint that covers it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod rebuild;

use super::{SqliteDatabase, SqliteUnitOfWork};
use crate::database::{CatchUp, ProjectionStatus};
use crate::error::{Error, Result};
use crate::event_store::EventEnvelope;

/// A read model kept in the database's own tables. Implement it for a type whose
/// [`apply`](Self::apply) writes through the unit of work; [`SqliteProjectionRunner`] feeds it
/// every event in global order. A type whose methods write portable SQL through
/// [`ProjectionWrites`](crate::database::ProjectionWrites) implements
/// [`PortableProjection`](crate::database::PortableProjection) instead and runs on every backend.
///
/// Delivery: what `apply` writes through the unit of work commits in the transaction
/// that moves the checkpoint, so it takes effect exactly once per event; anything else
/// it does (a call to another service, a message, a log line) runs at least once: again
/// after a crash mid-batch, and again when a later event of its batch fails (the batch
/// is rolled back and replayed up to that event). Make such an effect idempotent by
/// keying it on `event.event_id` (record it in an inbox table through the unit of work,
/// or let the receiver deduplicate on it).
///
/// ```
/// use flext::sqlite::{SqliteProjection, SqliteProjectionRunner, SqliteDatabase, SqliteUnitOfWork};
/// use flext::event_store::{EventEnvelope, EventStore, NewEvent, StreamId};
///
/// /// How many events each stream has.
/// struct Counts;
///
/// impl SqliteProjection for Counts {
///     fn name(&self) -> &str { "counts" }
///     fn tables(&self) -> &[&str] { &["counts"] }
///     fn setup(&self, uow: &SqliteUnitOfWork<'_>) -> flext::Result<()> {
///         uow.connection()
///             .execute_batch(&format!("CREATE TABLE IF NOT EXISTS {} (stream TEXT PRIMARY KEY, n INTEGER NOT NULL)", uow.table("counts")))
///             .map_err(|e| flext::Error::infrastructure("counts.sql", e.to_string()))
///     }
///     fn apply(&self, uow: &SqliteUnitOfWork<'_>, event: &EventEnvelope) -> flext::Result<()> {
///         uow.connection()
///             .execute(
///                 &format!("INSERT INTO {} (stream, n) VALUES (?1, 1) ON CONFLICT (stream) DO UPDATE SET n = n + 1", uow.table("counts")),
///                 [&event.aggregate_id],
///             )
///             .map(|_| ())
///             .map_err(|e| flext::Error::infrastructure("counts.sql", e.to_string()))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let db = SqliteDatabase::in_memory().unwrap();
/// let store = db.event_store().unwrap();
/// let ctx = flext::Context::new();
/// let e = |n: u64| NewEvent::new("noted", 1, serde_json::json!({ "n": n }), &ctx);
/// store.append(&StreamId::new("Note", "a"), 0, &[e(1), e(2)]).await.unwrap();
/// let counts = SqliteProjectionRunner::new(db.clone(), Counts);
/// assert_eq!(counts.catch_up().unwrap().applied, 2);
/// assert_eq!(counts.catch_up().unwrap().applied, 0, "nothing is applied twice");
/// assert_eq!(counts.status().unwrap().events_behind, 0);
/// # }
/// ```
///
/// With `#[projection]`, each event type gets its own method, decoded for it:
///
/// ```rust,standalone_crate
/// use flext::prelude::*;
/// use flext::sqlite::{SqliteProjectionRunner, SqliteDatabase, SqliteUnitOfWork};
/// use flext::event_store::{EventStore, NewEvent, StreamId};
/// use serde::{Deserialize, Serialize};
///
/// #[event(name = "account.deposited")]
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// struct Deposited { cents: i64 }
///
/// struct Totals;
///
/// #[projection(name = "totals", tables = ["totals"])]
/// impl Totals {
///     fn setup(&self, uow: &SqliteUnitOfWork) -> Result<()> {
///         uow.connection()
///             .execute_batch(&format!("CREATE TABLE IF NOT EXISTS {} (cents INTEGER)", uow.table("totals")))
///             .map_err(|e| Error::infrastructure("totals.sql", e.to_string()))
///     }
///
///     #[apply]
///     fn deposited(&self, uow: &SqliteUnitOfWork, e: &Deposited) -> Result<()> {
///         uow.connection()
///             .execute(&format!("INSERT INTO {} (cents) VALUES (?1)", uow.table("totals")), [e.cents])
///             .map(|_| ())
///             .map_err(|e| Error::infrastructure("totals.sql", e.to_string()))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let db = SqliteDatabase::in_memory().unwrap();
/// let ctx = Context::new();
/// let events = [
///     NewEvent::new("account.deposited", 1, serde_json::json!({ "cents": 5 }), &ctx),
///     NewEvent::new("account.renamed", 1, serde_json::json!({ "name": "x" }), &ctx),
/// ];
/// db.event_store().unwrap().append(&StreamId::new("Account", "a"), 0, &events).await.unwrap();
/// let totals = SqliteProjectionRunner::new(db, Totals);
/// // Both events pass the checkpoint; the one it does not apply is passed over.
/// assert_eq!(totals.catch_up().unwrap().checkpoint, 2);
/// # }
/// ```
pub trait SqliteProjection: Send + Sync + 'static {
    /// The projection's name: the key of its checkpoint.
    fn name(&self) -> &str;

    /// The tables it writes (through [`SqliteUnitOfWork::table`]), swapped as a whole when it
    /// is rebuilt.
    fn tables(&self) -> &[&str] {
        &[]
    }

    /// Creates its tables when they do not exist (named through
    /// [`SqliteUnitOfWork::table`]). Called at the start of every catch-up transaction:
    /// a runner's first, and each that applies events (once set up, a catch-up with no
    /// new event only reads).
    ///
    /// # Errors
    ///
    /// Whatever the projection's SQL returns.
    fn setup(&self, uow: &SqliteUnitOfWork<'_>) -> Result<()> {
        let _ = uow;
        Ok(())
    }

    /// Applies one event, writing through `uow`: in the transaction that also moves the
    /// checkpoint past it.
    ///
    /// # Errors
    ///
    /// An error stops the projection at this event: nothing of it is written, the
    /// checkpoint stays before it, and [`SqliteProjectionRunner::status`] reports it.
    fn apply(&self, uow: &SqliteUnitOfWork<'_>, event: &EventEnvelope) -> Result<()>;
}

/// Feeds a [`SqliteProjection`] every event after its checkpoint, in global order, in batches,
/// each batch in one transaction with the checkpoint after it; resumes after a restart
/// where it stopped, so none is skipped and none is written twice.
///
/// Delivery: what `apply` writes through the unit of work commits in the transaction
/// that moves the checkpoint, so it takes effect exactly once per event; anything else
/// it does (a call to another service, a message, a log line) runs at least once: again
/// after a crash mid-batch, and again when a later event of its batch fails (the batch
/// is rolled back and replayed up to that event). Make such an effect idempotent by
/// keying it on `event.event_id` (record it in an inbox table through the unit of work,
/// or let the receiver deduplicate on it).
pub struct SqliteProjectionRunner<P> {
    db: SqliteDatabase,
    projection: Arc<P>,
    batch: usize,
    stopped: Arc<std::sync::Mutex<Option<(u64, String)>>>,
    /// Set once a catch-up transaction has run the projection's `setup`: from then on a
    /// catch-up first reads whether any event is new, and takes the write lock only when
    /// one is (a catch-up polled in a loop would otherwise hold the lock most of the
    /// time and starve the database's writers into `flext.store.busy`).
    set_up: Arc<AtomicBool>,
}

impl<P> Clone for SqliteProjectionRunner<P> {
    fn clone(&self) -> Self {
        SqliteProjectionRunner {
            db: self.db.clone(),
            projection: self.projection.clone(),
            batch: self.batch,
            stopped: self.stopped.clone(),
            set_up: self.set_up.clone(),
        }
    }
}

const REBUILD: &str = "__rebuild";

impl<P: SqliteProjection> SqliteProjectionRunner<P> {
    /// A runner of `projection` over `db`, applying up to 256 events per transaction.
    pub fn new(db: SqliteDatabase, projection: P) -> Self {
        SqliteProjectionRunner {
            db,
            projection: Arc::new(projection),
            batch: 256,
            stopped: Arc::default(),
            set_up: Arc::default(),
        }
    }

    /// At most `batch` events per transaction (at least 1).
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// The projection.
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// Applies every event after the checkpoint, in batches; returns how many.
    ///
    /// # Errors
    ///
    /// The projection's error, with the event it failed at: the events before it are
    /// committed with their checkpoint, the failing one is not, and the next catch-up
    /// starts with it again. `flext.store.failed` when the database fails.
    pub fn catch_up(&self) -> Result<CatchUp> {
        self.catch_up_as("")
    }

    fn catch_up_as(&self, suffix: &str) -> Result<CatchUp> {
        let name = self.projection.name();
        let mut applied = 0;
        loop {
            if suffix.is_empty()
                && self.set_up.load(Ordering::Acquire)
                && let Some(checkpoint) = self.nothing_new(name)?
            {
                self.clear_stop();
                return Ok(CatchUp {
                    applied,
                    checkpoint,
                });
            }
            // A failing event rolls its whole batch back; the events before it are then
            // applied again, alone, and committed with their checkpoint.
            let mut failure = None;
            let outcome = self.db.transaction_as(suffix, |uow| {
                self.projection.setup(uow)?;
                let from = uow.checkpoint(name)?;
                let events = uow.events_after(from, self.batch)?;
                let mut last = from;
                for event in &events {
                    if let Err(e) = self.projection.apply(uow, event) {
                        failure = Some((from, event.position, e));
                        return Err(Error::internal(
                            crate::codes::PROJECTION_STOPPED,
                            "rolled back",
                        ));
                    }
                    last = event.position;
                }
                if last != from {
                    uow.save_checkpoint(name, last)?;
                }
                Ok((events.len() as u64, last))
            });
            if outcome.is_ok() {
                self.set_up.store(true, Ordering::Release);
            }
            match (outcome, failure) {
                (_, Some((from, position, error))) => {
                    self.apply_until(suffix, from, position)?;
                    tracing::error!(projection = name, position, %error, "projection stopped at an event it cannot apply");
                    *self
                        .stopped
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some((position, error.to_string()));
                    return Err(Error::internal(
                        crate::codes::PROJECTION_STOPPED,
                        format!("projection `{name}` stopped at event {position}: {error}"),
                    )
                    .with_source(error));
                }
                (Err(e), None) => return Err(e),
                (Ok((0, checkpoint)), None) => {
                    self.clear_stop();
                    return Ok(CatchUp {
                        applied,
                        checkpoint,
                    });
                }
                (Ok((n, _)), None) => applied += n,
            }
        }
    }

    /// The checkpoint, when no event follows it; `None` when one does. Read without the
    /// write lock.
    fn nothing_new(&self, name: &str) -> Result<Option<u64>> {
        self.db.read_transaction(|read| {
            let checkpoint = read.checkpoint(name)?;
            let newer: bool = read
                .connection()
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM flext_events WHERE position > ?1)",
                    [i64::try_from(checkpoint).unwrap_or(i64::MAX)],
                    |r| r.get(0),
                )
                .map_err(crate::db::db_error)?;
            Ok((!newer).then_some(checkpoint))
        })
    }

    fn clear_stop(&self) {
        *self
            .stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// Applies the events after `from` and before `stop`, committed with the checkpoint.
    fn apply_until(&self, suffix: &str, from: u64, stop: u64) -> Result<u64> {
        let name = self.projection.name();
        self.db.transaction_as(suffix, |uow| {
            self.projection.setup(uow)?;
            let events = uow.events_after(from, self.batch)?;
            let mut n = 0;
            let mut last = from;
            for event in events.iter().take_while(|e| e.position < stop) {
                self.projection.apply(uow, event)?;
                last = event.position;
                n += 1;
            }
            if last != from {
                uow.save_checkpoint(name, last)?;
            }
            Ok(n)
        })
    }

    /// Where the projection stands: checkpoint, head, how far behind in events and
    /// milliseconds, and the event it stopped at, if it did.
    ///
    /// # Errors
    ///
    /// `flext.store.failed` when the database cannot be read.
    pub fn status(&self) -> Result<ProjectionStatus> {
        let name = self.projection.name().to_owned();
        let (checkpoint, head, oldest) = self.db.transaction(|uow| {
            let checkpoint = uow.checkpoint(&name)?;
            let head: i64 = uow
                .connection()
                .query_row(
                    "SELECT COALESCE(MAX(position), 0) FROM flext_events",
                    [],
                    |r| r.get(0),
                )
                .map_err(crate::db::db_error)?;
            let oldest = uow
                .events_after(checkpoint, 1)?
                .first()
                .map(|e| e.timestamp_ms);
            Ok((checkpoint, u64::try_from(head).unwrap_or(0), oldest))
        })?;
        Ok(ProjectionStatus {
            events_behind: head.saturating_sub(checkpoint),
            ms_behind: oldest.map_or(0, |t| crate::saga::now_ms().saturating_sub(t)),
            stopped_at: self
                .stopped
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            name,
            checkpoint,
            head,
        })
    }

    /// Catches up now and then every `every` on the current tokio runtime, until
    /// [`SqliteProjectionLoop::shutdown`]. A projection that stopped at an event is retried on
    /// each pass (the failure is logged).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn(&self, every: Duration) -> SqliteProjectionLoop {
        let runner = self.clone();
        SqliteProjectionLoop(crate::background::Background::spawn(every, move || {
            let runner = runner.clone();
            async move {
                if let Err(e) = runner.catch_up() {
                    tracing::warn!(projection = runner.projection.name(), error = %e, "projection pass failed");
                }
            }
        }))
    }
}

impl<P: SqliteProjection> crate::registry::ReportSource for SqliteProjectionRunner<P> {
    /// The projection's [`status`](SqliteProjectionRunner::status): healthy unless it stopped
    /// at an event or its state cannot be read.
    fn report(&self) -> crate::registry::ComponentReport {
        let name = self.projection.name().to_owned();
        match self.status() {
            Ok(status) => crate::registry::ComponentReport {
                kind: "projection",
                healthy: status.stopped_at.is_none(),
                status: serde_json::to_value(&status).unwrap_or_default(),
                name,
            },
            Err(e) => crate::registry::ComponentReport {
                kind: "projection",
                name,
                healthy: false,
                status: serde_json::json!({ "error": e.to_string() }),
            },
        }
    }
}

/// A projection's background loop; see [`SqliteProjectionRunner::spawn`].
#[derive(Debug)]
pub struct SqliteProjectionLoop(crate::background::Background);

impl SqliteProjectionLoop {
    /// Stops the loop after its current pass; returns when it has.
    pub async fn shutdown(self) {
        self.0.shutdown().await;
    }
}
