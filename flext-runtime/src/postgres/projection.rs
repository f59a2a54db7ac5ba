//! Projections on PostgreSQL: read models built from the events in global order, each
//! event applied in the transaction that moves the checkpoint past it.

use std::sync::Arc;
use std::time::Duration;

use super::{PgDatabase, PgEventStore, PgUnitOfWork, pg_error};
use crate::database::{CatchUp, ProjectionStatus};
use crate::error::{Error, Result};
use crate::event_store::EventEnvelope;
use crate::future::BoxFuture;

/// A read model kept in the database's own tables, written through the unit of work:
/// the PostgreSQL counterpart of `flext::sqlite::SqliteProjection`, with async methods.
/// [`PgProjectionRunner`] feeds it every event in global order from any number of
/// processes. Every [`PortableProjection`](crate::database::PortableProjection) (a
/// `#[projection]` writing through `&mut ProjectionWrites`) is one.
///
/// Delivery: what `apply` writes through the unit of work commits in the transaction
/// that moves the checkpoint, so it takes effect exactly once per event; anything else
/// it does (a call to another service, a message, a log line) runs at least once: again
/// after a crash mid-batch, and again when a later event of its batch fails (the batch
/// is rolled back and replayed up to that event). Make such an effect idempotent by
/// keying it on `event.event_id` (record it in an inbox table through the unit of work,
/// or let the receiver deduplicate on it).
///
/// ```no_run
/// use flext::event_store::EventEnvelope;
/// use flext::BoxFuture;
/// use flext::postgres::{PgProjection, PgUnitOfWork};
///
/// /// How many events each stream has.
/// struct Counts;
///
/// fn sql(e: flext::postgres::tokio_postgres::Error) -> flext::Error {
///     flext::Error::infrastructure("counts.sql", e.to_string())
/// }
///
/// impl PgProjection for Counts {
///     fn name(&self) -> &str { "counts" }
///     fn setup<'a>(&'a self, uow: &'a PgUnitOfWork) -> BoxFuture<'a, flext::Result<()>> {
///         Box::pin(async move {
///             uow.client()
///                 .batch_execute("CREATE TABLE IF NOT EXISTS counts (stream TEXT PRIMARY KEY, n BIGINT NOT NULL)")
///                 .await
///                 .map_err(sql)
///         })
///     }
///     fn apply<'a>(&'a self, uow: &'a PgUnitOfWork, event: &'a EventEnvelope) -> BoxFuture<'a, flext::Result<()>> {
///         Box::pin(async move {
///             uow.client()
///                 .execute(
///                     "INSERT INTO counts (stream, n) VALUES ($1, 1) ON CONFLICT (stream) DO UPDATE SET n = counts.n + 1",
///                     &[&event.aggregate_id],
///                 )
///                 .await
///                 .map(|_| ())
///                 .map_err(sql)
///         })
///     }
/// }
/// ```
pub trait PgProjection: Send + Sync + 'static {
    /// The projection's name: the key of its checkpoint.
    fn name(&self) -> &str;

    /// Creates its tables when they do not exist (named through
    /// [`PgUnitOfWork::table`]). Called in each catch-up's transaction, after the
    /// checkpoint's row is locked, so never by two runners at once.
    ///
    /// # Errors
    ///
    /// Whatever the projection's SQL returns.
    fn setup<'a>(&'a self, uow: &'a PgUnitOfWork) -> BoxFuture<'a, Result<()>> {
        let _ = uow;
        Box::pin(async { Ok(()) })
    }

    /// Applies one event, writing through `uow`: in the transaction that also moves the
    /// checkpoint past it.
    ///
    /// # Errors
    ///
    /// An error stops the projection at this event: nothing of it is written, the
    /// checkpoint stays before it, and [`PgProjectionRunner::status`] reports it.
    fn apply<'a>(
        &'a self,
        uow: &'a PgUnitOfWork,
        event: &'a EventEnvelope,
    ) -> BoxFuture<'a, Result<()>>;
}

/// Feeds a [`PgProjection`] every event after its checkpoint, in global order, in
/// batches, each batch in one transaction with the checkpoint after it. Runners of one
/// projection in several processes take turns on its checkpoint row (see
/// [`PgUnitOfWork::checkpoint`]), so each event is applied once in all; a runner killed
/// mid-batch leaves nothing of the batch behind.
pub struct PgProjectionRunner<P> {
    db: PgDatabase,
    store: PgEventStore,
    projection: Arc<P>,
    batch: usize,
    stopped: Arc<std::sync::Mutex<Option<(u64, String)>>>,
}

impl<P> Clone for PgProjectionRunner<P> {
    fn clone(&self) -> Self {
        PgProjectionRunner {
            db: self.db.clone(),
            store: self.store.clone(),
            projection: self.projection.clone(),
            batch: self.batch,
            stopped: self.stopped.clone(),
        }
    }
}

