//! An order that waits for its payment, reminds the customer, books a rate-limited
//! partner through a queue, and a nightly reconciliation: the five durable primitives of
//! flext's sagas in one service.
//!
//! - `Order` (a saga keyed by its order id) reserves stock, sleeps until the reminder is
//!   due (a **durable timer**), sends the reminder, waits up to 24 hours for the payment
//!   webhook (a **signal**, routed by the order id), then books the partner through a
//!   **child saga** that waits in the `partner` **queue**, which lets 3 calls run at once
//!   across every worker process.
//! - `Reconcile` runs on a **schedule** (every second here; `0 0 2 * * *` for 2 a.m.),
//!   once per tick whatever the number of workers.
//!
//! `cargo run --example durable_orders` runs five orders in one worker on a temporary
//! SQLite file. The kill soak (`tests/test_durable_orders_kill.rs`) runs three workers
//! on one file and kills them at random moments: `--db PATH --owner NAME --start K
//! --orders N` runs orders `K..K + N` and waits for them, `--drain` waits until nothing
//! in the log is in flight. With `--pg URL` (built with the `postgres` feature) the saga
//! log is that PostgreSQL database, and `--db` holds only the services' effects. Every effect goes to the `effects` table (once per
//! idempotency key) and every partner call attempt to `calls` (its process, start and
//! end in nanoseconds), which the soak checks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flext::prelude::*;
use flext::saga::{Child, Queue, SagaLog, SagaRunner, Schedule, Signal, SqliteLog};
use serde::{Deserialize, Serialize};

/// The payment provider's webhook, routed to the order's saga by its `order`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Paid {
    pub order: String,
    pub cents: u64,
}

/// An order, from placement to the partner's booking.
#[derive(Serialize, Deserialize)]
pub struct Order {
    pub order: String,
    pub cents: u64,
    /// When the payment reminder goes out (3 days in production).
    pub remind_after_ms: u64,
}

#[saga(key = order)]
impl Order {
    #[saga_step(compensate = release)]
    async fn reserve(&self, ctx: &Context, ledger: State<Ledger>) -> Result<String> {
        ledger.effect(ctx, "reserve")?;
        Ok(format!("stock for {}", self.order))
    }
    async fn release(&self, _stock: &String, ctx: &Context, ledger: State<Ledger>) -> Result<()> {
        ledger.undo(ctx)
    }

    /// The reminder timer: the saga sleeps in the log, held by no process.
    #[saga_step(sleep)]
    async fn reminder_due(&self, _stock: &str) -> Result<Duration> {
        Ok(Duration::from_millis(self.remind_after_ms))
    }

    #[saga_step]
    async fn remind(&self, _stock: &str, ctx: &Context, ledger: State<Ledger>) -> Result<u32> {
        ledger.effect(ctx, "remind")?;
        Ok(1)
    }

    /// The payment webhook, within 24 hours; otherwise the stock is released.
    #[saga_step(signal, wait_ms = 86_400_000, key = order)]
    async fn payment(&self, _reminded: &u32, paid: Signal<Paid>) -> Result<u64> {
        Ok(paid.received()?.cents)
    }

    #[saga_step]
    async fn plan_booking(&self, cents: &u64) -> Result<PartnerBooking> {
        Ok(PartnerBooking {
            order: self.order.clone(),
            cents: *cents,
        })
    }

    /// The partner's booking: a child saga that waits in the `partner` queue.
    #[saga_step(child, queue = "partner")]
    async fn book(&self, booked: Child<PartnerBooking>) -> Result<String> {
        booked.completed()
    }
}

/// One call to the partner's API, which takes 3 at a time.
#[derive(Serialize, Deserialize)]
pub struct PartnerBooking {
    pub order: String,
    pub cents: u64,
}

#[saga]
impl PartnerBooking {
    #[saga_step(compensate = cancel)]
    async fn call(&self, ctx: &Context, ledger: State<Ledger>) -> Result<String> {
        // The attempt's end is recorded however it ends: returned, failed, or dropped
        // (a runner that lost its lease stops the step where it is).
        let _attempt = CallAttempt {
            ledger: &ledger,
            rowid: ledger.call_started(ctx)?,
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        ledger.effect(ctx, "call")?;
        Ok(format!("booking {} for {} cents", self.order, self.cents))
    }
    async fn cancel(&self, _booking: &String, ctx: &Context, ledger: State<Ledger>) -> Result<()> {
        ledger.undo(ctx)
    }
}

/// A partner call in progress: its end is written when it is dropped.
struct CallAttempt<'a> {
    ledger: &'a Ledger,
    rowid: i64,
}

