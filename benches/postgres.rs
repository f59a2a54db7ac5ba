//! PostgreSQL, in one run against one server that syncs its commits (`fsync` on): event
//! appends and saga transitions with 1 and 8 concurrent writers, each against the raw
//! `BEGIN; INSERT ...; COMMIT` of the same rows through the same driver and pool; then
//! a projection catching up over 100,000 events against a hand-written catch-up loop.
//!
//! ```text
//! cargo bench --features postgres --bench postgres
//! ```
//!
//! The server is a throwaway cluster (`TestCluster::start_durable`), or `DATABASE_URL`.
//! Times are per operation: with 8 writers, the wall time of all of them divided by the
//! operations they did, so "8 writers ≥ 3× 1 writer" reads as a third of the time.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use flext::BoxFuture;
use flext::event_store::{EventEnvelope, EventStore, NewEvent, StreamId};
use flext::postgres::{PgDatabase, PgProjection, PgProjectionRunner, PgUnitOfWork, TestCluster};
use flext::saga::{Fence, Lease, SagaLog, SagaRecord, SagaState, Transition};
use flext::{Context, Uuid};

/// Runs `iters` operations split across `writers` tasks; returns the wall time.
fn concurrent<F, Fut>(rt: &tokio::runtime::Runtime, writers: u64, iters: u64, op: F) -> Duration
where
    F: Fn(u64, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    rt.block_on(async {
        let per = iters.div_ceil(writers).max(1);
        let start = Instant::now();
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let op = op.clone();
                tokio::spawn(async move {
                    for i in 0..per {
                        op(w, i).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // Per operation done (writers × per may round `iters` up).
        start
            .elapsed()
            .mul_f64(iters as f64 / (per * writers) as f64)
    })
}

fn event(n: u64) -> NewEvent {
    NewEvent::new(
        "bench.noted",
        1,
        serde_json::json!({ "n": n, "note": "a small payload" }),
        &Context::new(),
    )
}

const RAW_EVENT: &str = "WITH e AS (
         INSERT INTO flext_events (event_id, aggregate_type, aggregate_id, sequence, name, schema_version, timestamp_ms, correlation_id, causation_id, metadata, payload)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id)
     INSERT INTO flext_outbox (id) SELECT id FROM e";

/// The rows flext's append writes (the event and its outbox row), in one transaction,
/// without the version check.
async fn raw_append(db: &PgDatabase, stream: &StreamId, sequence: i64, e: &NewEvent) {
    let mut client = db.client().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let statement = tx.prepare_cached(RAW_EVENT).await.unwrap();
    tx.execute(
        &statement,
        &[
            &e.event_id,
            &stream.aggregate_type,
            &stream.aggregate_id,
            &sequence,
            &e.name,
            &1i32,
            &0i64,
            &e.correlation_id,
            &e.causation_id,
            &serde_json::Value::Object(e.metadata.clone()),
            &e.payload,
        ],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

fn appends(c: &mut Criterion, rt: &tokio::runtime::Runtime, db: &PgDatabase) {
    let mut g = c.benchmark_group("postgres/append_1_event");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    for writers in [1u64, 8] {
        g.bench_function(format!("raw_insert_commit/{writers}_writers"), |b| {
            b.iter_custom(|iters| {
                let (db, run) = (db.clone(), Uuid::new_v4());
                concurrent(rt, writers, iters, move |w, i| {
                    let db = db.clone();
                    async move {
                        let stream = StreamId::new("Raw", format!("{run}-{w}"));
                        raw_append(&db, &stream, i as i64 + 1, &event(i)).await;
                    }
                })
            })
        });
        g.bench_function(format!("flext/{writers}_writers"), |b| {
            b.iter_custom(|iters| {
                let (store, run) = (db.event_store(), Uuid::new_v4());
                concurrent(rt, writers, iters, move |w, i| {
                    let store = store.clone();
                    async move {
                        let stream = StreamId::new("Flext", format!("{run}-{w}"));
                        store.append(&stream, i, &[event(i)]).await.unwrap();
                    }
                })
            })
        });
    }
    g.finish();
}

fn transition(i: u64) -> Transition {
    Transition::StepCompleted {
        index: i as usize,
        output: serde_json::json!({ "step": i }),
        attempts: 1,
    }
}

fn saga(id: Uuid) -> SagaRecord {
    SagaRecord {
        id,
        name: "Bench".into(),
        input: serde_json::json!({}),
        correlation_id: Uuid::new_v4(),
        state: SagaState::Running,
        transitions: vec![],
        owner: "bench".into(),
        lease_until_ms: u64::MAX / 2,
        definition: String::new(),
        created_ms: 0,
        epoch: 1,
    }
}

fn transitions(c: &mut Criterion, rt: &tokio::runtime::Runtime, db: &PgDatabase) {
    let lease = Arc::new(Lease {
        owner: "bench".into(),
        duration_ms: 60_000,
    });
    let mut g = c.benchmark_group("postgres/saga_transition");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    for writers in [1u64, 8] {
        g.bench_function(format!("raw_update_insert_commit/{writers}_writers"), |b| {
            b.iter_custom(|iters| {
                let ids: Vec<Uuid> = (0..writers).map(|_| Uuid::new_v4()).collect();
                rt.block_on(async {
                    for id in &ids {
                        db.saga_log().create(&saga(*id)).await.unwrap();
                    }
                });
                let (db, ids) = (db.clone(), Arc::new(ids));
                concurrent(rt, writers, iters, move |w, i| {
                    let (db, ids) = (db.clone(), ids.clone());
                    async move {
                        let body = serde_json::to_value(transition(i)).unwrap();
                        let mut client = db.client().await.unwrap();
                        let tx = client.transaction().await.unwrap();
                        let update = tx
                            .prepare_cached("UPDATE flext_sagas SET state = $1, owner = $2, lease_until_ms = $3 WHERE id = $4")
                            .await
                            .unwrap();
                        let insert = tx
                            .prepare_cached("INSERT INTO flext_saga_transitions (saga_id, seq, body, at_ms) VALUES ($1, $2, $3, $4)")
                            .await
                            .unwrap();
                        let id = ids[w as usize];
                        tx.execute(&update, &[&"running", &"bench", &i64::MAX, &id])
                            .await
                            .unwrap();
                        tx.execute(&insert, &[&id, &(i as i32 + 1), &body, &0i64])
                            .await
                            .unwrap();
                        tx.commit().await.unwrap();
                    }
                })
            })
        });
        g.bench_function(format!("flext/{writers}_writers"), |b| {
            b.iter_custom(|iters| {
                let log = db.saga_log();
                let ids: Vec<Uuid> = (0..writers).map(|_| Uuid::new_v4()).collect();
                rt.block_on(async {
                    for id in &ids {
                        log.create(&saga(*id)).await.unwrap();
                    }
                });
                let (lease, ids) = (lease.clone(), Arc::new(ids));
                concurrent(rt, writers, iters, move |w, i| {
                    let (log, lease, ids) = (log.clone(), lease.clone(), ids.clone());
                    async move {
                        // Each writer's saga: its i-th write follows its i transitions.
                        let fence = Fence { epoch: 1, seq: i };
                        log.append(
                            ids[w as usize],
                            &transition(i),
                            SagaState::Running,
                            &lease,
                            fence,
                        )
                        .await
                        .unwrap();
                    }
                })
            })
        });
    }
    g.finish();
}

/// A projection summing a field in memory: what is measured is the runner's reading,
/// decoding and checkpointing, not a table of the projection's own.
struct Sum(Arc<AtomicU64>);

impl PgProjection for Sum {
    fn name(&self) -> &str {
        "bench_sum"
    }
    fn apply<'a>(
        &'a self,
        _: &'a PgUnitOfWork,
        event: &'a EventEnvelope,
    ) -> BoxFuture<'a, flext::Result<()>> {
        Box::pin(async move {
            self.0
                .fetch_add(event.payload["n"].as_u64().unwrap_or(0), Ordering::Relaxed);
            Ok(())
        })
    }
}

const CATCH_UP_EVENTS: i64 = 100_000;

fn catch_up(c: &mut Criterion, rt: &tokio::runtime::Runtime, url: &str) {
    // A database of its own with 100,000 numbered events.
    let db = rt.block_on(async {
        let db = PgDatabase::connect(url).await.unwrap();
        db.client()
            .await
            .unwrap()
            .batch_execute(&format!(
                "INSERT INTO flext_events (event_id, aggregate_type, aggregate_id, sequence, name, schema_version, timestamp_ms, correlation_id, metadata, payload)
                 SELECT gen_random_uuid(), 'Bench', 's' || (g % 100), g / 100 + 1, 'bench.noted', 1, 0, gen_random_uuid(), '{{}}'::jsonb,
                        jsonb_build_object('n', g, 'note', 'a small payload')
                 FROM generate_series(0, {}) AS g",
                CATCH_UP_EVENTS - 1
            ))
            .await
            .unwrap();
        db.event_store().read_all(0, 1).await.unwrap();
        db
    });
    let mut g = c.benchmark_group("postgres/catch_up_100k_events");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("by_hand", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut checkpoint = 0i64;
                    let mut sum = 0u64;
                    loop {
                        let mut client = db.client().await.unwrap();
                        let tx = client.transaction().await.unwrap();
                        let rows = tx
                            .query(
                                "SELECT position, payload FROM flext_events WHERE position > $1 ORDER BY position LIMIT 256",
                                &[&checkpoint],
                            )
                            .await
                            .unwrap();
                        let Some(last) = rows.last() else { break };
                        checkpoint = last.get(0);
                        for r in &rows {
                            let payload: serde_json::Value = r.get(1);
                            sum += payload["n"].as_u64().unwrap_or(0);
                        }
                        tx.execute(
                            "INSERT INTO flext_checkpoints (name, position, updated_ms) VALUES ('by_hand', $1, 0)
                             ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                            &[&checkpoint],
                        )
                        .await
                        .unwrap();
                        tx.commit().await.unwrap();
                    }
                    assert_eq!(checkpoint, CATCH_UP_EVENTS);
                    std::hint::black_box(sum);
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("flext_projection_runner", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // From the first event: a projection under a fresh name.
                    db.client()
                        .await
                        .unwrap()
                        .execute(
                            "DELETE FROM flext_checkpoints WHERE name = 'bench_sum'",
                            &[],
                        )
                        .await
                        .unwrap();
                    let runner = PgProjectionRunner::new(db.clone(), Sum(Arc::default()));
                    let start = Instant::now();
                    let done = runner.catch_up().await.unwrap();
                    total += start.elapsed();
                    assert_eq!(done.applied, CATCH_UP_EVENTS as u64);
                }
                total
            })
        })
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cluster = TestCluster::start_durable().unwrap_or_else(|e| panic!("{e}"));
    let (db, catch_up_url) = rt.block_on(async {
        let url = cluster.fresh_database().await.unwrap();
        (
            PgDatabase::connect(&url).await.unwrap(),
            cluster.fresh_database().await.unwrap(),
        )
    });
    appends(c, &rt, &db);
    transitions(c, &rt, &db);
    catch_up(c, &rt, &catch_up_url);
}

criterion_group!(benches, bench);
criterion_main!(benches);
