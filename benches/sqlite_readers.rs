//! Readers beside a writer on one SQLite database: 8 threads query a projection table
//! while a writer thread commits units of work continuously, through the read pool
//! (`SqliteDatabase::read_transaction`, the default 4 read connections, then 8) against
//! one shared connection (`SqliteOptions::readers(0)`, how every read went before).
//! The figure is the time per query over all 8 readers; queries per second is its
//! inverse.
//!
//! ```text
//! cargo bench --bench sqlite_readers
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use flext::Uuid;
use flext::sqlite::{SqliteDatabase, SqliteOptions};

const READERS: u64 = 8;

fn open(readers: u32) -> SqliteDatabase {
    let dir = std::env::temp_dir().join(format!("flext-bench-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = SqliteDatabase::open_with_options(
        dir.join("readers.db"),
        SqliteOptions::default().readers(readers),
    )
    .unwrap();
    db.transaction(|uow| {
        uow.connection().execute_batch(
            "CREATE TABLE balances (id INTEGER PRIMARY KEY, cents INTEGER NOT NULL);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
             INSERT INTO balances SELECT i, 0 FROM n;",
        )?;
        Ok(())
    })
    .unwrap();
    db
}

/// `iters` queries spread over 8 reader threads, while a writer commits one update per
/// unit of work until they are done.
fn run(db: &SqliteDatabase, iters: u64) -> Duration {
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                db.transaction(|uow| {
                    uow.connection().execute(
                        "UPDATE balances SET cents = cents + 1 WHERE id = ?1",
                        [(n % 1000 + 1) as i64],
                    )?;
                    Ok(())
                })
                .unwrap();
            }
        })
    };
    let started = Instant::now();
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let db = db.clone();
            let count = iters / READERS + u64::from(r < iters % READERS);
            std::thread::spawn(move || {
                for i in 0..count {
                    let cents: i64 = db
                        .read_transaction(|read| {
                            Ok(read.connection().query_row(
                                "SELECT cents FROM balances WHERE id = ?1",
                                [((i * 7 + r) % 1000 + 1) as i64],
                                |row| row.get(0),
                            )?)
                        })
                        .unwrap();
                    std::hint::black_box(cents);
                }
            })
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    elapsed
}

fn readers(c: &mut Criterion) {
    let mut group = c.benchmark_group("sqlite_readers_beside_a_writer");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    for (name, readers) in [
        ("one_shared_connection", 0),
        ("read_pool_4", 4),
        ("read_pool_8", 8),
    ] {
        let db = open(readers);
        group.bench_function(name, |b| b.iter_custom(|iters| run(&db, iters)));
    }
    group.finish();
}

criterion_group!(benches, readers);
criterion_main!(benches);
