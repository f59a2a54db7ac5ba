//! Order fulfilment as a saga: the source documents' order processing, where a failure
//! after inventory was reserved must give the stock back.
//!
//! Reserve inventory, charge the payment, create the order, schedule shipping (the
//! pivot). Over a batch of orders some payments are declined and some shipping calls
//! fail; each failed order is compensated in reverse order, and the inventory levels
//! before and after prove that stock reserved for failed orders returned.
//!
//! ```text
//! cargo run --example order_fulfillment
//! ```
//!
//! With `--db PATH` the saga log and the services' effect ledger live in a SQLite file
//! and the program first recovers whatever a previous run left in flight; the crash test
//! (`tests/test_saga_kill.rs`) runs it that way and kills it with SIGKILL at random
//! moments: `--db PATH --orders N --start K` runs orders K..K+N; `--owner NAME` names the
//! runner, `--recovery-ms N` runs a recovery loop beside the orders, and `--drain` waits
//! before exiting until no saga is in flight.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::sync::Mutex;

use flext::prelude::*;
use flext::saga::{MemoryLog, SagaLog, SagaOutcome, SagaRunner, SqliteLog};
use serde::{Deserialize, Serialize};

// ------------------------------------------------------------------ the saga

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FulfilOrder {
    order_id: String,
    sku: String,
    quantity: u32,
    unit_price_cents: u64,
    card: String,
    postcode: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Reservation {
    sku: String,
    quantity: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Payment {
    amount_cents: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderRecord {
    order_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Shipment {
    tracking: String,
}

#[saga]
impl FulfilOrder {
    #[saga_step(compensate = release_inventory)]
    fn reserve_inventory(&self, ctx: &Context, svc: State<Services>) -> Result<Reservation> {
        svc.progress("reserve_inventory", &self.order_id);
        svc.reserve(key(ctx)?, &self.sku, self.quantity)?;
        Ok(Reservation {
            sku: self.sku.clone(),
            quantity: self.quantity,
        })
    }
    fn release_inventory(
        &self,
        r: &Reservation,
        ctx: &Context,
        svc: State<Services>,
    ) -> Result<()> {
        svc.progress("release_inventory", &self.order_id);
        svc.release(key(ctx)?, &r.sku, r.quantity)
    }

    #[saga_step(compensate = refund_payment)]
    fn charge_payment(
        &self,
        r: &Reservation,
        ctx: &Context,
        svc: State<Services>,
    ) -> Result<Payment> {
        svc.progress("charge_payment", &self.order_id);
        if self.card.ends_with("0002") {
            return Err(Error::validation(
                "payment.declined",
                format!(
                    "card ending {} was declined",
                    &self.card[self.card.len() - 4..]
                ),
            ));
        }
        let amount_cents = u64::from(r.quantity) * self.unit_price_cents;
        svc.effect(key(ctx)?, "charge_payment")?;
        Ok(Payment { amount_cents })
    }
    fn refund_payment(&self, p: &Payment, ctx: &Context, svc: State<Services>) -> Result<()> {
        svc.progress("refund_payment", &self.order_id);
        let _ = p.amount_cents;
        svc.undo(key(ctx)?)
    }

    #[saga_step(compensate = cancel_order)]
    fn create_order(&self, ctx: &Context, svc: State<Services>) -> Result<OrderRecord> {
        svc.progress("create_order", &self.order_id);
        svc.effect(key(ctx)?, "create_order")?;
        Ok(OrderRecord {
            order_id: self.order_id.clone(),
        })
    }
    fn cancel_order(&self, o: &OrderRecord, ctx: &Context, svc: State<Services>) -> Result<()> {
        svc.progress("cancel_order", &o.order_id);
        svc.undo(key(ctx)?)
    }

    /// The point of no return: once shipping is booked the order goes out.
    #[saga_step(pivot, retries = 2, backoff_ms = 5)]
    fn schedule_shipping(
        &self,
        o: &OrderRecord,
        ctx: &Context,
        svc: State<Services>,
    ) -> Result<Shipment> {
        svc.progress("schedule_shipping", &o.order_id);
        if self.postcode == "99999" {
            return Err(Error::infrastructure(
                "shipping.unavailable",
                format!("no carrier serves postcode {}", self.postcode),
            ));
        }
        svc.effect(key(ctx)?, "schedule_shipping")?;
        Ok(Shipment {
            tracking: format!("TRK-{}", o.order_id),
        })
    }
}

/// The step's idempotency key; a compensation undoes the key of the step it compensates.
fn key(ctx: &Context) -> Result<String> {
    let key = ctx.idempotency_key().ok_or_else(|| {
        Error::internal("saga.no_key", "a saga step runs with an idempotency key")
    })?;
    Ok(key.trim_end_matches(":compensate").to_owned())
}

// ------------------------------------------------------------------ the services

/// Inventory, payments, orders and shipping, deduplicating every side effect on its
/// idempotency key: in memory, or in a SQLite table that survives the process.
struct Services {
    inventory: Mutex<BTreeMap<String, u32>>,
    ledger: Ledger,
    verbose: bool,
}

enum Ledger {
    Memory(Mutex<(HashSet<String>, HashSet<String>)>),
    Sqlite(Mutex<rusqlite::Connection>),
}

fn infra(e: impl std::fmt::Display) -> Error {
    Error::infrastructure("services.storage", e.to_string())
}

impl Services {
    fn progress(&self, step: &str, order: &str) {
        if self.verbose {
            // The crash test reads these lines to pick the moment it kills the process.
            println!("step {step} {order}");
            let _ = std::io::stdout().flush();
        }
    }

    /// Records the effect `key` once; `true` the first time.
    fn effect(&self, key: String, step: &str) -> Result<bool> {
        match &self.ledger {
            Ledger::Memory(m) => Ok(m.lock().map_err(infra)?.0.insert(key)),
            Ledger::Sqlite(c) => {
                let c = c.lock().map_err(infra)?;
                let n = c
                    .execute(
                        "INSERT OR IGNORE INTO effects (key, step, undone) VALUES (?1, ?2, 0)",
                        rusqlite::params![key, step],
                    )
                    .map_err(infra)?;
                Ok(n == 1)
            }
        }
    }

    /// Undoes the effect `key` once; `true` the first time (and only if it was applied).
    fn undo(&self, key: String) -> Result<()> {
        self.undo_once(key).map(|_| ())
    }

    fn undo_once(&self, key: String) -> Result<bool> {
        match &self.ledger {
            Ledger::Memory(m) => {
                let mut m = m.lock().map_err(infra)?;
                Ok(m.0.contains(&key) && m.1.insert(key))
            }
            Ledger::Sqlite(c) => {
                let c = c.lock().map_err(infra)?;
                let n = c
                    .execute(
                        "UPDATE effects SET undone = 1 WHERE key = ?1 AND undone = 0",
                        rusqlite::params![key],
                    )
                    .map_err(infra)?;
                Ok(n == 1)
            }
        }
    }

    fn reserve(&self, key: String, sku: &str, quantity: u32) -> Result<()> {
        let inventory = self.inventory.lock().map_err(infra)?;
        let on_hand = inventory.get(sku).copied().unwrap_or(0);
        if on_hand < quantity && !matches!(self.ledger, Ledger::Sqlite(_)) {
            return Err(Error::conflict(
                "inventory.short",
                format!("only {on_hand} of {sku} on hand, {quantity} wanted"),
            ));
        }
        drop(inventory);
        if self.effect(key, "reserve_inventory")? {
            let mut inventory = self.inventory.lock().map_err(infra)?;
            let level = inventory.entry(sku.to_owned()).or_default();
            *level = level.saturating_sub(quantity);
        }
        Ok(())
    }

    fn release(&self, key: String, sku: &str, quantity: u32) -> Result<()> {
        if self.undo_once(key)? {
            *self
                .inventory
                .lock()
                .map_err(infra)?
                .entry(sku.to_owned())
                .or_default() += quantity;
        }
        Ok(())
    }
}

// ------------------------------------------------------------------ the batch

fn orders(start: usize, n: usize) -> Vec<FulfilOrder> {
    let skus = ["KEYBOARD", "MONITOR", "MOUSE"];
    (start..start + n)
        .map(|i| FulfilOrder {
            order_id: format!("o-{i:04}"),
            sku: skus[i % skus.len()].to_owned(),
            quantity: 1 + (i % 3) as u32,
            unit_price_cents: 4_999,
            // Every fourth card is declined, every fifth address cannot be shipped to.
            card: if i % 4 == 1 {
                "4000-0000-0000-0002".into()
            } else {
                "4242-4242-4242-4242".into()
            },
            postcode: if i % 5 == 3 {
                "99999".into()
            } else {
                format!("{:05}", 10_000 + i)
            },
        })
        .collect()
}

fn describe<T: std::fmt::Debug>(outcome: &SagaOutcome<T>) -> String {
    match outcome {
        SagaOutcome::Completed { output, .. } => format!("completed: {output:?}"),
        SagaOutcome::Compensated {
            failed_step,
            error,
            compensated,
            ..
        } => {
            format!(
                "compensated after `{failed_step}` failed ({error}); undone: {}",
                compensated.join(", ")
            )
        }
        SagaOutcome::Stuck {
            step,
            error,
            remaining,
            ..
        } => {
            format!(
                "STUCK at `{step}` ({error}); left for an operator: {}",
                remaining.join(", ")
            )
        }
        SagaOutcome::Resolved {
            principal, reason, ..
        } => format!("resolved by hand by {principal}: {reason}"),
        SagaOutcome::Sleeping { step, until_ms, .. } => {
            format!("sleeping at `{step}` until {until_ms} ms")
        }
        // Kinds of outcome a later flext adds.
        other => format!("{:?}", other.state()),
    }
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
    match flag("--db") {
        Some(path) => {
            let worker = Worker {
                owner: flag("--owner").unwrap_or_else(|| "fulfilment-worker".to_owned()),
                start: flag("--start").map_or(Ok(0), |v| v.parse())?,
                orders: flag("--orders").map_or(Ok(3), |v| v.parse())?,
                recovery_ms: flag("--recovery-ms").map(|v| v.parse()).transpose()?,
                drain: args.iter().any(|a| a == "--drain"),
            };
            durable(&path, &worker).await
        }
        None => demo().await,
    }
}

/// The in-memory demonstration.
async fn demo() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let initial: BTreeMap<String, u32> = [
        ("KEYBOARD".to_owned(), 40),
        ("MONITOR".to_owned(), 25),
        ("MOUSE".to_owned(), 60),
    ]
    .into();
    let services = std::sync::Arc::new(Services {
        inventory: Mutex::new(initial.clone()),
        ledger: Ledger::Memory(Mutex::default()),
        verbose: false,
    });
    let runner = SagaRunner::builder(MemoryLog::new())
        .shared_state(services.clone())
        .build();

    println!("inventory before: {initial:?}");
    let mut shipped: BTreeMap<String, u32> = BTreeMap::new();
    for order in orders(0, 10) {
        let (id, sku, qty) = (order.order_id.clone(), order.sku.clone(), order.quantity);
        let outcome = runner.run(order, &Context::new()).await?;
        if matches!(outcome, SagaOutcome::Completed { .. }) {
            *shipped.entry(sku.clone()).or_default() += qty;
        }
        println!("{id} ({qty} x {sku}): {}", describe(&outcome));
    }
    let after = services.inventory.lock().map_err(infra)?.clone();
    println!("inventory after:  {after:?}");
    let expected: BTreeMap<String, u32> = initial
        .iter()
        .map(|(sku, level)| (sku.clone(), level - shipped.get(sku).copied().unwrap_or(0)))
        .collect();
    println!("shipped:          {shipped:?}");
    println!(
        "stock reserved for failed orders returned: {}",
        if after == expected {
            "yes (after = before - shipped)"
        } else {
            "NO"
        }
    );
    if after != expected {
        return Err("inventory does not balance".into());
    }
    Ok(())
}

/// How long this worker's leases last. Short, so that another worker finishes a crashed
/// worker's sagas soon (a worker restarted under the crashed one's name takes them back
/// at once: the log's lock file proves the old process gone); a long step keeps its
/// lease by heartbeat.
const LEASE: std::time::Duration = std::time::Duration::from_millis(200);

/// What one durable worker process does (its command-line flags).
struct Worker {
    /// `--owner NAME`: the runner's name in the log's leases.
    owner: String,
    /// `--start K --orders N`: runs orders `K..K + N`.
    start: usize,
    orders: usize,
    /// `--recovery-ms N`: a recovery loop every N ms beside the orders
    /// (`SagaRunner::spawn_recovery`), as a long-running worker has.
    recovery_ms: Option<u64>,
    /// `--drain`: before exiting, wait until no saga in the log is in flight (taking
    /// over, once their leases expire, those a killed worker left).
    drain: bool,
}

/// The durable mode the crash tests drive: recover what expired, run the orders, and
/// with `drain`, keep recovering until nothing is in flight.
async fn durable(
    path: &str,
    worker: &Worker,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let ledger = rusqlite::Connection::open(path)?;
    ledger.busy_timeout(std::time::Duration::from_secs(5))?;
    ledger.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY, step TEXT NOT NULL, undone INTEGER NOT NULL);",
    )?;
    let services = std::sync::Arc::new(Services {
        inventory: Mutex::new(BTreeMap::new()),
        ledger: Ledger::Sqlite(Mutex::new(ledger)),
        verbose: true,
    });
    let log: std::sync::Arc<dyn SagaLog> = std::sync::Arc::new(SqliteLog::open(path)?);
    // The name makes the log readable; each process is its own incarnation of it.
    let runner = SagaRunner::builder_shared(log.clone())
        .owner(worker.owner.as_str())
        .lease(LEASE)
        .shared_state(services)
        .build();
    recover(&runner).await?;
    let recovery = worker
        .recovery_ms
        .map(|ms| runner.spawn_recovery(std::time::Duration::from_millis(ms)));
    for order in orders(worker.start, worker.orders) {
        let id = order.order_id.clone();
        match runner.run(order, &Context::new()).await {
            Ok(outcome) => println!("saga {id} {:?}", outcome.state()),
            // This worker lost the saga (it could not renew its lease in time, or
            // another worker took it over): it is in flight in the log, and a recovery
            // pass finishes it.
            Err(e) if e.code() == flext::codes::SAGA_LEASE_LOST => {
                println!("saga {id} deferred: {}", e.code());
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Sagas a killed worker left hold live leases for up to `LEASE`: wait them out.
    let mut rounds = 0;
    while worker.drain && rounds < 100 {
        let in_flight = log
            .list(&flext::saga::SagaFilter::default())
            .await?
            .iter()
            .filter(|s| s.state.is_in_flight())
            .count();
        if in_flight == 0 {
            break;
        }
        tokio::time::sleep(LEASE / 2).await;
        if recovery.is_none() {
            recover(&runner).await?;
        }
        rounds += 1;
    }
    if let Some(recovery) = recovery {
        recovery.shutdown().await;
    }
    Ok(())
}

/// One recovery pass, printed.
async fn recover(runner: &SagaRunner) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let report = runner.recover().await?;
    for saga in &report.sagas {
        match &saga.result {
            Ok(o) => println!("recovered {}: {:?}", saga.saga_id, o.state()),
            Err(e) => println!("recovery of {} failed: {e}", saga.saga_id),
        }
    }
    Ok(())
}
