//! [`SqliteLog`]: the saga log in a SQLite file, the embedded default.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use uuid::Uuid;

use super::log::{
    Lease, SagaLog, SagaRecord, SagaState, SagaSummary, Transition, lease_lost, now_ms,
    unknown_saga,
};
use crate::error::{Error, Result};
use crate::future::BoxFuture;

/// How hard SQLite works to make a commit durable (`PRAGMA synchronous`), in WAL mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// `NORMAL`, the default: every committed transition survives a crash of the
    /// process; the last commits before a power loss or an OS crash may be lost (the WAL
    /// is synced at checkpoints, not at each commit). About 28 µs a commit here.
    #[default]
    Normal,
    /// `FULL`: every committed transition also survives a power loss. About 5 times the
    /// cost of `Normal` a commit here.
    Full,
}

/// The saga log in a SQLite database, in WAL mode, one transaction per transition. Every
/// write checks the lease, so two processes sharing the file never drive the same saga at
/// once; a process that dies leaves its leases to expire, and
/// [`SagaRunner::recover`](super::SagaRunner::recover) in another process takes them over.
///
/// The connection is used from the runner's task behind a mutex: a commit blocks the
/// executor thread for its duration (tens of microseconds).
pub struct SqliteLog {
    conn: Mutex<Connection>,
}

fn db_error(e: rusqlite::Error) -> Error {
    Error::infrastructure(crate::codes::SAGA_LOG_FAILED, format!("saga log: {e}")).with_source(e)
}

fn json_error(e: serde_json::Error) -> Error {
    Error::infrastructure(
        crate::codes::SAGA_LOG_CORRUPT,
        format!("saga log entry does not decode: {e}"),
    )
    .with_source(e)
}

