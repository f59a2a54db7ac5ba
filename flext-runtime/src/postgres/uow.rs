//! [`PgUnitOfWork`]: one PostgreSQL transaction for every flext write and the caller's own.

use uuid::Uuid;

use super::{PgDatabase, pg_error};
use crate::error::Result;
use crate::event_store::{EventEnvelope, NewEvent, StreamId};
use crate::saga::{Fence, Lease, SagaRecord, SagaState, Transition};

/// One transaction on a [`PgDatabase`]: events with their outbox rows, saga records and
/// transitions, projection checkpoints, inbox entries, and the caller's own tables through
/// [`client`](Self::client), committed together by [`commit`](Self::commit). The
/// PostgreSQL counterpart of `flext::sqlite::SqliteUnitOfWork`, with the same writes.
///
/// Dropping it uncommitted rolls everything back: the connection is closed rather than
/// returned to the pool, so the server aborts the transaction, and no later user of the
/// pool can see it. (sqlx's `Transaction` likewise rolls back on drop.)
///
/// ```no_run
/// use flext::event_store::{NewEvent, StreamId};
/// use flext::postgres::PgDatabase;
/// # async fn run(db: PgDatabase, event_id: flext::Uuid) -> flext::Result<()> {
/// let ctx = flext::Context::new();
/// let uow = db.begin().await?;
/// if uow.first_delivery("mailer", event_id).await? {
///     uow.append_events(&StreamId::new("Mail", "m-1"), 0, &[NewEvent::new("mail.sent", 1, serde_json::json!({}), &ctx)]).await?;
/// }
/// uow.commit().await?; // the inbox entry, the event and its outbox row, or none of them
/// # Ok(()) }
/// ```
pub struct PgUnitOfWork {
    client: Option<deadpool_postgres::Object>,
    db: PgDatabase,
    /// Appended to a projection's table and checkpoint names while it is rebuilt.
    suffix: String,
    /// Set when one of flext's writes failed: PostgreSQL has aborted the transaction,
    /// and a `COMMIT` would silently roll back.
    failed: std::sync::atomic::AtomicBool,
}

impl PgUnitOfWork {
    pub(super) async fn begin(db: &PgDatabase, suffix: &str) -> Result<Self> {
        // The unit of work owns the connection before `BEGIN` is sent: when this future
        // is dropped mid-way (a cancelled task, a lost lease), its `Drop` closes the
        // connection instead of returning it to the pool inside an open transaction,
        // where the next user's writes would run and could be rolled back with it.
        let uow = PgUnitOfWork {
            client: Some(db.client().await?),
            db: db.clone(),
            suffix: suffix.to_owned(),
            failed: std::sync::atomic::AtomicBool::new(false),
        };
        uow.object()
            .batch_execute("BEGIN")
            .await
            .map_err(pg_error)?;
        Ok(uow)
    }

    /// Ends the transaction with `statement`, then returns the connection to the pool;
    /// when this future is dropped before the end is confirmed, `Drop` closes the
    /// connection instead.
    async fn end(&mut self, statement: &str) -> Result<()> {
        self.object()
            .batch_execute(statement)
            .await
            .map_err(pg_error)?;
        drop(self.client.take());
        Ok(())
    }

    fn object(&self) -> &deadpool_postgres::Object {
        // `client` is `Some` until `commit` or `drop` take it, and both consume `self`.
        self.client
            .as_ref()
            .expect("a unit of work holds its connection until it ends")
    }

    /// Commits every write made through this unit of work.
    ///
    /// # Errors
    ///
    /// `flext.store.failed` when the commit fails (a serialization failure, a lost
    /// connection), or when one of this unit of work's writes failed earlier
    /// (PostgreSQL aborts the transaction at the first failed statement): then nothing
    /// was written. A failed statement of the caller's own, through
    /// [`client`](Self::client), is the caller's to act on: drop the unit of work.
    pub async fn commit(mut self) -> Result<()> {
        if self.failed.load(std::sync::atomic::Ordering::Relaxed) {
            self.end("ROLLBACK").await?;
            return Err(crate::Error::infrastructure(
                crate::codes::STORE_FAILED,
                "a write of this unit of work failed, so PostgreSQL aborted its transaction: \
                 nothing was committed; begin a new one",
            ));
        }
        self.end("COMMIT").await
    }

    /// A failed statement: the transaction cannot commit now.
    fn sql(&self, e: tokio_postgres::Error) -> crate::Error {
        self.failed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        pg_error(e)
    }

    /// Notes a failed write, after which the transaction cannot commit.
    fn track<T>(&self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            self.failed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }

    /// Rolls every write back now (dropping the unit of work does the same, closing the
    /// connection instead of returning it to the pool).
    ///
    /// # Errors
    ///
    /// `flext.store.failed` when `ROLLBACK` fails; nothing is written either way.
    pub async fn rollback(mut self) -> Result<()> {
        self.end("ROLLBACK").await
    }

    /// The connection, inside this transaction: for a projection's or a consumer's own
    /// tables.
    pub fn client(&self) -> &tokio_postgres::Client {
        self.object()
    }

