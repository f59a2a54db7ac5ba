//! Event sourcing, in one run:
//!
//! - a deposit on a bank account with 10 and 1,000 prior events: cqrs-es 0.5 with its
//!   in-memory store against flext's `Repository` over `MemoryEventStore` (loading the
//!   stream each time; with a snapshot at the 1,000th event; with the repository's
//!   cache);
//! - SQLite appends of 1 and of 10 events through `SqliteEventStore` against raw
//!   `rusqlite` inserts of the same rows in one transaction (both at
//!   `synchronous = NORMAL`, WAL);
//! - loading a 1,000-event stream from SQLite, with and without a snapshot.
//!
//! Each measured deposit runs on an account that has exactly the stated history, give
//! or take the few deposits of a chunk: the store is rebuilt, untimed, every `CHUNK`
//! deposits, so that the stream does not grow with criterion's iteration count.
//!
//! ```text
//! cargo bench --bench event_store
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use flext::aggregate::{Events, Repository};
use flext::event_store::{
    EventStore, MemoryEventStore, NewEvent, Snapshot, SqliteEventStore, StreamId,
};
use flext::prelude::*;
use serde::{Deserialize, Serialize};

// ------------------------------------------------------------------ flext's account

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Deposit {
    #[aggregate_id]
    account: String,
    cents: u64,
}

#[event(name = "account.deposited")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Deposited {
    cents: u64,
}

#[aggregate]
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Account {
    #[aggregate_id]
    id: String,
    balance: u64,
}

#[aggregate]
impl Account {
    #[command_handler]
    fn deposit(&self, c: &Deposit) -> Result<Events<Self>> {
        Ok(Events::one(Deposited { cents: c.cents }))
    }

    #[apply]
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.cents;
    }
}

/// The same account, taking snapshots every 1,000 events.
#[aggregate(snapshot_every = 1000)]
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct SnapAccount {
    #[aggregate_id]
    id: String,
    balance: u64,
}

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapDeposit {
    #[aggregate_id]
    account: String,
    cents: u64,
}

#[aggregate]
impl SnapAccount {
    #[command_handler]
    fn deposit(&self, c: &SnapDeposit) -> Result<Events<Self>> {
        Ok(Events::one(Deposited { cents: c.cents }))
    }

    #[apply]
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.cents;
    }
}

// ------------------------------------------------------------------ cqrs-es's account

mod cqrs {
    use cqrs_es::event_sink::EventSink;
    use cqrs_es::{Aggregate, DomainEvent};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Default, Serialize, Deserialize)]
    pub struct Account {
        pub balance: u64,
    }

    #[derive(Debug, Clone, Deserialize)]
    pub enum Command {
        Deposit { cents: u64 },
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub enum Event {
        Deposited { cents: u64 },
    }

    impl DomainEvent for Event {
        fn event_type(&self) -> String {
            "Deposited".into()
        }
        fn event_version(&self) -> String {
            "1".into()
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("never")]
    pub struct Never;

    impl Aggregate for Account {
        const TYPE: &'static str = "account";
        type Command = Command;
        type Event = Event;
        type Error = Never;
        type Services = ();

        async fn handle(
            &mut self,
            command: Command,
            _: &(),
            sink: &EventSink<Self>,
        ) -> Result<(), Never> {
            match command {
                Command::Deposit { cents } => {
                    sink.write(Event::Deposited { cents }, self).await;
                }
            }
            Ok(())
        }

        fn apply(&mut self, event: Event) {
            match event {
                Event::Deposited { cents } => self.balance += cents,
            }
        }
    }
}

// ------------------------------------------------------------------ helpers

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// Times `iters` runs of `run`, rebuilding the fixture with `setup` (untimed) every
/// `chunk` runs.
fn chunked<F, S, R>(
    rt: &tokio::runtime::Runtime,
    iters: u64,
    chunk: u64,
    mut setup: S,
    mut run: R,
) -> Duration
where
    S: FnMut() -> F,
    R: AsyncFnMut(&F, u64),
{
    let mut elapsed = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = chunk.min(iters - done);
        let fixture = setup();
        let started = Instant::now();
        rt.block_on(async {
            for i in 0..n {
                run(&fixture, i).await;
            }
        });
        elapsed += started.elapsed();
        done += n;
    }
    elapsed
}

