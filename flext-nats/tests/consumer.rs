//! `NatsConsumer` against the machine's real `nats-server`: events relayed from one
//! service's SQLite outbox reach another service's handlers once (the handler's effect
//! and the inbox row), a failing handler is retried and its message dead-lettered after
//! the delivery limit (counted in `bus.report()`), a message that is not a flext event is
//! dead-lettered at once, an event stored under an older schema version is upcast, a
//! handler longer than the ack wait is not delivered again, and an event id in the inbox
//! is acknowledged without handling.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flext::database::{Inbox, event_id_of};
use flext::event_store::{EventStore, NewEvent, StreamId, Upcasters};
use flext::nats::{ConsumerCounts, NatsConsumer, NatsRelay, NatsTestServer, headers};
use flext::prelude::*;
use flext::sqlite::{SqliteDatabase, SqliteOutboxRelay, rusqlite};
use serde::{Deserialize, Serialize};

#[event(name = "parcel.sent", version = 2)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ParcelSent {
    parcel: String,
    grams: u64,
}

/// What the handlers saw.
#[derive(Default)]
struct Seen {
    /// Every call, with the parcel.
    calls: Mutex<Vec<String>>,
    /// Failures still to inflict on parcel `flaky`.
    flaky_left: AtomicUsize,
    /// Whether parcel `poison` is accepted now (its handler was fixed).
    poison_cured: AtomicBool,
}

/// Records each parcel once in `parcels`, in a unit of work with its inbox row.
#[event_handler]
async fn record_parcel(
    e: ParcelSent,
    ctx: &Context,
    db: State<SqliteDatabase>,
    seen: State<Seen>,
) -> Result<()> {
    seen.calls.lock().unwrap().push(e.parcel.clone());
    let id = event_id_of(ctx).ok_or_else(|| Error::internal("test.no_id", "no event id"))?;
    if e.parcel == "poison" && !seen.poison_cured.load(Ordering::SeqCst) {
        return Err(Error::validation(
            "test.poison",
            "this parcel is never accepted",
        ));
    }
    if e.parcel == "flaky" && seen.flaky_left.load(Ordering::SeqCst) > 0 {
        seen.flaky_left.fetch_sub(1, Ordering::SeqCst);
        return Err(Error::infrastructure("test.flaky", "the depot is down"));
    }
    if e.parcel == "slow" {
        tokio::time::sleep(Duration::from_millis(2_500)).await;
    }
    db.transaction(|uow| {
        if uow.first_delivery("record_parcel", id)? {
            uow.connection()
                .execute(
                    "INSERT INTO parcels (parcel, grams) VALUES (?1, ?2)",
                    rusqlite::params![e.parcel, e.grams],
                )
                .map_err(|e| Error::infrastructure("test.sql", e.to_string()))?;
        }
        Ok(())
    })
}

fn temp_db(name: &str) -> SqliteDatabase {
    let dir = std::env::temp_dir().join(format!("flext-nats-consumer-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    SqliteDatabase::open(dir.join(name)).unwrap()
}

fn parcels(db: &SqliteDatabase) -> BTreeMap<String, u64> {
    db.read_transaction(|uow| {
        let mut stmt = uow
            .connection()
            .prepare("SELECT parcel, grams FROM parcels")
            .unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))
            .unwrap();
        Ok(rows.map(Result::unwrap).collect())
    })
    .unwrap()
}

