//! [`SqliteDatabase`] and its [`SqliteUnitOfWork`].

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use crate::db::{SharedConnection, SqliteOptions, Synchronous, db_error};
use crate::error::Result;
use crate::event_store::{EventEnvelope, NewEvent, SqliteEventStore, StreamId};
use crate::saga::{Fence, Lease, SagaRecord, SagaState, SqliteLog, Transition};

/// A SQLite file holding every flext store. Cheap to clone: clones share the connection.
///
/// ```
/// use flext::sqlite::SqliteDatabase;
/// use flext::event_store::{EventStore, NewEvent, StreamId};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let db = SqliteDatabase::in_memory().unwrap();
/// let events = db.event_store().unwrap();
/// let stream = StreamId::new("Account", "a-1");
/// let opened = NewEvent::new("account.opened", 1, serde_json::json!({}), &flext::Context::new());
/// events.append(&stream, 0, &[opened]).await.unwrap();
/// // The append wrote its outbox row in the same transaction.
/// assert_eq!(db.outbox_pending().unwrap(), 1);
/// # }
/// ```
#[derive(Clone)]
pub struct SqliteDatabase {
    conn: SharedConnection,
    /// Held by the [`SqliteOutboxRelay`](super::SqliteOutboxRelay) delivering a batch: one publisher
    /// at a time among this database's clones.
    pub(super) outbox_claim: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl SqliteDatabase {
    /// Opens (creating if needed) the database at `path`, with [`Synchronous::Normal`],
    /// and creates every flext table it lacks.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure), naming the file,
    /// with one code per cause: `flext.store.read_only` (the file or its directory is
    /// not writable by this process), `flext.store.not_a_database`,
    /// `flext.store.unavailable` (the file cannot be opened: a missing directory),
    /// `flext.store.disk_full`, `flext.store.busy` (another process holds the lock past
    /// the busy timeout), or `flext.store.failed`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_options(path, SqliteOptions::default())
    }

