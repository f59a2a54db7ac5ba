//! [`SqliteLog`]: the saga log in a SQLite file, the embedded default.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::OperatorCommand;
use super::log::{
    HistoryEntry, Lease, SagaFilter, SagaLog, SagaRecord, SagaState, SagaSummary, Transition,
    lease_lost, now_ms, unknown_saga,
};
use crate::error::{Error, Result};
use crate::future::BoxFuture;

use crate::db::SharedConnection;
pub use crate::db::Synchronous;

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
}

/// How many writes [`SqliteLog`]'s commits carried: read with [`SqliteLog::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Transactions committed (each one `fsync` at [`Synchronous::Full`]).
    pub commits: u64,
    /// Writes those commits carried: creations, transitions, lease renewals, claims and
    /// operator actions, failed ones included.
    pub writes: u64,
}

impl CommitStats {
    /// Commits per write: 1.0 when every write had its own commit, less under load.
    pub fn commits_per_write(&self) -> f64 {
        if self.writes == 0 {
            return 0.0;
        }
        self.commits as f64 / self.writes as f64
    }
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
}

/// The most writes one commit carries; more wait for the next.
const MAX_BATCH: usize = 512;

/// A unit of work for the writer thread: a write (run in the group's transaction) or a
/// read (run after the commit).
///
/// Every write keeps one rule, which lets a group share a transaction without a
/// savepoint per write: it refuses (a lost lease, an existing id, an action that does not
/// apply) before it writes anything; once it has written, only a database error can
/// fail it, and that aborts the whole group.
trait Job: Send {
    fn is_write(&self) -> bool;
    /// Runs the job.
    fn run(&mut self, conn: &Connection) -> Ran;
    /// Answers the caller: its result, or why its group was not committed.
    fn finish(self: Box<Self>, aborted: Option<&str>);
}

/// How a job's run went.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ran {
    /// It did its work.
    Done,
    /// It refused, having written nothing.
    Refused,
    /// The database failed: the group rolls back.
    Broken,
}

struct Pending<T, F> {
    write: bool,
    work: Option<F>,
    result: Option<Result<T>>,
    reply: tokio::sync::oneshot::Sender<Result<T>>,
}

impl<T: Send, F: FnOnce(&Connection) -> Result<T> + Send> Job for Pending<T, F> {
    fn is_write(&self) -> bool {
        self.write
    }

    fn run(&mut self, conn: &Connection) -> Ran {
        let result = match self.work.take() {
            Some(work) => work(conn),
            // Each job runs once: the writer calls `run` once per job.
            None => return Ran::Refused,
        };
        let ran = match &result {
            Ok(_) => Ran::Done,
            Err(e) if e.code() == crate::codes::SAGA_LOG_FAILED => Ran::Broken,
            Err(_) => Ran::Refused,
        };
        self.result = Some(result);
        ran
    }

    fn finish(self: Box<Self>, aborted: Option<&str>) {
        let result = match (aborted, self.result) {
            (None, Some(result)) | (Some(_), Some(result @ Err(_))) => result,
            (Some(why), Some(Ok(_)) | None) => Err(Error::infrastructure(
                crate::codes::SAGA_LOG_FAILED,
                format!("saga log: not committed: {why}"),
            )),
            (None, None) => Err(Error::infrastructure(
                crate::codes::SAGA_LOG_FAILED,
                "saga log: the write was not run",
            )),
        };
        // The caller may have stopped waiting (its future was dropped).
        let _ = self.reply.send(result);
    }
}

/// How long the writer waits for more writes when the previous group was larger than
/// what is queued now: the sagas answered by the last commit are about to send their
/// next transitions, and one commit can carry them all. A lone saga (groups of one)
/// never waits.
const LINGER: std::time::Duration = std::time::Duration::from_micros(100);

/// The writer thread: takes every job waiting, runs the writes in one transaction, one
/// commits, then runs the reads, then answers everyone.
fn writer(mut conn: Connection, jobs: std::sync::mpsc::Receiver<Box<dyn Job>>, stats: &Counters) {
    let mut last_group = 1;
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        let deadline = std::time::Instant::now() + LINGER;
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(std::sync::mpsc::TryRecvError::Empty) if batch.len() < last_group => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    match jobs.recv_timeout(left) {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                Err(_) => break,
            }
        }
        let (mut writes, mut reads): (Vec<_>, Vec<_>) =
            batch.into_iter().partition(|job| job.is_write());
        last_group = writes.len().max(1);
        if !writes.is_empty() {
            commit_group(&mut conn, &mut writes, stats);
        }
        for mut job in reads.drain(..) {
            job.run(&conn);
            job.finish(None);
        }
    }
}

