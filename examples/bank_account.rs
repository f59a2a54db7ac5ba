//! Bank accounts, event-sourced: open, deposit, withdraw within an overdraft, close.
//!
//! Reads `examples/data/bank_commands.txt` (one command per line: its name, a space, its
//! JSON; a few lines are invalid on purpose) and sends each through the bus, where the
//! `Account` aggregate decides it. Everything lives in one SQLite database: the events
//! with their outbox rows, a `balances` projection with its checkpoint, and the saga log.
//! The outbox relay delivers each event to the bus after its append committed; a large
//! withdrawal starts a `Review` saga whose id derives from the event's id, so a
//! redelivered event never starts a second review.
//!
//! Two thirds of the way through, the program drops everything and starts again from
//! the file, as a restarted process would: the balances it reloads are the ones it had,
//! and it goes on. At the end it prints every balance, checks the projection against the
//! aggregates, rebuilds the projection from the first event, and prints the reviews and
//! the events of one account.
//!
//! ```text
//! cargo run --example bank_account [-- --db PATH]
//! ```
//!
//! The crash test (`tests/test_bank_kill.rs`) runs it as a worker, `--db PATH --lines
//! START COUNT` (those lines of the file, the outbox and the projection driven after each
//! command), kills it with SIGKILL at random moments, and finishes with `--drain`.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use flext::aggregate::{Events, Repository};
use flext::database::{BusRelay, event_id_of};
use flext::event_store::{EventEnvelope, EventStore, StreamId};
use flext::prelude::*;
use flext::saga::{SagaRunner, saga_id_for_event};
use flext::sqlite::rusqlite;
use flext::sqlite::{SqliteDatabase, SqliteOutboxRelay, SqliteProjectionRunner, SqliteUnitOfWork};
use serde::{Deserialize, Serialize};

// ------------------------------------------------------------------ commands

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Open {
    #[aggregate_id]
    account: String,
    owner: String,
    overdraft_cents: i64,
}

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Deposit {
    #[aggregate_id]
    account: String,
    cents: i64,
}

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Withdraw {
    #[aggregate_id]
    account: String,
    cents: i64,
}

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Close {
    #[aggregate_id]
    account: String,
}

// ------------------------------------------------------------------ events

#[event(name = "account.opened")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Opened {
    owner: String,
    overdraft_cents: i64,
}

#[event(name = "account.deposited")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Deposited {
    cents: i64,
}

#[event(name = "account.withdrawn")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Withdrawn {
    account: String,
    cents: i64,
}

#[event(name = "account.closed")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Closed {
    final_balance_cents: i64,
}

// ------------------------------------------------------------------ the aggregate

#[aggregate(snapshot_every = 20)]
#[derive(Debug, Default, Serialize, Deserialize)]
struct Account {
    #[aggregate_id]
    id: String,
    owner: String,
    state: Status,
    balance_cents: i64,
    overdraft_cents: i64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize, Deserialize)]
enum Status {
    #[default]
    New,
    Open,
    Closed,
}

#[aggregate]
impl Account {
    #[command_handler]
    fn open(&self, c: &Open) -> Result<Events<Self>> {
        if self.state != Status::New {
            return Err(Error::conflict(
                "account.exists",
                format!("account {} already exists", self.id),
            ));
        }
        if c.overdraft_cents < 0 {
            return Err(Error::validation(
                "account.bad_overdraft",
                "an overdraft is zero or more",
            ));
        }
        Ok(Events::one(Opened {
            owner: c.owner.clone(),
            overdraft_cents: c.overdraft_cents,
        }))
    }

    #[command_handler]
    fn deposit(&self, c: &Deposit) -> Result<Events<Self>> {
        self.require_open()?;
        require_positive(c.cents)?;
        Ok(Events::one(Deposited { cents: c.cents }))
    }

