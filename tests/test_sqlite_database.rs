//! The SQLite database beside its users: readers that never wait for a unit of work in
//! progress, a busy timeout that is a setting and an error that is retried, and errors
//! that name the file and the cause (read-only file or directory, not a database,
//! missing directory, read-only on request).

#![cfg(feature = "sqlite")]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use flext::codes;
use flext::event_store::EventStore as _;
use flext::prelude::*;
use flext::sqlite::{SqliteDatabase, SqliteOptions};

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("flext-sqlite-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        writable(&self.0);
        for entry in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            writable(&entry.path());
        }
        std::fs::remove_dir_all(&self.0).ok();
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Makes `path` unwritable for this process: immutable when running as root (whom
/// permissions do not stop), read-only permissions otherwise.
fn read_only(path: &Path) {
    if is_root() {
        let done = std::process::Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status()
            .unwrap();
        assert!(done.success(), "chattr +i {}", path.display());
    } else {
        let mode = if path.is_dir() { 0o555 } else { 0o444 };
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

fn writable(path: &Path) {
    if is_root() {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(path)
            .status();
    } else {
        use std::os::unix::fs::PermissionsExt;
        let mode = if path.is_dir() { 0o755 } else { 0o644 };
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    }
}

fn balances(db: &SqliteDatabase) {
    db.transaction(|uow| {
        uow.connection()
            .execute_batch("CREATE TABLE balances (id TEXT PRIMARY KEY, cents INTEGER NOT NULL)")?;
        uow.connection()
            .execute("INSERT INTO balances VALUES ('a-1', 100)", [])?;
        Ok(())
    })
    .unwrap();
}

/// A unit of work stays open, with a write of its own, until 8 readers have queried
/// the projection table: each reader finishes while it is open (one shared connection
/// would make them wait for it, and it for them), and sees the state before it.
#[test]
fn readers_query_a_projection_while_a_unit_of_work_is_open() {
    let dir = TempDir::new();
    let db = SqliteDatabase::open(dir.0.join("app.db")).unwrap();
    balances(&db);
    let (done_tx, done) = mpsc::channel::<i64>();
    let (open_tx, open) = mpsc::channel::<()>();
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            db.transaction(|uow| {
                uow.connection()
                    .execute("UPDATE balances SET cents = 999 WHERE id = 'a-1'", [])?;
                open_tx.send(()).unwrap();
                // Held open until every reader has answered (or long past any wait).
                let answered: Vec<i64> = (0..8)
                    .map_while(|_| done.recv_timeout(Duration::from_secs(60)).ok())
                    .collect();
                Ok(answered)
            })
        })
    };
    open.recv().unwrap();
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let db = db.clone();
            let done = done_tx.clone();
            std::thread::spawn(move || {
                let cents: i64 = db
                    .read_transaction(|read| {
                        Ok(read.connection().query_row(
                            "SELECT cents FROM balances WHERE id = 'a-1'",
                            [],
                            |r| r.get(0),
                        )?)
                    })
                    .unwrap();
                done.send(cents).unwrap();
            })
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
    let answered = writer.join().unwrap().unwrap();
    assert_eq!(
        answered,
        vec![100; 8],
        "every reader answered while the unit of work was open, from the committed state"
    );
    let after: i64 = db
        .read_transaction(|r| {
            Ok(r.connection()
                .query_row("SELECT cents FROM balances", [], |r| r.get(0))?)
        })
        .unwrap();
    assert_eq!(after, 999, "the unit of work committed");
}