impl Drop for CallAttempt<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.ledger.call_ended(self.rowid) {
            eprintln!(
                "the end of call attempt {} is not recorded: {e}",
                self.rowid
            );
        }
    }
}

/// The nightly reconciliation, one saga per tick.
#[derive(Serialize, Deserialize)]
pub struct Reconcile {
    pub tick_ms: u64,
}

#[saga]
impl Reconcile {
    #[saga_step]
    async fn reconcile(&self, ctx: &Context, ledger: State<Ledger>) -> Result<u64> {
        ledger.effect(ctx, "reconcile")?;
        Ok(self.tick_ms)
    }
}

/// The services' effects, in the SQLite file beside the log: one row per idempotency
/// key (an effect applied twice under one key is applied once), and one per partner
/// call attempt.
pub struct Ledger {
    conn: Mutex<rusqlite::Connection>,
}

fn store(e: rusqlite::Error) -> Error {
    Error::infrastructure("ledger.failed", e.to_string())
}

impl Ledger {
    fn open(path: &str) -> std::result::Result<Ledger, Box<dyn std::error::Error>> {
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY, step TEXT NOT NULL, undone INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS calls (pid INTEGER NOT NULL, key TEXT NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER);",
        )?;
        Ok(Ledger {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&conn).map_err(store)
    }

    fn effect(&self, ctx: &Context, step: &str) -> Result<()> {
        let key = ctx.idempotency_key().unwrap_or_default().to_owned();
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO effects (key, step, undone) VALUES (?1, ?2, 0)",
                rusqlite::params![key, step],
            )
        })?;
        println!("effect {step} {key}");
        Ok(())
    }

    fn undo(&self, ctx: &Context) -> Result<()> {
        let key = ctx.idempotency_key().unwrap_or_default();
        let done = key.trim_end_matches(":compensate").to_owned();
        self.with(|c| {
            c.execute(
                "UPDATE effects SET undone = 1 WHERE key = ?1",
                rusqlite::params![done],
            )
        })
        .map(drop)
    }

    fn call_started(&self, ctx: &Context) -> Result<i64> {
        let key = ctx.idempotency_key().unwrap_or_default().to_owned();
        self.with(|c| {
            c.execute(
                "INSERT INTO calls (pid, key, start_ns) VALUES (?1, ?2, ?3)",
                rusqlite::params![std::process::id(), key, now_ns()],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    fn call_ended(&self, attempt: i64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE calls SET end_ns = ?1 WHERE rowid = ?2",
                rusqlite::params![now_ns(), attempt],
            )
        })
        .map(drop)
    }
}