    #[command_handler]
    fn withdraw(&self, c: &Withdraw) -> Result<Events<Self>> {
        self.require_open()?;
        require_positive(c.cents)?;
        let after = self.balance_cents - c.cents;
        if after < -self.overdraft_cents {
            return Err(Error::new(
                ErrorKind::RuleViolation,
                "account.overdraft_exceeded",
                format!(
                    "{} cannot withdraw {}: the balance would be {} and the overdraft is {}",
                    self.id,
                    cents(c.cents),
                    cents(after),
                    cents(self.overdraft_cents)
                ),
            ));
        }
        Ok(Events::one(Withdrawn {
            account: self.id.clone(),
            cents: c.cents,
        }))
    }

    #[command_handler]
    fn close(&self, _: &Close) -> Result<Events<Self>> {
        self.require_open()?;
        Ok(Events::one(Closed {
            final_balance_cents: self.balance_cents,
        }))
    }

    fn require_open(&self) -> Result<()> {
        match self.state {
            Status::Open => Ok(()),
            Status::New => Err(Error::not_found(
                "account.unknown",
                format!("no account {}", self.id),
            )),
            Status::Closed => Err(Error::conflict(
                "account.closed",
                format!("account {} is closed", self.id),
            )),
        }
    }

    #[apply]
    fn opened(&mut self, e: &Opened) {
        self.state = Status::Open;
        self.owner.clone_from(&e.owner);
        self.overdraft_cents = e.overdraft_cents;
    }

    #[apply]
    fn deposited(&mut self, e: &Deposited) {
        self.balance_cents += e.cents;
    }

    #[apply]
    fn withdrawn(&mut self, e: &Withdrawn) {
        self.balance_cents -= e.cents;
    }

    #[apply]
    fn closed(&mut self, _: &Closed) {
        self.state = Status::Closed;
    }
}

fn require_positive(amount: i64) -> Result<()> {
    if amount <= 0 {
        return Err(Error::validation(
            "account.bad_amount",
            format!("an amount is positive, not {}", cents(amount)),
        ));
    }
    Ok(())
}

fn cents(c: i64) -> String {
    format!(
        "{}{}.{:02}",
        if c < 0 { "-" } else { "" },
        c.abs() / 100,
        c.abs() % 100
    )
}

// ------------------------------------------------------------------ the projection

fn sql(e: rusqlite::Error) -> Error {
    Error::infrastructure("bank.sql", e.to_string())
}

/// Balances by account, from the events in global order: a read model in its own table,
/// updated in the transaction that moves its checkpoint. Each `#[apply]` method gets its
/// event decoded and the envelope (for the account, which is the stream).
struct Balances;

impl Balances {
    fn add(&self, uow: &SqliteUnitOfWork, account: &str, owner: &str, delta: i64) -> Result<()> {
        uow.connection()
            .execute(
                &format!(
                    "INSERT INTO {} (account, owner, balance_cents, events) VALUES (?1, ?2, ?3, 1)
                     ON CONFLICT (account) DO UPDATE SET balance_cents = balance_cents + ?3, events = events + 1",
                    uow.table("balances")
                ),
                rusqlite::params![account, owner, delta],
            )
            .map(|_| ())
            .map_err(sql)
    }
}

#[projection(name = "balances", tables = ["balances"])]
impl Balances {
    fn setup(&self, uow: &SqliteUnitOfWork) -> Result<()> {
        uow.connection()
            .execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {} (account TEXT PRIMARY KEY, owner TEXT NOT NULL, balance_cents INTEGER NOT NULL, events INTEGER NOT NULL)",
                uow.table("balances")
            ))
            .map_err(sql)
    }

    #[apply]
    fn opened(&self, uow: &SqliteUnitOfWork, e: &Opened, envelope: &EventEnvelope) -> Result<()> {
        self.add(uow, &envelope.aggregate_id, &e.owner, 0)
    }

    #[apply]
    fn deposited(
        &self,
        uow: &SqliteUnitOfWork,
        e: &Deposited,
        envelope: &EventEnvelope,
    ) -> Result<()> {
        self.add(uow, &envelope.aggregate_id, "", e.cents)
    }

    #[apply]
    fn withdrawn(&self, uow: &SqliteUnitOfWork, e: &Withdrawn) -> Result<()> {
        self.add(uow, &e.account, "", -e.cents)
    }

    #[apply]
    fn closed(&self, uow: &SqliteUnitOfWork, _: &Closed, envelope: &EventEnvelope) -> Result<()> {
        self.add(uow, &envelope.aggregate_id, "", 0)
    }
}

