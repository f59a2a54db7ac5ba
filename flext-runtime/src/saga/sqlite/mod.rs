//! [`SqliteLog`]: the saga log in a SQLite file, the embedded default. `writer.rs` holds
//! the group commit (the writer thread at `synchronous = FULL`), `rows.rs` the schema and
//! the SQL of each write (shared with `SqliteDatabase`'s unit of work), `log.rs` the
//! `SagaLog` impl.

mod liveness;
mod log;
mod rows;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use uuid::Uuid;

pub(crate) use self::rows::{append_sqlite, create_sqlite, migrate};
use self::rows::{db_error, json_error, parse_state};
pub use self::writer::CommitStats;
use self::writer::{Counters, Job, Pending, commit_group, writer, writer_gone};
use super::log::{SagaRecord, Transition, unknown_saga};
use crate::db::SharedConnection;
pub use crate::db::Synchronous;
use crate::error::{Error, Result};
use crate::future::BoxFuture;

/// The saga log in a SQLite database, in WAL mode. Every write checks the lease, so two
/// processes sharing the file never drive the same saga at once; a process that dies
/// leaves its leases to expire, and [`SagaRunner::recover`](super::SagaRunner::recover)
/// in another process takes them over.
///
/// # Group commit
///
/// At [`Synchronous::Full`], where each commit waits for an `fsync`, the connection
/// lives on a writer thread of its own. Writes wait in a queue; the
/// thread takes every write waiting, runs them in one transaction (a write that is
/// refused, a lost lease say, refuses before it writes anything, so the others go on),
/// commits once, and only then answers each caller with its own result. A lone saga pays one commit per transition as
/// before; with many sagas in flight, one commit (one `fsync` at
/// [`Synchronous::Full`]) carries the transitions of all of them. This is the group
/// commit of database engines (DeWitt et al., "Implementation techniques for main memory
/// database systems", SIGMOD 1984). [`stats`](Self::stats) tells how many transitions
/// each commit carried. Reads go through the same thread, after the commit of the
/// writes queued before them, so the async caller never blocks its executor.
///
/// At [`Synchronous::Normal`] a commit costs tens of microseconds, less than handing
/// the write to another thread and back (measured in BENCHMARKS.md), so each write
/// runs and commits on the caller's thread behind a mutex, blocking it for that long.
pub struct SqliteLog {
    /// At [`Synchronous::Normal`]: the connection, used on the caller's thread.
    inline: Option<SharedConnection>,
    /// At [`Synchronous::Full`]: the writer thread's queue.
    jobs: Option<std::sync::mpsc::Sender<Box<dyn Job>>>,
    writer: Option<std::thread::JoinHandle<()>>,
    stats: Arc<Counters>,
    /// The liveness lock files this log holds.
    liveness: Arc<liveness::Liveness>,
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
        let options = crate::db::SqliteOptions::default()
            .synchronous(synchronous)
            .readers(0);
        Self::init(SharedConnection::open_with(path, &options)?, synchronous)
    }

    /// Opens the existing log at `path` for an operator's tool: refuses a file that is
    /// not there or holds no flext saga log (creating nothing in it), then upgrades the
    /// log's schema if an older flext wrote it. Writes commit at
    /// [`Synchronous::Normal`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound), `flext.saga.no_log`, naming
    /// the file, when it is missing or has no `flext_sagas` table;
    /// [`ErrorKind::Infrastructure`](crate::ErrorKind::Infrastructure) when it cannot be
    /// opened.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(|e| no_log(path, &e.to_string()))?;
        require_log(&conn, path)?;
        let options = crate::db::SqliteOptions::default().readers(0);
        Self::init(
            SharedConnection::setup(conn, &options, Some(path))?,
            Synchronous::Normal,
        )
    }

    /// Opens the existing log at `path` read-only, for listing and showing: nothing is
    /// written to the file, not even a schema upgrade.
    ///
    /// # Errors
    ///
    /// As [`open_existing`](Self::open_existing); reads fail with
    /// `flext.saga.log_failed` when an older flext wrote the log (open it once with
    /// [`open_existing`](Self::open_existing) or a worker to upgrade it).
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| no_log(path, &e.to_string()))?;
        require_log(&conn, path)?;
        let options = crate::db::SqliteOptions::default()
            .read_only(true)
            .readers(0);
        Ok(SqliteLog {
            inline: Some(SharedConnection::setup(conn, &options, Some(path))?),
            jobs: None,
            writer: None,
            stats: Arc::new(Counters::default()),
            liveness: Arc::default(),
        })
    }

    /// The log on a connection shared with other stores ([`SqliteDatabase`]): each
    /// write commits on the caller's thread.
    ///
    /// [`SqliteDatabase`]: crate::sqlite::SqliteDatabase
    pub(crate) fn on(conn: SharedConnection) -> Result<Self> {
        migrate(&conn.lock())?;
        Ok(SqliteLog {
            inline: Some(conn),
            jobs: None,
            writer: None,
            stats: Arc::new(Counters::default()),
            liveness: Arc::default(),
        })
    }

    /// A log in a private in-memory database (for tests).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn in_memory() -> Result<Self> {
        Self::init(SharedConnection::in_memory()?, Synchronous::Normal)
    }

    fn init(shared: SharedConnection, synchronous: Synchronous) -> Result<Self> {
        migrate(&shared.lock())?;
        let stats = Arc::new(Counters::default());
        if synchronous == Synchronous::Normal {
            return Ok(SqliteLog {
                inline: Some(shared),
                jobs: None,
                writer: None,
                stats,
                liveness: Arc::default(),
            });
        }
        // The writer thread owns the connection from here on.
        let conn = shared.into_writer().ok_or_else(|| {
            Error::internal(
                crate::codes::SAGA_LOG_FAILED,
                "saga log: the connection is shared",
            )
        })?;
        Self::start_writer(conn, stats)
    }
}