/// What one batch's transaction did.
enum Batch {
    Applied { n: u64, last: u64 },
    Failed { from: u64, at: u64, error: Error },
}

impl<P: PgProjection> PgProjectionRunner<P> {
    /// A runner of `projection` over `db`, applying up to 256 events per transaction.
    pub fn new(db: PgDatabase, projection: P) -> Self {
        PgProjectionRunner {
            store: db.event_store(),
            db,
            projection: Arc::new(projection),
            batch: 256,
            stopped: Arc::default(),
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
    /// `flext.projection.stopped` with the projection's error and the event it failed
    /// at: the events before it are committed with their checkpoint, the failing one is
    /// not, and the next catch-up starts with it again. `flext.store.failed` when the
    /// database fails.
    pub async fn catch_up(&self) -> Result<CatchUp> {
        let name = self.projection.name();
        let mut applied = 0;
        // Number what has committed once per pass; what commits during the pass is
        // read by the next one.
        self.store.sequence().await?;
        loop {
            match self.batch_from(None).await? {
                Batch::Applied { n: 0, last } => {
                    *self.stopped_slot() = None;
                    return Ok(CatchUp {
                        applied,
                        checkpoint: last,
                    });
                }
                Batch::Applied { n, .. } => applied += n,
                Batch::Failed { from, at, error } => {
                    // The batch was rolled back; the events before the failing one are
                    // applied again, alone, and committed with their checkpoint.
                    if let Batch::Failed { error, .. } = self.batch_from(Some((from, at))).await? {
                        return Err(error);
                    }
                    tracing::error!(projection = name, position = at, %error, "projection stopped at an event it cannot apply");
                    *self.stopped_slot() = Some((at, error.to_string()));
                    return Err(Error::internal(
                        crate::codes::PROJECTION_STOPPED,
                        format!("projection `{name}` stopped at event {at}: {error}"),
                    )
                    .with_source(error));
                }
            }
        }
    }

    /// One transaction: the events after the checkpoint, up to the batch size, or, with
    /// `until = Some((from, stop))`, those after `from` and before `stop`.
    async fn batch_from(&self, until: Option<(u64, u64)>) -> Result<Batch> {
        let name = self.projection.name();
        let uow = PgUnitOfWork::begin(&self.db, "").await?;
        // The checkpoint's row lock first: runners of this projection in other processes
        // wait here, so its setup's `CREATE TABLE IF NOT EXISTS` never runs twice at once.
        let from = uow.checkpoint(name).await?;
        self.projection.setup(&uow).await?;
        if until.is_some_and(|(expected, _)| expected != from) {
            // Another process moved the checkpoint meanwhile: it applied these events.
            return Ok(Batch::Applied { n: 0, last: from });
        }
        let events = uow.events_after(from, self.batch).await?;
        let stop = until.map_or(u64::MAX, |(_, stop)| stop);
        let mut last = from;
        let mut n = 0;
        for event in events.iter().take_while(|e| e.position < stop) {
            if let Err(error) = self.projection.apply(&uow, event).await {
                // Dropping `uow` rolls the batch back.
                return Ok(Batch::Failed {
                    from,
                    at: event.position,
                    error,
                });
            }
            last = event.position;
            n += 1;
        }
        if last != from {
            uow.save_checkpoint(name, last).await?;
        }
        uow.commit().await?;
        Ok(Batch::Applied { n, last })
    }

    fn stopped_slot(&self) -> std::sync::MutexGuard<'_, Option<(u64, String)>> {
        self.stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where the projection stands: checkpoint, head, how far behind in events and
    /// milliseconds, and the event it stopped at in this process, if it did.
    ///
    /// # Errors
    ///
    /// `flext.store.failed` when the database cannot be read.
    pub async fn status(&self) -> Result<ProjectionStatus> {
        let name = self.projection.name().to_owned();
        self.store.sequence().await?;
        let client = self.db.client().await?;
        let row = client
            .query_one(
                "SELECT COALESCE((SELECT position FROM flext_checkpoints WHERE name = $1), 0),
                        COALESCE((SELECT MAX(position) FROM flext_events), 0)",
                &[&name],
            )
            .await
            .map_err(pg_error)?;
        let checkpoint = super::from_bigint(row.get(0));
        let head = super::from_bigint(row.get(1));
        let oldest = super::events::read_after(&client, checkpoint, 1)
            .await?
            .first()
            .map(|e| e.timestamp_ms);
        Ok(ProjectionStatus {
            events_behind: head.saturating_sub(checkpoint),
            ms_behind: oldest.map_or(0, |t| crate::saga::now_ms().saturating_sub(t)),
            stopped_at: self.stopped_slot().clone(),
            name,
            checkpoint,
            head,
        })
    }

    /// Catches up now and then every `every` on the current tokio runtime, until
    /// [`PgProjectionLoop::shutdown`]. A projection that stopped at an event is retried
    /// on each pass (the failure is logged).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn(&self, every: Duration) -> PgProjectionLoop {
        let runner = self.clone();
        PgProjectionLoop(crate::background::Background::spawn(every, move || {
            let runner = runner.clone();
            async move {
                if let Err(e) = runner.catch_up().await {
                    tracing::warn!(projection = runner.projection.name(), error = %e, "projection pass failed");
                }
            }
        }))
    }
}

/// A PostgreSQL projection's background loop; see [`PgProjectionRunner::spawn`].
#[derive(Debug)]
pub struct PgProjectionLoop(crate::background::Background);

impl PgProjectionLoop {
    /// Stops the loop after its current pass; returns when it has.
    pub async fn shutdown(self) {
        self.0.shutdown().await;
    }
}

mod portable {
    use std::error::Error as StdError;