/// Runs `writes` in one transaction and answers each: the group commit.
fn commit_group(conn: &mut Connection, writes: &mut Vec<Box<dyn Job>>, stats: &Counters) {
    let outcome = write_batch(conn, writes);
    if let Ok(true) = outcome {
        stats.commits.fetch_add(1, Ordering::Relaxed);
    }
    stats
        .writes
        .fetch_add(writes.len() as u64, Ordering::Relaxed);
    let aborted = outcome.err();
    for job in writes.drain(..) {
        job.finish(aborted.as_deref());
    }
}

/// Runs `writes` in one transaction. Returns whether a commit was made (not when every
/// write refused), or why the group was rolled back.
fn write_batch(
    conn: &mut Connection,
    writes: &mut [Box<dyn Job>],
) -> std::result::Result<bool, String> {
    let exec = |conn: &Connection, sql: &str| conn.prepare_cached(sql)?.execute([]).map(|_| ());
    exec(conn, "BEGIN IMMEDIATE").map_err(|e| e.to_string())?;
    let mut done = false;
    for job in writes.iter_mut() {
        match job.run(conn) {
            Ran::Done => done = true,
            Ran::Refused => {}
            Ran::Broken => {
                let _ = exec(conn, "ROLLBACK");
                return Err("a database error in the same group commit".to_owned());
            }
        }
    }
    if !done {
        return exec(conn, "ROLLBACK")
            .map(|()| false)
            .map_err(|e| e.to_string());
    }
    exec(conn, "COMMIT").map(|()| true).map_err(|e| {
        // A failed COMMIT may leave the transaction open.
        let _ = exec(conn, "ROLLBACK");
        e.to_string()
    })
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

    /// The log on a connection shared with other stores ([`SqliteDatabase`]): each
    /// write commits on the caller's thread.
    ///
    /// [`SqliteDatabase`]: crate::database::SqliteDatabase
    pub(crate) fn on(conn: SharedConnection) -> Result<Self> {
        migrate(&conn.lock())?;
        Ok(SqliteLog {
            inline: Some(conn),
            jobs: None,
            writer: None,
            stats: Arc::new(Counters::default()),
        })
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
        let shared = SharedConnection::setup(conn, synchronous)?;
        migrate(&shared.lock())?;
        let stats = Arc::new(Counters::default());
        if synchronous == Synchronous::Normal {
            return Ok(SqliteLog {
                inline: Some(shared),
                jobs: None,
                writer: None,
                stats,
            });
        }
        // The writer thread owns the connection from here on.
        let conn = std::sync::Arc::into_inner(shared.0)
            .map(|m| {
                m.into_inner()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            })
            .ok_or_else(|| {
                Error::internal(
                    crate::codes::SAGA_LOG_FAILED,
                    "saga log: the connection is shared",
                )
            })?;
        Self::start_writer(conn, stats)
    }
}

/// Creates the saga log's tables, and adds the columns older logs lack, once.
pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS flext_sagas (
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
             );
             CREATE INDEX IF NOT EXISTS flext_sagas_name ON flext_sagas (name, created_ms);",
    )
    .map_err(db_error)?;
    // Logs written by earlier versions gain the columns they lack, once.
    for (table, column, decl) in [
        ("flext_sagas", "definition", "TEXT NOT NULL DEFAULT ''"),
        (
            "flext_saga_transitions",
            "at_ms",
            "INTEGER NOT NULL DEFAULT 0",
        ),
    ] {
        let present = conn
            .prepare(&format!(
                "SELECT 1 FROM pragma_table_info('{table}') WHERE name = '{column}'"
            ))
            .and_then(|mut stmt| stmt.exists([]))
            .map_err(db_error)?;
        if !present {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))
                .map_err(db_error)?;
        }
    }
    Ok(())
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
                "SELECT name, input, correlation_id, state, owner, lease_until_ms, definition, created_ms FROM flext_sagas WHERE id = ?1",
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
        })
    }
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

fn writer_gone() -> Error {
    Error::infrastructure(
        crate::codes::SAGA_LOG_FAILED,
        "saga log: the writer thread stopped",
    )
}

fn parse_state(s: &str) -> Result<SagaState> {
    s.parse().map_err(|_| {
        Error::infrastructure(
            crate::codes::SAGA_LOG_CORRUPT,
            format!("unknown saga state {} in the log", crate::input::echo(s)),
        )
    })
}

fn parse_id(s: &str) -> Result<Uuid> {
    s.parse().map_err(|e| {
        Error::infrastructure(
            crate::codes::SAGA_LOG_CORRUPT,
            format!("bad saga id in the log: {e}"),
        )
    })
}