/// Whether `done` turned true within 15 seconds.
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..300 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_another_service_once() {
    let server = NatsTestServer::start().unwrap_or_else(|e| panic!("{e}"));
    let prefix = "depot";

    // The sending service: events appended with their outbox rows, relayed to NATS.
    let sender = temp_db("sender.db");
    let store = sender.event_store().unwrap();
    let ctx = Context::new();
    let mut ids = BTreeMap::new();
    for (i, parcel) in ["p-1", "p-2", "flaky", "poison", "slow", "p-3"]
        .iter()
        .enumerate()
    {
        let stream = StreamId::new("Parcel", *parcel);
        let event = NewEvent::new(
            "parcel.sent",
            2,
            serde_json::json!({ "parcel": parcel, "grams": 100 * (i as u64 + 1) }),
            &ctx,
        );
        ids.insert(parcel.to_string(), event.event_id);
        store.append(&stream, 0, &[event]).await.unwrap();
    }
    let relay = NatsRelay::connect(server.url(), prefix).await.unwrap();
    SqliteOutboxRelay::new(sender.clone(), relay)
        .deliver_pending()
        .await
        .unwrap();

    // A v1 payload (`kilograms`), published by an older sender.
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let old_id = Uuid::new_v4();
    let mut h = async_nats::HeaderMap::new();
    h.insert(headers::MSG_ID, old_id.to_string().as_str());
    h.insert(headers::EVENT_NAME, "parcel.sent");
    h.insert(headers::SCHEMA_VERSION, "1");
    h.insert(headers::CORRELATION_ID, Uuid::new_v4().to_string().as_str());
    h.insert(headers::SEQUENCE, "1");
    js.publish_with_headers(
        "depot.Parcel.old",
        h,
        r#"{"parcel":"old","kilograms":2}"#.into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    // Not a flext event: no headers.
    js.publish("depot.Parcel.junk", "{}".into())
        .await
        .unwrap()
        .await
        .unwrap();

    // The receiving service.
    let receiver = temp_db("receiver.db");
    receiver
        .transaction(|uow| {
            uow.connection()
                .execute_batch(
                    "CREATE TABLE parcels (parcel TEXT PRIMARY KEY, grams INTEGER NOT NULL)",
                )
                .map_err(|e| Error::infrastructure("test.sql", e.to_string()))
        })
        .unwrap();
    // p-3 was handled before (its inbox row is there): acknowledged, not handled.
    assert!(receiver.record("receiver", ids["p-3"]).await.unwrap());
    let seen = Arc::new(Seen::default());
    seen.flaky_left.store(1, Ordering::SeqCst);
    let counts = ConsumerCounts::new("receiver");
    let bus = Bus::builder()
        .state(receiver.clone())
        .shared_state(seen.clone())
        .report(counts.clone())
        .build()
        .unwrap();
    let upcasters = Upcasters::new().register("parcel.sent", 1, |mut v| {
        let kg = v["kilograms"].as_u64().unwrap_or(0);
        v["grams"] = serde_json::json!(kg * 1000);
        Ok(v)
    });
    let consumer = NatsConsumer::builder(prefix, "receiver")
        .filter_subject("depot.Parcel.>")
        .ack_wait(Duration::from_secs(1))
        .max_deliver(3)
        .retry_delay(Duration::from_millis(100))
        .inbox(receiver.clone())
        .upcast::<ParcelSent>(&upcasters)
        .counts(counts.clone())
        .connect(server.url(), bus.clone())
        .await
        .unwrap();
    let running = consumer.spawn();
    let settled = eventually(|| {
        counts.handled() == 5 && counts.dead_letters() == 2 && counts.duplicates() == 1
    })
    .await;
    assert!(
        settled,
        "every message settled: {:?}",
        bus.report().components
    );
    running.shutdown().await;

    // Each effect once; the poison parcel and the junk message in the dead letters.
    let expected: BTreeMap<String, u64> = [
        ("p-1", 100),
        ("p-2", 200),
        ("flaky", 300),
        ("slow", 500),
        ("old", 2000),
    ]
    .into_iter()
    .map(|(p, g)| (p.to_owned(), g))
    .collect();
    assert_eq!(parcels(&receiver), expected);
    let calls = seen.calls.lock().unwrap().clone();
    let count = |p: &str| calls.iter().filter(|c| *c == p).count();
    assert_eq!(count("flaky"), 2, "failed once, then handled: {calls:?}");
    assert_eq!(count("poison"), 3, "delivered up to the limit: {calls:?}");
    assert_eq!(
        count("slow"),
        1,
        "kept by in-progress acks, not delivered again: {calls:?}"
    );
    assert_eq!(count("p-3"), 0, "in the inbox already: {calls:?}");
    for parcel in ["p-1", "p-2", "flaky", "slow"] {
        assert!(receiver.contains("receiver", ids[parcel]).await.unwrap());
    }
    assert!(receiver.contains("receiver", old_id).await.unwrap());
    assert!(!receiver.contains("receiver", ids["poison"]).await.unwrap());

    // The dead letters: the poison parcel with its handler's error, the junk at once.
    let mut dead = js.get_stream("depot_dead_letters").await.unwrap();
    assert_eq!(dead.info().await.unwrap().state.messages, 2);
    let mut letters = BTreeMap::new();
    for seq in 1..=2 {
        let m = dead.get_raw_message(seq).await.unwrap();
        let get = |k: &str| m.headers.get(k).map(|v| v.as_str().to_owned());
        letters.insert(
            get(headers::SUBJECT).unwrap(),
            (
                get(headers::ERROR_CODE).unwrap(),
                get(headers::DELIVERIES).unwrap(),
            ),
        );
    }
    assert_eq!(
        letters["depot.Parcel.poison"],
        ("test.poison".to_owned(), "3".to_owned())
    );
    assert_eq!(letters["depot.Parcel.junk"].0, "flext.consumer.bad_message");

    // The operator's views: the dead letters listed, then replayed through the
    // consumer's own handling once its handler is fixed.
    let ops = flext::operator::Operations::new(flext::saga::MemoryLog::new())
        .dead_letters(consumer.clone());
    let lists = ops.dead_letter_lists(10).await;
    assert_eq!(lists.len(), 1);
    assert_eq!(lists[0].0, "receiver");
    let letters = lists[0].1.as_ref().unwrap().clone();
    assert_eq!(letters.len(), 2, "{letters:?}");
    let poison = letters
        .iter()
        .find(|l| l.subject == "depot.Parcel.poison")
        .unwrap();
    let poison_id = ids["poison"].to_string();
    assert_eq!(poison.event_id.as_deref(), Some(poison_id.as_str()));
    assert_eq!(poison.event.as_deref(), Some("parcel.sent"));
    assert_eq!(
        (poison.error_code.as_str(), poison.deliveries),
        ("test.poison", 3)
    );
    assert!(poison.payload.is_none(), "payloads are hidden by default");
    let junk = letters
        .iter()
        .find(|l| l.subject == "depot.Parcel.junk")
        .unwrap();
    let still = ops
        .replay("receiver", poison.id, "alice", "retry it")
        .await
        .unwrap_err();
    assert_eq!(
        still.code(),
        "test.poison",
        "the handler still refuses: {still}"
    );
    let not_an_event = ops
        .replay("receiver", junk.id, "alice", "retry it")
        .await
        .unwrap_err();
    assert_eq!(not_an_event.code(), flext::codes::CONSUMER_BAD_MESSAGE);
    seen.poison_cured.store(true, Ordering::SeqCst);
    ops.replay("receiver", poison.id, "alice", "the depot takes it now")
        .await
        .unwrap();
    assert_eq!(parcels(&receiver).get("poison"), Some(&400), "handled once");
    assert!(receiver.contains("receiver", ids["poison"]).await.unwrap());
    let left = ops.dead_letter_lists(10).await;
    let left: Vec<&str> = left[0]
        .1
        .as_ref()
        .unwrap()
        .iter()
        .map(|l| l.subject.as_str())
        .collect();
    assert_eq!(left, ["depot.Parcel.junk"], "the replayed letter is gone");
    let gone = ops
        .replay("receiver", poison.id, "alice", "again")
        .await
        .unwrap_err();
    assert_eq!(gone.code(), flext::codes::OPERATOR_UNKNOWN_TARGET);
    let audit: Vec<String> = ops.audit().into_iter().map(|a| a.outcome).collect();
    assert_eq!(
        audit,
        [
            "refused: test.poison",
            "refused: flext.consumer.bad_message",
            "done",
            "refused: flext.operator.unknown_target"
        ]
    );

    // In the bus's report.
    let report = bus.report();
    let consumer = report
        .components
        .iter()
        .find(|c| c.kind == "consumer")
        .expect("the consumer is in the report");
    assert_eq!(consumer.name, "receiver");
    assert_eq!(consumer.status["dead_letters"], 2);
    assert_eq!(consumer.status["handled"], 5);
}
