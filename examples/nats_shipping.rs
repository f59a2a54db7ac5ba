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
//! published. With the `postgres` feature it keeps its saga log, events, outbox, inbox
//! and bookings in PostgreSQL (`DATABASE_URL`, or a throwaway server) instead of a
//! SQLite file (`--db PATH`, default `target/nats_shipping.db`).

#[path = "nats_common/mod.rs"]
mod nats_common;

use std::sync::Arc;
use std::time::Duration;

use flext::aggregate::{Events, Repository};
use flext::database::event_id_of;
use flext::event_store::EventStore;
use flext::nats::NatsConsumer;
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
    async fn book_carrier(&self, ctx: &Context, store: State<Store>) -> Result<Booking> {
        let carriers = ["DHL", "UPS", "PostNL"];
        let carrier = carriers[self.order.bytes().map(usize::from).sum::<usize>() % 3];
        store.book(&key(ctx)?, &self.order, carrier).await?;
        Ok(Booking {
            carrier: carrier.into(),
        })
    }
    async fn cancel_booking(&self, _: &Booking, ctx: &Context, store: State<Store>) -> Result<()> {
        store.cancel(&key(ctx)?).await
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

/// Where shipping keeps its saga log, events, outbox, inbox and bookings: a SQLite file,
/// or with the `postgres` feature a PostgreSQL database.
#[derive(Clone)]
enum Store {
    #[cfg_attr(feature = "postgres", allow(dead_code))]
    Sqlite(SqliteDatabase),
    #[cfg(feature = "postgres")]
    Pg(flext::postgres::PgDatabase),
}

impl Store {
    const BOOKINGS: &str = "CREATE TABLE IF NOT EXISTS bookings (key TEXT PRIMARY KEY, order_id TEXT NOT NULL, carrier TEXT NOT NULL, cancelled INTEGER NOT NULL)";

    async fn book(&self, key: &str, order: &str, carrier: &str) -> Result<()> {
        match self {
            Store::Sqlite(db) => db.transaction(|uow| {
                uow.connection()
                    .execute(
                        "INSERT OR IGNORE INTO bookings (key, order_id, carrier, cancelled) VALUES (?1, ?2, ?3, 0)",
                        rusqlite::params![key, order, carrier],
                    )
                    .map(|_| ())
                    .map_err(sql)
            }),
            #[cfg(feature = "postgres")]
            Store::Pg(db) => db
                .client()
                .await?
                .execute(
                    "INSERT INTO bookings (key, order_id, carrier, cancelled) VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING",
                    &[&key, &order, &carrier],
                )
                .await
                .map(|_| ())
                .map_err(pg),
        }
    }

    async fn cancel(&self, key: &str) -> Result<()> {
        match self {
            Store::Sqlite(db) => db.transaction(|uow| {
                uow.connection()
                    .execute("UPDATE bookings SET cancelled = 1 WHERE key = ?1", [key])
                    .map(|_| ())
                    .map_err(sql)
            }),
            #[cfg(feature = "postgres")]
            Store::Pg(db) => db
                .client()
                .await?
                .execute("UPDATE bookings SET cancelled = 1 WHERE key = $1", &[&key])
                .await
                .map(|_| ())
                .map_err(pg),
        }
    }

    /// How many shipments are scheduled and published.
    async fn settled(&self) -> Result<(i64, u64)> {
        const SCHEDULED: &str =
            "SELECT COUNT(*) FROM flext_events WHERE name = 'shipment.scheduled'";
        match self {
            Store::Sqlite(db) => {
                let n = db.read_transaction(|uow| {
                    uow.connection()
                        .query_row(SCHEDULED, [], |r| r.get(0))
                        .map_err(sql)
                })?;
                Ok((n, db.outbox_pending()?))
            }
            #[cfg(feature = "postgres")]
            Store::Pg(db) => {
                let n: i64 = db
                    .client()
                    .await?
                    .query_one(SCHEDULED, &[])
                    .await
                    .map_err(pg)?
                    .get(0);
                Ok((n, db.outbox_pending().await?))
            }
        }
    }
}

#[cfg(feature = "postgres")]
fn pg(e: flext::postgres::tokio_postgres::Error) -> Error {
    Error::infrastructure("shipping.sql", e.to_string())
}

impl flext::database::Inbox for Store {
    fn contains<'a>(
        &'a self,
        consumer: &'a str,
        event: Uuid,
    ) -> flext::BoxFuture<'a, Result<bool>> {
        match self {
            Store::Sqlite(db) => db.contains(consumer, event),
            #[cfg(feature = "postgres")]
            Store::Pg(db) => db.contains(consumer, event),
        }
    }

    fn record<'a>(&'a self, consumer: &'a str, event: Uuid) -> flext::BoxFuture<'a, Result<bool>> {
        match self {
            Store::Sqlite(db) => db.record(consumer, event),
            #[cfg(feature = "postgres")]
            Store::Pg(db) => db.record(consumer, event),
        }
    }
}

