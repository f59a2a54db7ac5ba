//! Money transfers on PostgreSQL, run by several processes at once against one database.
//!
//! Each transfer is a saga: `debit` the payer's account (compensated by a `refund`),
//! then `credit` the payee's; a transfer to the closed account fails at `credit` and is
//! refunded. Each posting appends an event to the account's stream, in a unit of work
//! that also takes an inbox entry keyed by the step's idempotency key, so a step run
//! again after a crash posts nothing twice. A `balances` projection follows the events
//! in global order (a table of applied positions makes a double apply fail on its key),
//! and the outbox relay delivers every event to a notifier that records one notification
//! per event (deduplicated on the event id; raw deliveries are counted apart).
//!
//! ```text
//! cargo run --features postgres --example pg_transfers
//! ```
//!
//! Without arguments it runs 30 transfers against `DATABASE_URL`, or a throwaway server
//! it starts (needs PostgreSQL installed), and prints the balances. The multi-process
//! test (`tests/test_pg_kill.rs`) runs three workers, `--url URL --owner NAME --lines
//! START COUNT --drain`, kills one with SIGKILL at a random moment, and checks that the
//! survivors finished its sagas, delivered its events and projected each once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flext::BoxFuture;
use flext::database::Relay;
use flext::event_store::{EventEnvelope, EventStore, NewEvent, StreamId};
use flext::postgres::{PgDatabase, PgOutboxRelay, PgProjection, PgProjectionRunner, PgUnitOfWork};
use flext::prelude::*;
use flext::saga::{SagaFilter, SagaLog, SagaRunner};
use serde::{Deserialize, Serialize};

/// The account every transfer to fails (and is refunded).
const CLOSED: &str = "closed";
/// How long a worker's claim on a saga lasts without renewal: a killed worker's sagas
/// are taken over this long after it died.
const LEASE: Duration = Duration::from_millis(300);

// ------------------------------------------------------------------ the saga

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Transfer {
    n: u64,
    from: String,
    to: String,
    cents: i64,
}

#[saga]
impl Transfer {
    #[saga_step(compensate = refund)]
    async fn debit(&self, ctx: &Context, db: State<PgDatabase>) -> Result<u64> {
        post(&db, ctx, &self.from, "account.debited", self.n, -self.cents).await
    }
    async fn refund(&self, _debit: &u64, ctx: &Context, db: State<PgDatabase>) -> Result<()> {
        post(&db, ctx, &self.from, "account.refunded", self.n, self.cents).await?;
        Ok(())
    }

    #[saga_step]
    async fn credit(&self, ctx: &Context, db: State<PgDatabase>) -> Result<u64> {
        if self.to == CLOSED {
            return Err(Error::validation(
                "bank.account_closed",
                format!("transfer {}: the payee's account is closed", self.n),
            ));
        }
        post(&db, ctx, &self.to, "account.credited", self.n, self.cents).await
    }
}

/// Appends one posting to `account`'s stream, once per step however often the step
/// runs: the inbox entry keyed by the step's idempotency key commits with the event.
/// Returns the stream's version after it.
async fn post(
    db: &PgDatabase,
    ctx: &Context,
    account: &str,
    name: &str,
    transfer: u64,
    cents: i64,
) -> Result<u64> {
    let key = ctx
        .idempotency_key()
        .ok_or_else(|| Error::internal("bank.no_key", "a saga step runs with a key"))?;
    let key = Uuid::new_v5(&Uuid::NAMESPACE_OID, key.as_bytes());
    let stream = StreamId::new("Account", account);
    let events = db.event_store();
    loop {
        let version = events.version(&stream).await?;
        let uow = db.begin().await?;
        if !uow.first_delivery("ledger", key).await? {
            return Ok(version); // posted by an earlier run of this step
        }
        let event = NewEvent::new(
            name,
            1,
            serde_json::json!({ "transfer": transfer, "account": account, "cents": cents }),
            ctx,
        );
        match uow.append_events(&stream, version, &[event]).await {
            Ok(v) => {
                uow.commit().await?;
                return Ok(v);
            }
            // Another transfer posted to this account first: read the version again.
            Err(e) if e.code() == flext::codes::EVENT_CONFLICT => continue,
            Err(e) => return Err(e),
        }
    }
}

// ------------------------------------------------------------------ the read side

fn sql(e: flext::postgres::tokio_postgres::Error) -> Error {
    Error::infrastructure("bank.sql", e.to_string())
}

#[derive(Deserialize)]
struct Posting {
    account: String,
    cents: i64,
}

/// Balances per account, from the postings in global order.
struct Balances;