/// Another process holds the write lock: a write waits the busy timeout it was given,
/// then fails with `flext.store.busy` (transient, naming the file, the driver's error
/// kept); once the lock is free, the same append goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_database_is_a_transient_error_that_retries_take() {
    let dir = TempDir::new();
    let path = dir.0.join("busy.db");
    let holder = SqliteDatabase::open(&path).unwrap();
    let other = SqliteDatabase::open_with_options(
        &path,
        SqliteOptions::default().busy_timeout(Duration::from_millis(20)),
    )
    .unwrap();
    let (release_tx, release) = mpsc::channel::<()>();
    let (held_tx, held) = mpsc::channel::<()>();
    let hold = std::thread::spawn(move || {
        holder.transaction(|_| {
            held_tx.send(()).unwrap();
            release.recv().ok();
            Ok(())
        })
    });
    held.recv().unwrap();

    let err = other.transaction(|_| Ok(())).unwrap_err();
    assert_eq!(err.code(), codes::STORE_BUSY, "{err}");
    assert!(err.kind().is_transient());
    assert!(err.message().contains("busy.db"), "{err}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the driver's error is kept"
    );

    // A repository retrying busy errors gets through once the holder lets go.
    let store: std::sync::Arc<dyn flext::event_store::EventStore> =
        std::sync::Arc::new(other.event_store().unwrap());
    let stream = flext::event_store::StreamId::new("Busy", "b-1");
    let event =
        || flext::event_store::NewEvent::new("e", 1, serde_json::json!({}), &Context::new());
    let refused = store.append(&stream, 0, &[event()]).await.unwrap_err();
    assert_eq!(refused.code(), codes::STORE_BUSY);
    release_tx.send(()).unwrap();
    hold.join().unwrap().unwrap();
    store.append(&stream, 0, &[event()]).await.unwrap();
}

#[test]
fn a_read_only_file_is_refused_at_open_naming_it() {
    let dir = TempDir::new();
    let path = dir.0.join("frozen.db");
    drop(SqliteDatabase::open(&path).unwrap());
    for side in ["frozen.db-wal", "frozen.db-shm"] {
        std::fs::remove_file(dir.0.join(side)).ok();
    }
    read_only(&path);
    let err = SqliteDatabase::open(&path)
        .err()
        .expect("a read-only file is refused");
    assert_eq!(err.code(), codes::STORE_READ_ONLY, "{err}");
    assert!(err.message().contains("frozen.db"), "{err}");
    // Asked for, read-only is fine, and a write says why it fails.
    let db =
        SqliteDatabase::open_with_options(&path, SqliteOptions::default().read_only(true)).unwrap();
    assert_eq!(db.outbox_pending().unwrap(), 0);
    let err = db
        .transaction(|uow| uow.save_checkpoint("p", 1))
        .unwrap_err();
    assert_eq!(err.code(), codes::STORE_READ_ONLY, "{err}");

    // Read-only on a file without flext's tables: refused, nothing created in it.
    let empty = dir.0.join("empty.db");
    drop(flext::sqlite::rusqlite::Connection::open(&empty).unwrap());
    let err = SqliteDatabase::open_with_options(&empty, SqliteOptions::default().read_only(true))
        .err()
        .expect("refused");
    assert_eq!(err.code(), codes::STORE_FAILED, "{err}");
    assert!(err.message().contains("empty.db"), "{err}");
}

#[test]
fn a_read_only_directory_is_refused_at_open_naming_the_file() {
    let dir = TempDir::new();
    let path = dir.0.join("in-frozen-dir.db");
    drop(SqliteDatabase::open(&path).unwrap());
    for side in ["in-frozen-dir.db-wal", "in-frozen-dir.db-shm"] {
        std::fs::remove_file(dir.0.join(side)).ok();
    }
    read_only(&dir.0);
    let err = SqliteDatabase::open(&path).err().expect("refused");
    assert_eq!(err.code(), codes::STORE_READ_ONLY, "{err}");
    assert!(err.message().contains("in-frozen-dir.db"), "{err}");
}

