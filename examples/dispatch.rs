//! Warehouse dispatch as a durable workflow: two branches run side by side for each
//! order, and a failure after them undoes what they did.
//!
//! ```text
//! pick ───┬─▶ pack ─▶ ship
//! label ──┤
//!         └─▶ notify (optional)
//! ```
//!
//! `pick` and `label` run at once; `pack` takes both; `ship` is refused for every fifth
//! order, and that run compensates `pack`, `label` and `pick` in the reverse of the
//! order they completed; `notify` fails for every third order, which the run records
//! and goes on. Every effect is written to a ledger table once per idempotency key (the
//! run id and the node's name), and undone once.
//!
//! ```text
//! cargo run --example dispatch -- --db /tmp/dispatch.db --orders 10
//! ```
//!
//! `--db PATH` holds the saga log and the ledger; the program first recovers what a
//! previous run left in flight. `--orders N --start K` runs orders `K..K + N`; `--owner
//! NAME` names the runner; `--recovery-ms N` runs a recovery loop beside the orders;
//! `--drain` waits before exiting until nothing is in flight. The soak
//! (`tests/test_workflow_kill.rs`) runs two such workers on one file and kills them with
//! SIGKILL at random moments.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flext::prelude::*;
use flext::saga::{SagaFilter, SagaLog, SagaRunner, SqliteLog};
use serde::{Deserialize, Serialize};

/// One order to dispatch: the workflow's input, recorded in the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Dispatch {
    order: String,
    number: u64,
}

/// The ledger of effects, deduplicated on the idempotency key.
struct Ledger(Mutex<rusqlite::Connection>);

fn infra(e: impl std::fmt::Display) -> Error {
    Error::infrastructure("dispatch.ledger", e.to_string())
}

impl Ledger {
    /// Applies `node`'s effect under the context's key, once.
    fn apply(&self, ctx: &Context, node: &str) -> Result<()> {
        let key = ctx.idempotency_key().unwrap_or_default();
        self.0
            .lock()
            .map_err(infra)?
            .execute(
                "INSERT OR IGNORE INTO effects (key, node, undone) VALUES (?1, ?2, 0)",
                rusqlite::params![key, node],
            )
            .map_err(infra)?;
        Ok(())
    }

    /// Undoes `node`'s effect (keyed by the node's key, the compensation's key less its
    /// `:compensate`), once.
    fn undo(&self, ctx: &Context) -> Result<()> {
        let key = ctx.idempotency_key().unwrap_or_default();
        let key = key.strip_suffix(":compensate").unwrap_or(key);
        self.0
            .lock()
            .map_err(infra)?
            .execute(
                "UPDATE effects SET undone = 1 WHERE key = ?1 AND undone = 0",
                rusqlite::params![key],
            )
            .map_err(infra)?;
        Ok(())
    }
}

/// A progress line per node: the soak reads them to choose when to kill.
fn progress(node: &str, order: &str) {
    println!("node {node} {order}");
    let _ = std::io::stdout().flush();
}

#[workflow(durable)]
impl Dispatch {
    #[workflow_step(compensate = restock)]
    async fn pick(&self, ledger: State<Ledger>, ctx: &Context) -> Result<u32> {
        tokio::time::sleep(Duration::from_millis(2)).await;
        progress("pick", &self.order);
        ledger.apply(ctx, "pick")?;
        Ok(1 + (self.number % 3) as u32)
    }
    async fn restock(&self, _items: &u32, ledger: State<Ledger>, ctx: &Context) -> Result<()> {
        ledger.undo(ctx)
    }

    #[workflow_step(compensate = void_label)]
    async fn label(&self, ledger: State<Ledger>, ctx: &Context) -> Result<String> {
        tokio::time::sleep(Duration::from_millis(3)).await;
        progress("label", &self.order);
        ledger.apply(ctx, "label")?;
        Ok(format!("LBL-{}", self.order))
    }
    async fn void_label(&self, _label: &str, ledger: State<Ledger>, ctx: &Context) -> Result<()> {
        ledger.undo(ctx)
    }