impl PgProjection for Balances {
    fn name(&self) -> &str {
        "balances"
    }
    fn setup<'a>(&'a self, uow: &'a PgUnitOfWork) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            uow.client()
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS balances (account TEXT PRIMARY KEY, cents BIGINT NOT NULL);
                     CREATE TABLE IF NOT EXISTS applied (position BIGINT PRIMARY KEY);",
                )
                .await
                .map_err(sql)
        })
    }
    fn apply<'a>(
        &'a self,
        uow: &'a PgUnitOfWork,
        event: &'a EventEnvelope,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let p: Posting = serde_json::from_value(event.payload.clone())
                .map_err(|e| Error::internal("bank.posting", e.to_string()))?;
            // Applying an event twice would fail here, on the key, and stop the projection.
            uow.client()
                .execute(
                    "INSERT INTO applied (position) VALUES ($1)",
                    &[&i64::try_from(event.position).unwrap_or(i64::MAX)],
                )
                .await
                .map_err(sql)?;
            uow.client()
                .execute(
                    "INSERT INTO balances (account, cents) VALUES ($1, $2)
                     ON CONFLICT (account) DO UPDATE SET cents = balances.cents + excluded.cents",
                    &[&p.account, &p.cents],
                )
                .await
                .map_err(sql)?;
            Ok(())
        })
    }
}

/// The outbox's consumer: one notification per event, however often it is delivered.
struct Notifier {
    db: PgDatabase,
}

impl Relay for Notifier {
    fn deliver<'a>(&'a self, event: &'a EventEnvelope) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            // Raw deliveries, redeliveries included (at least once).
            self.db
                .client()
                .await?
                .execute(
                    "INSERT INTO deliveries (event_id) VALUES ($1)",
                    &[&event.event_id],
                )
                .await
                .map_err(sql)?;
            let uow = self.db.begin().await?;
            if uow.first_delivery("notifier", event.event_id).await? {
                uow.client()
                    .execute(
                        "INSERT INTO notifications (event_id, name) VALUES ($1, $2)",
                        &[&event.event_id, &event.name],
                    )
                    .await
                    .map_err(sql)?;
            }
            uow.commit().await
        })
    }
}

// ------------------------------------------------------------------ a worker

/// The transfers of lines `start..start + count`: five accounts paying each other, every
/// seventh transfer to the closed account.
fn transfers(start: u64, count: u64) -> Vec<Transfer> {
    (start..start + count)
        .map(|n| Transfer {
            n,
            from: format!("a{}", n % 5),
            to: if n % 7 == 3 {
                CLOSED.to_owned()
            } else {
                format!("a{}", (n * 3 + 1) % 5)
            },
            cents: 100 + i64::try_from(n % 50).unwrap_or(0),
        })
        .collect()
}

/// The saga id of transfer `n`: the same in every process, so a transfer runs once.
fn saga_id(n: u64) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("transfer-{n}").as_bytes())
}

struct Worker {
    url: String,
    owner: String,
    start: u64,
    count: u64,
    drain: bool,
    /// The database may go away and come back (`--outages`): a transfer whose saga the
    /// worker lost to an outage is left to recovery, and every loop waits the outage
    /// out instead of failing.
    outages: bool,
}

