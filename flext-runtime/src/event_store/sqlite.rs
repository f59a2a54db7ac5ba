//! [`SqliteEventStore`]: event streams in a SQLite file, the embedded default.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::store::{conflict, duplicate_id};
use super::{EventEnvelope, EventStore, NewEvent, Snapshot, StreamId};
use crate::db::{SharedConnection, Synchronous};
use crate::error::{Error, Result};
use crate::future::BoxFuture;
use crate::idempotency::{IdempotencyClaim, Response};
use crate::saga::now_ms;

/// Event streams in a SQLite database in WAL mode; the file may be the one that holds
/// the saga log. One transaction per append: the expected-version check, every event of
/// the batch, and their positions commit together or not at all.
///
/// Positions are SQLite's `INTEGER PRIMARY KEY AUTOINCREMENT`, assigned inside the write
/// transaction; SQLite runs one write transaction at a time, so a position never
/// commits after a higher one and a reader of [`read_all`](EventStore::read_all) that has
/// seen position `p` never later finds a new event below `p`. (A rolled-back append
/// leaves a gap; readers do not assume positions are contiguous.)
///
/// Calls run on the caller's thread behind a mutex, each for the duration of its
/// statements and commit (tens of microseconds at `synchronous = NORMAL`).
pub struct SqliteEventStore {
    conn: SharedConnection,
    /// Whether each append also writes outbox rows (on a [`SqliteDatabase`]).
    ///
    /// [`SqliteDatabase`]: crate::sqlite::SqliteDatabase
    outbox: bool,
}

use crate::db::db_error;

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::infrastructure(
        crate::codes::EVENT_STORE_CORRUPT,
        format!("event store: {what} does not decode: {e}"),
    )
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) const COLUMNS: &str = "position, event_id, aggregate_type, aggregate_id, sequence, name, schema_version, timestamp_ms, correlation_id, causation_id, metadata, payload";

impl SqliteEventStore {
    /// Opens (creating if needed) the store at `path`, with [`Synchronous::Normal`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure),
    /// a `flext.store.*` code naming the cause (`flext.store.read_only`,
    /// `flext.store.not_a_database`, ...) and the file, when it cannot be opened, written
    /// or its schema created.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, Synchronous::Normal)
    }

    /// Opens the store at `path` with the given durability.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_with(path: impl AsRef<Path>, synchronous: Synchronous) -> Result<Self> {
        Self::init(SharedConnection::open(path, synchronous)?)
    }

    /// A store in a private in-memory database (for tests).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn in_memory() -> Result<Self> {
        Self::init(SharedConnection::in_memory()?)
    }

    fn init(conn: SharedConnection) -> Result<Self> {
        migrate(&conn.lock())?;
        Ok(SqliteEventStore {
            conn,
            outbox: false,
        })
    }

    /// The store on a connection shared with other stores, writing outbox rows with
    /// each append when `outbox`.
    pub(crate) fn on(conn: SharedConnection, outbox: bool) -> Result<Self> {
        migrate(&conn.lock())?;
        Ok(SqliteEventStore { conn, outbox })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        f(&mut self.conn.lock())
    }

    pub(crate) fn version_of(conn: &Connection, stream: &StreamId) -> Result<u64> {
        conn.prepare_cached(
            "SELECT COALESCE(MAX(sequence), 0) FROM flext_events WHERE aggregate_type = ?1 AND aggregate_id = ?2",
        )
        .and_then(|mut stmt| {
            stmt.query_row(params![stream.aggregate_type, stream.aggregate_id], |r| {
                r.get::<_, i64>(0)
            })
        })
        .map(|v| u64::try_from(v).unwrap_or(0))
        .map_err(db_error)
    }

    fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
        Ok(RawRow {
            position: r.get(0)?,
            event_id: r.get(1)?,
            aggregate_type: r.get(2)?,
            aggregate_id: r.get(3)?,
            sequence: r.get(4)?,
            name: r.get(5)?,
            schema_version: r.get(6)?,
            timestamp_ms: r.get(7)?,
            correlation_id: r.get(8)?,
            causation_id: r.get(9)?,
            metadata: r.get(10)?,
            payload: r.get(11)?,
        })
    }

    pub(crate) fn query(
        conn: &Connection,
        sql: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<EventEnvelope>> {
        let mut stmt = conn.prepare_cached(sql).map_err(db_error)?;
        let rows = stmt.query_map(args, Self::row).map_err(db_error)?;
        rows.map(|row| row.map_err(db_error)?.decode()).collect()
    }
}

