//! Group commit: the writer thread that commits every queued write in one transaction,
//! and the jobs it runs.

use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::Connection;

use crate::error::{Error, Result};

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
pub(super) struct Counters {
    pub(super) commits: AtomicU64,
    pub(super) writes: AtomicU64,
    /// Jobs handed to the writer thread and not answered yet.
    pub(super) queued: std::sync::atomic::AtomicUsize,
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
pub(super) trait Job: Send {
    fn is_write(&self) -> bool;
    /// Runs the job.
    fn run(&mut self, conn: &Connection) -> Ran;
    /// Answers the caller: its result, or why its group was not committed.
    fn finish(self: Box<Self>, aborted: Option<&str>);
}

/// How a job's run went.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Ran {
    /// It did its work.
    Done,
    /// It refused, having written nothing.
    Refused,
    /// The database failed: the group rolls back.
    Broken,
}

pub(super) struct Pending<T, F> {
    pub(super) write: bool,
    pub(super) work: Option<F>,
    pub(super) result: Option<Result<T>>,
    pub(super) reply: tokio::sync::oneshot::Sender<Result<T>>,
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
            Err(e) if crate::db::is_database_failure(e) => Ran::Broken,
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
pub(super) fn writer(
    shared: &crate::db::SharedConnection,
    jobs: std::sync::mpsc::Receiver<Box<dyn Job>>,
    stats: &Counters,
) {
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
        let taken = batch.len();
        let (mut writes, mut reads): (Vec<_>, Vec<_>) =
            batch.into_iter().partition(|job| job.is_write());
        last_group = writes.len().max(1);
        // Held for the group only: at `synchronous = NORMAL` callers commit on their own
        // threads when the connection is free.
        let mut conn = shared.lock();
        if !writes.is_empty() {
            commit_group(&mut conn, &mut writes, stats);
        }
        for mut job in reads.drain(..) {
            job.run(&conn);
            job.finish(None);
        }
        drop(conn);
        stats.queued.fetch_sub(taken, Ordering::AcqRel);
    }
}

/// Runs `writes` in one transaction and answers each: the group commit.
pub(super) fn commit_group(
    conn: &mut Connection,
    writes: &mut Vec<Box<dyn Job>>,
    stats: &Counters,
) {
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

pub(super) fn writer_gone() -> Error {
    Error::infrastructure(
        crate::codes::SAGA_LOG_FAILED,
        "saga log: the writer thread stopped",
    )
}