#[test]
fn a_file_that_is_not_a_database_and_a_missing_directory_are_named() {
    let dir = TempDir::new();
    let text = dir.0.join("passwd");
    std::fs::write(&text, "root:x:0:0:root:/root:/bin/bash\n".repeat(200)).unwrap();
    let err = SqliteDatabase::open(&text).err().expect("refused");
    assert_eq!(err.code(), codes::STORE_NOT_A_DATABASE, "{err}");
    assert!(err.message().contains("passwd"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&text).unwrap().len(),
        200 * 32,
        "nothing was written to it"
    );

    let missing = dir.0.join("no-such-dir").join("app.db");
    let err = SqliteDatabase::open(&missing).err().expect("refused");
    assert_eq!(err.code(), codes::STORE_UNAVAILABLE, "{err}");
    assert!(err.message().contains("no-such-dir"), "{err}");
}

/// The saga log and the event store report one cause under one code.
#[tokio::test]
async fn every_store_reports_one_cause_under_one_code() {
    let dir = TempDir::new();
    let text = dir.0.join("notes.txt");
    std::fs::write(
        &text,
        "not a database at all, just some words\n".repeat(100),
    )
    .unwrap();
    let saga = flext::saga::SqliteLog::open(&text).err().expect("refused");
    let events = flext::event_store::SqliteEventStore::open(&text)
        .err()
        .expect("refused");
    assert_eq!(saga.code(), codes::STORE_NOT_A_DATABASE, "{saga}");
    assert_eq!(events.code(), codes::STORE_NOT_A_DATABASE, "{events}");
}

// ------------------------------------------------------------ projection table names

#[event(name = "tally.counted")]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Counted {
    n: i64,
}

struct Tally(&'static str);

#[projection(name = "tally", tables = ["tally"])]
impl Tally {
    fn setup(&self, writes: &mut flext::database::ProjectionWrites) -> Result<()> {
        let table = writes.table(self.0);
        writes.execute(
            format!("CREATE TABLE IF NOT EXISTS \"{table}\" (total BIGINT NOT NULL)"),
            [],
        );
        Ok(())
    }
    #[apply]
    fn counted(&self, writes: &mut flext::database::ProjectionWrites, e: &Counted) -> Result<()> {
        let table = writes.table(self.0);
        writes.execute(
            format!("INSERT INTO \"{table}\" (total) VALUES ($1)"),
            [e.n.into()],
        );
        Ok(())
    }
}

/// A portable projection rebuilds into fresh tables on SQLite; a table name that is
/// not a plain identifier is refused before any DDL runs.
#[tokio::test]
async fn a_rebuild_quotes_its_tables_and_refuses_a_name_that_is_not_an_identifier() {
    use flext::event_store::{EventStore, NewEvent, StreamId};
    let db = SqliteDatabase::in_memory().unwrap();
    let store = db.event_store().unwrap();
    let e = |n: i64| {
        NewEvent::new(
            "tally.counted",
            1,
            serde_json::json!({ "n": n }),
            &Context::new(),
        )
    };
    store
        .append(&StreamId::new("Tally", "t"), 0, &[e(2), e(5)])
        .await
        .unwrap();
    let runner = flext::sqlite::SqliteProjectionRunner::new(db.clone(), Tally("tally"));
    assert_eq!(runner.catch_up().unwrap().applied, 2);
    assert_eq!(runner.rebuild().unwrap(), 2);
    let total: i64 = db
        .read_transaction(|r| {
            Ok(r.connection()
                .query_row("SELECT SUM(total) FROM tally", [], |row| row.get(0))?)
        })
        .unwrap();
    assert_eq!(total, 7, "rebuilt once, not added to the old rows");

    struct Hostile;
    impl flext::sqlite::SqliteProjection for Hostile {
        fn name(&self) -> &str {
            "hostile"
        }
        fn tables(&self) -> &[&str] {
            &["x; DROP TABLE flext_events"]
        }
        fn apply(
            &self,
            _: &flext::sqlite::SqliteUnitOfWork<'_>,
            _: &flext::event_store::EventEnvelope,
        ) -> Result<()> {
            Ok(())
        }
    }
    let err = flext::sqlite::SqliteProjectionRunner::new(db.clone(), Hostile)
        .rebuild()
        .unwrap_err();
    assert_eq!(err.code(), codes::PROJECTION_BAD_TABLE, "{err}");
    assert_eq!(
        store.read_all(0, 10).await.unwrap().len(),
        2,
        "the events are still there"
    );
}

// ------------------------------------------------------------- busy is retried

/// An event store whose first `busy` appends fail with `flext.store.busy`, as SQLite's
/// do while another process holds the lock past the busy timeout (a fault injected in
/// front of a real store).
struct BusyFirst {
    store: flext::event_store::MemoryEventStore,
    busy: std::sync::atomic::AtomicU32,
}

impl flext::event_store::EventStore for BusyFirst {
    fn append<'a>(
        &'a self,
        stream: &'a flext::event_store::StreamId,
        expected: u64,
        events: &'a [flext::event_store::NewEvent],
    ) -> flext::BoxFuture<'a, Result<u64>> {
        use std::sync::atomic::Ordering;
        if self
            .busy
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Box::pin(async {
                Err(Error::infrastructure(
                    codes::STORE_BUSY,
                    "the database is locked",
                ))
            });
        }
        self.store.append(stream, expected, events)
    }
    fn load<'a>(
        &'a self,
        stream: &'a flext::event_store::StreamId,
        after: u64,
    ) -> flext::BoxFuture<'a, Result<Vec<flext::event_store::EventEnvelope>>> {
        self.store.load(stream, after)
    }
    fn version<'a>(
        &'a self,
        stream: &'a flext::event_store::StreamId,
    ) -> flext::BoxFuture<'a, Result<u64>> {
        self.store.version(stream)
    }
    fn read_all<'a>(
        &'a self,
        after: u64,
        limit: usize,
    ) -> flext::BoxFuture<'a, Result<Vec<flext::event_store::EventEnvelope>>> {
        self.store.read_all(after, limit)
    }
    fn save_snapshot<'a>(
        &'a self,
        snapshot: &'a flext::event_store::Snapshot,
    ) -> flext::BoxFuture<'a, Result<()>> {
        self.store.save_snapshot(snapshot)
    }
    fn load_snapshot<'a>(
        &'a self,
        stream: &'a flext::event_store::StreamId,
    ) -> flext::BoxFuture<'a, Result<Option<flext::event_store::Snapshot>>> {
        self.store.load_snapshot(stream)
    }
}

