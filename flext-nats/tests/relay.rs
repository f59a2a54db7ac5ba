//! `NatsRelay` against the machine's real `nats-server` (JetStream), on the SQLite
//! outbox, and on PostgreSQL's with `--features postgres`. Properties: every outbox event
//! is on the stream exactly once (message count and ids), per aggregate in order, with its
//! headers; an event published again (a crash between the publish and the outbox's mark)
//! is dropped by JetStream; a server killed and restarted on its store loses nothing and
//! doubles nothing; a stream whose duplicate window is shorter than the retry horizon is
//! refused.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use flext::Context;
use flext::database::{EventEnvelope, Relay};
use flext::event_store::{EventStore, NewEvent, StreamId};
use flext::nats::{NatsRelay, NatsTestServer, headers};

/// What the stream holds: each message's event id, subject and `Flext-Sequence`, in
/// stream order.
async fn stream_contents(url: &str, name: &str) -> Vec<(String, String, u64)> {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(name).await.unwrap();
    let count = stream.info().await.unwrap().state.messages;
    let mut out = Vec::new();
    for seq in 1..=count {
        let m = stream.get_raw_message(seq).await.unwrap();
        let header = |h: &str| m.headers.get(h).unwrap().as_str().to_owned();
        let id = m.headers.get(async_nats::header::NATS_MESSAGE_ID).unwrap();
        out.push((
            id.as_str().to_owned(),
            m.subject.to_string(),
            header(headers::SEQUENCE).parse().unwrap(),
        ));
    }
    out
}

/// Exactly once, and in order per subject.
fn check(contents: &[(String, String, u64)], appended: &BTreeSet<String>) {
    let ids: Vec<&String> = contents.iter().map(|(id, _, _)| id).collect();
    let unique: BTreeSet<String> = ids.iter().map(|s| (*s).clone()).collect();
    assert_eq!(ids.len(), unique.len(), "an event is on the stream twice");
    assert_eq!(
        &unique, appended,
        "the stream holds exactly the appended events"
    );
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, subject, sequence) in contents {
        let before = last.insert(subject, *sequence).unwrap_or(0);
        assert_eq!(*sequence, before + 1, "{subject} out of order");
    }
}

fn events(n: usize, ctx: &Context) -> Vec<NewEvent> {
    (0..n)
        .map(|i| NewEvent::new("order.placed", 1, serde_json::json!({ "n": i }), ctx))
        .collect()
}