/// Creates the event store's tables.
pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS flext_events (
             position INTEGER PRIMARY KEY AUTOINCREMENT,
             event_id TEXT NOT NULL UNIQUE,
             aggregate_type TEXT NOT NULL,
             aggregate_id TEXT NOT NULL,
             sequence INTEGER NOT NULL,
             name TEXT NOT NULL,
             schema_version INTEGER NOT NULL,
             timestamp_ms INTEGER NOT NULL,
             correlation_id TEXT NOT NULL,
             causation_id TEXT,
             metadata TEXT NOT NULL,
             payload TEXT NOT NULL,
             UNIQUE (aggregate_type, aggregate_id, sequence)
         );
         CREATE TABLE IF NOT EXISTS flext_snapshots (
             aggregate_type TEXT NOT NULL,
             aggregate_id TEXT NOT NULL,
             version INTEGER NOT NULL,
             state TEXT NOT NULL,
             taken_ms INTEGER NOT NULL,
             PRIMARY KEY (aggregate_type, aggregate_id)
         );
         CREATE TABLE IF NOT EXISTS flext_outbox (
             position INTEGER PRIMARY KEY,
             event_id TEXT NOT NULL,
             delivered_ms INTEGER
         );
         CREATE INDEX IF NOT EXISTS flext_outbox_pending ON flext_outbox (delivered_ms, position);",
    )
    .map_err(db_error)?;
    conn.execute_batch(crate::idempotency::sqlite::SCHEMA)
        .map_err(db_error)
}

/// Appends `events` to `stream` at `expected_version` inside the caller's transaction,
/// with an outbox row per event when `outbox`; refuses, having written nothing, on a
/// version conflict; a duplicate id fails the caller's transaction.
pub(crate) fn append_in(
    conn: &Connection,
    stream: &StreamId,
    expected_version: u64,
    events: &[NewEvent],
    outbox: bool,
) -> Result<u64> {
    let version = SqliteEventStore::version_of(conn, stream)?;
    if version != expected_version {
        return Err(conflict(stream, expected_version, version));
    }
    let now = int(now_ms());
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO flext_events (event_id, aggregate_type, aggregate_id, sequence, name, schema_version, timestamp_ms, correlation_id, causation_id, metadata, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )
        .map_err(db_error)?;
    for (i, e) in events.iter().enumerate() {
        let metadata =
            serde_json::to_string(&e.metadata).map_err(|e| corrupt("the metadata", e))?;
        let payload = serde_json::to_string(&e.payload).map_err(|e| corrupt("a payload", e))?;
        let inserted = insert.execute(params![
            e.event_id.to_string(),
            stream.aggregate_type,
            stream.aggregate_id,
            int(version + i as u64 + 1),
            e.name,
            i64::from(e.schema_version),
            now,
            e.correlation_id.to_string(),
            e.causation_id.map(|c| c.to_string()),
            metadata,
            payload,
        ]);
        match inserted {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(f, Some(msg)))
                if f.code == rusqlite::ErrorCode::ConstraintViolation
                    && msg.contains("event_id") =>
            {
                return Err(duplicate_id(e.event_id));
            }
            Err(other) => return Err(db_error(other)),
        }
        if outbox {
            conn.prepare_cached("INSERT INTO flext_outbox (position, event_id) VALUES (?1, ?2)")
                .and_then(|mut stmt| {
                    stmt.execute(params![conn.last_insert_rowid(), e.event_id.to_string()])
                })
                .map_err(db_error)?;
        }
    }
    Ok(version + events.len() as u64)
}

/// The events matching `condition` (SQL over `flext_events`), in global order.
pub(crate) fn query_where(
    conn: &Connection,
    condition: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<EventEnvelope>> {
    SqliteEventStore::query(
        conn,
        &format!("SELECT {COLUMNS} FROM flext_events WHERE {condition} ORDER BY position"),
        args,
    )
}

/// Up to `limit` events after global `position`, in order.
pub(crate) fn read_after(
    conn: &Connection,
    position: u64,
    limit: usize,
) -> Result<Vec<EventEnvelope>> {
    SqliteEventStore::query(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM flext_events WHERE position > ?1 ORDER BY position LIMIT ?2"
        ),
        params![int(position), i64::try_from(limit).unwrap_or(i64::MAX)],
    )
}

/// A row as SQLite returns it.
struct RawRow {
    position: i64,
    event_id: String,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    name: String,
    schema_version: i64,
    timestamp_ms: i64,
    correlation_id: String,
    causation_id: Option<String>,
    metadata: String,
    payload: String,
}