/// Appends `body` as the next transition of saga `id`, at `now`.
fn insert_transition(conn: &Connection, id: &str, body: &str, now: u64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO flext_saga_transitions (saga_id, seq, body, at_ms)
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM flext_saga_transitions WHERE saga_id = ?1), ?2, ?3)",
    )
    .and_then(|mut stmt| stmt.execute(params![id, body, ms(now)]))
    .map_err(db_error)?;
    Ok(())
}

/// The error for a write refused by the lease check: who holds the lease, or no such saga.
fn refused(conn: &Connection, id: Uuid) -> Error {
    let owner = conn
        .query_row(
            "SELECT owner FROM flext_sagas WHERE id = ?1",
            params![id.to_string()],
            |r| r.get::<_, String>(0),
        )
        .optional();
    match owner {
        Ok(Some(owner)) => lease_lost(id, &owner),
        Ok(None) => unknown_saga(id),
        Err(e) => db_error(e),
    }
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl SagaLog for SqliteLog {
    fn create<'a>(&'a self, record: &'a SagaRecord) -> BoxFuture<'a, Result<()>> {
        let input = match serde_json::to_string(&record.input).map_err(json_error) {
            Ok(input) => input,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let record = SagaRecord {
            transitions: Vec::new(),
            input: serde_json::Value::Null,
            ..record.clone()
        };
        self.submit(true, move |conn| create_row(conn, &record, &input))
    }

    fn append<'a>(
        &'a self,
        id: Uuid,
        transition: &'a Transition,
        state: SagaState,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<()>> {
        let body = match serde_json::to_string(transition).map_err(json_error) {
            Ok(body) => body,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let lease = lease.clone();
        self.submit(true, move |conn| append_row(conn, id, &body, state, &lease))
    }

    fn load<'a>(&'a self, id: Uuid) -> BoxFuture<'a, Result<SagaRecord>> {
        self.submit(false, move |conn| Self::read(conn, id))
    }

    fn claim_expired<'a>(
        &'a self,
        lease: &'a Lease,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Vec<SagaRecord>>> {
        let lease = lease.clone();
        self.submit(true, move |conn| {
            let ids: Vec<String> = {
                let mut stmt = conn
                    .prepare_cached(
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
            // Read first: a record that does not decode refuses the claim before any write.
            let mut records = ids
                .iter()
                .map(|id| Self::read(conn, parse_id(id)?))
                .collect::<Result<Vec<_>>>()?;
            let until = now_ms.saturating_add(lease.duration_ms);
            conn.execute(
                "UPDATE flext_sagas SET owner = ?1, lease_until_ms = ?2
                 WHERE state IN ('running', 'compensating') AND lease_until_ms <= ?3",
                params![lease.owner, ms(until), ms(now_ms)],
            )
            .map_err(db_error)?;
            for record in &mut records {
                record.owner.clone_from(&lease.owner);
                record.lease_until_ms = until;
            }
            Ok(records)
        })
    }

    fn renew<'a>(&'a self, id: Uuid, lease: &'a Lease) -> BoxFuture<'a, Result<()>> {
        let lease = lease.clone();
        self.submit(true, move |conn| {
            let now = now_ms();
            let changed = conn
                .prepare_cached(
                    "UPDATE flext_sagas SET lease_until_ms = ?1
                     WHERE id = ?2 AND owner = ?3 AND lease_until_ms > ?4",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        ms(now.saturating_add(lease.duration_ms)),
                        id.to_string(),
                        lease.owner,
                        ms(now)
                    ])
                })
                .map_err(db_error)?;
            if changed == 1 {
                Ok(())
            } else {
                Err(refused(conn, id))
            }
        })
    }

    fn list<'a>(&'a self, filter: &'a SagaFilter) -> BoxFuture<'a, Result<Vec<SagaSummary>>> {
        let filter = filter.clone();
        self.submit(false, move |conn| {
            let limit = filter
                .limit
                .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
            let mut stmt = conn
                .prepare_cached(
                    "SELECT s.id, s.name, s.state, s.owner, s.created_ms, s.lease_until_ms,
                            (SELECT COUNT(*) FROM flext_saga_transitions t WHERE t.saga_id = s.id)
                     FROM flext_sagas s
                     WHERE (?1 IS NULL OR s.state = ?1)
                       AND (?2 IS NULL OR s.name = ?2)
                       AND (?3 IS NULL OR s.created_ms < ?3)
                     ORDER BY s.created_ms, s.rowid
                     LIMIT ?4",
                )
                .map_err(db_error)?;
            let rows = stmt
                .query_map(
                    params![
                        filter.state.map(SagaState::as_str),
                        filter.name,
                        filter.created_before_ms.map(ms),
                        limit
                    ],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, i64>(4)?,
                            r.get::<_, i64>(5)?,
                            r.get::<_, i64>(6)?,
                        ))
                    },
                )
                .map_err(db_error)?;
            rows.map(|row| {
                let (id, name, state, owner, created, lease, n) = row.map_err(db_error)?;
                Ok(SagaSummary {
                    id: parse_id(&id)?,
                    name,
                    state: parse_state(&state)?,
                    transitions: usize::try_from(n).unwrap_or(0),
                    owner,
                    created_ms: u64::try_from(created).unwrap_or(0),
                    lease_until_ms: u64::try_from(lease).unwrap_or(0),
                })
            })
            .collect()
        })
    }

    fn history<'a>(&'a self, id: Uuid) -> BoxFuture<'a, Result<Vec<HistoryEntry>>> {
        self.submit(false, move |conn| {
            let key = id.to_string();
            let exists = conn
                .prepare_cached("SELECT 1 FROM flext_sagas WHERE id = ?1")
                .and_then(|mut stmt| stmt.exists(params![key]))
                .map_err(db_error)?;
            if !exists {
                return Err(unknown_saga(id));
            }
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, at_ms, body FROM flext_saga_transitions WHERE saga_id = ?1 ORDER BY seq",
                )
                .map_err(db_error)?;
            let rows = stmt
                .query_map(params![key], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
                })
                .map_err(db_error)?;
            rows.map(|row| {
                let (seq, at, body) = row.map_err(db_error)?;
                Ok(HistoryEntry {
                    seq: u64::try_from(seq).unwrap_or(0),
                    at_ms: u64::try_from(at).unwrap_or(0),
                    transition: serde_json::from_str(&body).map_err(json_error)?,
                })
            })
            .collect()
        })
    }

    fn act<'a>(
        &'a self,
        id: Uuid,
        command: &'a OperatorCommand,
        lease: Option<&'a Lease>,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<SagaRecord>> {
        if let Err(e) = command.check() {
            return Box::pin(std::future::ready(Err(e)));
        }
        let body = match serde_json::to_string(&command.transition()).map_err(json_error) {
            Ok(body) => body,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let command = command.clone();
        let lease = lease.cloned();
        self.submit(true, move |conn| {
            // Read and write in the one transaction: the state checked is the state
            // changed. Everything that can refuse happens before the first write.
            let mut record = Self::read(conn, id)?;
            command.apply_to(&mut record, lease.as_ref(), now_ms)?;
            let key = id.to_string();
            conn.prepare_cached(
                "UPDATE flext_sagas SET state = ?1, owner = ?2, lease_until_ms = ?3 WHERE id = ?4",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    record.state.as_str(),
                    record.owner,
                    ms(record.lease_until_ms),
                    key
                ])
            })
            .map_err(db_error)?;
            insert_transition(conn, &key, &body, now_ms)?;
            Ok(record)
        })
    }
}