/// Appends `per` events to each of `streams` aggregates; their ids.
async fn append(store: &dyn EventStore, streams: &[&str], per: usize, ids: &mut BTreeSet<String>) {
    let ctx = Context::new().with_metadata(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    );
    for s in streams {
        let stream = StreamId::new("Order", *s);
        let version = store.version(&stream).await.unwrap();
        let new = events(per, &ctx);
        ids.extend(new.iter().map(|e| e.event_id.to_string()));
        store.append(&stream, version, &new).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_outbox_to_jetstream_exactly_once() {
    let mut server = NatsTestServer::start().unwrap_or_else(|e| panic!("{e}"));
    let dir = std::env::temp_dir().join(format!("flext-nats-relay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = flext::sqlite::SqliteDatabase::open(dir.join("orders.db")).unwrap();
    let store = db.event_store().unwrap();
    let prefix = "orders_sqlite";
    let mut appended = BTreeSet::new();
    // Ids with a `.` and a space: encoded, never splitting the subject.
    append(&store, &["o-1", "o.2", "o 3"], 10, &mut appended).await;

    let relay = NatsRelay::connect(server.url(), prefix).await.unwrap();
    let outbox = flext::sqlite::SqliteOutboxRelay::new(db.clone(), relay);
    assert_eq!(outbox.deliver_pending().await.unwrap(), 30);
    assert_eq!(db.outbox_pending().unwrap(), 0);
    let contents = stream_contents(server.url(), prefix).await;
    check(&contents, &appended);
    // The stream holds the outbox's order, each publish after a batch's first naming the
    // one before it as the stream's last message.
    let in_order: Vec<String> = store
        .read_all(0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event_id.to_string())
        .collect();
    let on_stream: Vec<String> = contents.iter().map(|(id, _, _)| id.clone()).collect();
    assert_eq!(on_stream, in_order);
    let js = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let stream = js.get_stream(prefix).await.unwrap();
    for seq in 2..=30u64 {
        let m = stream.get_raw_message(seq).await.unwrap();
        assert_eq!(
            m.headers
                .get(async_nats::header::NATS_EXPECTED_LAST_MESSAGE_ID)
                .map(|v| v.as_str().to_owned()),
            Some(in_order[seq as usize - 2].clone()),
            "message {seq} names its predecessor"
        );
    }
    assert!(
        contents
            .iter()
            .any(|(_, s, _)| s == "orders_sqlite.Order.o%2E2")
    );

    // A crash between the publish and the mark publishes them again: dropped.
    let again = NatsRelay::connect(server.url(), prefix).await.unwrap();
    let all: Vec<EventEnvelope> = store.read_all(0, 1000).await.unwrap();
    for event in &all {
        again.deliver(event).await.unwrap();
    }
    check(&stream_contents(server.url(), prefix).await, &appended);

    // The server killed: delivery fails and keeps the rows; restarted on its store, the
    // next pass delivers them, once.
    server.kill();
    append(&store, &["o-1", "o-4"], 5, &mut appended).await;
    let e = outbox.deliver_pending().await.unwrap_err();
    assert_eq!(e.code(), "flext.outbox.failed", "{e}");
    assert_eq!(db.outbox_pending().unwrap(), 10);
    server.restart().unwrap();
    let mut delivered = 0;
    for _ in 0..100 {
        match outbox.deliver_pending().await {
            Ok(n) => {
                delivered += n;
                if db.outbox_pending().unwrap() == 0 {
                    break;
                }
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(
        db.outbox_pending().unwrap(),
        0,
        "delivered after the restart"
    );
    assert!(delivered <= 10);
    check(&stream_contents(server.url(), prefix).await, &appended);

    // Headers: the event's name, schema version and trace context travel with it.
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let first = js
        .get_stream(prefix)
        .await
        .unwrap()
        .get_raw_message(1)
        .await
        .unwrap();
    assert_eq!(
        first.headers.get(headers::EVENT_NAME).unwrap().as_str(),
        "order.placed"
    );
    assert_eq!(
        first.headers.get(headers::SCHEMA_VERSION).unwrap().as_str(),
        "1"
    );
    assert_eq!(
        first.headers.get(headers::TRACEPARENT).unwrap().as_str(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );

    // A stream that forgets duplicates sooner than the relay retries is refused.
    let e = NatsRelay::with_client(client, prefix, Duration::from_secs(3600))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "flext.store.bad_config", "{e}");
    assert!(e.message().contains("duplicate"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outbox_to_jetstream_exactly_once() {
    let server = NatsTestServer::start().unwrap_or_else(|e| panic!("{e}"));
    let cluster = flext::postgres::TestCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let url = cluster.fresh_database().await.unwrap();
    let db = flext::postgres::PgDatabase::connect(&url).await.unwrap();
    let store = db.event_store();
    let prefix = "orders_pg";
    let mut appended = BTreeSet::new();
    append(&store, &["o-1", "o-2", "o-3"], 10, &mut appended).await;
    let relay = NatsRelay::connect(server.url(), prefix).await.unwrap();
    let outbox = flext::postgres::PgOutboxRelay::new(db.clone(), relay);
    let mut delivered = 0;
    while db.outbox_pending().await.unwrap() > 0 {
        delivered += outbox.deliver_pending().await.unwrap();
    }
    assert_eq!(delivered, 30);
    check(&stream_contents(server.url(), prefix).await, &appended);
    // Published again after a lost mark: dropped.
    let again = NatsRelay::connect(server.url(), prefix).await.unwrap();
    for event in store.read_all(0, 1000).await.unwrap() {
        again.deliver(&event).await.unwrap();
    }
    check(&stream_contents(server.url(), prefix).await, &appended);
}

/// An event published, then left unmarked past the stream's duplicate window (a relay
/// that crashed and came back after an outage longer than the window): JetStream would
/// store it again, so the relay asks the stream for its subject's last message first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_retried_after_the_duplicate_window_is_stored_once() {
    let server = NatsTestServer::start().unwrap_or_else(|e| panic!("{e}"));
    let db = flext::sqlite::SqliteDatabase::in_memory().unwrap();
    let store = db.event_store().unwrap();
    let prefix = "orders_window";
    let mut appended = BTreeSet::new();
    append(&store, &["o-1", "o-2"], 3, &mut appended).await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let relay = NatsRelay::with_client(client.clone(), prefix, Duration::from_secs(2))
        .await
        .unwrap()
        .with_max_in_flight(4);
    let all: Vec<EventEnvelope> = store.read_all(0, 1000).await.unwrap();
    let (n, e) = relay.deliver_all(&all).await;
    assert_eq!((n, e.map(|e| e.to_string())), (6, None));
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    // Published again after the window, with one more event on o-1: only that one lands.
    append(&store, &["o-1"], 1, &mut appended).await;
    let all: Vec<EventEnvelope> = store.read_all(0, 1000).await.unwrap();
    let again = NatsRelay::with_client(client, prefix, Duration::from_secs(2))
        .await
        .unwrap();
    let (n, e) = again.deliver_all(&all).await;
    assert_eq!((n, e.map(|e| e.to_string())), (7, None));
    check(&stream_contents(server.url(), prefix).await, &appended);
}