// ------------------------------------------------------------------ an event-started saga

/// Withdrawals from this amount up are reviewed.
const REVIEW_FROM_CENTS: i64 = 40_000;

/// A review of a large withdrawal, started by the `account.withdrawn` event itself.
#[derive(Debug, Serialize, Deserialize)]
struct Review {
    account: String,
    cents: i64,
}

#[saga]
impl Review {
    #[saga_step]
    async fn open_case(&self, ctx: &Context, db: State<SqliteDatabase>) -> Result<String> {
        let key = ctx.idempotency_key().unwrap_or_default().to_owned();
        db.transaction(|uow| {
            uow.connection()
                .execute_batch("CREATE TABLE IF NOT EXISTS reviews (key TEXT PRIMARY KEY, account TEXT NOT NULL, cents INTEGER NOT NULL)")
                .map_err(sql)?;
            uow.connection()
                .execute(
                    "INSERT OR IGNORE INTO reviews (key, account, cents) VALUES (?1, ?2, ?3)",
                    rusqlite::params![key, self.account, self.cents],
                )
                .map_err(sql)
        })?;
        Ok(key)
    }
}

/// Starts a review for a large withdrawal, under an id derived from the event's: however
/// often the outbox delivers the event, there is one review.
#[event_handler]
async fn review_large_withdrawal(
    e: Withdrawn,
    ctx: &Context,
    runner: State<SagaRunner>,
) -> Result<()> {
    if e.cents < REVIEW_FROM_CENTS {
        return Ok(());
    }
    let event = event_id_of(ctx)
        .ok_or_else(|| Error::internal("bank.no_event_id", "delivered without an event id"))?;
    let id = saga_id_for_event("Review", event);
    runner
        .run_with_id(
            id,
            Review {
                account: e.account,
                cents: e.cents,
            },
            ctx,
        )
        .await?;
    Ok(())
}

// ------------------------------------------------------------------ the application

/// The bank as one process has it: the database, the bus, the outbox relay, the
/// projection and the saga runner.
struct Bank {
    db: SqliteDatabase,
    bus: Bus,
    relay: SqliteOutboxRelay,
    balances: SqliteProjectionRunner<Balances>,
    runner: SagaRunner,
}

impl Bank {
    fn open(path: &std::path::Path) -> Result<Self> {
        let db = SqliteDatabase::open(path)?;
        let store: Arc<dyn EventStore> = Arc::new(db.event_store()?);
        let runner = SagaRunner::builder(db.saga_log()?)
            .owner("bank")
            .lease(Duration::from_millis(200))
            .state(db.clone())
            .build();
        // Events reach subscribers through the outbox, after their append committed.
        let bus = Bus::builder()
            .state(Repository::<Account>::new(store).publish_on_bus(false))
            .state(runner.clone())
            .build()?;
        Ok(Bank {
            relay: SqliteOutboxRelay::new(db.clone(), BusRelay::new(bus.clone())),
            balances: SqliteProjectionRunner::new(db.clone(), Balances),
            db,
            bus,
            runner,
        })
    }

    /// What a restarted process does first: finish the sagas in flight, deliver what the
    /// outbox holds, bring the projection up to date.
    async fn settle(&self) -> Result<()> {
        self.runner.recover().await?;
        self.relay.deliver_pending().await?;
        self.balances.catch_up()?;
        Ok(())
    }

