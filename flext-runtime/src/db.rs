//! The SQLite connections every store opened on one [`SqliteDatabase`] shares: one
//! writer behind a mutex, and a pool of read connections that never take the write lock
//! (layer 1: it knows connections, not what the stores keep in them).
//!
//! [`SqliteDatabase`]: crate::sqlite::SqliteDatabase

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};

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

/// How a SQLite database is opened: durability, how long a statement waits for another
/// connection's lock, how many read connections serve reads beside the one writer, and
/// whether it is opened for reading only.
///
/// ```
/// use std::time::Duration;
/// use flext::sqlite::{SqliteDatabase, SqliteOptions};
/// # let dir = std::env::temp_dir().join(format!("flext-doc-{}", flext::Uuid::new_v4()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// let db = SqliteDatabase::open_with_options(
///     dir.join("app.db"),
///     SqliteOptions::default().busy_timeout(Duration::from_millis(500)).readers(8),
/// )
/// .unwrap();
/// # drop(db); std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    pub(crate) synchronous: Synchronous,
    pub(crate) busy_timeout: Duration,
    pub(crate) readers: u32,
    pub(crate) read_only: bool,
}

impl Default for SqliteOptions {
    /// [`Synchronous::Normal`], a busy timeout of 5 seconds, 4 read connections, read
    /// and write.
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(5),
            readers: 4,
            read_only: false,
        }
    }
}

impl SqliteOptions {
    /// How hard a commit works to be durable (default [`Synchronous::Normal`]).
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// How long a statement waits for a lock another connection or process holds
    /// before it fails with `flext.store.busy` (default 5 seconds). Readers in WAL mode
    /// wait for no writer; this bounds writers waiting for each other.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How many read connections serve reads (queries of projection tables, event
    /// loads, the outbox's backlog) beside the one writer (default 4; 0 sends every
    /// read to the writer). A database in private memory has none: its reads go to the
    /// writer.
    pub fn readers(mut self, readers: u32) -> Self {
        self.readers = readers;
        self
    }

    /// Opens the file for reading only: nothing is created or upgraded in it, and every
    /// write fails with `flext.store.read_only` (default `false`). Without it, a file or
    /// directory this process cannot write is refused at open, naming the file.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }
}

/// What went wrong with a SQLite call, classified by SQLite's result code into one
/// code per cause, with the file named. The driver's error is kept as the source.
pub(crate) fn sqlite_error(e: rusqlite::Error, path: Option<&Path>) -> Error {
    use rusqlite::ErrorCode;
    let file = path.map_or_else(String::new, |p| format!(" ({})", p.display()));
    let (code, what) = match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => (
            crate::codes::STORE_BUSY,
            "the database is locked by another connection or process beyond the busy \
             timeout: retry, or raise SqliteOptions::busy_timeout",
        ),
        Some(ErrorCode::ReadOnly) => (
            crate::codes::STORE_READ_ONLY,
            "the database is read-only for this process: make the file and its directory \
             writable (SQLite creates `-wal` and `-shm` files beside it)",
        ),
        Some(ErrorCode::DiskFull) => (
            crate::codes::STORE_DISK_FULL,
            "the disk is full: free space, then retry",
        ),
        Some(ErrorCode::NotADatabase) => (
            crate::codes::STORE_NOT_A_DATABASE,
            "the file is not a SQLite database: check the path",
        ),
        Some(ErrorCode::CannotOpen) if path.is_some_and(Path::exists) => (
            crate::codes::STORE_READ_ONLY,
            "the file is there but SQLite cannot open it or create its `-wal` and `-shm` \
             files beside it: make the directory writable for this process",
        ),
        Some(ErrorCode::CannotOpen)
            if path
                .and_then(Path::parent)
                .is_some_and(|d| !d.as_os_str().is_empty() && !d.exists()) =>
        {
            (
                crate::codes::STORE_UNAVAILABLE,
                "the file's directory does not exist: create it, or check the path",
            )
        }
        Some(ErrorCode::CannotOpen) => (
            crate::codes::STORE_UNAVAILABLE,
            "the file cannot be opened: check the path and its directory's permissions",
        ),
        _ => (crate::codes::STORE_FAILED, "the database call failed"),
    };
    Error::infrastructure(code, format!("sqlite{file}: {what}: {e}")).with_source(e)
}

pub(crate) fn db_error(e: rusqlite::Error) -> Error {
    sqlite_error(e, None)
}

/// Whether `e` is the database failing (rather than a store refusing a write).
pub(crate) fn is_database_failure(e: &Error) -> bool {
    e.code().starts_with("flext.store.") || e.code() == crate::codes::SAGA_LOG_FAILED
}

