//! Projections and the outbox on one SQLite database, in one run:
//!
//! - appending one event through `SqliteDatabase`'s event store (with its outbox row)
//!   against a standalone `SqliteEventStore` (no outbox): what the outbox costs;
//! - a projection catching up on 10,000 events (a counter table upserted per event,
//!   256 events and their checkpoint per transaction) against the same upserts written
//!   by hand in transactions of 256;
//! - the outbox relay delivering 10,000 events to a relay that accepts them.
//!
//! ```text
//! cargo bench --bench projection
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use flext::database::Relay;
use flext::event_store::{EventEnvelope, EventStore, NewEvent, SqliteEventStore, StreamId};
use flext::prelude::*;
use flext::sqlite::rusqlite;
use flext::sqlite::{
    SqliteDatabase, SqliteOutboxRelay, SqliteProjection, SqliteProjectionRunner, SqliteUnitOfWork,
};
use flext::{BoxFuture, Uuid};

const EVENTS: u64 = 10_000;

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("flext-bench-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn event(n: u64, ctx: &Context) -> NewEvent {
    NewEvent::new("counted", 1, serde_json::json!({ "n": n }), ctx)
}

fn sql(e: rusqlite::Error) -> Error {
    Error::infrastructure("bench.sql", e.to_string())
}

/// Counts events per stream.
struct Counts;

impl SqliteProjection for Counts {
    fn name(&self) -> &str {
        "counts"
    }
    fn setup(&self, uow: &SqliteUnitOfWork<'_>) -> Result<()> {
        uow.connection()
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS counts (stream TEXT PRIMARY KEY, n INTEGER NOT NULL)",
            )
            .map_err(sql)
    }
    fn apply(&self, uow: &SqliteUnitOfWork<'_>, e: &EventEnvelope) -> Result<()> {
        uow.connection()
            .prepare_cached("INSERT INTO counts (stream, n) VALUES (?1, 1) ON CONFLICT (stream) DO UPDATE SET n = n + 1")
            .and_then(|mut s| s.execute([&e.aggregate_id]))
            .map(|_| ())
            .map_err(sql)
    }
}

struct Accept;

impl Relay for Accept {
    fn deliver<'a>(&'a self, event: &'a EventEnvelope) -> BoxFuture<'a, Result<()>> {
        black_box(event);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// A database holding `EVENTS` events over 100 streams.
fn filled(rt: &tokio::runtime::Runtime) -> (SqliteDatabase, std::path::PathBuf) {
    let path = temp("filled.db");
    let db = SqliteDatabase::open(&path).unwrap();
    let store = db.event_store().unwrap();
    let ctx = Context::new();
    rt.block_on(async {
        for s in 0..100u64 {
            let events: Vec<NewEvent> = (0..EVENTS / 100).map(|n| event(n, &ctx)).collect();
            store
                .append(&StreamId::new("S", s.to_string()), 0, &events)
                .await
                .unwrap();
        }
    });
    (db, path)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let ctx = Context::new();

    let mut g = c.benchmark_group("projection/append_1_event");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    let standalone = SqliteEventStore::open(temp("standalone.db")).unwrap();
    let mut n = 0u64;
    g.bench_function("event_store_alone", |b| {
        b.iter(|| {
            n += 1;
            rt.block_on(standalone.append(&StreamId::new("S", n.to_string()), 0, &[event(n, &ctx)]))
                .unwrap()
        })
    });
    let db = SqliteDatabase::open(temp("with_outbox.db")).unwrap();
    let with_outbox = db.event_store().unwrap();
    let mut n = 0u64;
    g.bench_function("with_outbox_row", |b| {
        b.iter(|| {
            n += 1;
            rt.block_on(with_outbox.append(
                &StreamId::new("S", n.to_string()),
                0,
                &[event(n, &ctx)],
            ))
            .unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("projection/catch_up_10000_events");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("by_hand_256_per_transaction", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (_db, path) = filled(&rt);
                let mut conn = rusqlite::Connection::open(&path).unwrap();
                conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; CREATE TABLE IF NOT EXISTS counts (stream TEXT PRIMARY KEY, n INTEGER NOT NULL)").unwrap();
                let started = Instant::now();
                let mut after = 0i64;
                loop {
                    let tx = conn.transaction().unwrap();
                    let rows: Vec<(i64, String)> = {
                        let mut stmt = tx
                            .prepare_cached("SELECT position, aggregate_id FROM flext_events WHERE position > ?1 ORDER BY position LIMIT 256")
                            .unwrap();
                        stmt.query_map([after], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<rusqlite::Result<_>>().unwrap()
                    };
                    if rows.is_empty() {
                        break;
                    }
                    for (position, stream) in &rows {
                        tx.prepare_cached("INSERT INTO counts (stream, n) VALUES (?1, 1) ON CONFLICT (stream) DO UPDATE SET n = n + 1")
                            .unwrap()
                            .execute([stream])
                            .unwrap();
                        after = *position;
                    }
                    tx.execute("INSERT OR REPLACE INTO flext_checkpoints (name, position, updated_ms) VALUES ('hand', ?1, 0)", [after]).unwrap();
                    tx.commit().unwrap();
                }
                total += started.elapsed();
            }
            total
        })
    });
    g.bench_function("projection_runner", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (db, _) = filled(&rt);
                let runner = SqliteProjectionRunner::new(db, Counts);
                let started = Instant::now();
                assert_eq!(runner.catch_up().unwrap().applied, EVENTS);
                total += started.elapsed();
            }
            total
        })
    });
    g.bench_function("outbox_relay", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (db, _) = filled(&rt);
                let relay = SqliteOutboxRelay::new(db, Accept);
                let started = Instant::now();
                assert_eq!(rt.block_on(relay.deliver_pending()).unwrap(), EVENTS);
                total += started.elapsed();
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
