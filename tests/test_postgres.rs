//! PostgreSQL's global order: an event whose transaction commits after a later one's is
//! still read, and read first, because positions are given only below the horizon of
//! running transactions. And migrations: several processes starting at once on an
//! empty database create the schema once, and every one of them can use it.

#![cfg(feature = "postgres")]

use flext::event_store::{EventStore, NewEvent, StreamId};
use flext::postgres::{PgDatabase, TestCluster, tokio_postgres};
use flext::prelude::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_never_moves_past_an_event_whose_transaction_is_still_open() {
    let cluster = TestCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let url = cluster.fresh_database().await.unwrap();
    let db = PgDatabase::connect(&url).await.unwrap();
    let store = db.event_store();
    let ctx = Context::new();
    let event = |n: u64| NewEvent::new("e", 1, serde_json::json!({ "n": n }), &ctx);

    // A writer whose transaction started first, inserted an event, and has not committed.
    let (mut slow, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    let tx = slow.transaction().await.unwrap();
    tx.execute(
        "INSERT INTO flext_events (event_id, aggregate_type, aggregate_id, sequence, name, schema_version, timestamp_ms, correlation_id, metadata, payload)
         VALUES ($1, 'S', 'slow', 1, 'e', 1, 0, $2, '{}'::json, '{\"n\": 1}'::json)",
        &[&Uuid::new_v4(), &Uuid::new_v4()],
    )
    .await
    .unwrap();

    // A later writer commits.
    store
        .append(&StreamId::new("S", "fast"), 0, &[event(2)])
        .await
        .unwrap();
    // The reader sees nothing yet: numbering the fast event now could let the slow one
    // land behind the reader's checkpoint.
    assert!(
        store.read_all(0, 10).await.unwrap().is_empty(),
        "nothing is given a position while an older transaction may still commit"
    );

    tx.commit().await.unwrap();
    drop(slow);
    let _ = driver.await;
    let all = store.read_all(0, 10).await.unwrap();
    let order: Vec<(&str, u64)> = all
        .iter()
        .map(|e| (e.aggregate_id.as_str(), e.position))
        .collect();
    assert_eq!(order, [("slow", 1), ("fast", 2)], "in transaction order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_starting_at_once_create_the_schema_once() {
    let cluster = TestCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let url = cluster.fresh_database().await.unwrap();
    // Eight connects at once on an empty database (as eight processes starting together);
    // without the migration lock, concurrent `CREATE TABLE IF NOT EXISTS` fails with a
    // unique violation on PostgreSQL's catalogue.
    let starts: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgDatabase::connect(&url).await })
        })
        .collect();
    let mut dbs = Vec::new();
    for start in starts {
        dbs.push(start.await.unwrap().unwrap_or_else(|e| panic!("{e}")));
    }
    let ctx = Context::new();
    for (n, db) in dbs.iter().enumerate() {
        db.event_store()
            .append(
                &StreamId::new("Start", n.to_string()),
                0,
                &[NewEvent::new("started", 1, serde_json::json!({}), &ctx)],
            )
            .await
            .unwrap();
    }
    let tables: i64 = dbs[0]
        .client()
        .await
        .unwrap()
        .query_one(
            "SELECT COUNT(*) FROM pg_tables WHERE tablename LIKE 'flext_%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 12, "each of flext's twelve tables once");
    assert_eq!(dbs[7].outbox_pending().await.unwrap(), 8);
}

/// A saga whose step after the pivot keeps failing: stuck, for the operator's tool.
#[derive(serde::Serialize, serde::Deserialize)]
struct Refund {
    order: u32,
}

#[saga]
impl Refund {
    #[saga_step(pivot)]
    async fn pay_out(&self) -> Result<u32> {
        Ok(self.order)
    }

    #[saga_step(retries = 0)]
    async fn notify(&self, paid: &u32) -> Result<String> {
        Err(Error::infrastructure(
            "mail.down",
            format!("cannot mail about {paid}"),
        ))
    }
}

