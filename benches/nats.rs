//! NATS JetStream: flext's relay and consumer against hand-written `async-nats` code
//! doing the same work, against the machine's `nats-server` (or `NATS_URL`), measured in
//! the same run.
//!
//! 1. **Relay**: a backlog of outbox rows in a SQLite file, published to a fresh stream
//!    and marked delivered. flext: `SqliteOutboxRelay` + `NatsRelay`. By hand: read the
//!    rows 256 at a time, publish each with the same subject, `Nats-Msg-Id` and headers,
//!    all 256 awaiting their acks at once, then mark them in one transaction.
//! 2. **Consumer**: a stream of events consumed into a SQLite file, each with an inbox row
//!    and an effect row in one transaction. flext: `NatsConsumer` and an `#[event_handler]`
//!    writing both through `first_delivery`. By hand: a pull consumer fetching 256 at a
//!    time, decoding each, writing both rows in one transaction, acknowledging. A second
//!    flext row adds the consumer's own inbox (`NatsConsumerBuilder::inbox`).
//! 3. **Latency**: from an event's commit in one service to its effect's commit in
//!    another, at a steady rate, through the relay (polling every millisecond), the
//!    server and the consumer.
//!
//! ```text
//! cargo bench --features nats --bench nats
//! FLEXT_NATS_BENCH_EVENTS=100000 FLEXT_NATS_BENCH_CONSUMED=20000 cargo bench --features nats --bench nats
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use flext::database::event_id_of;
use flext::event_store::{EventStore, NewEvent, StreamId};
use flext::nats::{NatsConsumer, NatsRelay, NatsTestServer, headers};
use flext::prelude::*;
use flext::sqlite::{SqliteDatabase, SqliteOutboxRelay, Synchronous, rusqlite};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

#[event(name = "bench.noted")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Noted {
    n: u64,
    /// When the event was appended, in nanoseconds since the Unix epoch (latency run).
    at_ns: u64,
}

/// Where the flext consumer's handler writes, and whether it records latencies.
struct Sink {
    db: SqliteDatabase,
    latencies: Option<std::sync::Mutex<Histogram<u64>>>,
}

#[event_handler]
async fn note(e: Noted, ctx: &Context, sink: State<Sink>) -> Result<()> {
    let id = event_id_of(ctx).ok_or_else(|| Error::internal("bench.no_id", "no event id"))?;
    sink.db.transaction(|uow| {
        if uow.first_delivery("note", id)? {
            uow.connection()
                .prepare_cached("INSERT INTO notes (n) VALUES (?1)")
                .and_then(|mut s| s.execute([e.n]))
                .map_err(sql)?;
        }
        Ok(())
    })?;
    if let Some(h) = &sink.latencies {
        let _ = h
            .lock()
            .unwrap()
            .record(now_ns().saturating_sub(e.at_ns) / 1_000);
    }
    Ok(())
}

