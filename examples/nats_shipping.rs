//! The `shipping` service of a two-service system that talks through NATS JetStream (the
//! other is `examples/nats_orders.rs`).
//!
//! `shipping` consumes `OrderPlaced` from the stream `orders` (durable consumer
//! `shipping`, with its inbox in this service's database) and starts a `ShipOrder` saga
//! per order, its id derived from the event's (`saga_id_for_event`), so a redelivered
//! event starts nothing new. The saga books a carrier (compensated by cancelling the
//! booking) and then, as its pivot, schedules the shipment: the `Shipment` aggregate
//! appends `ShipmentScheduled` with its outbox row, which a `NatsRelay` publishes to the
//! stream `shipping` for `orders` to consume.
//!
//! ```text
//! cargo run --example nats_shipping --features nats [-- --db PATH --nats URL --until N]
//! ```
//!
//! It runs until stopped, or with `--until N` until `N` shipments are scheduled and
//! published.

#[path = "nats_common/mod.rs"]
mod nats_common;

use std::sync::Arc;
use std::time::Duration;

use flext::aggregate::{Events, Repository};
use flext::database::event_id_of;
use flext::event_store::EventStore;
use flext::nats::{NatsConsumer, NatsRelay};
use flext::prelude::*;
use flext::saga::{SagaOutcome, SagaRunner, saga_id_for_event};
use flext::sqlite::{SqliteDatabase, SqliteOutboxRelay, rusqlite};
use nats_common::{AckDelay, OrderPlaced, ShipmentScheduled, arg, connect, fault_delay, say};
use serde::{Deserialize, Serialize};

/// Schedules an order's shipment; scheduling it again is a no-op.
#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ScheduleShipment {
    #[aggregate_id]
    order: String,
    carrier: String,
}

#[aggregate]
#[derive(Debug, Default, Serialize, Deserialize)]
struct Shipment {
    #[aggregate_id]
    order: String,
    scheduled: bool,
}

#[aggregate]
impl Shipment {
    #[command_handler]
    fn schedule(&self, c: &ScheduleShipment) -> Result<Events<Self>> {
        if self.scheduled {
            return Ok(Events::none());
        }
        Ok(Events::one(ShipmentScheduled {
            order: c.order.clone(),
            carrier: c.carrier.clone(),
        }))
    }

    #[apply]
    fn scheduled(&mut self, _: &ShipmentScheduled) {
        self.scheduled = true;
    }
}

fn sql(e: rusqlite::Error) -> Error {
    Error::infrastructure("shipping.sql", e.to_string())
}

/// The idempotency key a saga step runs under (the saga id and the step).
fn key(ctx: &Context) -> Result<String> {
    ctx.idempotency_key()
        .map(|k| k.trim_end_matches(":compensate").to_owned())
        .ok_or_else(|| Error::internal("shipping.no_key", "a saga step runs with a key"))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Booking {
    carrier: String,
}

/// Ships one order: book a carrier, then schedule the shipment (the pivot).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ShipOrder {
    order: String,
    quantity: u32,
}

#[saga]
impl ShipOrder {
    /// A booking row per step run, keyed by the step's idempotency key: a step run again
    /// after a crash finds its row.
    #[saga_step(compensate = cancel_booking)]
    fn book_carrier(&self, ctx: &Context, db: State<SqliteDatabase>) -> Result<Booking> {
        let carriers = ["DHL", "UPS", "PostNL"];
        let carrier = carriers[self.order.bytes().map(usize::from).sum::<usize>() % 3];
        let key = key(ctx)?;
        db.transaction(|uow| {
            uow.connection()
                .execute(
                    "INSERT OR IGNORE INTO bookings (key, order_id, carrier, cancelled) VALUES (?1, ?2, ?3, 0)",
                    rusqlite::params![key, self.order, carrier],
                )
                .map_err(sql)
        })?;
        Ok(Booking {
            carrier: carrier.into(),
        })
    }
    fn cancel_booking(&self, _: &Booking, ctx: &Context, db: State<SqliteDatabase>) -> Result<()> {
        let key = key(ctx)?;
        db.transaction(|uow| {
            uow.connection()
                .execute("UPDATE bookings SET cancelled = 1 WHERE key = ?1", [key])
                .map_err(sql)
        })?;
        Ok(())
    }