#[command(output = u64)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Count {
    #[aggregate_id]
    counter: String,
    n: i64,
}

#[aggregate]
#[derive(Debug, Default)]
struct Counter {
    #[aggregate_id]
    id: String,
    total: i64,
}

#[aggregate]
impl Counter {
    #[command_handler]
    fn count(&self, c: &Count) -> Result<flext::aggregate::Events<Self>> {
        Ok(flext::aggregate::Events::one(Counted { n: c.n }))
    }
    #[apply]
    fn counted(&mut self, e: &Counted) {
        self.total += e.n;
    }
}

/// `retry_on_conflict` retries `flext.store.busy` as it retries a conflict: decided
/// again, appended once.
#[tokio::test]
async fn a_repository_retries_a_busy_store() {
    use flext::aggregate::Repository;
    let busy = |n| {
        std::sync::Arc::new(BusyFirst {
            store: flext::event_store::MemoryEventStore::new(),
            busy: std::sync::atomic::AtomicU32::new(n),
        })
    };
    let count = Count {
        counter: "c-1".into(),
        n: 3,
    };
    let refused = Repository::<Counter>::new(busy(1))
        .execute(&count, &Context::new())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), codes::STORE_BUSY);

    let store = busy(2);
    let done = Repository::<Counter>::new(store.clone())
        .retry_on_conflict(3)
        .execute(&count, &Context::new())
        .await
        .unwrap();
    assert_eq!((done.attempts, done.state.total), (3, 3));
    assert_eq!(
        store
            .store
            .load(&flext::event_store::StreamId::new("Counter", "c-1"), 0)
            .await
            .unwrap()
            .len(),
        1,
        "appended once"
    );
}