fn sql(e: rusqlite::Error) -> Error {
    Error::infrastructure("bench.sql", e.to_string())
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn count(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn temp_db(dir: &std::path::Path, name: &str) -> SqliteDatabase {
    let db = SqliteDatabase::open_with(dir.join(name), Synchronous::Normal).unwrap();
    db.transaction(|uow| {
        uow.connection()
            .execute_batch("CREATE TABLE IF NOT EXISTS notes (n INTEGER NOT NULL)")
            .map_err(sql)
    })
    .unwrap();
    db
}

/// `events` events over 1,000 aggregates: interleaved (one event per aggregate in turn,
/// as many orders in progress at once append them), or clumped (100 consecutive events
/// per aggregate, appended together).
async fn backlog(store: &dyn EventStore, events: u64, clumped: bool) {
    let ctx = Context::new();
    let streams = 1_000.min(events).max(1);
    let per = events / streams;
    let chunk = if clumped { 100 } else { 1 };
    let mut n = 0;
    for round in 0..per.div_ceil(chunk) {
        for s in 0..streams {
            let stream = StreamId::new("Order", format!("o-{s}"));
            let batch: Vec<NewEvent> = (0..chunk.min(per - round * chunk))
                .map(|_| {
                    n += 1;
                    NewEvent::new(
                        "bench.noted",
                        1,
                        serde_json::json!({ "n": n, "at_ns": 0 }),
                        &ctx,
                    )
                })
                .collect();
            store.append(&stream, round * chunk, &batch).await.unwrap();
        }
    }
}

/// An outbox row as the hand-written relay reads it: position, event id, aggregate id,
/// name, schema version, sequence, correlation id, payload.
type OutboxRow = (i64, String, String, String, i64, i64, String, String);

/// The hand-written relay: read 256 rows, publish them all, await the acks, mark them.
async fn relay_by_hand(path: &std::path::Path, js: &async_nats::jetstream::Context, prefix: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA synchronous = NORMAL").unwrap();
    loop {
        let rows: Vec<OutboxRow> = {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT e.position, e.event_id, e.aggregate_id, e.name, e.schema_version, e.sequence, e.correlation_id, e.payload
                     FROM flext_outbox o JOIN flext_events e ON e.position = o.position
                     WHERE o.delivered_ms IS NULL ORDER BY o.position LIMIT 256",
                )
                .unwrap();
            stmt.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
        };
        if rows.is_empty() {
            return;
        }
        let mut acks = Vec::with_capacity(rows.len());
        for (_, id, aggregate, name, version, sequence, correlation, payload) in &rows {
            let mut h = async_nats::HeaderMap::new();
            h.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
            h.insert(headers::EVENT_NAME, name.as_str());
            h.insert(headers::SCHEMA_VERSION, version.to_string().as_str());
            h.insert(headers::CORRELATION_ID, correlation.as_str());
            h.insert(headers::SEQUENCE, sequence.to_string().as_str());
            let ack = js
                .publish_with_headers(
                    format!("{prefix}.Order.{aggregate}"),
                    h,
                    payload.clone().into_bytes().into(),
                )
                .await
                .unwrap();
            acks.push(ack);
        }
        for ack in acks {
            ack.await.unwrap();
        }
        let tx = conn.unchecked_transaction().unwrap();
        {
            let mut mark = tx
                .prepare_cached("UPDATE flext_outbox SET delivered_ms = 1 WHERE position = ?1")
                .unwrap();
            for row in &rows {
                mark.execute([row.0]).unwrap();
            }
        }
        tx.commit().unwrap();
    }
}

fn unmark(path: &std::path::Path) {
    rusqlite::Connection::open(path)
        .unwrap()
        .execute("UPDATE flext_outbox SET delivered_ms = NULL", [])
        .unwrap();
}

/// The hand-written consumer: fetch up to 256, write each message's inbox and effect rows
/// in one transaction, acknowledge.
async fn consume_by_hand(
    js: &async_nats::jetstream::Context,
    stream: &str,
    durable: &str,
    path: &std::path::Path,
    expected: u64,
) {
    use futures_util::StreamExt;
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE IF NOT EXISTS inbox (consumer TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (consumer, event_id));
         CREATE TABLE IF NOT EXISTS notes (n INTEGER NOT NULL);",
    )
    .unwrap();
    let consumer = js
        .get_stream(stream)
        .await
        .unwrap()
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some(durable.to_owned()),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut done = 0;
    while done < expected {
        let mut batch = consumer.fetch().max_messages(256).messages().await.unwrap();
        while let Some(message) = batch.next().await {
            let message = message.unwrap();
            let id = message
                .headers
                .as_ref()
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .unwrap()
                .as_str()
                .to_owned();
            let event: Noted = serde_json::from_slice(&message.payload).unwrap();
            let tx = conn.unchecked_transaction().unwrap();
            let first = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO inbox (consumer, event_id) VALUES ('note', ?1)",
                )
                .unwrap()
                .execute([id])
                .unwrap()
                == 1;
            if first {
                tx.prepare_cached("INSERT INTO notes (n) VALUES (?1)")
                    .unwrap()
                    .execute([event.n])
                    .unwrap();
            }
            tx.commit().unwrap();
            message.ack().await.unwrap();
            done += 1;
        }
    }
}

