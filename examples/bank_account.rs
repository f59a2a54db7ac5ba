//! Bank accounts, event-sourced: open, deposit, withdraw within an overdraft, close.
//!
//! Reads `examples/data/bank_commands.txt` (one command per line: its name, a space, its
//! JSON; a few lines are invalid on purpose) and sends each through the bus, where the
//! `Account` aggregate decides it and its events are appended to a SQLite event store.
//! Two thirds of the way through, the program drops everything and starts again from
//! the SQLite file, as a restarted process would: the balances it reloads are the ones
//! it had, and it goes on. At the end it prints every balance, checked against a ledger
//! kept beside the aggregate, and the events of one account.
//!
//! ```text
//! cargo run --example bank_account [-- --db PATH]
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use flext::aggregate::{Events, Repository};
use flext::event_store::{EventStore, SqliteEventStore, StreamId};
use flext::prelude::*;
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
        Ok(Events::one(Withdrawn { cents: c.cents }))
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

// ------------------------------------------------------------------ a read model

/// A read model fed by the events the bus publishes after each append: the total
/// deposited and withdrawn. The sum of the aggregates' balances must equal their
/// difference. (It lives in this program's memory, across the simulated restart; a
/// durable read model is a projection, which keeps its own checkpoint.)
#[derive(Default)]
struct Ledger(Mutex<BTreeMap<String, i64>>);

#[event_handler]
fn ledger_deposit(e: Deposited, ledger: State<Ledger>) -> Result<()> {
    *ledger
        .0
        .lock()
        .unwrap()
        .entry("deposits".into())
        .or_default() += e.cents;
    Ok(())
}

#[event_handler]
fn ledger_withdrawal(e: Withdrawn, ledger: State<Ledger>) -> Result<()> {
    *ledger
        .0
        .lock()
        .unwrap()
        .entry("withdrawals".into())
        .or_default() += e.cents;
    Ok(())
}

// ------------------------------------------------------------------ the run

fn bus(path: &std::path::Path, ledger: &Arc<Ledger>) -> Result<(Bus, Arc<dyn EventStore>)> {
    let store: Arc<dyn EventStore> = Arc::new(SqliteEventStore::open(path)?);
    let bus = Bus::builder()
        .state(Repository::<Account>::new(store.clone()))
        .shared_state(ledger.clone())
        .build()?;
    Ok((bus, store))
}

async fn balances(
    store: &Arc<dyn EventStore>,
    ids: &[String],
) -> Result<BTreeMap<String, (Status, i64)>> {
    let repo = Repository::<Account>::new(store.clone());
    let mut out = BTreeMap::new();
    for id in ids {
        let loaded = repo.load(id).await?;
        out.insert(id.clone(), (loaded.state.state, loaded.state.balance_cents));
    }
    Ok(out)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let temp = std::env::temp_dir().join(format!("flext-bank-{}.db", std::process::id()));
    let path = args
        .iter()
        .position(|a| a == "--db")
        .and_then(|i| args.get(i + 1))
        .map_or(temp.clone(), std::path::PathBuf::from);
    let data = include_str!("data/bank_commands.txt");
    let lines: Vec<(usize, &str)> = data
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    let restart_at = lines.len() * 2 / 3;
    let ledger = Arc::new(Ledger::default());
    let mut accounts: Vec<String> = Vec::new();
    let (mut accepted, mut refused) = (0, 0);

    let (mut bus, mut store) = bus(&path, &ledger)?;
    for (i, (line_no, line)) in lines.iter().enumerate() {
        if i == restart_at {
            let before_restart = balances(&store, &accounts).await?;
            drop((bus, store));
            println!(
                "-- restart: the process stops; a new one opens {} --",
                path.display()
            );
            (bus, store) = self::bus(&path, &ledger)?;
            let reloaded = balances(&store, &accounts).await?;
            let same = reloaded == before_restart;
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
        let (name, json) = line.split_once(' ').unwrap_or((line, ""));
        match bus.send_json(name, json, &Context::new()).await {
            Ok(_) => {
                accepted += 1;
                if name == "Open" {
                    if let Ok(open) = serde_json::from_str::<Open>(json) {
                        accounts.push(open.account);
                    }
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
    }

    let finals = balances(&store, &accounts).await?;
    println!(
        "\n{} commands: {accepted} accepted, {refused} refused",
        lines.len()
    );
    println!(
        "{:<10} {:<18} {:>12} {:>8}",
        "account", "owner", "balance", "state"
    );
    let repo = Repository::<Account>::new(store.clone());
    let mut total = 0;
    for id in &accounts {
        let a = repo.load(id).await?.state;
        total += a.balance_cents;
        println!(
            "{:<10} {:<18} {:>12} {:>8}",
            id,
            a.owner,
            cents(a.balance_cents),
            format!("{:?}", a.state)
        );
    }
    let (deposits, withdrawals) = {
        let l = ledger.0.lock().unwrap();
        (
            l.get("deposits").copied().unwrap_or(0),
            l.get("withdrawals").copied().unwrap_or(0),
        )
    };
    println!(
        "total {} = deposits {} - withdrawals {} (from the published events): {}",
        cents(total),
        cents(deposits),
        cents(withdrawals),
        if total == deposits - withdrawals {
            "balanced"
        } else {
            "NOT BALANCED"
        }
    );
    if total != deposits - withdrawals || finals.len() != accounts.len() {
        return Err("the balances do not add up".into());
    }

    let shown = StreamId::new("Account", "acc-003");
    println!("\nthe events of {shown}:");
    for e in store.load(&shown, 0).await? {
        println!(
            "  #{:<3} {:<18} v{} {}",
            e.sequence, e.name, e.schema_version, e.payload
        );
    }
    if path == temp {
        for suffix in ["", "-wal", "-shm"] {
            std::fs::remove_file(format!("{}{suffix}", path.display())).ok();
        }
    }
    Ok(())
}