impl SqliteLog {
    fn start_writer(conn: Connection, stats: Arc<Counters>) -> Result<Self> {
        let (jobs, queue) = std::sync::mpsc::channel::<Box<dyn Job>>();
        let counters = stats.clone();
        let writer = std::thread::Builder::new()
            .name("flext-saga-log".into())
            .spawn(move || writer(conn, queue, &counters))
            .map_err(|e| {
                Error::infrastructure(
                    crate::codes::SAGA_LOG_FAILED,
                    format!("saga log: cannot start the writer thread: {e}"),
                )
                .with_source(e)
            })?;
        Ok(SqliteLog {
            inline: None,
            jobs: Some(jobs),
            writer: Some(writer),
            stats,
            liveness: Arc::default(),
        })
    }

    /// How many commits the log made and how many writes they carried, since it was
    /// opened.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use flext::saga::{SagaLog, SagaFilter, SqliteLog};
    /// let log = SqliteLog::in_memory().unwrap();
    /// log.list(&SagaFilter::default()).await.unwrap(); // a read: no commit
    /// assert_eq!(log.stats().commits, 0);
    /// # }
    /// ```
    pub fn stats(&self) -> CommitStats {
        CommitStats {
            commits: self.stats.commits.load(Ordering::Relaxed),
            writes: self.stats.writes.load(Ordering::Relaxed),
        }
    }

    /// Runs `work`: at once on this thread, in a transaction of its own
    /// ([`Synchronous::Normal`]); or queued for the writer thread, whose answer it waits
    /// for ([`Synchronous::Full`]): a write runs in the next group commit and is answered
    /// after it; a read runs after that commit.
    fn submit<T, F>(&self, write: bool, work: F) -> BoxFuture<'static, Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let mut job: Box<dyn Job> = Box::new(Pending {
            write,
            work: Some(work),
            result: None,
            reply,
        });
        if let Some(conn) = &self.inline {
            let mut conn = conn.lock();
            if write {
                commit_group(&mut conn, &mut vec![job], &self.stats);
            } else {
                job.run(&conn);
                job.finish(None);
            }
            drop(conn);
            return Box::pin(async move { answer.await.unwrap_or_else(|_| Err(writer_gone())) });
        }
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(job).is_ok());
        Box::pin(async move {
            if !sent {
                return Err(writer_gone());
            }
            answer.await.unwrap_or_else(|_| Err(writer_gone()))
        })
    }

    fn read(conn: &Connection, id: Uuid) -> Result<SagaRecord> {
        let row = conn
            .query_row(
                "SELECT name, input, correlation_id, state, owner, lease_until_ms, definition, created_ms, epoch FROM flext_sagas WHERE id = ?1",
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
                        r.get::<_, i64>(7)?,
                        r.get::<_, i64>(8)?,
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
            state: parse_state(&row.3)?,
            transitions,
            owner: row.4,
            lease_until_ms: u64::try_from(row.5).unwrap_or(0),
            definition: row.6,
            created_ms: u64::try_from(row.7).unwrap_or(0),
            epoch: u64::try_from(row.8).unwrap_or(0),
        })
    }
}

fn no_log(path: &Path, why: &str) -> Error {
    Error::not_found(
        crate::codes::SAGA_NO_LOG,
        format!(
            "{} holds no flext saga log ({}): give the file your workers' SqliteLog opens",
            crate::input::echo(&path.display().to_string()),
            crate::input::echo(why)
        ),
    )
}

/// Refuses a database without flext's saga tables.
fn require_log(conn: &Connection, path: &Path) -> Result<()> {
    let present = conn
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'flext_sagas'")
        .and_then(|mut stmt| stmt.exists([]))
        .map_err(|e| no_log(path, &e.to_string()))?;
    if present {
        Ok(())
    } else {
        Err(no_log(path, "it has no flext_sagas table"))
    }
}

/// The file of `conn`'s main database; `None` in memory.
pub(super) fn database_file(conn: &Connection) -> Option<std::path::PathBuf> {
    conn.path()
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from)
}

impl Drop for SqliteLog {
    /// Closes the queue and waits for the writer thread to answer what was queued and
    /// close the database.
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(writer) = self.writer.take() {
            // A writer that panicked has nothing left to close.
            let _ = writer.join();
        }
    }
}