    #[saga_step(pivot)]
    async fn schedule(
        &self,
        b: &Booking,
        ctx: &Context,
        shipments: State<Repository<Shipment>>,
    ) -> Result<String> {
        shipments
            .execute(
                &ScheduleShipment {
                    order: self.order.clone(),
                    carrier: b.carrier.clone(),
                },
                ctx,
            )
            .await?;
        Ok(b.carrier.clone())
    }
}

/// Starts the order's `ShipOrder` saga under an id derived from the event's: however
/// often the broker delivers the event, one saga.
#[event_handler]
async fn ship_order(e: OrderPlaced, ctx: &Context, runner: State<SagaRunner>) -> Result<()> {
    let event = event_id_of(ctx)
        .ok_or_else(|| Error::internal("shipping.no_event_id", "delivered without an event id"))?;
    let outcome = runner
        .run_with_id(
            saga_id_for_event("ShipOrder", event),
            ShipOrder {
                order: e.order.clone(),
                quantity: e.quantity,
            },
            ctx,
        )
        .await?;
    // The kill test's fault: the saga ran, the event is not yet acknowledged.
    tokio::time::sleep(fault_delay()).await;
    match outcome {
        SagaOutcome::Completed { output, .. } => {
            say(format!(
                "{}: {} x {} goes with {output}",
                e.order, e.quantity, e.sku
            ));
            Ok(())
        }
        // Compensated or stuck: the operator sees it in the saga log; the event is handled.
        other => {
            say(format!("{}: not shipped ({other:?})", e.order));
            Ok(())
        }
    }
}

fn scheduled(db: &SqliteDatabase) -> Result<i64> {
    db.read_transaction(|uow| {
        uow.connection()
            .query_row(
                "SELECT COUNT(*) FROM flext_events WHERE name = 'shipment.scheduled'",
                [],
                |r| r.get(0),
            )
            .map_err(sql)
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let path = arg("--db").unwrap_or_else(|| "target/nats_shipping.db".into());
    let url = arg("--nats")
        .or_else(|| std::env::var("NATS_URL").ok())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let until: Option<i64> = arg("--until").map(|n| n.parse()).transpose()?;

    let db = SqliteDatabase::open(&path)?;
    db.transaction(|uow| {
        uow.connection()
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS bookings (key TEXT PRIMARY KEY, order_id TEXT NOT NULL, carrier TEXT NOT NULL, cancelled INTEGER NOT NULL)",
            )
            .map_err(sql)
    })?;
    let store: Arc<dyn EventStore> = Arc::new(db.event_store()?);
    // Events leave through the outbox, after their append committed.
    let shipments = Repository::<Shipment>::new(store).publish_on_bus(false);
    let runner = SagaRunner::builder(db.saga_log()?)
        .owner(format!("shipping-{}", std::process::id()))
        .lease(Duration::from_millis(500))
        .state(db.clone())
        .state(shipments.clone())
        .build();
    let bus = Bus::builder()
        .state(runner.clone())
        .state(shipments)
        .build()?;

    let client = connect(&url).await?;
    let relay = NatsRelay::with_client(
        client.clone(),
        "shipping",
        flext::nats::DEFAULT_RETRY_HORIZON,
    )
    .await?;
    let outbox = SqliteOutboxRelay::new(db.clone(), AckDelay::from_env(relay));
    let relaying = outbox.spawn(Duration::from_millis(50));
    let recovering = runner.spawn_recovery(Duration::from_millis(500));
    // The orders stream exists once orders has started: wait for it.
    let mut waited = 0;
    let consumer = loop {
        match NatsConsumer::builder("orders", "shipping")
            .filter_subject("orders.Order.>")
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
                    eprintln!("waiting for the orders stream: {}", e.message());
                }
                waited += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    say("shipping is running");
    let consuming = consumer.spawn();

    loop {
        if let Some(n) = until
            && scheduled(&db)? >= n
            && db.outbox_pending()? == 0
        {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    say(format!(
        "{} shipments scheduled; consumer: {} handled, {} duplicates skipped",
        scheduled(&db)?,
        consumer.counts().handled(),
        consumer.counts().duplicates()
    ));
    consuming.shutdown().await;
    recovering.shutdown().await;
    relaying.shutdown().await;
    Ok(())
}