/// The outbox relay's loop, on either backend.
enum Relaying {
    #[cfg_attr(feature = "postgres", allow(dead_code))]
    Sqlite(flext::sqlite::SqliteOutboxLoop),
    #[cfg(feature = "postgres")]
    Pg(flext::postgres::PgOutboxLoop),
}

impl Relaying {
    async fn shutdown(self) {
        match self {
            Relaying::Sqlite(l) => l.shutdown().await,
            #[cfg(feature = "postgres")]
            Relaying::Pg(l) => l.shutdown().await,
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let path = arg("--db").unwrap_or_else(|| "target/nats_shipping.db".into());
    let url = arg("--nats")
        .or_else(|| std::env::var("NATS_URL").ok())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let until: Option<i64> = arg("--until").map(|n| n.parse()).transpose()?;

    // SQLite by default; with the `postgres` feature, PostgreSQL at `DATABASE_URL` or a
    // throwaway server.
    #[cfg(not(feature = "postgres"))]
    let (store, log, events, _cluster) = {
        let db = SqliteDatabase::open(&path)?;
        db.transaction(|uow| uow.connection().execute_batch(Store::BOOKINGS).map_err(sql))?;
        let events: Arc<dyn EventStore> = Arc::new(db.event_store()?);
        let log: Arc<dyn flext::saga::SagaLog> = Arc::new(db.saga_log()?);
        (Store::Sqlite(db), log, events, ())
    };
    #[cfg(feature = "postgres")]
    let (store, log, events, _cluster) = {
        let _ = &path;
        let (url, cluster) = match std::env::var("DATABASE_URL") {
            Ok(url) => (url, None),
            Err(_) => {
                let cluster = flext::postgres::TestCluster::start()?;
                (cluster.fresh_database().await?, Some(cluster))
            }
        };
        let db = flext::postgres::PgDatabase::connect(&url).await?;
        db.client()
            .await?
            .batch_execute(Store::BOOKINGS)
            .await
            .map_err(pg)?;
        let events: Arc<dyn EventStore> = Arc::new(db.event_store());
        let log: Arc<dyn flext::saga::SagaLog> = Arc::new(db.saga_log());
        (Store::Pg(db), log, events, cluster)
    };
    // Events leave through the outbox, after their append committed.
    let shipments = Repository::<Shipment>::new(events).publish_on_bus(false);
    let runner = SagaRunner::builder_shared(log)
        .owner(format!("shipping-{}", std::process::id()))
        .lease(Duration::from_millis(500))
        .state(store.clone())
        .state(shipments.clone())
        .build();
    let bus = Bus::builder()
        .state(runner.clone())
        .state(shipments)
        .build()?;

    let client = connect(&url).await?;
    let relay = nats_common::relay(&client, "shipping").await?;
    let relay = AckDelay::from_env(relay);
    let every = Duration::from_millis(50);
    let relaying = match &store {
        Store::Sqlite(db) => {
            Relaying::Sqlite(SqliteOutboxRelay::new(db.clone(), relay).spawn(every))
        }
        #[cfg(feature = "postgres")]
        Store::Pg(db) => {
            Relaying::Pg(flext::postgres::PgOutboxRelay::new(db.clone(), relay).spawn(every))
        }
    };
    let recovering = runner.spawn_recovery(Duration::from_millis(500));
    // The orders stream exists once orders has started: wait for it.
    let mut waited = 0;
    let consumer = loop {
        match NatsConsumer::builder("orders", "shipping")
            .filter_subject("orders.Order.>")
            .ack_wait(Duration::from_secs(2))
            .max_deliver(100)
            .retry_delay(Duration::from_millis(300))
            .inbox(store.clone())
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
        if let Some(n) = until {
            let (scheduled, pending) = store.settled().await?;
            if scheduled >= n && pending == 0 {
                break;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    // Stopped first, so that its counts include the message it had in hand.
    consuming.shutdown().await;
    recovering.shutdown().await;
    relaying.shutdown().await;
    say(format!(
        "{} shipments scheduled; consumer: {} handled, {} duplicates skipped",
        store.settled().await?.0,
        consumer.counts().handled(),
        consumer.counts().duplicates()
    ));
    Ok(())
}