/// The connections of one database: a writer behind a mutex, and read connections.
#[derive(Clone)]
pub(crate) struct SharedConnection {
    writer: Arc<Mutex<Connection>>,
    readers: Option<r2d2::Pool<SqliteConnectionManager>>,
    path: Option<Arc<PathBuf>>,
}

impl SharedConnection {
    pub(crate) fn open(path: impl AsRef<Path>, synchronous: Synchronous) -> Result<Self> {
        Self::open_with(path, &SqliteOptions::default().synchronous(synchronous))
    }

    /// Opens the file at `path` as `options` say: refuses a file or directory it cannot
    /// write (unless opened read-only), naming the file.
    pub(crate) fn open_with(path: impl AsRef<Path>, options: &SqliteOptions) -> Result<Self> {
        let path = path.as_ref();
        let flags = if options.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::default()
        };
        let fail = |e| sqlite_error(e, Some(path));
        let conn = Connection::open_with_flags(path, flags).map_err(fail)?;
        if !options.read_only && conn.is_readonly(rusqlite::MAIN_DB).map_err(fail)? {
            return Err(sqlite_error(
                rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
                    Some("the file opened read-only".into()),
                ),
                Some(path),
            ));
        }
        let mut shared = Self::setup(conn, options, Some(path))?;
        if !options.read_only {
            // A write that touches nothing: fails now, naming the file, when the
            // directory keeps SQLite from writing its journal.
            shared
                .lock()
                .execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
                .map_err(fail)?;
        }
        if options.readers > 0 {
            let timeout = options.busy_timeout;
            let manager = SqliteConnectionManager::file(path)
                .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .with_init(move |c| {
                    c.busy_timeout(timeout)?;
                    c.execute_batch("PRAGMA query_only = 1;")
                });
            let pool = r2d2::Pool::builder()
                .max_size(options.readers)
                .min_idle(Some(0))
                .connection_timeout(options.busy_timeout.max(Duration::from_millis(1)))
                .build_unchecked(manager);
            shared.readers = Some(pool);
        }
        Ok(shared)
    }

    pub(crate) fn in_memory() -> Result<Self> {
        Self::setup(
            Connection::open_in_memory().map_err(db_error)?,
            &SqliteOptions::default(),
            None,
        )
    }

    pub(crate) fn setup(
        conn: Connection,
        options: &SqliteOptions,
        path: Option<&Path>,
    ) -> Result<Self> {
        let fail = |e| sqlite_error(e, path);
        conn.busy_timeout(options.busy_timeout).map_err(fail)?;
        if !options.read_only {
            let sync = match options.synchronous {
                Synchronous::Normal => "NORMAL",
                Synchronous::Full => "FULL",
            };
            conn.execute_batch(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync};"
            ))
            .map_err(fail)?;
        }
        Ok(SharedConnection {
            writer: Arc::new(Mutex::new(conn)),
            readers: None,
            path: path.map(|p| Arc::new(p.to_path_buf())),
        })
    }

    /// The file, for messages.
    pub(crate) fn path(&self) -> Option<&Path> {
        self.path.as_deref().map(PathBuf::as_path)
    }

    /// The error of a call on this database, naming its file.
    pub(crate) fn error(&self, e: rusqlite::Error) -> Error {
        sqlite_error(e, self.path())
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The writer connection when no other thread holds it now; `None` when one does.
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, Connection>> {
        match self.writer.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on the writer: committed when it
    /// returns `Ok`, rolled back otherwise.
    pub(crate) fn transaction<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.error(e))?;
        let out = f(&tx)?;
        tx.commit().map_err(|e| self.error(e))?;
        Ok(out)
    }

    /// Runs `f` in one read transaction (`BEGIN DEFERRED`, one snapshot of the
    /// database) on a read connection, which never waits for the writer; on the writer
    /// when the database has no readers.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let Some(pool) = &self.readers else {
            return f(&self.lock());
        };
        let mut conn = pool.get().map_err(|e| {
            Error::infrastructure(
                crate::codes::STORE_BUSY,
                format!(
                    "sqlite ({}): no read connection free within the busy timeout: {e}; \
                     raise SqliteOptions::readers",
                    self.path()
                        .map_or_else(String::new, |p| p.display().to_string())
                ),
            )
        })?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)
            .map_err(|e| self.error(e))?;
        let out = f(&tx)?;
        tx.commit().map_err(|e| self.error(e))?;
        Ok(out)
    }
}

/// A SQLite error as a flext error, classified as the stores classify theirs (one
/// `flext.store.*` code per cause; the driver's error is the source), so that `?` works
/// on rusqlite calls inside a unit of work.
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        db_error(e)
    }
}