    /// Sends one command line; `Err` is the command's refusal.
    async fn send(&self, line: &str) -> Result<()> {
        let (name, json) = line.split_once(' ').unwrap_or((line, ""));
        self.bus
            .send_json(name, json, &Context::new())
            .await
            .map(|_| ())
    }

    fn query<T>(
        &self,
        sql_text: &str,
        row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        self.db.transaction(|uow| {
            let mut stmt = uow.connection().prepare(sql_text).map_err(sql)?;
            let rows = stmt.query_map([], row).map_err(sql)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql)
        })
    }
}

fn command_lines() -> Vec<(usize, &'static str)> {
    include_str!("data/bank_commands.txt")
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .collect()
}

/// The crash test's worker: lines `start..start + count` (wrapping), with the outbox and
/// the projection driven after each command.
async fn worker(path: &std::path::Path, start: usize, count: usize, drain: bool) -> Result<()> {
    let bank = Bank::open(path)?;
    let lines = command_lines();
    let say = |what: String| {
        println!("{what}");
        let _ = std::io::stdout().flush();
    };
    bank.settle().await?;
    say("settled".into());
    for i in start..start + count {
        let (_, line) = lines[i % lines.len()];
        let verdict = bank.send(line).await;
        say(format!(
            "line {i}: {}",
            if verdict.is_ok() { "ok" } else { "refused" }
        ));
        bank.relay.deliver_pending().await?;
        say(format!("line {i}: delivered"));
        bank.balances.catch_up()?;
        say(format!("line {i}: projected"));
    }
    let mut rounds = 0;
    while drain && rounds < 100 {
        // Sagas a killed worker left keep their leases for up to 200 ms.
        bank.settle().await?;
        let in_flight = bank.query(
            "SELECT COUNT(*) FROM flext_sagas WHERE state IN ('running', 'compensating')",
            |r| r.get::<_, i64>(0),
        )?;
        if in_flight[0] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        rounds += 1;
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().position(|a| a == name);
    let temp = std::env::temp_dir().join(format!("flext-bank-{}.db", std::process::id()));
    let path = flag("--db")
        .and_then(|i| args.get(i + 1))
        .map_or(temp.clone(), std::path::PathBuf::from);
    if let Some(i) = flag("--lines") {
        let start = args.get(i + 1).ok_or("--lines START COUNT")?.parse()?;
        let count = args.get(i + 2).ok_or("--lines START COUNT")?.parse()?;
        worker(&path, start, count, false).await?;
        return Ok(());
    }
    if flag("--drain").is_some() {
        worker(&path, 0, 0, true).await?;
        return Ok(());
    }

    let lines = command_lines();
    let restart_at = lines.len() * 2 / 3;
    let mut accounts: Vec<String> = Vec::new();
    let (mut accepted, mut refused) = (0, 0);
    let mut bank = Bank::open(&path)?;
    for (i, (line_no, line)) in lines.iter().enumerate() {
        if i == restart_at {
            let before = balances(&bank, &accounts).await?;
            drop(bank);
            println!(
                "-- restart: the process stops; a new one opens {} --",
                path.display()
            );
            bank = Bank::open(&path)?;
            bank.settle().await?;
            let reloaded = balances(&bank, &accounts).await?;
            let same = reloaded == before;
            println!(
                "reloaded {} accounts from their events: {}",
                reloaded.len(),
                if same {
                    "every balance as before the restart"
                } else {
                    "BALANCES DIFFER"
                }
            );
            if !same {
                return Err("the reloaded balances differ".into());
            }
        }
        match bank.send(line).await {
            Ok(()) => {
                accepted += 1;
                let (name, json) = line.split_once(' ').unwrap_or((line, ""));
                if name == "Open"
                    && let Ok(open) = serde_json::from_str::<Open>(json)
                {
                    accounts.push(open.account);
                }
            }
            Err(e) => {
                refused += 1;
                println!(
                    "line {:>3}: refused: [{}] {}",
                    line_no + 1,
                    e.code(),
                    e.message()
                );
            }
        }
        // The outbox and the projection follow the commands, as their loops would.
        bank.relay.deliver_pending().await?;
        bank.balances.catch_up()?;
    }

    println!(
        "\n{} commands: {accepted} accepted, {refused} refused",
        lines.len()
    );
    println!(
        "{:<10} {:<18} {:>12} {:>8}",
        "account", "owner", "balance", "state"
    );
    let finals = balances(&bank, &accounts).await?;
    for (id, (owner, status, balance)) in &finals {
        println!(
            "{:<10} {:<18} {:>12} {:>8}",
            id,
            owner,
            cents(*balance),
            format!("{status:?}")
        );
    }

    // The projection, fed from the outbox's global order, agrees with the aggregates.
    let projected: BTreeMap<String, i64> = bank
        .query("SELECT account, balance_cents FROM balances", |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .into_iter()
        .collect();
    let agrees = finals
        .iter()
        .all(|(id, (_, _, b))| projected.get(id) == Some(b));
    let status = bank.balances.status()?;
    println!(
        "projection `balances`: checkpoint {} of {}, {} behind; agrees with every aggregate: {}",
        status.checkpoint,
        status.head,
        status.events_behind,
        if agrees { "yes" } else { "NO" }
    );
    let rebuilt = bank.balances.rebuild()?;
    let again: BTreeMap<String, i64> = bank
        .query("SELECT account, balance_cents FROM balances", |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .into_iter()
        .collect();
    println!(
        "rebuilt `balances` from the first event ({rebuilt} events into fresh tables, swapped in): {}",
        if again == projected {
            "identical"
        } else {
            "DIFFERENT"
        }
    );
    let large = bank.query(
        &format!("SELECT COUNT(*) FROM flext_events WHERE name = 'account.withdrawn' AND json_extract(payload, '$.cents') >= {REVIEW_FROM_CENTS}"),
        |r| r.get::<_, i64>(0),
    )?[0];
    let reviews = bank.query("SELECT account, cents FROM reviews ORDER BY account", |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    println!(
        "event-started `Review` sagas: {} for {large} withdrawals of {} or more; outbox undelivered: {}",
        reviews.len(),
        cents(REVIEW_FROM_CENTS),
        bank.db.outbox_pending()?
    );
    for (account, amount) in reviews.iter().take(3) {
        println!("  review {account} {}", cents(*amount));
    }
    if !agrees
        || again != projected
        || reviews.len() as i64 != large
        || bank.db.outbox_pending()? != 0
    {
        return Err("the read models do not add up".into());
    }

    let shown = StreamId::new("Account", "acc-003");
    let store = bank.db.event_store()?;
    println!("\nthe events of {shown}:");
    for e in store.load(&shown, 0).await?.iter().take(8) {
        println!(
            "  #{:<3} {:<18} v{} {}",
            e.sequence, e.name, e.schema_version, e.payload
        );
    }
    drop(bank);
    if path == temp {
        for suffix in ["", "-wal", "-shm"] {
            std::fs::remove_file(format!("{}{suffix}", path.display())).ok();
        }
    }
    Ok(())
}

/// Each account's owner, state and balance, loaded from its events.
async fn balances(bank: &Bank, ids: &[String]) -> Result<BTreeMap<String, (String, Status, i64)>> {
    let repo = Repository::<Account>::new(Arc::new(bank.db.event_store()?));
    let mut out = BTreeMap::new();
    for id in ids {
        let a = repo.load(id).await?.state;
        out.insert(id.clone(), (a.owner, a.state, a.balance_cents));
    }
    Ok(out)
}
