//! One SQLite connection shared by every store opened on the same [`SqliteDatabase`]
//! (layer 1: it knows connections, not what the stores keep in them).
//!
//! [`SqliteDatabase`]: crate::database::SqliteDatabase

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rusqlite::Connection;

use crate::error::{Error, Result};

/// How hard SQLite works to make a commit durable (`PRAGMA synchronous`), in WAL mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// `NORMAL`, the default: every committed transition survives a crash of the
    /// process; the last commits before a power loss or an OS crash may be lost (the WAL
    /// is synced at checkpoints, not at each commit). About 15 µs a commit here.
    #[default]
    Normal,
    /// `FULL`: every committed transition also survives a power loss. About 150 µs a
    /// commit here.
    Full,
}

pub(crate) fn db_error(e: rusqlite::Error) -> Error {
    Error::infrastructure(crate::codes::STORE_FAILED, format!("sqlite: {e}")).with_source(e)
}

/// A connection in WAL mode with a busy timeout, shared behind a mutex.
#[derive(Clone)]
pub(crate) struct SharedConnection(pub(crate) Arc<Mutex<Connection>>);

impl SharedConnection {
    pub(crate) fn open(path: impl AsRef<Path>, synchronous: Synchronous) -> Result<Self> {
        Self::setup(Connection::open(path).map_err(db_error)?, synchronous)
    }

    pub(crate) fn in_memory() -> Result<Self> {
        Self::setup(
            Connection::open_in_memory().map_err(db_error)?,
            Synchronous::Normal,
        )
    }

    pub(crate) fn setup(conn: Connection, synchronous: Synchronous) -> Result<Self> {
        let sync = match synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db_error)?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync};"
        ))
        .map_err(db_error)?;
        Ok(SharedConnection(Arc::new(Mutex::new(conn))))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction: committed when it returns `Ok`,
    /// rolled back otherwise.
    pub(crate) fn transaction<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_error)?;
        let out = f(&tx)?;
        tx.commit().map_err(db_error)?;
        Ok(out)
    }
}
