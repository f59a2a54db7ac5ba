//! The `orders` service of a two-service system that talks through NATS JetStream (the
//! other is `examples/nats_shipping.rs`; both are separate processes with their own
//! SQLite databases).
//!
//! `orders` places orders: the `Order` aggregate appends `OrderPlaced` with its outbox
//! row, and a `NatsRelay` publishes the outbox to the stream `orders`, exactly once.
//! `shipping` answers each order with `ShipmentScheduled` on its stream `shipping`, which
//! this service consumes (durable consumer `orders`) into its `shipments` read model, in
//! a unit of work with the event's inbox row: a redelivered event changes nothing.
//!
//! ```text
//! nats-server -js &                                     # or NATS_URL=nats://...
//! cargo run --example nats_shipping --features nats &   # keeps running
//! cargo run --example nats_orders --features nats -- --place 1..5
//! ```
//!
//! `--place A..B` places orders `o-A` to `o-B` (an order placed before is left as it
//! is), then waits until each has its shipment and prints them. `--db PATH` (default
//! `target/nats_orders.db`), `--nats URL` (default `NATS_URL` or
//! `nats://127.0.0.1:4222`), `--wait-for N` waits until `N` orders are shipped in all.
//! The kill test (`tests/test_nats_kill.rs`) runs it with SIGKILL at random moments.

#[path = "nats_common/mod.rs"]
mod nats_common;

use std::sync::Arc;
use std::time::Duration;

use flext::aggregate::{Events, Repository};
use flext::database::event_id_of;
use flext::event_store::EventStore;
use flext::nats::NatsConsumer;
use flext::prelude::*;
use flext::sqlite::{SqliteDatabase, SqliteOutboxRelay, rusqlite};
use nats_common::{AckDelay, OrderPlaced, ShipmentScheduled, arg, connect, fault_delay, say};
use serde::{Deserialize, Serialize};

/// Places an order; placing it again is a no-op (an order id is placed once).
#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PlaceOrder {
    #[aggregate_id]
    order: String,
    sku: String,
    quantity: u32,
}

#[aggregate]
#[derive(Debug, Default, Serialize, Deserialize)]
struct Order {
    #[aggregate_id]
    id: String,
    placed: bool,
}

#[aggregate]
impl Order {
    #[command_handler]
    fn place(&self, c: &PlaceOrder) -> Result<Events<Self>> {
        if self.placed {
            return Ok(Events::none());
        }
        Ok(Events::one(OrderPlaced {
            order: c.order.clone(),
            sku: c.sku.clone(),
            quantity: c.quantity,
        }))
    }

    #[apply]
    fn placed(&mut self, _: &OrderPlaced) {
        self.placed = true;
    }
}

fn sql(e: rusqlite::Error) -> Error {
    Error::infrastructure("orders.sql", e.to_string())
}

/// The `shipments` read model: one row per order, written with the event's inbox row in
/// one transaction. `applied` counts how often a row was written: 1, whatever the
/// broker redelivers.
#[event_handler]
async fn record_shipment(
    e: ShipmentScheduled,
    ctx: &Context,
    db: State<SqliteDatabase>,
) -> Result<()> {
    let id = event_id_of(ctx)
        .ok_or_else(|| Error::internal("orders.no_event_id", "delivered without an event id"))?;
    db.transaction(|uow| {
        if uow.first_delivery("shipments", id)? {
            uow.connection()
                .execute(
                    "INSERT INTO shipments (order_id, carrier, applied) VALUES (?1, ?2, 1)
                     ON CONFLICT (order_id) DO UPDATE SET applied = applied + 1",
                    rusqlite::params![e.order, e.carrier],
                )
                .map_err(sql)?;
        }
        Ok(())
    })?;
    // The kill test's fault: committed, not yet acknowledged.
    tokio::time::sleep(fault_delay()).await;
    Ok(())
}

fn shipped(db: &SqliteDatabase) -> Result<Vec<(String, String)>> {
    db.read_transaction(|uow| {
        let mut stmt = uow
            .connection()
            .prepare("SELECT order_id, carrier FROM shipments ORDER BY CAST(substr(order_id, 3) AS INTEGER)")
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql)
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let path = arg("--db").unwrap_or_else(|| "target/nats_orders.db".into());
    let url = arg("--nats")
        .or_else(|| std::env::var("NATS_URL").ok())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let (from, to) = match arg("--place") {
        Some(range) => {
            let (a, b) = range.split_once("..").ok_or("--place takes A..B")?;
            (a.parse::<u32>()?, b.parse::<u32>()?)
        }
        None => (1, 0),
    };
    let wait_for: usize = match arg("--wait-for") {
        Some(n) => n.parse()?,
        None => usize::try_from(to)?,
    };

    let db = SqliteDatabase::open(&path)?;
    db.transaction(|uow| {
        uow.connection()
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS shipments (order_id TEXT PRIMARY KEY, carrier TEXT NOT NULL, applied INTEGER NOT NULL)",
            )
            .map_err(sql)
    })?;
    let store: Arc<dyn EventStore> = Arc::new(db.event_store()?);
    let bus = Bus::builder()
        .state(Repository::<Order>::new(store).publish_on_bus(false))
        .state(db.clone())
        .build()?;

    let client = connect(&url).await?;
    let relay = nats_common::relay(&client, "orders").await?;
    let outbox = SqliteOutboxRelay::new(db.clone(), AckDelay::from_env(relay));
    let relaying = outbox.spawn(Duration::from_millis(50));
    // The shipping stream exists once shipping has started: wait for it.
    let mut waited = 0;
    let consumer = loop {
        match NatsConsumer::builder("shipping", "orders")
            .ack_wait(Duration::from_secs(2))
            .max_deliver(100)
            .retry_delay(Duration::from_millis(300))
            .inbox(db.clone())
            .build(client.clone(), bus.clone())
            .await
        {
            Ok(c) => break c,
            Err(e) => {
                if waited == 0 {
                    eprintln!("waiting for the shipping stream: {}", e.message());
                }
                waited += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let consuming = consumer.spawn();

    for n in from..=to {
        let order = format!("o-{n}");
        bus.send(
            PlaceOrder {
                order: order.clone(),
                sku: format!("sku-{}", n % 7),
                quantity: 1 + n % 3,
            },
            &Context::new(),
        )
        .await?;
        say(format!("placed {order}"));
    }
    let rows = loop {
        let rows = shipped(&db)?;
        if rows.len() >= wait_for && db.outbox_pending()? == 0 {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Stopped first, so that its counts include the message it had in hand.
    consuming.shutdown().await;
    relaying.shutdown().await;
    if rows.len() <= 10 {
        for (order, carrier) in &rows {
            say(format!("{order} shipped by {carrier}"));
        }
    }
    say(format!(
        "{} orders shipped; consumer: {} handled, {} duplicates skipped",
        rows.len(),
        consumer.counts().handled(),
        consumer.counts().duplicates()
    ));
    Ok(())
}