impl RawRow {
    fn decode(self) -> Result<EventEnvelope> {
        let uuid = |what: &str, s: &str| s.parse::<Uuid>().map_err(|e| corrupt(what, e));
        Ok(EventEnvelope {
            position: u64::try_from(self.position).unwrap_or(0),
            event_id: uuid("an event id", &self.event_id)?,
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            sequence: u64::try_from(self.sequence).unwrap_or(0),
            name: self.name,
            schema_version: u32::try_from(self.schema_version).unwrap_or(0),
            timestamp_ms: u64::try_from(self.timestamp_ms).unwrap_or(0),
            correlation_id: uuid("a correlation id", &self.correlation_id)?,
            causation_id: self
                .causation_id
                .as_deref()
                .map(|c| uuid("a causation id", c))
                .transpose()?,
            metadata: serde_json::from_str(&self.metadata)
                .map_err(|e| corrupt("the metadata", e))?,
            payload: serde_json::from_str(&self.payload).map_err(|e| corrupt("a payload", e))?,
        })
    }
}

impl EventStore for SqliteEventStore {
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected_version: u64,
        events: &'a [NewEvent],
    ) -> BoxFuture<'a, Result<u64>> {
        let result = self
            .conn
            .transaction(|conn| append_in(conn, stream, expected_version, events, self.outbox));
        Box::pin(std::future::ready(result))
    }

    fn append_claimed<'a>(
        &'a self,
        stream: &'a StreamId,
        expected_version: u64,
        events: &'a [NewEvent],
        claim: &'a IdempotencyClaim,
        response: &'a Response,
    ) -> BoxFuture<'a, Result<u64>> {
        let result = self.conn.transaction(|conn| {
            let version = append_in(conn, stream, expected_version, events, self.outbox)?;
            if !crate::idempotency::sqlite::complete_in(conn, claim, response)? {
                return Err(crate::idempotency::claim_lost(claim));
            }
            Ok(version)
        });
        if result.is_ok() {
            claim.set_completed();
        }
        Box::pin(std::future::ready(result))
    }

    fn load<'a>(
        &'a self,
        stream: &'a StreamId,
        after: u64,
    ) -> BoxFuture<'a, Result<Vec<EventEnvelope>>> {
        let result = self.conn.read(|conn| {
            Self::query(
                conn,
                &format!("SELECT {COLUMNS} FROM flext_events WHERE aggregate_type = ?1 AND aggregate_id = ?2 AND sequence > ?3 ORDER BY sequence"),
                params![stream.aggregate_type, stream.aggregate_id, int(after)],
            )
        });
        Box::pin(std::future::ready(result))
    }

    fn version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<u64>> {
        let result = self.conn.read(|conn| Self::version_of(conn, stream));
        Box::pin(std::future::ready(result))
    }

    fn read_all<'a>(
        &'a self,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<EventEnvelope>>> {
        let result = self.conn.read(|conn| {
            Self::query(
                conn,
                &format!("SELECT {COLUMNS} FROM flext_events WHERE position > ?1 ORDER BY position LIMIT ?2"),
                params![int(after), i64::try_from(limit).unwrap_or(i64::MAX)],
            )
        });
        Box::pin(std::future::ready(result))
    }

    fn save_snapshot<'a>(&'a self, snapshot: &'a Snapshot) -> BoxFuture<'a, Result<()>> {
        let result = self.with(|conn| {
            let state = serde_json::to_string(&snapshot.state).map_err(|e| corrupt("a snapshot", e))?;
            conn.prepare_cached(
                "INSERT INTO flext_snapshots (aggregate_type, aggregate_id, version, state, taken_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
                 SET version = excluded.version, state = excluded.state, taken_ms = excluded.taken_ms
                 WHERE excluded.version > flext_snapshots.version",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    snapshot.stream.aggregate_type,
                    snapshot.stream.aggregate_id,
                    int(snapshot.version),
                    state,
                    int(snapshot.taken_ms)
                ])
            })
            .map_err(db_error)?;
            Ok(())
        });
        Box::pin(std::future::ready(result))
    }

    fn load_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
    ) -> BoxFuture<'a, Result<Option<Snapshot>>> {
        let result = self.conn.read(|conn| {
            let row = conn
                .prepare_cached(
                    "SELECT version, state, taken_ms FROM flext_snapshots WHERE aggregate_type = ?1 AND aggregate_id = ?2",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(params![stream.aggregate_type, stream.aggregate_id], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
                    })
                    .optional()
                })
                .map_err(db_error)?;
            row.map(|(version, state, taken)| {
                Ok(Snapshot {
                    stream: stream.clone(),
                    version: u64::try_from(version).unwrap_or(0),
                    state: serde_json::from_str(&state).map_err(|e| corrupt("a snapshot", e))?,
                    taken_ms: u64::try_from(taken).unwrap_or(0),
                })
            })
            .transpose()
        });
        Box::pin(std::future::ready(result))
    }
}