/// Inserts a new saga; refuses (writing nothing) when the id exists.
pub(crate) fn create_row(conn: &Connection, record: &SagaRecord, input: &str) -> Result<()> {
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
                ms(if record.created_ms == 0 { now_ms() } else { record.created_ms }),
                record.definition,
            ])
        })
        .map_err(db_error)?;
    if inserted == 0 {
        return Err(Error::conflict(
            crate::codes::SAGA_EXISTS,
            format!("saga {} is already in the log", record.id),
        ));
    }
    Ok(())
}

/// Appends a transition (already JSON) and sets the saga's state, when `lease` holds the
/// lease or it expired; refuses (writing nothing) otherwise.
pub(crate) fn append_row(
    conn: &Connection,
    id: Uuid,
    body: &str,
    state: SagaState,
    lease: &Lease,
) -> Result<()> {
    let now = now_ms();
    let key = id.to_string();
    let updated = conn
        .prepare_cached(
            "UPDATE flext_sagas SET state = ?1, owner = ?2, lease_until_ms = ?3
             WHERE id = ?4 AND (owner = ?2 OR lease_until_ms <= ?5)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                state.as_str(),
                lease.owner,
                ms(now.saturating_add(lease.duration_ms)),
                key,
                ms(now)
            ])
        })
        .map_err(db_error)?;
    if updated == 0 {
        return Err(refused(conn, id));
    }
    insert_transition(conn, &key, body, now)
}

/// [`create_row`] for a record, its input encoded here.
pub(crate) fn create_sqlite(conn: &Connection, record: &SagaRecord) -> Result<()> {
    let input = serde_json::to_string(&record.input).map_err(json_error)?;
    create_row(conn, record, &input)
}

/// [`append_row`] for a transition, encoded here.
pub(crate) fn append_sqlite(
    conn: &Connection,
    id: Uuid,
    transition: &Transition,
    state: SagaState,
    lease: &Lease,
) -> Result<()> {
    let body = serde_json::to_string(transition).map_err(json_error)?;
    append_row(conn, id, &body, state, lease)
}
