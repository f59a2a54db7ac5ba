//! Bank accounts over HTTP: an event-sourced `Account` aggregate on SQLite (on PostgreSQL
//! with the `postgres` feature: `DATABASE_URL`, or a throwaway server), its commands and
//! its balance query served by `flext::http` from their attributes.
//!
//! ```text
//! cargo run --features http --example bank_http                # the tour below, then exit
//! cargo run --features http --example bank_http -- --serve 8080 # serve until Ctrl-C
//! cargo run --features http,postgres --example bank_http       # the same on PostgreSQL
//! ```
//!
//! The tour binds a loopback port, sends what the README shows with `curl` (open an
//! account, deposit with an `Idempotency-Key`, the same deposit repeated and answered
//! with the first response, the key reused for another amount (422), an overdraft
//! answered 422 as a problem, a balance answered 200, and an unknown account 404 to a
//! query and to a command) with a real HTTP client, prints each request and response,
//! and shuts the server down gracefully. `GET /openapi.json` serves the API's OpenAPI 3.1
//! document (`.ci/run` runs Schemathesis against it).

use std::sync::Arc;

use flext::aggregate::{Events, Repository};
use flext::prelude::*;
#[cfg(not(feature = "postgres"))]
use flext::sqlite::SqliteDatabase;
use serde::{Deserialize, Serialize};

// ------------------------------------------------------------------ messages

/// `POST /accounts/{account}`: opens an account; answers the stream's version.
#[command(output = u64, http = "POST /accounts/{account}")]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Open {
    #[aggregate_id]
    account: String,
    owner: String,
    /// How far below zero the balance may go; its range is in `/openapi.json`.
    #[schemars(range(min = 0, max = MAX_CENTS))]
    overdraft_cents: i64,
}

/// The largest amount one request moves (a billion dollars), so that no balance overflows.
const MAX_CENTS: i64 = 100_000_000_000;

/// `POST /accounts/{account}/deposits`.
#[command(output = u64, http = "POST /accounts/{account}/deposits")]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Deposit {
    #[aggregate_id]
    account: String,
    #[schemars(range(min = 1, max = MAX_CENTS))]
    cents: i64,
}

/// `POST /accounts/{account}/withdrawals`.
#[command(output = u64, http = "POST /accounts/{account}/withdrawals")]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Withdraw {
    #[aggregate_id]
    account: String,
    #[schemars(range(min = 1, max = MAX_CENTS))]
    cents: i64,
}

/// `GET /accounts/{account}`: the balance, or 404 for an account never opened.
#[query(output = Option<Balance>, http = "GET /accounts/{account}")]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GetBalance {
    account: String,
}

/// A query's output is documented in `/openapi.json`: it derives `JsonSchema`.
#[derive(Debug, Serialize, Deserialize, flext::schemars::JsonSchema)]
#[schemars(crate = "flext::schemars")]
struct Balance {
    owner: String,
    balance_cents: i64,
    version: u64,
}

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

// ------------------------------------------------------------------ the aggregate

#[aggregate]
#[derive(Debug, Default)]
struct Account {
    #[aggregate_id]
    id: String,
    owner: Option<String>,
    balance_cents: i64,
    overdraft_cents: i64,
}

#[aggregate]
impl Account {
    #[command_handler]
    fn open(&self, c: &Open) -> Result<Events<Self>> {
        if self.owner.is_some() {
            return Err(Error::conflict(
                "account.exists",
                format!("account {} already exists", self.id),
            ));
        }
        amount(c.overdraft_cents, 0)?;
        Ok(Events::one(Opened {
            owner: c.owner.clone(),
            overdraft_cents: c.overdraft_cents,
        }))
    }

    #[command_handler]
    fn deposit(&self, c: &Deposit) -> Result<Events<Self>> {
        self.require_open()?;
        amount(c.cents, 1)?;
        if self.balance_cents > i64::MAX - c.cents {
            return Err(Error::new(
                ErrorKind::RuleViolation,
                "account.balance_too_large",
                format!("{} cannot hold more", self.id),
            ));
        }
        Ok(Events::one(Deposited { cents: c.cents }))
    }

    #[command_handler]
    fn withdraw(&self, c: &Withdraw) -> Result<Events<Self>> {
        self.require_open()?;
        amount(c.cents, 1)?;
        let after = self.balance_cents - c.cents;
        if after < -self.overdraft_cents {
            return Err(Error::new(
                ErrorKind::RuleViolation,
                "account.overdraft_exceeded",
                format!(
                    "{} cannot withdraw {} cents: the balance would be {after} and the overdraft is {}",
                    self.id, c.cents, self.overdraft_cents
                ),
            ));
        }
        Ok(Events::one(Withdrawn { cents: c.cents }))
    }

    fn require_open(&self) -> Result<()> {
        match self.owner {
            Some(_) => Ok(()),
            None => Err(Error::not_found(
                "account.unknown",
                format!("no account {}", self.id),
            )),
        }
    }