fn prior(n: u64, ctx: &Context) -> Vec<NewEvent> {
    (0..n)
        .map(|i| {
            NewEvent::new(
                "account.deposited",
                1,
                serde_json::json!({ "cents": i % 100 + 1 }),
                ctx,
            )
        })
        .collect()
}

fn flext_store(rt: &tokio::runtime::Runtime, aggregate: &str, n: u64) -> Arc<dyn EventStore> {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let ctx = Context::new();
    rt.block_on(store.append(&StreamId::new(aggregate, "acc"), 0, &prior(n, &ctx)))
        .unwrap();
    store
}

// ------------------------------------------------------------------ the benches

fn execute(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("event_store/execute_deposit");
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    for prior_events in [10u64, 1000] {
        let chunk = if prior_events == 10 { 1 } else { 10 };

        g.bench_with_input(
            BenchmarkId::new("cqrs_es_mem_store", prior_events),
            &prior_events,
            |b, &n| {
                b.iter_custom(|iters| {
                    chunked(
                        &rt,
                        iters,
                        chunk,
                        || {
                            let store = cqrs_es::mem_store::MemStore::<cqrs::Account>::default();
                            rt.block_on(async {
                                use cqrs_es::EventStore as _;
                                let context = store.load_aggregate("acc").await.unwrap();
                                let events = (0..n)
                                    .map(|i| cqrs::Event::Deposited { cents: i % 100 + 1 })
                                    .collect();
                                store
                                    .commit(events, context, Default::default())
                                    .await
                                    .unwrap();
                            });
                            cqrs_es::CqrsFramework::new(store, vec![], ())
                        },
                        async |cqrs, i| {
                            cqrs.execute("acc", cqrs::Command::Deposit { cents: i + 1 })
                                .await
                                .unwrap();
                        },
                    )
                })
            },
        );

        let ctx = Context::new();
        g.bench_with_input(
            BenchmarkId::new("flext_load_each_time", prior_events),
            &prior_events,
            |b, &n| {
                b.iter_custom(|iters| {
                    chunked(
                        &rt,
                        iters,
                        chunk,
                        || Repository::<Account>::new(flext_store(&rt, "Account", n)),
                        async |repo, i| {
                            black_box(
                                repo.execute(
                                    &Deposit {
                                        account: "acc".into(),
                                        cents: i + 1,
                                    },
                                    &ctx,
                                )
                                .await
                                .unwrap(),
                            );
                        },
                    )
                })
            },
        );

        g.bench_with_input(
            BenchmarkId::new("flext_cached", prior_events),
            &prior_events,
            |b, &n| {
                b.iter_custom(|iters| {
                    chunked(
                        &rt,
                        iters,
                        chunk.max(100),
                        || {
                            let repo = Repository::<Account>::new(flext_store(&rt, "Account", n))
                                .cache(16);
                            // The first command of a process loads the stream; the rest are
                            // measured.
                            rt.block_on(repo.execute(
                                &Deposit {
                                    account: "acc".into(),
                                    cents: 1,
                                },
                                &ctx,
                            ))
                            .unwrap();
                            repo
                        },
                        async |repo, i| {
                            black_box(
                                repo.execute(
                                    &Deposit {
                                        account: "acc".into(),
                                        cents: i + 1,
                                    },
                                    &ctx,
                                )
                                .await
                                .unwrap(),
                            );
                        },
                    )
                })
            },
        );

        if prior_events == 1000 {
            g.bench_with_input(
                BenchmarkId::new("flext_snapshot", prior_events),
                &prior_events,
                |b, &n| {
                    b.iter_custom(|iters| {
                        chunked(
                            &rt,
                            iters,
                            chunk,
                            || {
                                let store = flext_store(&rt, "SnapAccount", n);
                                let stream = StreamId::new("SnapAccount", "acc");
                                let balance: u64 = (0..n).map(|i| i % 100 + 1).sum();
                                rt.block_on(store.save_snapshot(&Snapshot {
                                    stream,
                                    version: n,
                                    state: serde_json::json!({ "id": "acc", "balance": balance }),
                                    taken_ms: 0,
                                }))
                                .unwrap();
                                Repository::<SnapAccount>::new(store)
                            },
                            async |repo, i| {
                                black_box(
                                    repo.execute(
                                        &SnapDeposit {
                                            account: "acc".into(),
                                            cents: i + 1,
                                        },
                                        &ctx,
                                    )
                                    .await
                                    .unwrap(),
                                );
                            },
                        )
                    })
                },
            );
        }
    }
    g.finish();
}

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("flext-bench-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The rows `SqliteEventStore` writes, inserted by hand in one transaction.
fn raw_append(conn: &mut rusqlite::Connection, stream: u64, events: &[NewEvent]) {
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, name, schema_version, timestamp_ms, correlation_id, causation_id, metadata, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .unwrap();
        for (i, e) in events.iter().enumerate() {
            insert
                .execute(rusqlite::params![
                    e.event_id.to_string(),
                    "Account",
                    stream.to_string(),
                    i as i64 + 1,
                    e.name,
                    e.schema_version,
                    0i64,
                    e.correlation_id.to_string(),
                    e.causation_id.map(|c| c.to_string()),
                    "{}",
                    serde_json::to_string(&e.payload).unwrap(),
                ])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

fn sqlite(c: &mut Criterion) {
    let rt = runtime();
    let ctx = Context::new();
    let mut g = c.benchmark_group("event_store/sqlite_append");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    for batch in [1usize, 10] {
        let mut conn = rusqlite::Connection::open(temp_db("raw.db")).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             CREATE TABLE events (position INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
                 aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL, sequence INTEGER NOT NULL,
                 name TEXT NOT NULL, schema_version INTEGER NOT NULL, timestamp_ms INTEGER NOT NULL,
                 correlation_id TEXT NOT NULL, causation_id TEXT, metadata TEXT NOT NULL, payload TEXT NOT NULL,
                 UNIQUE (aggregate_type, aggregate_id, sequence));",
        )
        .unwrap();
        let mut n = 0u64;
        g.bench_function(BenchmarkId::new("raw_rusqlite", batch), |b| {
            b.iter(|| {
                n += 1;
                raw_append(&mut conn, n, &prior(batch as u64, &ctx));
            })
        });
        let store = SqliteEventStore::open(temp_db("events.db")).unwrap();
        let mut n = 0u64;
        g.bench_function(BenchmarkId::new("flext", batch), |b| {
            b.iter(|| {
                n += 1;
                let stream = StreamId::new("Account", n.to_string());
                rt.block_on(store.append(&stream, 0, &prior(batch as u64, &ctx)))
                    .unwrap();
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("event_store/sqlite_load_1000");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    let store: Arc<dyn EventStore> = Arc::new(SqliteEventStore::open(temp_db("load.db")).unwrap());
    rt.block_on(async {
        for (aggregate, ty) in [("Account", 0), ("SnapAccount", 1)] {
            let stream = StreamId::new(aggregate, "acc");
            store.append(&stream, 0, &prior(1000, &ctx)).await.unwrap();
            if ty == 1 {
                let balance: u64 = (0..1000u64).map(|i| i % 100 + 1).sum();
                store
                    .save_snapshot(&Snapshot {
                        stream,
                        version: 1000,
                        state: serde_json::json!({ "id": "acc", "balance": balance }),
                        taken_ms: 0,
                    })
                    .await
                    .unwrap();
            }
        }
    });
    let plain = Repository::<Account>::new(store.clone());
    g.bench_function("without_snapshot", |b| {
        b.iter(|| black_box(rt.block_on(plain.load("acc")).unwrap()))
    });
    let snap = Repository::<SnapAccount>::new(store.clone());
    g.bench_function("with_snapshot", |b| {
        b.iter(|| black_box(rt.block_on(snap.load("acc")).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, execute, sqlite);
criterion_main!(benches);