/// Nanoseconds since the Unix epoch.
fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// What one worker process does (its command-line flags).
struct Worker {
    db: String,
    owner: String,
    start: usize,
    orders: usize,
    drain: bool,
    /// Run without `--db`: a demonstration on a temporary file.
    demo: bool,
    /// `--pg URL`: the saga log in PostgreSQL.
    pg: Option<String>,
    /// `--linger-ms N`: keep the loops running at least N ms after starting (so that
    /// the schedule's ticks come while workers come and go).
    linger_ms: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let demo = flag("--db").is_none();
    let dir = std::env::temp_dir().join(format!("flext-durable-orders-{}", std::process::id()));
    let worker = Worker {
        db: match flag("--db") {
            Some(db) => db,
            None => {
                std::fs::create_dir_all(&dir)?;
                dir.join("orders.db").to_string_lossy().into_owned()
            }
        },
        owner: flag("--owner").unwrap_or_else(|| "orders".to_owned()),
        start: flag("--start").map_or(Ok(0), |v| v.parse())?,
        orders: flag("--orders").map_or(Ok(5), |v| v.parse())?,
        drain: args.iter().any(|a| a == "--drain"),
        demo,
        linger_ms: flag("--linger-ms").map_or(Ok(0), |v| v.parse())?,
        pg: flag("--pg"),
    };
    run(&worker).await?;
    if demo {
        let ledger = Ledger::open(&worker.db)?;
        let count = |step: &str| {
            ledger.with(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM effects WHERE step = ?1 AND undone = 0",
                    [step],
                    |r| r.get::<_, i64>(0),
                )
            })
        };
        println!(
            "reserved {}, reminded {}, booked {}, reconciled {} times",
            count("reserve")?,
            count("remind")?,
            count("call")?,
            count("reconcile")?
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// Runs the worker's orders to their end, with a recovery loop, the partner queue's
/// loop and the reconciliation schedule beside them.
async fn run(worker: &Worker) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let ledger = Arc::new(Ledger::open(&worker.db)?);
    let log: Arc<dyn SagaLog> = match &worker.pg {
        None => Arc::new(SqliteLog::open(&worker.db)?),
        #[cfg(feature = "postgres")]
        Some(url) => Arc::new(flext::postgres::PgDatabase::connect(url).await?.saga_log()),
        #[cfg(not(feature = "postgres"))]
        Some(_) => return Err("--pg needs the example built with `--features postgres`".into()),
    };
    let runner = SagaRunner::builder_shared(log.clone())
        .owner(worker.owner.as_str())
        .lease(Duration::from_millis(300))
        .shared_state(ledger)
        .build();
    let started = tokio::time::Instant::now();
    let recovery = runner.spawn_recovery(Duration::from_millis(50));
    let partner = runner.spawn_queue(Queue::new("partner")?.limit(3).poll_ms(20));
    let nightly = Schedule::cron("reconcile", "* * * * * *")?;
    let schedule = runner.spawn_schedule(nightly, |tick| Reconcile {
        tick_ms: tick.at_ms,
    });

    let mut ids = Vec::new();
    for n in worker.start..worker.start + worker.orders {
        let order = format!("o-{n}");
        let placed = Order {
            order: order.clone(),
            cents: 1000 + n as u64,
            remind_after_ms: 100,
        };
        let outcome = runner.run_keyed(placed, &Context::new()).await;
        match &outcome {
            Ok(outcome) => println!("order {order} {:?}", outcome.state()),
            Err(e) => println!("order {order} deferred: {}", e.code()),
        }
        ids.push(flext::saga::saga_id_for_key("Order", &order));
        // The payment provider's webhook, retried once: kept once.
        let paid = Paid {
            order: order.clone(),
            cents: 1000 + n as u64,
        };
        for _ in 0..2 {
            match runner
                .route_signal::<Order, _>(&format!("psp-{order}"), &paid)
                .await
            {
                Ok(_) => {}
                // A retried webhook for an order that has finished meanwhile.
                Err(e) if e.code() == flext::codes::SAGA_FINISHED => {}
                // The webhook's handler answers 5xx and the provider retries (here: the
                // drain redelivers it).
                Err(e) => println!("payment of {order} deferred: {}", e.code()),
            }
        }
        println!("paid {order}");
    }
    if worker.drain {
        redeliver_webhooks(&runner, &log).await?;
    }
    // Wait for this worker's orders (or, with --drain, for everything in the log).
    for _ in 0..600 {
        let mut open = 0;
        if worker.drain {
            // A log busy for a moment is asked again at the next round.
            open = log
                .list(&flext::saga::SagaFilter::default())
                .await
                .map_or(1, |sagas| {
                    sagas.iter().filter(|s| s.state.is_in_flight()).count()
                });
        } else {
            for id in &ids {
                let in_flight = match log.load(*id).await {
                    Ok(saga) => saga.state.is_in_flight(),
                    // Never placed (this worker could not reach the log then).
                    Err(e) if e.kind() == flext::ErrorKind::NotFound => false,
                    Err(_) => true,
                };
                if in_flight {
                    open += 1;
                }
            }
        }
        if open == 0 {
            break;
        }
        println!("waiting for {open}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let linger = if worker.demo { 1100 } else { worker.linger_ms };
    tokio::time::sleep_until(started + Duration::from_millis(linger)).await;
    schedule.shutdown().await;
    partner.shutdown().await;
    recovery.shutdown().await;
    Ok(())
}

/// The payment provider retries its webhooks: every order still in flight gets its
/// payment again, under the same sender id (kept once), as after a worker that placed
/// an order died before the webhook reached it.
async fn redeliver_webhooks(
    runner: &SagaRunner,
    log: &Arc<dyn SagaLog>,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let filter = flext::saga::SagaFilter::default().name("Order");
    for summary in log.list(&filter).await? {
        if !summary.state.is_in_flight() {
            continue;
        }
        let order: Order = serde_json::from_value(log.load(summary.id).await?.input)?;
        let paid = Paid {
            order: order.order.clone(),
            cents: order.cents,
        };
        match runner
            .route_signal::<Order, _>(&format!("psp-{}", order.order), &paid)
            .await
        {
            Ok(sent) => println!("webhook again for {}: {sent:?}", order.order),
            Err(e) if e.code() == flext::codes::SAGA_FINISHED => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
