//! Idempotency keys (IETF draft-ietf-httpapi-idempotency-key-header) over a bound
//! listener, with a real HTTP client, on SQLite and on PostgreSQL: a repeat replays the
//! first response and runs nothing; the same key with another body is 422; a repeat while
//! the first runs is 409; a route that requires a key is 400 without one; a failure
//! releases its key; keys are scoped by principal. Below the HTTP layer: the response
//! commits in the transaction that appends the command's events, and a claim taken over
//! by a repeat commits nothing.
//!
//! PostgreSQL runs with `--features postgres` (a server of its own, or `DATABASE_URL`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flext::aggregate::{Events, Repository};
use flext::event_store::{EventStore, StreamId};
use flext::idempotency::{Claim, IdempotencyStore};
use flext::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[command(output = u64, http = "POST /accounts/{account}")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Open {
    #[aggregate_id]
    account: String,
}

#[command(output = u64, http = "POST /accounts/{account}/deposits")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Deposit {
    #[aggregate_id]
    account: String,
    cents: i64,
}

/// A payment: the route refuses a request without a key.
#[command(output = flext::aggregate::Appended, http = "POST /accounts/{account}/payments", idempotency_key)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pay {
    #[aggregate_id]
    account: String,
    cents: i64,
}

#[event(name = "account.opened")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Opened {}

#[event(name = "account.deposited")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Deposited {
    cents: i64,
}

#[aggregate]
#[derive(Debug, Default)]
struct Account {
    #[aggregate_id]
    id: String,
    open: bool,
}

#[aggregate]
impl Account {
    #[command_handler]
    fn open(&self, _: &Open) -> Result<Events<Self>> {
        Ok(Events::one(Opened {}))
    }

    #[command_handler]
    fn deposit(&self, c: &Deposit) -> Result<Events<Self>> {
        if !self.open {
            return Err(Error::not_found(
                "account.unknown",
                format!("no account {}", self.id),
            ));
        }
        Ok(Events::one(Deposited { cents: c.cents }))
    }

    #[command_handler]
    fn pay(&self, c: &Pay) -> Result<Events<Self>> {
        Ok(Events::one(Deposited { cents: -c.cents }))
    }

    #[apply]
    fn opened(&mut self, _: &Opened) {
        self.open = true;
    }

    #[apply]
    fn deposited(&mut self, _: &Deposited) {}
}

/// A command with no aggregate: its response is stored right after it answers.
#[command(output = usize, http = "POST /mails")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Mail {
    to: String,
}

#[derive(Default, Clone)]
struct Sent(Arc<AtomicUsize>);