impl SqliteLog {
    /// Opens (creating if needed) the log at `path` with [`Synchronous::Normal`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure) when the file
    /// cannot be opened or the schema created.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, Synchronous::Normal)
    }

    /// Opens the log at `path` with the given durability.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_with(path: impl AsRef<Path>, synchronous: Synchronous) -> Result<Self> {
        let conn = Connection::open(path).map_err(db_error)?;
        Self::init(conn, synchronous)
    }

    /// A log in a private in-memory database (for tests).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn in_memory() -> Result<Self> {
        Self::init(
            Connection::open_in_memory().map_err(db_error)?,
            Synchronous::Normal,
        )
    }

    fn init(conn: Connection, synchronous: Synchronous) -> Result<Self> {
        let sync = match synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db_error)?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = {sync};
             CREATE TABLE IF NOT EXISTS flext_sagas (
                 id TEXT PRIMARY KEY,
                 name TEXT NOT NULL,
                 input TEXT NOT NULL,
                 correlation_id TEXT NOT NULL,
                 state TEXT NOT NULL,
                 owner TEXT NOT NULL,
                 lease_until_ms INTEGER NOT NULL,
                 created_ms INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS flext_sagas_state ON flext_sagas (state, created_ms);
             CREATE TABLE IF NOT EXISTS flext_saga_transitions (
                 saga_id TEXT NOT NULL,
                 seq INTEGER NOT NULL,
                 body TEXT NOT NULL,
                 PRIMARY KEY (saga_id, seq)
             );"
        ))
        .map_err(db_error)?;
        // Logs written before definitions were recorded gain the column, once.
        let has_definition = conn
            .prepare("SELECT 1 FROM pragma_table_info('flext_sagas') WHERE name = 'definition'")
            .and_then(|mut stmt| stmt.exists([]))
            .map_err(db_error)?;
        if !has_definition {
            conn.execute_batch(
                "ALTER TABLE flext_sagas ADD COLUMN definition TEXT NOT NULL DEFAULT ''",
            )
            .map_err(db_error)?;
        }
        Ok(SqliteLog {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        f(&mut self.conn.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn read(conn: &Connection, id: Uuid) -> Result<SagaRecord> {
        let row = conn
            .query_row(
                "SELECT name, input, correlation_id, state, owner, lease_until_ms, definition FROM flext_sagas WHERE id = ?1",
                params![id.to_string()],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, String>(6)?,
                    ))
                },
            )
            .optional()
            .map_err(db_error)?
            .ok_or_else(|| unknown_saga(id))?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT body FROM flext_saga_transitions WHERE saga_id = ?1 ORDER BY seq",
            )
            .map_err(db_error)?;
        let transitions = stmt
            .query_map(params![id.to_string()], |r| r.get::<_, String>(0))
            .map_err(db_error)?
            .map(|body| {
                let body = body.map_err(db_error)?;
                serde_json::from_str::<Transition>(&body).map_err(json_error)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SagaRecord {
            id,
            name: row.0,
            input: serde_json::from_str(&row.1).map_err(json_error)?,
            correlation_id: row.2.parse().map_err(|e| {
                Error::infrastructure(
                    crate::codes::SAGA_LOG_CORRUPT,
                    format!("bad correlation id in the log: {e}"),
                )
            })?,
            state: SagaState::parse(&row.3)?,
            transitions,
            owner: row.4,
            lease_until_ms: u64::try_from(row.5).unwrap_or(0),
            definition: row.6,
        })
    }
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl SagaLog for SqliteLog {
    fn create<'a>(&'a self, record: &'a SagaRecord) -> BoxFuture<'a, Result<()>> {
        let result = self.with(|conn| {
            let input = serde_json::to_string(&record.input).map_err(json_error)?;
            let inserted = conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO flext_sagas (id, name, input, correlation_id, state, owner, lease_until_ms, created_ms, definition)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        record.id.to_string(),
                        record.name,
                        input,
                        record.correlation_id.to_string(),
                        record.state.as_str(),
                        record.owner,
                        ms(record.lease_until_ms),
                        ms(now_ms()),
                        record.definition,
                    ])
                })
                .map_err(db_error)?;
            if inserted == 0 {
                return Err(Error::conflict(crate::codes::SAGA_EXISTS, format!("saga {} is already in the log", record.id)));
            }
            Ok(())
        });
        Box::pin(std::future::ready(result))
    }

    fn append<'a>(
        &'a self,
        id: Uuid,
        transition: &'a Transition,
        state: SagaState,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<()>> {
        let result = self.with(|conn| {
            let now = now_ms();
            let body = serde_json::to_string(transition).map_err(json_error)?;
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_error)?;
            let updated = tx
                .prepare_cached(
                    "UPDATE flext_sagas SET state = ?1, owner = ?2, lease_until_ms = ?3
                     WHERE id = ?4 AND (owner = ?2 OR lease_until_ms <= ?5)",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        state.as_str(),
                        lease.owner,
                        ms(now.saturating_add(lease.duration_ms)),
                        id.to_string(),
                        ms(now)
                    ])
                })
                .map_err(db_error)?;
            if updated == 0 {
                let owner: Option<String> = tx
                    .query_row("SELECT owner FROM flext_sagas WHERE id = ?1", params![id.to_string()], |r| r.get(0))
                    .optional()
                    .map_err(db_error)?;
                return Err(match owner {
                    Some(owner) => lease_lost(id, &owner),
                    None => unknown_saga(id),
                });
            }
            tx.prepare_cached(
                "INSERT INTO flext_saga_transitions (saga_id, seq, body)
                 VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM flext_saga_transitions WHERE saga_id = ?1), ?2)",
            )
            .and_then(|mut stmt| stmt.execute(params![id.to_string(), body]))
            .map_err(db_error)?;
            tx.commit().map_err(db_error)
        });
        Box::pin(std::future::ready(result))
    }

    fn load<'a>(&'a self, id: Uuid) -> BoxFuture<'a, Result<SagaRecord>> {
        let result = self.with(|conn| Self::read(conn, id));
        Box::pin(std::future::ready(result))
    }

    fn claim_expired<'a>(
        &'a self,
        lease: &'a Lease,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Vec<SagaRecord>>> {
        let result = self.with(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_error)?;
            let ids: Vec<String> = {
                let mut stmt = tx
                    .prepare(
                        "SELECT id FROM flext_sagas
                         WHERE state IN ('running', 'compensating') AND lease_until_ms <= ?1
                         ORDER BY created_ms",
                    )
                    .map_err(db_error)?;
                stmt.query_map(params![ms(now_ms)], |r| r.get(0))
                    .map_err(db_error)?
                    .collect::<rusqlite::Result<_>>()
                    .map_err(db_error)?
            };
            tx.execute(
                "UPDATE flext_sagas SET owner = ?1, lease_until_ms = ?2
                 WHERE state IN ('running', 'compensating') AND lease_until_ms <= ?3",
                params![
                    lease.owner,
                    ms(now_ms.saturating_add(lease.duration_ms)),
                    ms(now_ms)
                ],
            )
            .map_err(db_error)?;
            let records = ids
                .iter()
                .map(|id| {
                    let id: Uuid = id.parse().map_err(|e| {
                        Error::infrastructure(
                            crate::codes::SAGA_LOG_CORRUPT,
                            format!("bad saga id in the log: {e}"),
                        )
                    })?;
                    Self::read(&tx, id)
                })
                .collect::<Result<Vec<_>>>()?;
            tx.commit().map_err(db_error)?;
            Ok(records)
        });
        Box::pin(std::future::ready(result))
    }

    fn renew<'a>(&'a self, id: Uuid, lease: &'a Lease) -> BoxFuture<'a, Result<()>> {
        let result = self.with(|conn| {
            let now = now_ms();
            let changed = conn
                .execute(
                    "UPDATE flext_sagas SET lease_until_ms = ?1
                     WHERE id = ?2 AND owner = ?3 AND lease_until_ms > ?4",
                    params![
                        ms(now.saturating_add(lease.duration_ms)),
                        id.to_string(),
                        lease.owner,
                        ms(now)
                    ],
                )
                .map_err(db_error)?;
            if changed == 1 {
                return Ok(());
            }
            let owner: Option<String> = conn
                .query_row(
                    "SELECT owner FROM flext_sagas WHERE id = ?1",
                    params![id.to_string()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_error)?;
            Err(match owner {
                Some(owner) => lease_lost(id, &owner),
                None => unknown_saga(id),
            })
        });
        Box::pin(std::future::ready(result))
    }

    fn list<'a>(&'a self, state: SagaState) -> BoxFuture<'a, Result<Vec<SagaSummary>>> {
        let result = self.with(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT s.id, s.name, s.owner, (SELECT COUNT(*) FROM flext_saga_transitions t WHERE t.saga_id = s.id)
                     FROM flext_sagas s WHERE s.state = ?1 ORDER BY s.created_ms",
                )
                .map_err(db_error)?;
            let rows = stmt
                .query_map(params![state.as_str()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?))
                })
                .map_err(db_error)?;
            rows.map(|row| {
                let (id, name, owner, n) = row.map_err(db_error)?;
                Ok(SagaSummary {
                    id: id.parse().map_err(|e| {
                        Error::infrastructure(crate::codes::SAGA_LOG_CORRUPT, format!("bad saga id in the log: {e}"))
                    })?,
                    name,
                    state,
                    transitions: usize::try_from(n).unwrap_or(0),
                    owner,
                })
            })
            .collect()
        });
        Box::pin(std::future::ready(result))
    }
}