    /// The table a projection writes as `table`: `table` itself, or its fresh copy while
    /// the projection is rebuilt. Use it in the projection's SQL.
    pub fn table(&self, table: &str) -> String {
        format!("{table}{}", self.suffix)
    }

    /// Appends `events` to `stream` at `expected_version`, with their outbox rows.
    /// Returns the stream's new version.
    ///
    /// # Errors
    ///
    /// As [`EventStore::append`](crate::event_store::EventStore::append); after a
    /// conflict the transaction is aborted and can only be dropped.
    pub async fn append_events(
        &self,
        stream: &StreamId,
        expected_version: u64,
        events: &[NewEvent],
    ) -> Result<u64> {
        self.track(
            super::events::append_in(
                self.object(),
                &self.db,
                stream,
                expected_version,
                events,
                true,
            )
            .await,
        )
    }

    /// Records a new saga, as [`SagaLog::create`](crate::saga::SagaLog::create).
    ///
    /// # Errors
    ///
    /// `flext.saga.exists` when the id is taken.
    pub async fn create_saga(&self, record: &SagaRecord) -> Result<()> {
        self.track(super::saga::create_in(self.object(), record).await)
    }

    /// Records a saga transition, as [`SagaLog::append`](crate::saga::SagaLog::append).
    ///
    /// # Errors
    ///
    /// `flext.saga.lease_lost` (the fence is stale: see [`Fence`]) or `flext.saga.not_found`.
    pub async fn append_saga(
        &self,
        id: Uuid,
        transition: &Transition,
        state: SagaState,
        lease: &Lease,
        fence: Fence,
    ) -> Result<()> {
        self.track(super::saga::append_in(self.object(), id, transition, state, lease, fence).await)
    }

    /// The global position projection `name` has applied up to (0 before its first
    /// event), with its checkpoint row locked until this transaction ends: a second
    /// process running the same projection waits here, then reads the checkpoint the
    /// first one committed, so no event is applied twice.
    ///
    /// # Errors
    ///
    /// `flext.store.failed` when the database cannot be read.
    pub async fn checkpoint(&self, name: &str) -> Result<u64> {
        let name = format!("{name}{}", self.suffix);
        let client = self.object();
        let select = client
            .prepare_cached("SELECT position FROM flext_checkpoints WHERE name = $1 FOR UPDATE")
            .await
            .map_err(|e| self.sql(e))?;
        let mut row = client
            .query_opt(&select, &[&name])
            .await
            .map_err(|e| self.sql(e))?;
        if row.is_none() {
            // The projection's first run: make the row to lock (another runner may be
            // making it too; then this waits for it).
            client
                .execute(
                    "INSERT INTO flext_checkpoints (name, position, updated_ms) VALUES ($1, 0, 0)
                     ON CONFLICT (name) DO NOTHING",
                    &[&name],
                )
                .await
                .map_err(|e| self.sql(e))?;
            row = client
                .query_opt(&select, &[&name])
                .await
                .map_err(|e| self.sql(e))?;
        }
        Ok(row.map_or(0, |r| super::from_bigint(r.get(0))))
    }

    /// Records that projection `name` has applied every event up to `position`.
    ///
    /// # Errors
    ///
    /// `flext.store.failed` when the database cannot be written.
    pub async fn save_checkpoint(&self, name: &str, position: u64) -> Result<()> {
        let name = format!("{name}{}", self.suffix);
        let client = self.object();
        let upsert = client
            .prepare_cached(
                "INSERT INTO flext_checkpoints (name, position, updated_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_ms = excluded.updated_ms",
            )
            .await
            .map_err(|e| self.sql(e))?;
        client
            .execute(
                &upsert,
                &[
                    &name,
                    &super::to_bigint(position),
                    &super::to_bigint(crate::saga::now_ms()),
                ],
            )
            .await
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Records that `consumer` handles event `event_id` now: `true` the first time,
    /// `false` when it already has (a redelivery to skip). The inbox half of the outbox
    /// pattern; write the consumer's effect in the same transaction. Two processes
    /// handling one event at once: the second waits for the first's transaction and gets
    /// `false` if it committed.
    ///
    /// # Errors
    ///
    /// `flext.store.failed` when the database cannot be written.
    pub async fn first_delivery(&self, consumer: &str, event_id: Uuid) -> Result<bool> {
        let n = self
            .object()
            .execute(
                "INSERT INTO flext_inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&consumer, &event_id],
            )
            .await
            .map_err(|e| self.sql(e))?;
        Ok(n == 1)
    }

    /// The numbered events after global position `position`, oldest first, at most
    /// `limit` (call [`PgEventStore::sequence`](super::PgEventStore) first).
    pub(super) async fn events_after(
        &self,
        position: u64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>> {
        self.track(super::events::read_after(self.object(), position, limit).await)
    }
}

impl Drop for PgUnitOfWork {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Uncommitted: close the connection, so the server rolls the transaction back
            // and the pool never hands out a connection inside it.
            drop(deadpool_postgres::Object::take(client));
        }
    }
}