/// `flext-saga` on a PostgreSQL log, given its URL: the same commands as on SQLite,
/// a database without flext's tables refused (and left without them), the password
/// never printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_tool_works_on_a_postgres_log() {
    let cluster = TestCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let url = cluster.fresh_database().await.unwrap();
    let empty = cluster.fresh_database().await.unwrap();
    let db = PgDatabase::connect(&url).await.unwrap();
    let runner = flext::saga::SagaRunner::builder(db.saga_log()).build();
    let stuck = runner
        .run(Refund { order: 9 }, &Context::new())
        .await
        .unwrap();
    let id = stuck.saga_id().to_string();

    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "flext-saga"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success());
    let exe = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(
            || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
            std::path::PathBuf::from,
        )
        .join("debug")
        .join("flext-saga");
    let tool = |db: &str, args: &[&str]| {
        let out = std::process::Command::new(&exe)
            .args(["--db", db])
            .args(args)
            .env_remove("FLEXT_SAGA_DB")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, out, err) = tool(&url, &["list", "--state", "stuck"]);
    assert_eq!(code, Some(0), "{err}");
    let line = out.lines().find(|l| l.contains(&id)).expect("listed");
    assert!(
        line.contains("notify: mail.down cannot mail about 9"),
        "{line}"
    );
    let (code, out, err) = tool(&url, &["show", &id[..8]]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("STUCK at `notify`"), "{out}");
    let abort = [
        "abort",
        &id[..8],
        "--principal",
        "ops",
        "--reason",
        "cancel",
    ];
    let (code, _, err) = tool(&url, &abort);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("`pay_out`") && err.contains("--past-pivot"),
        "{err}"
    );
    let (code, out, err) = tool(
        &url,
        &[
            "resolve",
            &id,
            "--principal",
            "ops",
            "--reason",
            "mailed by hand",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("the saga is resolved"), "{out}");

    // A database without flext's tables, reached with a password in the URL.
    let with_password = empty.replacen("flext@", "flext:hunter2@", 1);
    let (code, _, err) = tool(&with_password, &["list"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("holds no flext saga log"), "{err}");
    assert!(!err.contains("hunter2"), "the password is printed: {err}");
    let (client, connection) = tokio_postgres::connect(&empty, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let created: bool = client
        .query_one("SELECT to_regclass('flext_sagas') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!created, "no table was created");
}

/// After a bulk load, the first read numbers one batch of events (not the whole
/// backlog, in one long transaction), and reading on numbers the rest, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_bulk_load_events_are_numbered_a_batch_at_a_time() {
    let cluster = TestCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let url = cluster.fresh_database().await.unwrap();
    let db = PgDatabase::connect(&url).await.unwrap();
    let store = db.event_store();
    let loaded: i64 = 100_000;
    let client = db.client().await.unwrap();
    client
        .execute(
            "INSERT INTO flext_events (event_id, aggregate_type, aggregate_id, sequence, name, schema_version, timestamp_ms, correlation_id, metadata, payload)
             SELECT gen_random_uuid(), 'Bulk', 'b-' || (n / 100), n % 100 + 1, 'e', 1, 0, gen_random_uuid(), '{}', json_build_object('n', n)
             FROM generate_series(0::bigint, $1::bigint - 1) AS n",
            &[&loaded],
        )
        .await
        .unwrap();
    let numbered = || async {
        let n: i64 = client
            .query_one(
                "SELECT COUNT(*) FROM flext_events WHERE position IS NOT NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        n
    };
    let first = store.read_all(0, 10).await.unwrap();
    assert_eq!(first.len(), 10);
    assert_eq!(first[0].payload["n"], 0);
    assert_eq!(
        numbered().await,
        flext::postgres::SEQUENCE_BATCH,
        "the first read numbered one batch"
    );
    // Reading on numbers the rest, in the order they were written.
    let mut position = 0;
    let mut seen = 0i64;
    loop {
        let page = store.read_all(position, 2_000).await.unwrap();
        if page.is_empty() {
            break;
        }
        for e in &page {
            assert_eq!(e.payload["n"], seen, "in the order written");
            assert_eq!(e.position, position + 1, "without a gap");
            position = e.position;
            seen += 1;
        }
    }
    assert_eq!(seen, loaded);
    assert_eq!(numbered().await, loaded);
}

/// A unit of work whose task is dropped while its `BEGIN` is on the wire (a cancelled
/// task, an attempt dropped at the end of a lease) must not hand its connection back to
/// the pool inside that transaction: the next user's writes would run in it, unseen, and
/// vanish with it (a saga created and then "not found").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_of_work_dropped_mid_begin_leaves_no_open_transaction_in_the_pool() {
    let cluster = TestCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let url = cluster.fresh_database().await.unwrap();
    // One connection, so the next user gets the same one if it went back to the pool.
    let db = PgDatabase::builder(&url)
        .max_connections(1)
        .connect()
        .await
        .unwrap();
    db.client()
        .await
        .unwrap()
        .batch_execute("CREATE TABLE marks (n INT)")
        .await
        .unwrap();
    // The server process behind the pool's one connection is stopped, so that `BEGIN`
    // stays unanswered however the threads are scheduled (a poll that happened to see
    // the answer made this test fail on a loaded machine).
    let backend: i32 = db
        .client()
        .await
        .unwrap()
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, &backend.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {name} {backend}: {status}");
    };
    signal("-STOP");
    // Polled once: the pooled connection is taken and `BEGIN` is sent; then dropped.
    let mut begin = Box::pin(db.begin());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let pending = std::future::Future::poll(begin.as_mut(), &mut cx).is_pending();
    drop(begin);
    signal("-CONT");
    assert!(pending, "a stopped server cannot have answered BEGIN");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    db.client()
        .await
        .unwrap()
        .execute("INSERT INTO marks VALUES (1)", &[])
        .await
        .unwrap();
    // Seen from another connection: the insert committed on its own.
    let (other, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    let n: i64 = other
        .query_one("SELECT COUNT(*) FROM marks", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        n, 1,
        "the write after the dropped unit of work is committed"
    );
    drop(other);
    let _ = driver.await;
}

/// A portable projection's parameters take the type of the column they go to:
/// `SMALLINT`, `INTEGER`, `BIGINT`, `DOUBLE PRECISION`, `BOOLEAN`, `TEXT`, `UUID`,
/// `JSON`, `BYTEA`, and `NULL`; a value a column cannot take stops the projection with
/// an error naming both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portable_projection_converts_its_parameters_to_each_columns_type() {
    use flext::database::{PortableProjection, ProjectionWrites, SqlValue};
    use flext::event_store::EventEnvelope;
    use flext::postgres::PgProjectionRunner;

    struct Typed;
    impl PortableProjection for Typed {
        fn name(&self) -> &str {
            "typed"
        }
        fn setup(&self, w: &mut ProjectionWrites) -> flext::Result<()> {
            w.execute(
                "CREATE TABLE IF NOT EXISTS typed (s SMALLINT, i INTEGER, b BIGINT, f DOUBLE PRECISION, ok BOOLEAN, t TEXT, u UUID, j JSON, bytes BYTEA, nothing TEXT)",
                [],
            );
            Ok(())
        }
        fn apply(&self, w: &mut ProjectionWrites, e: &EventEnvelope) -> flext::Result<()> {
            if e.name == "bad" {
                w.execute(
                    "INSERT INTO typed (b) VALUES ($1)",
                    [SqlValue::from("not a number")],
                );
                return Ok(());
            }
            w.execute(
                "INSERT INTO typed VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                [
                    SqlValue::from(7i16),
                    SqlValue::from(70_000i32),
                    SqlValue::from(e.position),
                    SqlValue::from(0.5f64),
                    SqlValue::from(true),
                    SqlValue::from("text"),
                    SqlValue::from(e.event_id),
                    SqlValue::from(e.payload.to_string()),
                    SqlValue::from(vec![1u8, 2, 3]),
                    SqlValue::from(None::<String>),
                ],
            );
            Ok(())
        }
    }

    let cluster = TestCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let url = cluster.fresh_database().await.unwrap();
    let db = PgDatabase::connect(&url).await.unwrap();
    let ctx = Context::new();
    let store = db.event_store();
    let good = NewEvent::new("good", 1, serde_json::json!({ "n": 1 }), &ctx);
    let id = good.event_id;
    store
        .append(&StreamId::new("T", "t"), 0, &[good])
        .await
        .unwrap();
    let runner = PgProjectionRunner::new(db.clone(), Typed);
    assert_eq!(runner.catch_up().await.unwrap().applied, 1);
    let row = db
        .client()
        .await
        .unwrap()
        .query_one(
            "SELECT s, i, b, f, ok, t, u, j::text, bytes, nothing FROM typed",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i16>(0), 7);
    assert_eq!(row.get::<_, i32>(1), 70_000);
    assert_eq!(row.get::<_, i64>(2), 1);
    assert_eq!(row.get::<_, f64>(3), 0.5);
    assert!(row.get::<_, bool>(4));
    assert_eq!(row.get::<_, String>(5), "text");
    assert_eq!(row.get::<_, Uuid>(6), id);
    assert_eq!(row.get::<_, String>(7), r#"{"n":1}"#);
    assert_eq!(row.get::<_, Vec<u8>>(8), [1, 2, 3]);
    assert_eq!(row.get::<_, Option<String>>(9), None);

    let bad = NewEvent::new("bad", 1, serde_json::json!({}), &ctx);
    store
        .append(&StreamId::new("T", "t"), 1, &[bad])
        .await
        .unwrap();
    let err = runner.catch_up().await.unwrap_err();
    assert!(err.to_string().contains("cannot be given as int8"), "{err}");
}