/// Holds a mail until the test lets it go.
#[derive(Default, Clone)]
struct Gate {
    entered: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

#[command_handler]
async fn mail(command: Mail, sent: State<Sent>, gate: State<Gate>) -> Result<usize> {
    if command.to == "slow" {
        gate.entered.notify_one();
        gate.release.notified().await;
    }
    Ok(sent.0.fetch_add(1, Ordering::SeqCst) + 1)
}

struct App {
    base: String,
    events: Arc<dyn EventStore>,
    sent: Sent,
    gate: Gate,
}

/// The router on a loopback port, keys kept in `keys`, events in `events` (the same
/// database).
async fn serve(events: Arc<dyn EventStore>, keys: impl IdempotencyStore) -> App {
    let sent = Sent::default();
    let gate = Gate::default();
    let bus = Bus::builder()
        .state(Repository::<Account>::new(events.clone()))
        .state(sent.clone())
        .state(gate.clone())
        .build()
        .unwrap();
    let authenticate = |mut request: axum::extract::Request| async move {
        let name = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|t| t.strip_prefix("Bearer "))
            .map(str::to_owned);
        if let Some(name) = name {
            request.extensions_mut().insert(Principal::new(name));
        }
        request
    };
    let app = flext::http::RouterBuilder::new(bus)
        .idempotency(keys)
        .build()
        .unwrap()
        .layer(axum::middleware::map_request(authenticate));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    App {
        base: format!("http://{address}"),
        events,
        sent,
        gate,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Status, `idempotent-replayed`, body.
async fn post(url: &str, key: Option<&str>, body: Value, who: Option<&str>) -> (u16, bool, Value) {
    let mut request = client().post(url).json(&body);
    if let Some(k) = key {
        request = request.header("idempotency-key", k);
    }
    if let Some(w) = who {
        request = request.header("authorization", format!("Bearer {w}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let replayed = response.headers().get("idempotent-replayed").is_some();
    (status, replayed, response.json().await.unwrap())
}

/// Status and body text, with a key.
async fn post_text(url: &str, key: &str, body: Value) -> (u16, String) {
    let response = client()
        .post(url)
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn version(app: &App, account: &str) -> u64 {
    app.events
        .version(&StreamId::new("Account", account))
        .await
        .unwrap()
}

/// Every scenario, on one backend.
async fn scenarios(app: App) {
    let base = &app.base;
    let account = format!("a-{}", Uuid::new_v4().simple());
    let url = format!("{base}/accounts/{account}");
    assert_eq!(post(&url, Some("open-1"), json!({}), None).await.0, 200);

    // A repeat replays the first answer, and appends nothing.
    let deposits = format!("{url}/deposits");
    let first = post(&deposits, Some("\"dep-1\""), json!({"cents": 250}), None).await;
    assert_eq!(first, (200, false, json!(2)));
    let again = post(&deposits, Some("\"dep-1\""), json!({"cents": 250}), None).await;
    assert_eq!(again, (200, true, json!(2)), "replayed");
    assert_eq!(
        version(&app, &account).await,
        2,
        "the repeat appended nothing"
    );

    // The same key with another body: 422, nothing run.
    let (status, _, body) = post(&deposits, Some("dep-1"), json!({"cents": 999}), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("flext.idempotency.key_reused"))
    );
    assert_eq!(version(&app, &account).await, 2);

    // Keys are scoped by principal: bob's `dep-1` is his own.
    let bobs = post(&deposits, Some("dep-1"), json!({"cents": 250}), Some("bob")).await;
    assert_eq!(bobs, (200, false, json!(3)));

    // A failure releases its key: the account did not exist, then it does.
    let other = format!("{base}/accounts/b-{}", Uuid::new_v4().simple());
    let (status, _, body) = post(
        &format!("{other}/deposits"),
        Some("dep-2"),
        json!({"cents": 5}),
        None,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("account.unknown"))
    );
    assert_eq!(post(&other, None, json!({}), None).await.0, 200);
    let retried = post(
        &format!("{other}/deposits"),
        Some("dep-2"),
        json!({"cents": 5}),
        None,
    )
    .await;
    assert_eq!(
        retried,
        (200, false, json!(2)),
        "the key was released, so it ran"
    );

    // A route that requires a key: 400 without one, 400 with a malformed one.
    let payments = format!("{url}/payments");
    let (status, _, body) = post(&payments, None, json!({"cents": 1}), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("flext.input.idempotency_key_missing"))
    );
    let (status, _, body) = post(&payments, Some("bad key"), json!({"cents": 1}), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("flext.input.idempotency_key_invalid"))
    );
    // A struct answer is replayed byte for byte: the stored text is the answered text.
    let first = post_text(&payments, "pay-1", json!({"cents": 1})).await;
    assert_eq!(first.0, 200, "{}", first.1);
    assert!(first.1.contains("\"event_ids\""), "{}", first.1);
    assert_eq!(
        post_text(&payments, "pay-1", json!({"cents": 1})).await,
        first
    );
    assert_eq!(version(&app, &account).await, 4);

    // No aggregate: stored after the handler answers; a repeat while the first runs is 409.
    let mails = format!("{base}/mails");
    let entered = app.gate.entered.notified();
    let slow = tokio::spawn({
        let mails = mails.clone();
        async move { post(&mails, Some("mail-1"), json!({"to": "slow"}), None).await }
    });
    entered.await;
    let (status, _, body) = post(&mails, Some("mail-1"), json!({"to": "slow"}), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("flext.idempotency.in_flight"))
    );
    app.gate.release.notify_one();
    assert_eq!(slow.await.unwrap(), (200, false, json!(1)));
    let repeat = post(&mails, Some("mail-1"), json!({"to": "slow"}), None).await;
    assert_eq!(repeat, (200, true, json!(1)));
    assert_eq!(
        app.sent.0.load(Ordering::SeqCst),
        1,
        "the mail was sent once"
    );
}

/// The claim completes in the append's transaction; a claim taken over commits nothing.
async fn in_the_commands_transaction(events: Arc<dyn EventStore>, keys: impl IdempotencyStore) {
    let bus = Bus::builder()
        .state(Repository::<Account>::new(events.clone()))
        .state(Sent::default())
        .state(Gate::default())
        .build()
        .unwrap();
    let account = format!("c-{}", Uuid::new_v4().simple());
    bus.send(
        Open {
            account: account.clone(),
        },
        &Context::new(),
    )
    .await
    .unwrap();

    let Claim::Claimed(claim) = keys.claim("s", "k-1", "f", 60_000, 60_000).await.unwrap() else {
        panic!("a new key is claimed")
    };
    let claim = Arc::new(claim.answering(200, None, "Deposit"));
    let ctx = Context::new().with_idempotency_claim(claim.clone());
    let deposit = Deposit {
        account: account.clone(),
        cents: 1,
    };
    assert_eq!(bus.send(deposit.clone(), &ctx).await.unwrap(), 2);
    assert!(claim.is_completed(), "the append stored the response");
    match keys.claim("s", "k-1", "f", 60_000, 60_000).await.unwrap() {
        Claim::Replay(r) => assert_eq!((r.status, r.body.as_str()), (200, "2")),
        other => panic!("expected a replay, got {other:?}"),
    }

    // A claim whose in-flight time ran out is taken over by a repeat: the first holder's
    // append is refused, and nothing of it is stored.
    let Claim::Claimed(stale) = keys.claim("s", "k-2", "f", 0, 60_000).await.unwrap() else {
        panic!("a new key is claimed")
    };
    let Claim::Claimed(_) = keys.claim("s", "k-2", "f", 60_000, 60_000).await.unwrap() else {
        panic!("a claim past its in-flight time is taken over")
    };
    let stale = Arc::new(stale.answering(200, None, "Deposit"));
    let ctx = Context::new().with_idempotency_claim(stale.clone());
    let e = bus.send(deposit, &ctx).await.unwrap_err();
    assert_eq!(e.code(), "flext.idempotency.claim_lost", "{e}");
    assert_eq!(
        events
            .version(&StreamId::new("Account", &account))
            .await
            .unwrap(),
        2,
        "the fenced-out append committed nothing"
    );
    assert!(matches!(
        keys.claim("s", "k-2", "f", 60_000, 60_000).await.unwrap(),
        Claim::InFlight
    ));

    // A key kept 0 ms has expired by its repeat: the repeat runs as new.
    let Claim::Claimed(brief) = keys.claim("s", "k-3", "f", 60_000, 0).await.unwrap() else {
        panic!("a new key is claimed")
    };
    let done = flext::idempotency::Response::new(200, "1", None);
    assert!(keys.complete(&brief, &done).await.unwrap());
    assert!(matches!(
        keys.claim("s", "k-3", "f", 60_000, 60_000).await.unwrap(),
        Claim::Claimed(_)
    ));
}

#[tokio::test]
async fn idempotency_keys_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("flext-idem-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = flext::sqlite::SqliteDatabase::open(dir.join("keys.db")).unwrap();
    let events: Arc<dyn EventStore> = Arc::new(db.event_store().unwrap());
    scenarios(serve(events.clone(), db.clone()).await).await;
    in_the_commands_transaction(events, db).await;
    std::fs::remove_dir_all(&dir).ok();
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn idempotency_keys_on_postgres() {
    let cluster = flext::postgres::TestCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let url = cluster.fresh_database().await.unwrap();
    let db = flext::postgres::PgDatabase::connect(&url).await.unwrap();
    let events: Arc<dyn EventStore> = Arc::new(db.event_store());
    scenarios(serve(events.clone(), db.clone()).await).await;
    in_the_commands_transaction(events, db).await;
}