    #[workflow_step(depends_on = [pick, label], compensate = unpack)]
    async fn pack(
        &self,
        items: &u32,
        label: &str,
        ledger: State<Ledger>,
        ctx: &Context,
    ) -> Result<String> {
        progress("pack", &self.order);
        ledger.apply(ctx, "pack")?;
        Ok(format!("{items} items under {label}"))
    }
    async fn unpack(&self, _parcel: &str, ledger: State<Ledger>, ctx: &Context) -> Result<()> {
        ledger.undo(ctx)
    }

    #[workflow_step(depends_on = [pack])]
    async fn ship(&self, parcel: &str, ledger: State<Ledger>, ctx: &Context) -> Result<String> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        progress("ship", &self.order);
        if self.number.is_multiple_of(5) {
            return Err(Error::infrastructure(
                "carrier.refused",
                format!("the carrier refused {parcel}"),
            ));
        }
        ledger.apply(ctx, "ship")?;
        Ok(format!("shipped {parcel}"))
    }

    #[workflow_step(depends_on = [label], optional)]
    async fn notify(&self, label: &str) -> Result<()> {
        if self.number.is_multiple_of(3) {
            return Err(Error::infrastructure(
                "mail.down",
                format!("no mail about {label}"),
            ));
        }
        Ok(())
    }
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// How long a worker's leases last: short, so that another worker finishes what a
/// killed one left soon.
const LEASE: Duration = Duration::from_millis(200);

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = flag(&args, "--db").unwrap_or_else(|| {
        std::env::temp_dir()
            .join(format!("flext-dispatch-{}.db", Uuid::new_v4()))
            .display()
            .to_string()
    });
    let start: u64 = flag(&args, "--start").map_or(Ok(0), |v| v.parse())?;
    let orders: u64 = flag(&args, "--orders").map_or(Ok(10), |v| v.parse())?;
    let owner = flag(&args, "--owner").unwrap_or_else(|| "dispatch-worker".to_owned());
    let recovery_ms: Option<u64> = flag(&args, "--recovery-ms")
        .map(|v| v.parse())
        .transpose()?;
    let drain = args.iter().any(|a| a == "--drain");

    let ledger = rusqlite::Connection::open(&path)?;
    ledger.busy_timeout(Duration::from_secs(5))?;
    ledger.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY, node TEXT NOT NULL, undone INTEGER NOT NULL);",
    )?;
    let log: Arc<dyn SagaLog> = Arc::new(SqliteLog::open(&path)?);
    let runner = SagaRunner::builder_shared(log.clone())
        .owner(owner.as_str())
        .lease(LEASE)
        .state(Ledger(Mutex::new(ledger)))
        .build();
    let report = runner.recover().await?;
    for run in &report.sagas {
        match &run.result {
            Ok(o) => println!("recovered {}: {}", run.saga_id, o.state()),
            Err(e) => println!("recovery of {} failed: {e}", run.saga_id),
        }
    }
    let recovery = recovery_ms.map(|ms| runner.spawn_recovery(Duration::from_millis(ms)));
    for number in start..start + orders {
        let order = format!("o-{number:04}");
        let dispatch = Dispatch {
            order: order.clone(),
            number,
        };
        match runner.run_workflow_durable(dispatch, &Context::new()).await {
            Ok(run) if run.is_success() => println!("run {order} completed"),
            Ok(run) => println!(
                "run {order} compensated {:?} after {}",
                run.compensated(),
                run.failed_step().map_or("?", |s| s.name)
            ),
            // This worker lost the run (another took it over): a recovery pass
            // finishes it.
            Err(e) if e.code() == flext::codes::SAGA_LEASE_LOST => {
                println!("run {order} deferred: {}", e.code());
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut rounds = 0;
    while drain && rounds < 100 {
        let in_flight = log
            .list(&SagaFilter::default())
            .await?
            .iter()
            .filter(|s| s.state.is_in_flight())
            .count();
        if in_flight == 0 {
            break;
        }
        tokio::time::sleep(LEASE / 2).await;
        if recovery.is_none() {
            runner.recover().await?;
        }
        rounds += 1;
    }
    if let Some(recovery) = recovery {
        recovery.shutdown().await;
    }
    Ok(())
}