/// Retries `f` while the database is away (up to a minute), when `outages` is set.
async fn patiently<T, F, Fut>(
    outages: bool,
    mut f: F,
) -> std::result::Result<T, Box<dyn std::error::Error>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut tries = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if outages && e.kind().is_transient() && tries < 600 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Runs the worker's transfers, four at a time, beside a projection loop, an outbox loop
/// and a recovery loop; with `drain`, then waits until no saga is in flight, no event is
/// undelivered and the projection is caught up. Prints how many sagas it took over.
async fn work(w: Worker) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let db = patiently(w.outages, || PgDatabase::connect(&w.url)).await?;
    // Under flext's migration lock: three workers start at once.
    patiently(w.outages, || {
        db.apply_schema(
            "CREATE TABLE IF NOT EXISTS notifications (event_id UUID PRIMARY KEY, name TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS deliveries (event_id UUID NOT NULL);",
        )
    })
    .await?;
    let runner = SagaRunner::builder(db.saga_log())
        .owner(w.owner.as_str())
        .lease(LEASE)
        .state(db.clone())
        .build();
    let projection = PgProjectionRunner::new(db.clone(), Balances);
    let outbox = PgOutboxRelay::new(db.clone(), Notifier { db: db.clone() });
    let projecting = projection.spawn(Duration::from_millis(20));
    let relaying = outbox.spawn(Duration::from_millis(20));
    let taken_over = Arc::new(AtomicU64::new(0));
    let recovery = {
        let (runner, taken_over) = (runner.clone(), taken_over.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                match runner.recover().await {
                    Ok(report) => {
                        taken_over.fetch_add(report.sagas.len() as u64, Ordering::SeqCst);
                    }
                    Err(e) => eprintln!("recovery pass failed: {e}"),
                }
            }
        })
    };

    let mut running = tokio::task::JoinSet::new();
    for t in transfers(w.start, w.count) {
        while running.len() >= 4 {
            if let Some(done) = running.join_next().await {
                done??;
            }
        }
        let runner = runner.clone();
        let outages = w.outages;
        running.spawn(async move {
            let n = t.n;
            match runner.run_with_id(saga_id(n), t, &Context::new()).await {
                Ok(outcome) => println!("transfer {n} {:?}", outcome.state()),
                // This worker lost the saga (it could not renew its lease in time, or
                // another worker took it over): the saga is in flight in the log, and a
                // recovery pass finishes it. With `--outages`, the database may also have
                // gone away mid-saga: the saga is in flight, or not there at all, and
                // recovery or the start below finishes it.
                Err(e)
                    if e.code() == flext::codes::SAGA_LEASE_LOST
                        || e.code() == flext::codes::SAGA_IN_FLIGHT
                        || (outages && e.kind().is_transient()) =>
                {
                    println!("transfer {n} deferred: {}", e.code());
                }
                Err(e) => return Err(e),
            }
            Ok::<_, Error>(())
        });
    }
    while let Some(done) = running.join_next().await {
        done??;
    }

    if w.drain {
        let mut rounds = 0;
        let limit = if w.outages { 1200 } else { 400 };
        loop {
            // A transfer whose start never reached the database is started again; the
            // worker drains only once every one of its transfers is in the log.
            let mut missing = 0;
            if w.outages {
                for t in transfers(w.start, w.count) {
                    let n = t.n;
                    match db.saga_log().load(saga_id(n)).await {
                        Ok(_) => {}
                        Err(e) if e.code() == flext::codes::SAGA_NOT_FOUND => {
                            missing += 1;
                            let _ = runner.run_with_id(saga_id(n), t, &Context::new()).await;
                        }
                        Err(_) => missing += 1,
                    }
                }
            }
            let pass = async {
                let in_flight = runner
                    .list(&SagaFilter::default())
                    .await?
                    .iter()
                    .filter(|s| s.state.is_in_flight())
                    .count();
                let delivered = outbox.deliver_pending().await?;
                let behind =
                    projection.catch_up().await?.applied + projection.status().await?.events_behind;
                let pending = db.outbox_pending().await?;
                Ok::<_, Error>((in_flight, delivered + behind + pending))
            };
            let in_flight = match pass.await {
                Ok((0, 0)) if missing == 0 => break,
                Ok((in_flight, _)) => in_flight,
                Err(e) if w.outages && e.kind().is_transient() => usize::MAX,
                Err(e) => return Err(e.into()),
            };
            rounds += 1;
            if rounds > limit {
                return Err(format!(
                    "not drained after {rounds} rounds: {in_flight} sagas in flight"
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    recovery.abort();
    projecting.shutdown().await;
    relaying.shutdown().await;
    println!("took over {}", taken_over.load(Ordering::SeqCst));
    Ok(())
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(url) = flag("--url") {
        let lines = args.iter().position(|a| a == "--lines");
        let number = |offset: usize| -> std::result::Result<u64, Box<dyn std::error::Error>> {
            let i = lines.ok_or("--lines START COUNT is required with --url")?;
            Ok(args.get(i + offset).ok_or("--lines START COUNT")?.parse()?)
        };
        return work(Worker {
            url,
            owner: flag("--owner").unwrap_or_else(|| "transfers".to_owned()),
            start: number(1)?,
            count: number(2)?,
            drain: args.iter().any(|a| a == "--drain"),
            outages: args.iter().any(|a| a == "--outages"),
        })
        .await;
    }

    // The demo: one worker, 30 transfers, then the balances.
    let cluster = flext::postgres::TestCluster::start()?;
    let url = cluster.fresh_database().await?;
    work(Worker {
        url: url.clone(),
        owner: "demo".into(),
        start: 0,
        count: 30,
        drain: true,
        outages: false,
    })
    .await?;
    let db = PgDatabase::connect(&url).await?;
    let client = db.client().await?;
    let balances: BTreeMap<String, i64> = client
        .query("SELECT account, cents FROM balances ORDER BY account", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let total: i64 = balances.values().sum();
    for (account, cents) in &balances {
        println!("balance {account}: {cents} cents");
    }
    let events = db.event_store().read_all(0, usize::MAX).await?.len();
    let notified: i64 = client
        .query_one("SELECT COUNT(*) FROM notifications", &[])
        .await?
        .get(0);
    println!("{events} events, {notified} notifications, money created or lost: {total} cents");
    Ok(())
}