    /// Opens the database at `path` with the given durability.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_with(path: impl AsRef<Path>, synchronous: Synchronous) -> Result<Self> {
        Self::open_with_options(path, SqliteOptions::default().synchronous(synchronous))
    }

    /// Opens the database at `path` as `options` say: durability, busy timeout, how many
    /// read connections serve [`read_transaction`](Self::read_transaction) and the
    /// stores' reads, and whether to open it read-only (then nothing is created in it,
    /// and the file must already hold flext's tables).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open); opened read-only, `flext.store.failed` naming the file
    /// when it holds no flext tables.
    pub fn open_with_options(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self> {
        let conn = SharedConnection::open_with(path, &options)?;
        if options.read_only {
            let tables: i64 = conn
                .lock()
                .query_row(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('flext_sagas', 'flext_events', 'flext_checkpoints')",
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| conn.error(e))?;
            if tables < 3 {
                return Err(crate::Error::infrastructure(
                    crate::codes::STORE_FAILED,
                    format!(
                        "sqlite ({}): the file holds no flext database (opened read-only, nothing was created in it): open it once read-write, or check the path",
                        conn.path()
                            .map_or_else(String::new, |p| p.display().to_string())
                    ),
                ));
            }
            return Ok(SqliteDatabase {
                conn,
                outbox_claim: std::sync::Arc::default(),
            });
        }
        Self::init(conn)
    }

    /// A database in private memory (for tests).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn in_memory() -> Result<Self> {
        Self::init(SharedConnection::in_memory()?)
    }

    fn init(conn: SharedConnection) -> Result<Self> {
        {
            let c = conn.lock();
            crate::saga::migrate_sqlite(&c)?;
            crate::event_store::migrate_sqlite(&c)?;
            c.execute_batch(
                "CREATE TABLE IF NOT EXISTS flext_checkpoints (
                     name TEXT PRIMARY KEY,
                     position INTEGER NOT NULL,
                     updated_ms INTEGER NOT NULL
                 );
                 CREATE TABLE IF NOT EXISTS flext_inbox (
                     consumer TEXT NOT NULL,
                     event_id TEXT NOT NULL,
                     PRIMARY KEY (consumer, event_id)
                 );",
            )
            .map_err(db_error)?;
        }
        Ok(SqliteDatabase {
            conn,
            outbox_claim: std::sync::Arc::default(),
        })
    }

    /// The saga log in this database (each write commits on the caller's thread).
    ///
    /// # Errors
    ///
    /// When the schema cannot be checked.
    pub fn saga_log(&self) -> Result<SqliteLog> {
        SqliteLog::on(self.conn.clone())
    }

    /// The event store in this database; every append also writes an outbox row per
    /// event, in the same transaction, for [`SqliteOutboxRelay`](super::SqliteOutboxRelay).
    ///
    /// # Errors
    ///
    /// When the schema cannot be checked.
    pub fn event_store(&self) -> Result<SqliteEventStore> {
        SqliteEventStore::on(self.conn.clone(), true)
    }

    /// Runs `work` in one transaction (`BEGIN IMMEDIATE`): everything it writes through
    /// the [`SqliteUnitOfWork`] commits together when it returns `Ok`, and nothing does when
    /// it returns `Err`.
    ///
    /// ```
    /// use flext::sqlite::SqliteDatabase;
    /// use flext::event_store::{NewEvent, StreamId};
    /// let db = SqliteDatabase::in_memory().unwrap();
    /// let ctx = flext::Context::new();
    /// let failed: flext::Result<()> = db.transaction(|uow| {
    ///     uow.append_events(&StreamId::new("Account", "a-1"), 0, &[NewEvent::new("opened", 1, serde_json::json!({}), &ctx)])?;
    ///     uow.save_checkpoint("balances", 1)?;
    ///     Err(flext::Error::internal("test.later", "a later write failed"))
    /// });
    /// assert!(failed.is_err());
    /// // Neither the event, its outbox row nor the checkpoint is there.
    /// assert_eq!(db.outbox_pending().unwrap(), 0);
    /// assert_eq!(db.transaction(|uow| uow.checkpoint("balances")).unwrap(), 0);
    /// ```
    ///
    /// # Errors
    ///
    /// `work`'s error (after rolling back); `flext.store.failed` when the transaction
    /// cannot begin or commit.
    pub fn transaction<T>(
        &self,
        work: impl FnOnce(&SqliteUnitOfWork<'_>) -> Result<T>,
    ) -> Result<T> {
        self.conn
            .transaction(|conn| work(&SqliteUnitOfWork { conn, suffix: "" }))
    }

    /// One write transaction on the connection itself (for stores of this database).
    pub(crate) fn transaction_raw<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T>,
    ) -> Result<T> {
        self.conn.transaction(work)
    }

    pub(crate) fn transaction_as<T>(
        &self,
        suffix: &str,
        work: impl FnOnce(&SqliteUnitOfWork<'_>) -> Result<T>,
    ) -> Result<T> {
        self.conn
            .transaction(|conn| work(&SqliteUnitOfWork { conn, suffix }))
    }

    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.conn.read(f)
    }

    /// Runs `work` in one read-only transaction on a read connection: one consistent
    /// snapshot of the database, taken without the write lock, so it never waits for a
    /// [`transaction`](Self::transaction) in progress (WAL mode) and never blocks one.
    /// For queries of a projection's tables, of checkpoints and of the outbox. A
    /// database in private memory, or opened with `readers(0)`, reads through the
    /// writer instead.
    ///
    /// ```
    /// use flext::sqlite::SqliteDatabase;
    /// let db = SqliteDatabase::in_memory().unwrap();
    /// db.transaction(|uow| {
    ///     uow.connection().execute_batch("CREATE TABLE balances (id TEXT, cents INTEGER)")?;
    ///     uow.connection().execute("INSERT INTO balances VALUES ('a-1', 250)", [])?;
    ///     Ok(())
    /// })
    /// .unwrap();
    /// let cents: i64 = db
    ///     .read_transaction(|read| {
    ///         Ok(read.connection().query_row("SELECT cents FROM balances", [], |r| r.get(0))?)
    ///     })
    ///     .unwrap();
    /// assert_eq!(cents, 250);
    /// ```
    ///
    /// # Errors
    ///
    /// `work`'s error; `flext.store.busy` when no read connection comes free within the
    /// busy timeout; a `flext.store.*` code when the database cannot be read. A write
    /// attempted through the connection fails with `flext.store.read_only`.
    pub fn read_transaction<T>(
        &self,
        work: impl FnOnce(&SqliteReadUnitOfWork<'_>) -> Result<T>,
    ) -> Result<T> {
        self.conn.read(|conn| work(&SqliteReadUnitOfWork { conn }))
    }

    /// How many appended events the outbox has not delivered yet.
    ///
    /// # Errors
    ///
    /// `flext.store.failed` when the database cannot be read.
    pub fn outbox_pending(&self) -> Result<u64> {
        self.read(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM flext_outbox WHERE delivered_ms IS NULL",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(db_error)
        })
    }
}

/// One read-only transaction on a [`SqliteDatabase`], from
/// [`SqliteDatabase::read_transaction`]: a consistent snapshot, read without the write
/// lock.
pub struct SqliteReadUnitOfWork<'c> {
    conn: &'c Connection,
}

impl SqliteReadUnitOfWork<'_> {
    /// The global position projection `name` has applied up to (0 before its first
    /// event), as of this snapshot.
    ///
    /// # Errors
    ///
    /// A `flext.store.*` code when the database cannot be read.
    pub fn checkpoint(&self, name: &str) -> Result<u64> {
        checkpoint_of(self.conn, name)
    }

    /// The read connection, inside this transaction: for queries of a projection's or
    /// a consumer's tables.
    pub fn connection(&self) -> &Connection {
        self.conn
    }
}