    use bytes::BytesMut;
    use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

    use super::PgProjection;
    use crate::database::{PortableProjection, ProjectionWrites, SqlValue};
    use crate::error::{Error, Result};
    use crate::event_store::EventEnvelope;
    use crate::future::BoxFuture;
    use crate::postgres::PgUnitOfWork;

    type Boxed = Box<dyn StdError + Sync + Send>;

    /// A portable parameter, converted to the type the statement's parameter has.
    #[derive(Debug)]
    struct Param(SqlValue);

    fn wrong(value: &SqlValue, ty: &Type) -> Boxed {
        format!("a portable projection's {value:?} cannot be given as {ty}: use BIGINT, DOUBLE PRECISION, TEXT, BOOLEAN, BYTEA, JSON or UUID").into()
    }

    impl ToSql for Param {
        fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, Boxed> {
            match &self.0 {
                SqlValue::Null => Ok(IsNull::Yes),
                SqlValue::Integer(i) => match *ty {
                    Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                    Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                    Type::INT8 => i.to_sql(ty, out),
                    // A float column given an integer: exact up to 2^53, as SQLite stores it.
                    #[allow(clippy::cast_precision_loss)]
                    Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                    Type::BOOL => (*i != 0).to_sql(ty, out),
                    Type::TEXT | Type::VARCHAR | Type::BPCHAR => i.to_string().to_sql(ty, out),
                    _ => Err(wrong(&self.0, ty)),
                },
                SqlValue::Real(f) => match *ty {
                    Type::FLOAT8 => f.to_sql(ty, out),
                    #[allow(clippy::cast_possible_truncation)]
                    Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                    _ => Err(wrong(&self.0, ty)),
                },
                SqlValue::Text(s) => match *ty {
                    Type::JSON | Type::JSONB => {
                        serde_json::from_str::<serde_json::Value>(s)?.to_sql(ty, out)
                    }
                    Type::UUID => uuid::Uuid::parse_str(s)?.to_sql(ty, out),
                    Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                        s.as_str().to_sql(ty, out)
                    }
                    _ => Err(wrong(&self.0, ty)),
                },
                SqlValue::Blob(b) => match *ty {
                    Type::BYTEA => b.as_slice().to_sql(ty, out),
                    _ => Err(wrong(&self.0, ty)),
                },
                SqlValue::Bool(b) => match *ty {
                    Type::BOOL => b.to_sql(ty, out),
                    Type::INT2 => i16::from(*b).to_sql(ty, out),
                    Type::INT4 => i32::from(*b).to_sql(ty, out),
                    Type::INT8 => i64::from(*b).to_sql(ty, out),
                    _ => Err(wrong(&self.0, ty)),
                },
            }
        }

        fn accepts(_: &Type) -> bool {
            true
        }

        to_sql_checked!();
    }

    async fn run(uow: &PgUnitOfWork, writes: ProjectionWrites) -> Result<()> {
        for statement in writes.into_statements() {
            let params: Vec<Param> = statement.params.into_iter().map(Param).collect();
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            uow.client()
                .execute(statement.sql.as_str(), &refs)
                .await
                .map_err(Error::from)?;
        }
        Ok(())
    }

    impl<P: PortableProjection> PgProjection for P {
        fn name(&self) -> &str {
            PortableProjection::name(self)
        }
        fn setup<'a>(&'a self, uow: &'a PgUnitOfWork) -> BoxFuture<'a, Result<()>> {
            Box::pin(async move {
                let mut writes = ProjectionWrites::new(&uow.table(""));
                PortableProjection::setup(self, &mut writes)?;
                run(uow, writes).await
            })
        }
        fn apply<'a>(
            &'a self,
            uow: &'a PgUnitOfWork,
            event: &'a EventEnvelope,
        ) -> BoxFuture<'a, Result<()>> {
            Box::pin(async move {
                let mut writes = ProjectionWrites::new(&uow.table(""));
                PortableProjection::apply(self, &mut writes, event)?;
                run(uow, writes).await
            })
        }
    }
}