async fn consume_with_flext(
    url: &str,
    stream: &str,
    durable: &str,
    db: SqliteDatabase,
    consumer_inbox: bool,
    expected: u64,
) {
    let bus = Bus::builder()
        .state(Sink {
            db: db.clone(),
            latencies: None,
        })
        .record_stats(false)
        .build()
        .unwrap();
    let mut builder = NatsConsumer::builder(stream, durable);
    if consumer_inbox {
        builder = builder.inbox(db);
    }
    let consumer = builder.connect(url, bus).await.unwrap();
    let counts = consumer.counts().clone();
    let running = consumer.spawn();
    while counts.handled() < expected {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    running.shutdown().await;
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let events = count("FLEXT_NATS_BENCH_EVENTS", 100_000);
    let consumed = count("FLEXT_NATS_BENCH_CONSUMED", 20_000);
    let rounds = count("FLEXT_NATS_BENCH_ROUNDS", 3);
    let server = NatsTestServer::start().unwrap_or_else(|e| panic!("{e}"));
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let dir = std::env::temp_dir().join(format!("flext-nats-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // 1. The relay, from an interleaved backlog and from a clumped one.
    for clumped in [false, true] {
        let name = if clumped { "clumped" } else { "interleaved" };
        let path = dir.join(format!("{name}.db"));
        let db = temp_db(&dir, &format!("{name}.db"));
        backlog(&db.event_store().unwrap(), events, clumped).await;
        let (mut hand, mut flext) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            unmark(&path);
            let prefix = format!("hand{name}{round}");
            js.create_stream(async_nats::jetstream::stream::Config {
                name: prefix.clone(),
                subjects: vec![format!("{prefix}.>")],
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .unwrap();
            let t = Instant::now();
            relay_by_hand(&path, &js, &prefix).await;
            hand.push(events as f64 / t.elapsed().as_secs_f64());
            js.delete_stream(&prefix).await.unwrap();

            unmark(&path);
            let prefix = format!("flext{name}{round}");
            let relay = NatsRelay::with_client(client.clone(), &prefix, Duration::from_secs(120))
                .await
                .unwrap();
            let outbox = SqliteOutboxRelay::new(db.clone(), relay);
            let t = Instant::now();
            while db.outbox_pending().unwrap() > 0 {
                outbox.deliver_pending().await.unwrap();
            }
            flext.push(events as f64 / t.elapsed().as_secs_f64());
            js.delete_stream(&prefix).await.unwrap();
        }
        let (h, f) = (median(hand), median(flext));
        println!(
            "relay: {events} outbox rows over 1,000 aggregates, {name}, to JetStream, median of {rounds} rounds"
        );
        println!("  by hand {h:>9.0} events/s");
        println!("  flext   {f:>9.0} events/s   ratio {:.2}", f / h);
    }

    // 2. The consumer: one stream, consumed by a fresh durable each round.
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "consumed".into(),
        subjects: vec!["consumed.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut acks = Vec::new();
    for n in 0..consumed {
        let mut h = async_nats::HeaderMap::new();
        h.insert(
            async_nats::header::NATS_MESSAGE_ID,
            Uuid::new_v4().to_string().as_str(),
        );
        h.insert(headers::EVENT_NAME, "bench.noted");
        h.insert(headers::SCHEMA_VERSION, "1");
        h.insert(headers::CORRELATION_ID, Uuid::new_v4().to_string().as_str());
        h.insert(headers::SEQUENCE, "1");
        let payload = serde_json::to_vec(&serde_json::json!({ "n": n, "at_ns": 0 })).unwrap();
        acks.push(
            js.publish_with_headers(format!("consumed.Order.o-{}", n % 1000), h, payload.into())
                .await
                .unwrap(),
        );
        if acks.len() == 256 {
            for a in acks.drain(..) {
                a.await.unwrap();
            }
        }
    }
    for a in acks {
        a.await.unwrap();
    }
    let (mut hand, mut flext, mut flext_inbox) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let t = Instant::now();
        consume_by_hand(
            &js,
            "consumed",
            &format!("hand{round}"),
            &dir.join(format!("hand{round}.db")),
            consumed,
        )
        .await;
        hand.push(consumed as f64 / t.elapsed().as_secs_f64());

        let db = temp_db(&dir, &format!("flext{round}.db"));
        let t = Instant::now();
        consume_with_flext(
            server.url(),
            "consumed",
            &format!("flext{round}"),
            db,
            false,
            consumed,
        )
        .await;
        flext.push(consumed as f64 / t.elapsed().as_secs_f64());

        let db = temp_db(&dir, &format!("inbox{round}.db"));
        let t = Instant::now();
        consume_with_flext(
            server.url(),
            "consumed",
            &format!("inbox{round}"),
            db,
            true,
            consumed,
        )
        .await;
        flext_inbox.push(consumed as f64 / t.elapsed().as_secs_f64());
    }
    let (h, f, fi) = (median(hand), median(flext), median(flext_inbox));
    println!(
        "consumer: {consumed} events into SQLite (inbox and effect rows), median of {rounds} rounds"
    );
    println!("  by hand                 {h:>9.0} events/s");
    println!(
        "  flext                   {f:>9.0} events/s   ratio {:.2}",
        f / h
    );
    println!(
        "  flext + consumer inbox  {fi:>9.0} events/s   ratio {:.2}",
        fi / h
    );

    // 3. Latency, commit to commit, at a steady rate.
    let rate = count("FLEXT_NATS_BENCH_RATE", 500);
    let seconds = count("FLEXT_NATS_BENCH_SECONDS", 10);
    let sender = temp_db(&dir, "sender.db");
    let receiver = temp_db(&dir, "receiver.db");
    let latencies = Arc::new(Sink {
        db: receiver,
        latencies: Some(std::sync::Mutex::new(Histogram::new(3).unwrap())),
    });
    let bus = Bus::builder()
        .shared_state(latencies.clone())
        .record_stats(false)
        .build()
        .unwrap();
    let relay = NatsRelay::with_client(client.clone(), "latency", Duration::from_secs(120))
        .await
        .unwrap();
    let relaying = SqliteOutboxRelay::new(sender.clone(), relay).spawn(Duration::from_millis(1));
    let consumer = NatsConsumer::builder("latency", "latency")
        .connect(server.url(), bus)
        .await
        .unwrap();
    let counts = consumer.counts().clone();
    let consuming = consumer.spawn();
    let store = sender.event_store().unwrap();
    let ctx = Context::new();
    let total = rate * seconds;
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    for n in 0..total {
        tick.tick().await;
        let stream = StreamId::new("Order", format!("o-{}", n % 100));
        let version = n / 100;
        let event = NewEvent::new(
            "bench.noted",
            1,
            serde_json::json!({ "n": n, "at_ns": now_ns() }),
            &ctx,
        );
        store.append(&stream, version, &[event]).await.unwrap();
    }
    while counts.handled() < total {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    consuming.shutdown().await;
    relaying.shutdown().await;
    let h = latencies.latencies.as_ref().unwrap().lock().unwrap();
    println!(
        "latency: {total} events at {rate}/s, appended in one service to handled in another (relay polling every 1 ms)"
    );
    println!(
        "  p50 {} µs   p99 {} µs   max {} µs",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max()
    );
    drop(h);
    std::fs::remove_dir_all(&dir).ok();
}
