//! PostgreSQL backends (the `postgres` feature), for several processes on several
//! machines sharing one database: the saga log ([`PgSagaLog`]), the event store with its
//! snapshots and outbox ([`PgEventStore`]), projections ([`PgProjectionRunner`]), the
//! outbox relay ([`PgOutboxRelay`]) and the unit of work ([`PgUnitOfWork`]) that commits
//! events, outbox rows, saga transitions, checkpoints, inbox entries and the caller's own
//! rows in one transaction.
//!
//! Point an application at PostgreSQL by connecting once and taking every store from the
//! [`PgDatabase`]:
//!
//! ```no_run
//! use flext::database::BusRelay;
//! use flext::event_store::{NewEvent, StreamId};
//! use flext::postgres::PgDatabase;
//! use flext::saga::SagaRunner;
//! # async fn run(bus: flext::Bus) -> flext::Result<()> {
//! let db = PgDatabase::connect("postgres://app@db.internal/payments").await?; // migrates once, under a lock
//! let runner = SagaRunner::builder(db.saga_log()).owner("payments").build();
//! let events = db.event_store(); // for Repository::new; every append writes its outbox rows
//! let uow = db.begin().await?; // events, saga transitions, checkpoints, inbox entries, your rows
//! let opened = NewEvent::new("account.opened", 1, serde_json::json!({}), &flext::Context::new());
//! uow.append_events(&StreamId::new("Account", "a-1"), 0, &[opened]).await?;
//! uow.commit().await?; // or drop it: nothing is written
//! let outbox = flext::postgres::PgOutboxRelay::new(db.clone(), BusRelay::new(bus)); // one publisher at a time
//! let delivering = outbox.spawn(std::time::Duration::from_millis(50));
//! # let _ = (runner, events, delivering);
//! # Ok(()) }
//! ```
//!
//! The driver is `tokio-postgres` with a `deadpool-postgres` pool: runtime-checked
//! queries, a small dependency tree, and no database needed at build time (sqlx's
//! compile-time checking would need one, or an offline cache, on every build).
//!
//! Migrations run when [`PgDatabase::connect`] connects, in one transaction under an
//! advisory lock, so that several processes starting at once create the schema once.

mod cluster;
mod connect;
mod events;
mod idempotency;
mod inbox;
mod liveness;
mod outbox;
mod projection;
mod queue;
mod saga;
mod saga_writes;
mod signals;
mod uow;

use deadpool_postgres::Pool;

use self::connect::{Target, connect_one, pool_error};
use crate::error::{Error, Result};

pub use self::cluster::TestCluster;
pub use self::connect::PgDatabaseBuilder;
pub use self::events::{PgEventStore, SEQUENCE_BATCH};
pub use self::outbox::{PgOutboxLoop, PgOutboxRelay};
pub use self::projection::{PgProjection, PgProjectionLoop, PgProjectionRunner};
pub use self::saga::PgSagaLog;
pub use self::uow::PgUnitOfWork;
/// The connection pool flext uses ([`PgDatabase::client`] hands out its connections).
pub use deadpool_postgres;
/// The PostgreSQL client flext uses, for a caller's own SQL.
pub use tokio_postgres;

/// The advisory lock key under which migrations run ("flext" in ASCII).
const MIGRATION_LOCK: i64 = 0x0066_6c65_7874;

pub(crate) fn pg_error(e: tokio_postgres::Error) -> Error {
    connect::classify(e, None)
}

/// A PostgreSQL error as a flext error, classified as the stores classify theirs (one
/// `flext.store.*` code per cause; the driver's error is the source), so that `?` works
/// on a caller's own queries.
impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        pg_error(e)
    }
}

/// A count, position, version or time in milliseconds as PostgreSQL's `BIGINT`, clamped
/// at `i64::MAX` (none of them reaches it).
pub(crate) fn to_bigint(v: impl TryInto<i64>) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

/// A `BIGINT` read back as a count, position, version or time; a negative value (never
/// written by flext) reads as 0.
pub(crate) fn from_bigint(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A PostgreSQL database holding flext's tables, behind a connection pool. Cheap to
/// clone.
#[derive(Clone)]
pub struct PgDatabase {
    pool: Pool,
    /// Host, port, database and user, for messages (never the password).
    target: Target,
    wait_timeout: Option<std::time::Duration>,
}

impl std::fmt::Debug for PgDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDatabase")
            .field("target", &self.target.to_string())
            .field("max_connections", &self.pool.status().max_size)
            .finish_non_exhaustive()
    }
}

