//! [`SqliteLog`]: the saga log in a SQLite file, the embedded default. `writer.rs` holds
//! the group commit (the writer thread), `rows.rs` the schema and
//! the SQL of each write (shared with `SqliteDatabase`'s unit of work), `log.rs` the
//! `SagaLog` impl.

mod liveness;
mod log;
mod queue;
mod rows;
mod signals;
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
/// Writes that arrive together share one commit. A writer thread takes every write
/// waiting in its queue, runs them in one transaction (a write that is refused, a lost
/// lease say, refuses before it writes anything, so the others go on), commits once, and
/// only then answers each caller with its own result. This is the group commit of
/// database engines (DeWitt et al., "Implementation techniques for main memory database
/// systems", SIGMOD 1984). [`stats`](Self::stats) tells how many transitions each commit
/// carried. Reads queued behind writes run after their commit.
///
/// - At [`Synchronous::Full`], where each commit waits for an `fsync`, every write goes
///   through the writer thread. A lone saga pays one commit per transition; with many
///   sagas in flight one `fsync` carries the transitions of all of them.
/// - At [`Synchronous::Normal`] a commit costs tens of microseconds, less than handing it
///   to another thread and back (measured in BENCHMARKS.md), so a write commits on the
///   caller's thread when the connection is free. When it is busy (another task is
///   committing), the write goes to a writer thread, started the first time this
///   happens, instead of blocking the caller's executor thread on the lock; and while
///   that thread has writes in hand, later ones join its next group too. Under
///   concurrency the writes share commits and tokio's workers keep running tasks.
pub struct SqliteLog {
    /// The connection. At [`Synchronous::Normal`] a write takes it on the caller's
    /// thread when it is free.
    conn: SharedConnection,
    /// Whether a write may commit on the caller's thread ([`Synchronous::Normal`]).
    inline: bool,
    /// The writer thread's queue: started at open at [`Synchronous::Full`], on the
    /// first contended write at [`Synchronous::Normal`].
    jobs: std::sync::OnceLock<std::sync::mpsc::Sender<Box<dyn Job>>>,
    writer: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
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
    /// As [`open`](Self::open); at [`Synchronous::Full`] also when the writer thread
    /// cannot be started.
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
        Ok(Self::inline(SharedConnection::setup(
            conn,
            &options,
            Some(path),
        )?))
    }

    /// The log on a connection shared with other stores ([`SqliteDatabase`]): a write
    /// commits on the caller's thread, or in the writer thread's group when the
    /// connection is busy.
    ///
    /// [`SqliteDatabase`]: crate::sqlite::SqliteDatabase
    pub(crate) fn on(conn: SharedConnection) -> Result<Self> {
        migrate(&conn.lock())?;
        Ok(Self::inline(conn))
    }

    /// A log in a private in-memory database (for tests).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn in_memory() -> Result<Self> {
        Self::init(SharedConnection::in_memory()?, Synchronous::Normal)
    }

    fn inline(conn: SharedConnection) -> Self {
        SqliteLog {
            conn,
            inline: true,
            jobs: std::sync::OnceLock::new(),
            writer: std::sync::Mutex::new(None),
            stats: Arc::new(Counters::default()),
            liveness: Arc::default(),
        }
    }

    fn init(shared: SharedConnection, synchronous: Synchronous) -> Result<Self> {
        migrate(&shared.lock())?;
        let mut log = Self::inline(shared);
        if synchronous == Synchronous::Full {
            log.inline = false;
            log.start_writer()?;
        }
        Ok(log)
    }
}

impl SqliteLog {
    /// Starts the writer thread unless it runs; returns its queue.
    fn start_writer(&self) -> Result<&std::sync::mpsc::Sender<Box<dyn Job>>> {
        if let Some(jobs) = self.jobs.get() {
            return Ok(jobs);
        }
        let mut running = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(jobs) = self.jobs.get() {
            return Ok(jobs);
        }
        let (jobs, queue) = std::sync::mpsc::channel::<Box<dyn Job>>();
        let (conn, counters) = (self.conn.clone(), self.stats.clone());
        let thread = std::thread::Builder::new()
            .name("flext-saga-log".into())
            .spawn(move || writer(&conn, queue, &counters))
            .map_err(|e| {
                Error::infrastructure(
                    crate::codes::SAGA_LOG_FAILED,
                    format!("saga log: cannot start the writer thread: {e}"),
                )
                .with_source(e)
            })?;
        *running = Some(thread);
        Ok(self.jobs.get_or_init(|| jobs))
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

    /// Runs `work`: at once on this thread, in a transaction of its own, when the log
    /// commits inline ([`Synchronous::Normal`]), the writer thread has nothing in hand
    /// and the connection is free; otherwise
    /// queued for the writer thread, whose answer it waits for: a write runs in the next
    /// group commit and is answered after it, a read runs after that commit. When the
    /// writer thread cannot be started, it waits for the connection on this thread.
    fn submit<T, F>(&self, write: bool, work: F) -> BoxFuture<'static, Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Box<dyn Job> = Box::new(Pending {
            write,
            work: Some(work),
            result: None,
            reply,
        });
        // While the writer thread has work, later writes join its group rather than
        // commit between its groups one at a time.
        let job = if self.inline && self.stats.queued.load(Ordering::Acquire) == 0 {
            match self.conn.try_lock() {
                Some(mut conn) => {
                    Self::run_inline(&mut conn, job, &self.stats);
                    None
                }
                None => Some(job),
            }
        } else {
            Some(job)
        };
        let sent = match job {
            None => true,
            Some(job) => match self.start_writer() {
                Ok(jobs) => {
                    self.stats.queued.fetch_add(1, Ordering::AcqRel);
                    let sent = jobs.send(job).is_ok();
                    if !sent {
                        self.stats.queued.fetch_sub(1, Ordering::AcqRel);
                    }
                    sent
                }
                // Only at `Normal`: a log at `Full` started its writer thread at open.
                Err(e) => {
                    tracing::warn!(error = %e, "saga log: writing on the caller's thread");
                    Self::run_inline(&mut self.conn.lock(), job, &self.stats);
                    true
                }
            },
        };
        Box::pin(async move {
            if !sent {
                return Err(writer_gone());
            }
            answer.await.unwrap_or_else(|_| Err(writer_gone()))
        })
    }

    fn run_inline(conn: &mut Connection, mut job: Box<dyn Job>, stats: &Counters) {
        if job.is_write() {
            commit_group(conn, &mut vec![job], stats);
        } else {
            job.run(conn);
            job.finish(None);
        }
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
        let writer = self
            .writer
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(writer) = writer {
            // A writer that panicked has nothing left to close.
            let _ = writer.join();
        }
    }
}
