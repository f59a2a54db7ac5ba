//! `NatsConsumer` on PostgreSQL, against the machine's `nats-server` and a throwaway
//! PostgreSQL server (or `DATABASE_URL`): events relayed from one service's PostgreSQL
//! outbox reach another service's handler, whose effect and inbox row commit in one
//! PostgreSQL transaction; the consumer's inbox is the `PgDatabase`, so an event it
//! recorded before is acknowledged without handling.

#![cfg(feature = "postgres")]

use std::collections::BTreeMap;
use std::time::Duration;

use flext::database::{Inbox, event_id_of};
use flext::event_store::{EventStore, NewEvent, StreamId};
use flext::nats::{NatsConsumer, NatsRelay, NatsTestServer};
use flext::postgres::{PgDatabase, PgOutboxRelay, TestCluster};
use flext::prelude::*;
use serde::{Deserialize, Serialize};

#[event(name = "crate.packed")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CratePacked {
    label: String,
    items: i64,
}

/// One row per crate, with its inbox row, in one transaction.
#[event_handler]
async fn record_crate(e: CratePacked, ctx: &Context, db: State<PgDatabase>) -> Result<()> {
    let id = event_id_of(ctx).ok_or_else(|| Error::internal("test.no_id", "no event id"))?;
    let uow = db.begin().await?;
    if uow.first_delivery("record_crate", id).await? {
        uow.client()
            .execute(
                "INSERT INTO crates (label, items, written) VALUES ($1, $2, 1)
                 ON CONFLICT (label) DO UPDATE SET written = crates.written + 1",
                &[&e.label, &e.items],
            )
            .await
            .map_err(|e| Error::infrastructure("test.sql", e.to_string()))?;
    }
    uow.commit().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_events_reach_another_service_once() {
    let server = NatsTestServer::start().unwrap_or_else(|e| panic!("{e}"));
    let cluster = TestCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let sender = PgDatabase::connect(&cluster.fresh_database().await.unwrap())
        .await
        .unwrap();
    let receiver = PgDatabase::connect(&cluster.fresh_database().await.unwrap())
        .await
        .unwrap();
    receiver
        .client()
        .await
        .unwrap()
        .batch_execute("CREATE TABLE crates (label TEXT PRIMARY KEY, items BIGINT NOT NULL, written INT NOT NULL)")
        .await
        .unwrap();

    let store = sender.event_store();
    let ctx = Context::new();
    let mut ids = BTreeMap::new();
    for (i, label) in ["c-1", "c-2", "c-3", "c-4"].iter().enumerate() {
        let event = NewEvent::new(
            "crate.packed",
            1,
            serde_json::json!({ "label": label, "items": i + 1 }),
            &ctx,
        );
        ids.insert(label.to_string(), event.event_id);
        store
            .append(&StreamId::new("Crate", *label), 0, &[event])
            .await
            .unwrap();
    }
    let relay = NatsRelay::connect(server.url(), "packing").await.unwrap();
    let outbox = PgOutboxRelay::new(sender.clone(), relay);
    while sender.outbox_pending().await.unwrap() > 0 {
        outbox.deliver_pending().await.unwrap();
    }

    // c-4 was handled before the ack was lost: in the inbox already.
    assert!(receiver.record("warehouse", ids["c-4"]).await.unwrap());
    let bus = Bus::builder().state(receiver.clone()).build().unwrap();
    let consumer = NatsConsumer::builder("packing", "warehouse")
        .inbox(receiver.clone())
        .connect(server.url(), bus)
        .await
        .unwrap();
    let counts = consumer.counts().clone();
    let running = consumer.spawn();
    for _ in 0..300 {
        if counts.handled() + counts.duplicates() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.shutdown().await;
    assert_eq!((counts.handled(), counts.duplicates()), (3, 1));

    let rows = receiver
        .client()
        .await
        .unwrap()
        .query(
            "SELECT label, items, written FROM crates ORDER BY label",
            &[],
        )
        .await
        .unwrap();
    let rows: Vec<(String, i64, i32)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("c-1".to_owned(), 1, 1),
            ("c-2".to_owned(), 2, 1),
            ("c-3".to_owned(), 3, 1)
        ]
    );
    for label in ["c-1", "c-2", "c-3", "c-4"] {
        assert!(receiver.contains("warehouse", ids[label]).await.unwrap());
    }
}