impl PgDatabase {
    /// Connects to `url` (`postgres://user@host:port/db`) with the
    /// [`builder`](Self::builder)'s defaults (16 connections, TLS when the URL says
    /// `sslmode=require`), and creates or upgrades flext's tables.
    ///
    /// # Errors
    ///
    /// As [`PgDatabaseBuilder::connect`]: `flext.store.bad_config` for a URL that does
    /// not parse (its password hidden); `flext.store.unavailable`,
    /// `flext.store.starting_up`, `flext.store.auth_failed`, `flext.store.no_database`
    /// naming host, port, database and user; `flext.store.failed` when the schema
    /// cannot be created.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder(url).connect().await
    }

    /// [`connect`](Self::connect) for an operator's tool: refuses a database that holds
    /// no flext saga log, creating nothing in it; otherwise connects (upgrading an older
    /// schema).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound), `flext.saga.no_log`, when the
    /// database has no `flext_sagas` table (the message names the database, its password
    /// hidden); otherwise as [`connect`](Self::connect).
    pub async fn connect_existing(url: &str) -> Result<Self> {
        let (client, task, _) = connect_one(url).await?;
        let present: bool = client
            .query_one("SELECT to_regclass('flext_sagas') IS NOT NULL", &[])
            .await
            .map_err(pg_error)?
            .get(0);
        drop(client);
        let _ = task.await;
        if !present {
            return Err(Error::not_found(
                crate::codes::SAGA_NO_LOG,
                format!(
                    "{} holds no flext saga log (it has no flext_sagas table): give the database your workers' PgDatabase connects to",
                    crate::input::echo(&crate::input::redact_url(url))
                ),
            ));
        }
        Self::connect(url).await
    }

    /// A connection from the pool, for the caller's own SQL outside a unit of work (it
    /// derefs to [`tokio_postgres::Client`]; returned to the pool on drop).
    ///
    /// # Errors
    ///
    /// `flext.store.failed` when no connection can be had.
    pub async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|e| pool_error(e, &self.target, self.wait_timeout))
    }

    /// Runs the caller's schema statements (`CREATE TABLE IF NOT EXISTS ...`) in one
    /// transaction under the lock flext's own migrations take, so that processes starting
    /// at once run them one after another. (Concurrent `CREATE TABLE IF NOT EXISTS` of one
    /// table can fail on PostgreSQL's catalogue with a unique violation.)
    ///
    /// ```no_run
    /// # async fn run(db: flext::postgres::PgDatabase) -> flext::Result<()> {
    /// db.apply_schema("CREATE TABLE IF NOT EXISTS notifications (event_id UUID PRIMARY KEY)").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// `flext.store.failed` with PostgreSQL's message when a statement fails; then none
    /// of them took effect.
    pub async fn apply_schema(&self, sql: &str) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg_error)?;
        tx.batch_execute(sql).await.map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)
    }

    /// The schema version in the database (0 before the first migration).
    async fn schema_version(client: &impl deadpool_postgres::GenericClient) -> Result<i32> {
        let exists: bool = client
            .query_one("SELECT to_regclass('flext_schema') IS NOT NULL", &[])
            .await
            .map_err(pg_error)?
            .get(0);
        if !exists {
            return Ok(0);
        }
        Ok(client
            .query_opt("SELECT version FROM flext_schema", &[])
            .await
            .map_err(pg_error)?
            .map_or(0, |r| r.get(0)))
    }

    /// Creates or upgrades the schema, once: a database already at [`SCHEMA_VERSION`] is
    /// left alone without a lock or a DDL statement (a `CREATE INDEX IF NOT EXISTS` would
    /// still lock its table against the appends of the processes already running, and
    /// could deadlock with them); otherwise the DDL runs under the migration lock, after
    /// checking the version again.
    async fn migrate(&self) -> Result<()> {
        if Self::schema_version(&self.client().await?).await? >= SCHEMA_VERSION {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg_error)?;
        if Self::schema_version(&tx).await? >= SCHEMA_VERSION {
            return tx.commit().await.map_err(pg_error);
        }
        tx.batch_execute(SCHEMA).await.map_err(pg_error)?;
        tx.batch_execute(SCHEMA_4).await.map_err(pg_error)?;
        tx.batch_execute(signals::SCHEMA).await.map_err(pg_error)?;
        tx.batch_execute(signals::SCHEMA_6)
            .await
            .map_err(pg_error)?;
        tx.batch_execute(queue::SCHEMA).await.map_err(pg_error)?;
        tx.execute(
            "INSERT INTO flext_schema (one, version) VALUES (1, $1)
             ON CONFLICT (one) DO UPDATE SET version = excluded.version",
            &[&SCHEMA_VERSION],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)
    }
}

/// The version of [`SCHEMA`]; raise it with every change to the schema.
const SCHEMA_VERSION: i32 = 6;