fn checkpoint_of(conn: &Connection, name: &str) -> Result<u64> {
    conn.prepare_cached("SELECT position FROM flext_checkpoints WHERE name = ?1")
        .and_then(|mut s| {
            s.query_row(params![name], |r| r.get::<_, i64>(0))
                .optional()
        })
        .map(|p| p.map_or(0, |p| u64::try_from(p).unwrap_or(0)))
        .map_err(db_error)
}

/// The writes of one transaction on a [`SqliteDatabase`]: events with their outbox rows,
/// saga transitions, projection checkpoints, inbox entries, and the caller's own tables
/// through [`connection`](Self::connection). Obtained from
/// [`SqliteDatabase::transaction`]; a PostgreSQL unit of work offers the same writes on
/// its own transaction.
pub struct SqliteUnitOfWork<'c> {
    conn: &'c Connection,
    /// Appended to a projection's table names while it is rebuilt (`__rebuild`).
    suffix: &'c str,
}

impl SqliteUnitOfWork<'_> {
    /// Appends `events` to `stream` at `expected_version`, with their outbox rows.
    /// Returns the stream's new version.
    ///
    /// # Errors
    ///
    /// As [`EventStore::append`](crate::event_store::EventStore::append).
    pub fn append_events(
        &self,
        stream: &StreamId,
        expected_version: u64,
        events: &[NewEvent],
    ) -> Result<u64> {
        crate::event_store::append_sqlite(self.conn, stream, expected_version, events, true)
    }

    /// Records a new saga, as [`SagaLog::create`](crate::saga::SagaLog::create).
    ///
    /// # Errors
    ///
    /// `flext.saga.exists` when the id is taken.
    pub fn create_saga(&self, record: &SagaRecord) -> Result<()> {
        crate::saga::create_sqlite(self.conn, record)
    }

    /// Records a saga transition, as [`SagaLog::append`](crate::saga::SagaLog::append).
    ///
    /// # Errors
    ///
    /// `flext.saga.lease_lost` (the fence is stale: see [`Fence`]) or `flext.saga.not_found`.
    pub fn append_saga(
        &self,
        id: Uuid,
        transition: &Transition,
        state: SagaState,
        lease: &Lease,
        fence: Fence,
    ) -> Result<()> {
        crate::saga::append_sqlite(self.conn, id, transition, state, lease, fence)
    }

    /// The global position projection `name` has applied up to (0 before its first
    /// event).
    ///
    /// # Errors
    ///
    /// `flext.store.failed` when the database cannot be read.
    pub fn checkpoint(&self, name: &str) -> Result<u64> {
        checkpoint_of(self.conn, &format!("{name}{}", self.suffix))
    }

    /// Records that projection `name` has applied every event up to `position`.
    ///
    /// # Errors
    ///
    /// `flext.store.failed` when the database cannot be written.
    pub fn save_checkpoint(&self, name: &str, position: u64) -> Result<()> {
        let name = format!("{name}{}", self.suffix);
        self.conn
            .prepare_cached(
                "INSERT INTO flext_checkpoints (name, position, updated_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_ms = excluded.updated_ms",
            )
            .and_then(|mut s| {
                s.execute(params![
                    name,
                    i64::try_from(position).unwrap_or(i64::MAX),
                    i64::try_from(crate::saga::now_ms()).unwrap_or(0)
                ])
            })
            .map(|_| ())
            .map_err(db_error)
    }

    /// Records that `consumer` handles event `event_id` now: `true` the first time,
    /// `false` when it already has (a redelivery to skip). The inbox half of the outbox
    /// pattern; write the consumer's effect in the same transaction.
    ///
    /// # Errors
    ///
    /// `flext.store.failed` when the database cannot be written.
    pub fn first_delivery(&self, consumer: &str, event_id: Uuid) -> Result<bool> {
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO flext_inbox (consumer, event_id) VALUES (?1, ?2)",
            )
            .and_then(|mut s| s.execute(params![consumer, event_id.to_string()]))
            .map(|n| n == 1)
            .map_err(db_error)
    }

    /// The table a projection writes as `table`: `table` itself, or its fresh copy while
    /// the projection is rebuilt. Use it in the projection's SQL.
    pub fn table(&self, table: &str) -> String {
        format!("{table}{}", self.suffix)
    }

    /// The connection, inside this transaction: for a projection's or a consumer's own
    /// tables.
    pub fn connection(&self) -> &Connection {
        self.conn
    }

    pub(crate) fn events_after(&self, position: u64, limit: usize) -> Result<Vec<EventEnvelope>> {
        crate::event_store::read_after_sqlite(self.conn, position, limit)
    }
}