    #[apply]
    fn opened(&mut self, e: &Opened) {
        self.owner = Some(e.owner.clone());
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
}

/// An amount within `min..=MAX_CENTS`, else 422.
fn amount(cents: i64, min: i64) -> Result<()> {
    if (min..=MAX_CENTS).contains(&cents) {
        return Ok(());
    }
    Err(Error::validation(
        "account.amount",
        format!("an amount is {min} to {MAX_CENTS} cents, not {cents}"),
    ))
}

#[query_handler]
async fn get_balance(
    query: GetBalance,
    accounts: State<Repository<Account>>,
) -> Result<Option<Balance>> {
    let loaded = accounts.load(&query.account).await?;
    Ok(loaded.state.owner.clone().map(|owner| Balance {
        owner,
        balance_cents: loaded.state.balance_cents,
        version: loaded.version,
    }))
}

// ------------------------------------------------------------------ the server

/// The bus and the router on `events`, keeping idempotency keys in `keys` (the same
/// database: a command's response commits with its events).
fn app(
    events: Arc<dyn flext::event_store::EventStore>,
    keys: impl flext::idempotency::IdempotencyStore,
) -> Result<flext::http::Router> {
    let bus = Bus::builder()
        .state(Repository::<Account>::new(events))
        .build()?;
    flext::http::RouterBuilder::new(bus)
        .idempotency(keys)
        .openapi("bank", "1.0.0")
        .build()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = std::env::temp_dir().join(format!("flext-bank-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::infrastructure("bank.dir", e.to_string()))?;
    // With the `postgres` feature: PostgreSQL at `DATABASE_URL`, or a throwaway server.
    #[cfg(feature = "postgres")]
    let (app, _cluster) = {
        let (url, cluster) = match std::env::var("DATABASE_URL") {
            Ok(url) => (url, None),
            Err(_) => {
                let cluster = flext::postgres::TestCluster::start()?;
                (cluster.fresh_database().await?, Some(cluster))
            }
        };
        let db = flext::postgres::PgDatabase::connect(&url).await?;
        (app(Arc::new(db.event_store()), db)?, cluster)
    };
    #[cfg(not(feature = "postgres"))]
    let app = {
        let db = SqliteDatabase::open(dir.join("bank.db"))?;
        app(Arc::new(db.event_store()?), db)?
    };
    let port = match args.as_slice() {
        [flag, port] if flag == "--serve" => port
            .parse()
            .map_err(|_| Error::validation("bank.port", "--serve takes a port number"))?,
        _ => 0,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| Error::infrastructure("bank.bind", e.to_string()))?;
    let address = listener
        .local_addr()
        .map_err(|e| Error::infrastructure("bank.bind", e.to_string()))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    if port != 0 {
        println!("serving on http://{address} (Ctrl-C stops)");
        let _ = tokio::signal::ctrl_c().await;
    } else {
        tour(&format!("http://{address}")).await?;
    }
    let _ = stop.send(());
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The README's curl lines, sent with a real client; each printed as `curl` would show it.
async fn tour(base: &str) -> Result<()> {
    let http = reqwest::Client::new();
    let steps: [(&str, &str, Option<&str>, Option<&str>); 9] = [
        (
            "POST",
            "/accounts/a-1",
            Some(r#"{"owner":"Ada","overdraft_cents":500}"#),
            None,
        ),
        (
            "POST",
            "/accounts/a-1/deposits",
            Some(r#"{"cents":2500}"#),
            Some("dep-7f3a"),
        ),
        // The client did not see the answer and sends it again: answered as the first.
        (
            "POST",
            "/accounts/a-1/deposits",
            Some(r#"{"cents":2500}"#),
            Some("dep-7f3a"),
        ),
        (
            "POST",
            "/accounts/a-1/deposits",
            Some(r#"{"cents":9999}"#),
            Some("dep-7f3a"),
        ),
        (
            "POST",
            "/accounts/a-1/withdrawals",
            Some(r#"{"cents":4000}"#),
            None,
        ),
        (
            "POST",
            "/accounts/a-1/deposits",
            Some(r#"{"cents":"lots"}"#),
            None,
        ),
        ("GET", "/accounts/a-1", None, None),
        ("GET", "/accounts/b-2", None, None),
        (
            "POST",
            "/accounts/b-2/deposits",
            Some(r#"{"cents":100}"#),
            None,
        ),
    ];
    let failed = |e: reqwest::Error| Error::infrastructure("bank.client", e.to_string());
    for (method, path, body, key) in steps {
        let url = format!("{base}{path}");
        let request = match body {
            Some(b) => {
                let keyed = key.map_or_else(String::new, |k| format!(" -H 'idempotency-key: {k}'"));
                println!(
                    "$ curl -s -X {method} localhost:8080{path} -H 'content-type: application/json'{keyed} -d '{b}'"
                );
                let request = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(b.to_owned());
                match key {
                    Some(k) => request.header("idempotency-key", k),
                    None => request,
                }
            }
            None => {
                println!("$ curl -s localhost:8080{path}");
                http.get(&url)
            }
        };
        let response = request.send().await.map_err(failed)?;
        let status = response.status().as_u16();
        let replayed = response.headers().contains_key("idempotent-replayed");
        let mut body: serde_json::Value = response.json().await.map_err(failed)?;
        // The correlation id is new on every run: shown as a placeholder.
        if let Some(id) = body.get_mut("correlation_id") {
            *id = serde_json::Value::String("…".into());
        }
        let note = if replayed {
            "   (idempotent-replayed: true)"
        } else {
            ""
        };
        println!("{status} {body}{note}\n");
    }
    Ok(())
}