/// Every flext table, created when missing.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS flext_schema (
                 one INTEGER PRIMARY KEY CHECK (one = 1),
                 version INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS flext_sagas (
                 id UUID PRIMARY KEY,
                 name TEXT NOT NULL,
                 input JSON NOT NULL,
                 correlation_id UUID NOT NULL,
                 state TEXT NOT NULL,
                 owner TEXT NOT NULL,
                 lease_until_ms BIGINT NOT NULL,
                 created_ms BIGINT NOT NULL,
                 definition TEXT NOT NULL DEFAULT ''
             );
             CREATE INDEX IF NOT EXISTS flext_sagas_state ON flext_sagas (state, lease_until_ms);
             CREATE INDEX IF NOT EXISTS flext_sagas_created ON flext_sagas (created_ms);
             CREATE TABLE IF NOT EXISTS flext_events (
                 id BIGSERIAL PRIMARY KEY,
                 txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
                 position BIGINT UNIQUE,
                 event_id UUID NOT NULL UNIQUE,
                 aggregate_type TEXT NOT NULL,
                 aggregate_id TEXT NOT NULL,
                 sequence BIGINT NOT NULL,
                 name TEXT NOT NULL,
                 schema_version INTEGER NOT NULL,
                 timestamp_ms BIGINT NOT NULL,
                 correlation_id UUID NOT NULL,
                 causation_id UUID,
                 metadata JSON NOT NULL,
                 payload JSON NOT NULL,
                 UNIQUE (aggregate_type, aggregate_id, sequence)
             );
             CREATE INDEX IF NOT EXISTS flext_events_unsequenced ON flext_events (txid, id) WHERE position IS NULL;
             CREATE TABLE IF NOT EXISTS flext_snapshots (
                 aggregate_type TEXT NOT NULL,
                 aggregate_id TEXT NOT NULL,
                 version BIGINT NOT NULL,
                 state JSON NOT NULL,
                 taken_ms BIGINT NOT NULL,
                 PRIMARY KEY (aggregate_type, aggregate_id)
             );
             CREATE TABLE IF NOT EXISTS flext_saga_transitions (
                 saga_id UUID NOT NULL REFERENCES flext_sagas (id),
                 seq INTEGER NOT NULL,
                 body JSON NOT NULL,
                 at_ms BIGINT NOT NULL,
                 PRIMARY KEY (saga_id, seq)
             );
             CREATE TABLE IF NOT EXISTS flext_outbox (
                 id BIGINT PRIMARY KEY REFERENCES flext_events (id),
                 delivered_ms BIGINT
             );
             CREATE INDEX IF NOT EXISTS flext_outbox_pending ON flext_outbox (id) WHERE delivered_ms IS NULL;
             CREATE TABLE IF NOT EXISTS flext_checkpoints (
                 name TEXT PRIMARY KEY,
                 position BIGINT NOT NULL,
                 updated_ms BIGINT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS flext_inbox (
                 consumer TEXT NOT NULL,
                 event_id UUID NOT NULL,
                 PRIMARY KEY (consumer, event_id)
             );
             -- version 2: fencing. The epoch moves on with every claim; seq counts the
             -- transitions, so a write states the one it follows.
             ALTER TABLE flext_sagas ADD COLUMN IF NOT EXISTS epoch BIGINT NOT NULL DEFAULT 0;
             ALTER TABLE flext_sagas ADD COLUMN IF NOT EXISTS seq BIGINT NOT NULL DEFAULT 0;
             UPDATE flext_sagas s SET seq = (SELECT COUNT(*) FROM flext_saga_transitions t WHERE t.saga_id = s.id)
                 WHERE s.seq = 0;
             CREATE INDEX IF NOT EXISTS flext_sagas_state_created ON flext_sagas (state, created_ms);
             CREATE INDEX IF NOT EXISTS flext_sagas_name_created ON flext_sagas (name, created_ms);
             -- version 3: stored values as `json`, which keeps the text as written
             -- (`jsonb` turns -0.0 into 0 and refuses a NUL character).
             ALTER TABLE flext_sagas ALTER COLUMN input TYPE JSON USING input::json;
             ALTER TABLE flext_events ALTER COLUMN metadata TYPE JSON USING metadata::json,
                                      ALTER COLUMN payload TYPE JSON USING payload::json;
             ALTER TABLE flext_snapshots ALTER COLUMN state TYPE JSON USING state::json;
             ALTER TABLE flext_saga_transitions ALTER COLUMN body TYPE JSON USING body::json;";

/// Schema version 4: idempotency keys.
const SCHEMA_4: &str = idempotency::SCHEMA;

impl PgDatabase {
    /// The saga log in this database.
    pub fn saga_log(&self) -> PgSagaLog {
        PgSagaLog {
            db: self.clone(),
            liveness: liveness::Liveness::default(),
        }
    }

    /// The event store in this database; every append also writes an outbox row per
    /// event, in the same transaction, for [`PgOutboxRelay`].
    pub fn event_store(&self) -> PgEventStore {
        PgEventStore {
            db: self.clone(),
            outbox: true,
        }
    }

    /// Begins a transaction: everything written through the returned [`PgUnitOfWork`]
    /// commits together on [`PgUnitOfWork::commit`], and nothing does when it is dropped
    /// uncommitted (an error returned with `?`, a panic, a cancelled future).
    ///
    /// # Errors
    ///
    /// `flext.store.failed` when no connection can be had or `BEGIN` fails.
    pub async fn begin(&self) -> Result<PgUnitOfWork> {
        PgUnitOfWork::begin(self, "").await
    }

    /// How many appended events the outbox has not delivered yet.
    ///
    /// # Errors
    ///
    /// `flext.store.failed` when the database cannot be read.
    pub async fn outbox_pending(&self) -> Result<u64> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT COUNT(*) FROM flext_outbox WHERE delivered_ms IS NULL",
                &[],
            )
            .await
            .map_err(pg_error)?;
        Ok(from_bigint(row.get(0)))
    }
}
