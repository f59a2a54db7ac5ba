//! Event-sourced aggregates as users rely on them: a bank account decided through the
//! bus (load, decide, append, publish), the envelopes it leaves in the store, upcasting
//! of old events, snapshots that give the same state as a full replay, retries on
//! conflict under concurrent writers, and the given/when/then fixture.

use std::sync::{Arc, Mutex};

use flext::aggregate::{Events, Fixture, Repository};
use flext::codes;
#[cfg(feature = "sqlite")]
use flext::event_store::SqliteEventStore;
use flext::event_store::{EventStore, MemoryEventStore, NewEvent, StreamId, Upcasters};
use flext::prelude::*;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

// ------------------------------------------------------------------------ the domain

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Open {
    #[aggregate_id]
    account: String,
    owner: String,
    overdraft_cents: i64,
}

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Deposit {
    #[aggregate_id]
    account: String,
    cents: i64,
}

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Withdraw {
    #[aggregate_id]
    account: String,
    cents: i64,
}

#[command(output = ())]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Close {
    #[aggregate_id]
    account: String,
}

#[event(name = "account.opened")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Opened {
    owner: String,
    overdraft_cents: i64,
}

/// Version 3: version 1 had `amount` in whole euros, version 2 `amount_cents` without a
/// currency.
#[event(name = "account.deposited", version = 3)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Deposited {
    amount_cents: i64,
    currency: String,
}

#[event(name = "account.withdrawn")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Withdrawn {
    cents: i64,
}

#[event(name = "account.closed")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Closed {
    balance_cents: i64,
}

#[aggregate(snapshot_every = 5)]
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Account {
    #[aggregate_id]
    id: String,
    owner: String,
    open: bool,
    closed: bool,
    balance_cents: i64,
    overdraft_cents: i64,
    /// How many events made this state: a replay and a snapshot must agree on it.
    applied: u64,
}

#[aggregate]
impl Account {
    #[command_handler]
    fn open(&self, command: &Open) -> Result<Events<Self>> {
        if self.open || self.closed {
            return Err(Error::conflict(
                "account.exists",
                format!("account {} exists", self.id),
            ));
        }
        Ok(Events::one(Opened {
            owner: command.owner.clone(),
            overdraft_cents: command.overdraft_cents,
        }))
    }

    #[command_handler]
    fn deposit(&self, command: &Deposit) -> Result<Events<Self>> {
        self.require_open()?;
        if command.cents <= 0 {
            return Err(Error::validation(
                "account.bad_amount",
                "deposit a positive amount",
            ));
        }
        Ok(Events::one(Deposited {
            amount_cents: command.cents,
            currency: "EUR".into(),
        }))
    }

    /// Business rules run before the command method of their command, all of them, with
    /// every violation collected, as a service's rules do.
    #[business_rule(code = "account.deposit_limit")]
    fn below_the_deposit_limit(&self, command: &Deposit) -> RuleResult {
        ensure!(
            command.cents <= 1_000_000,
            "a deposit is at most 10000.00, not {}",
            command.cents
        )
    }

    #[business_rule]
    fn owner_may_deposit(&self, command: &Deposit) -> RuleResult {
        ensure!(
            self.owner != "blocked" || command.cents < 100,
            code = "account.owner_blocked",
            "{} is blocked from deposits of 1.00 or more",
            self.owner
        )
    }

    #[command_handler]
    fn withdraw(&self, command: &Withdraw, ctx: &Context) -> Result<Events<Self>> {
        self.require_open()?;
        let _ = ctx.correlation_id();
        if command.cents <= 0 {
            return Err(Error::validation(
                "account.bad_amount",
                "withdraw a positive amount",
            ));
        }
        if self.balance_cents - command.cents < -self.overdraft_cents {
            return Err(Error::new(
                ErrorKind::RuleViolation,
                "account.overdraft",
                format!(
                    "withdrawing {} would take account {} past its overdraft of {}",
                    command.cents, self.id, self.overdraft_cents
                ),
            ));
        }
        Ok(Events::one(Withdrawn {
            cents: command.cents,
        }))
    }

    #[command_handler]
    fn close(&self, _command: &Close) -> Result<Events<Self>> {
        self.require_open()?;
        Ok(Events::one(Closed {
            balance_cents: self.balance_cents,
        }))
    }

    fn require_open(&self) -> Result<()> {
        if !self.open {
            return Err(Error::conflict(
                "account.not_open",
                format!("account {} is not open", self.id),
            ));
        }
        Ok(())
    }

    #[apply]
    fn opened(&mut self, e: &Opened) {
        self.open = true;
        self.owner.clone_from(&e.owner);
        self.overdraft_cents = e.overdraft_cents;
        self.applied += 1;
    }

    #[apply]
    fn deposited(&mut self, e: &Deposited) {
        self.balance_cents += e.amount_cents;
        self.applied += 1;
    }

    #[apply]
    fn withdrawn(&mut self, e: &Withdrawn) {
        self.balance_cents -= e.cents;
        self.applied += 1;
    }

    #[apply]
    fn closed(&mut self, _: &Closed) {
        self.open = false;
        self.closed = true;
        self.applied += 1;
    }
}

/// What subscribers saw, in order.
#[derive(Default)]
struct Seen(Mutex<Vec<String>>);

#[event_handler]
fn on_deposited(e: Deposited, seen: State<Seen>) -> Result<()> {
    seen.0
        .lock()
        .unwrap()
        .push(format!("deposited {}", e.amount_cents));
    Ok(())
}

fn upcasters() -> Upcasters {
    Upcasters::new()
        .register("account.deposited", 1, |mut v| {
            let euros = v["amount"].as_i64().unwrap_or(0);
            v["amount_cents"] = serde_json::json!(euros * 100);
            Ok(v)
        })
        .register("account.deposited", 2, |mut v| {
            v["currency"] = serde_json::json!("EUR");
            Ok(v)
        })
}

fn bus(store: Arc<dyn EventStore>, seen: &Arc<Seen>) -> Bus {
    Bus::builder()
        .state(Repository::<Account>::new(store).upcasters(upcasters()))
        .shared_state(seen.clone())
        .build()
        .unwrap()
}

fn open(account: &str) -> Open {
    Open {
        account: account.into(),
        owner: "ada".into(),
        overdraft_cents: 1_000,
    }
}

// ------------------------------------------------------------------- through the bus

async fn bus_contract(store: Arc<dyn EventStore>) {
    let seen = Arc::new(Seen::default());
    let bus = bus(store.clone(), &seen);
    let ctx = Context::new();
    assert_eq!(bus.send(open("a-1"), &ctx).await.unwrap(), 1);
    let deposit = Deposit {
        account: "a-1".into(),
        cents: 2_500,
    };
    assert_eq!(bus.send(deposit.clone(), &ctx).await.unwrap(), 2);
    assert_eq!(bus.send_local(deposit, &ctx).await.unwrap(), 3);
    let withdraw = |cents| Withdraw {
        account: "a-1".into(),
        cents,
    };
    assert_eq!(bus.send(withdraw(5_000), &ctx).await.unwrap(), 4);
    let refused = bus.send(withdraw(2_000), &ctx).await.unwrap_err();
    assert_eq!(refused.code(), "account.overdraft", "{refused}");
    let not_open = bus
        .send(
            Deposit {
                account: "a-2".into(),
                cents: 1,
            },
            &ctx,
        )
        .await
        .unwrap_err();
    assert_eq!(not_open.code(), "account.not_open");

    // Published after each append, in order.
    assert_eq!(
        *seen.0.lock().unwrap(),
        ["deposited 2500", "deposited 2500"]
    );
    // The store holds the envelopes: names, versions, sequence, the context's ids.
    let stream = StreamId::new("Account", "a-1");
    let events = store.load(&stream, 0).await.unwrap();
    let names: Vec<(&str, u32, u64)> = events
        .iter()
        .map(|e| (e.name.as_str(), e.schema_version, e.sequence))
        .collect();
    assert_eq!(
        names,
        [
            ("account.opened", 1, 1),
            ("account.deposited", 3, 2),
            ("account.deposited", 3, 3),
            ("account.withdrawn", 1, 4)
        ]
    );
    assert!(
        events
            .iter()
            .all(|e| e.correlation_id == ctx.correlation_id())
    );
    assert!(events.iter().all(|e| e.causation_id.is_some()));
    assert_eq!(
        events[1].payload,
        serde_json::json!({ "amount_cents": 2500, "currency": "EUR" })
    );
    let loaded = Repository::<Account>::new(store.clone())
        .load("a-1")
        .await
        .unwrap();
    assert_eq!(
        (
            loaded.version,
            loaded.state.balance_cents,
            loaded.state.owner.as_str()
        ),
        (4, 0, "ada")
    );
    bus.send(
        Close {
            account: "a-1".into(),
        },
        &ctx,
    )
    .await
    .unwrap();
    let again = bus.send(open("a-1"), &ctx).await.unwrap_err();
    assert_eq!(again.code(), "account.exists");
}

#[tokio::test]
async fn commands_load_decide_append_and_publish_on_the_memory_store() {
    bus_contract(Arc::new(MemoryEventStore::new())).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn commands_load_decide_append_and_publish_on_the_sqlite_store() {
    bus_contract(Arc::new(SqliteEventStore::in_memory().unwrap())).await;
}

#[tokio::test]
async fn a_bus_without_the_repository_says_which_state_to_add() {
    let err = Bus::builder()
        .shared_state(Arc::new(Seen::default()))
        .build()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("Repository<test_aggregate::Account>"),
        "{err}"
    );
}

// ------------------------------------------------------------------------ upcasting

#[tokio::test]
async fn old_events_are_upcast_on_load_through_every_version() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let stream = StreamId::new("Account", "old");
    let ctx = Context::new();
    let stored = |name: &str, version, payload| NewEvent::new(name, version, payload, &ctx);
    store
        .append(
            &stream,
            0,
            &[
                stored(
                    "account.opened",
                    1,
                    serde_json::json!({ "owner": "bo", "overdraft_cents": 0 }),
                ),
                stored("account.deposited", 1, serde_json::json!({ "amount": 7 })),
                stored(
                    "account.deposited",
                    2,
                    serde_json::json!({ "amount_cents": 50 }),
                ),
                stored(
                    "account.deposited",
                    3,
                    serde_json::json!({ "amount_cents": 1, "currency": "EUR" }),
                ),
            ],
        )
        .await
        .unwrap();
    let loaded = Repository::<Account>::new(store.clone())
        .upcasters(upcasters())
        .load("old")
        .await
        .unwrap();
    assert_eq!(loaded.state.balance_cents, 751);

    // Without the upcasters, the error names the event and the version.
    let err = Repository::<Account>::new(store.clone())
        .load("old")
        .await
        .unwrap_err();
    assert_eq!(err.code(), codes::EVENT_NO_UPCASTER);
    assert!(
        err.message().contains("`account.deposited`") && err.message().contains("version 1"),
        "{err}"
    );

    // An event the aggregate does not apply, and one from a newer program.
    for (name, version, code) in [
        ("account.frozen", 1, codes::EVENT_UNKNOWN),
        ("account.deposited", 4, codes::EVENT_VERSION_TOO_NEW),
    ] {
        let stream = StreamId::new("Account", format!("odd-{version}"));
        store
            .append(&stream, 0, &[stored(name, version, serde_json::json!({}))])
            .await
            .unwrap();
        let err = Repository::<Account>::new(store.clone())
            .upcasters(upcasters())
            .load(&stream.aggregate_id)
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{err}");
        assert!(err.message().contains(name), "{err}");
    }
}

// ------------------------------------------------------------------------ snapshots

#[derive(Debug, Clone)]
enum Op {
    Deposit(i64),
    Withdraw(i64),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            (1i64..500).prop_map(Op::Deposit),
            (1i64..800).prop_map(Op::Withdraw),
        ],
        0..40,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// For random command sequences, the state loaded through snapshots (one every 5
    /// events) equals a full replay of the stream, at the same version.
    #[test]
    fn a_snapshot_load_equals_a_full_replay(ops in ops()) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
            let repo = Repository::<Account>::new(store.clone());
            let ctx = Context::new();
            repo.execute(&open("p"), &ctx).await.unwrap();
            for op in &ops {
                // Refused withdrawals append nothing; that is part of the sequence.
                let _ = match op {
                    Op::Deposit(c) => repo.execute(&Deposit { account: "p".into(), cents: *c }, &ctx).await.map(|_| ()),
                    Op::Withdraw(c) => repo.execute(&Withdraw { account: "p".into(), cents: *c }, &ctx).await.map(|_| ()),
                };
            }
            let with_snapshots = repo.load("p").await.unwrap();
            // A full replay: the same events applied from an empty state.
            let mut replayed = Account::default();
            flext::aggregate::AggregateRoot::set_aggregate_id(&mut replayed, "p").unwrap();
            for e in store.load(&StreamId::new("Account", "p"), 0).await.unwrap() {
                flext::aggregate::Aggregate::apply_stored(&mut replayed, &e.name, &e.payload).unwrap();
            }
            let version = store.version(&StreamId::new("Account", "p")).await.unwrap();
            prop_assert_eq!(with_snapshots.version, version);
            prop_assert_eq!(&with_snapshots.state, &replayed);
            prop_assert_eq!(replayed.applied, version);
            if version >= 5 {
                let snapshot = store.load_snapshot(&StreamId::new("Account", "p")).await.unwrap();
                prop_assert!(snapshot.is_some(), "a snapshot was taken by version {}", version);
            }
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn a_snapshot_that_no_longer_decodes_is_skipped_for_a_full_replay() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let repo = Repository::<Account>::new(store.clone());
    let ctx = Context::new();
    repo.execute(&open("s"), &ctx).await.unwrap();
    for _ in 0..6 {
        repo.execute(
            &Deposit {
                account: "s".into(),
                cents: 10,
            },
            &ctx,
        )
        .await
        .unwrap();
    }
    let stream = StreamId::new("Account", "s");
    let mut snapshot = store.load_snapshot(&stream).await.unwrap().unwrap();
    snapshot.state = serde_json::json!({ "unexpected": true });
    snapshot.version += 1;
    store.save_snapshot(&snapshot).await.unwrap();
    let loaded = repo.load("s").await.unwrap();
    assert_eq!((loaded.version, loaded.state.balance_cents), (7, 60));
}

// ----------------------------------------------------------------------- concurrency

/// Eight tasks deposit into one account at once through repositories that retry on
/// conflict: every deposit lands once, and the stream has no gap.
async fn retry_contract(store: Arc<dyn EventStore>) {
    let ctx = Context::new();
    Repository::<Account>::new(store.clone())
        .execute(&open("hot"), &ctx)
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..8i64 {
        let repo = Repository::<Account>::new(store.clone()).retry_on_conflict(1_000);
        tasks.spawn(async move {
            let mut attempts = 0;
            for n in 0..10 {
                let done = repo
                    .execute(
                        &Deposit {
                            account: "hot".into(),
                            cents: t * 100 + n + 1,
                        },
                        &Context::new(),
                    )
                    .await
                    .unwrap();
                attempts += done.attempts;
                tokio::task::yield_now().await;
            }
            attempts
        });
    }
    let mut attempts = 0;
    while let Some(done) = tasks.join_next().await {
        attempts += done.unwrap();
    }
    assert!(attempts >= 80);
    let loaded = Repository::<Account>::new(store.clone())
        .load("hot")
        .await
        .unwrap();
    let expected: i64 = (0..8i64)
        .flat_map(|t| (0..10).map(move |n| t * 100 + n + 1))
        .sum();
    assert_eq!(loaded.version, 81);
    assert_eq!(loaded.state.balance_cents, expected);

    // Without retries, a lost race is the caller's conflict.
    let repo = Repository::<Account>::new(store.clone());
    let stale = repo.load("hot").await.unwrap();
    store
        .append(
            &StreamId::new("Account", "hot"),
            stale.version,
            &[NewEvent::new(
                "account.withdrawn",
                1,
                serde_json::json!({ "cents": 1 }),
                &ctx,
            )],
        )
        .await
        .unwrap();
    let loaded_again = repo.load("hot").await.unwrap();
    assert_eq!(loaded_again.version, stale.version + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_retry_on_conflict_on_the_memory_store() {
    retry_contract(Arc::new(MemoryEventStore::new())).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_retry_on_conflict_on_the_sqlite_store() {
    retry_contract(Arc::new(SqliteEventStore::in_memory().unwrap())).await;
}

// -------------------------------------------------------------------------- fixtures

fn opened() -> Opened {
    Opened {
        owner: "ada".into(),
        overdraft_cents: 100,
    }
}

#[test]
fn given_events_when_a_command_then_its_events() {
    let account = Fixture::<Account>::given(Events::one(opened()).and(Deposited {
        amount_cents: 50,
        currency: "EUR".into(),
    }))
    .when(Withdraw {
        account: "f-1".into(),
        cents: 120,
    })
    .then_expect(Events::one(Withdrawn { cents: 120 }));
    assert_eq!(
        (account.id.as_str(), account.balance_cents, account.applied),
        ("f-1", -70, 3)
    );
}

#[test]
fn an_aggregates_business_rules_run_before_its_command_and_report_every_violation() {
    let blocked = Opened {
        owner: "blocked".into(),
        overdraft_cents: 0,
    };
    let err = Fixture::<Account>::given(Events::one(blocked.clone()))
        .when(Deposit {
            account: "r-1".into(),
            cents: 2_000_000,
        })
        .then_expect_error(codes::RULE_VIOLATED);
    let codes: Vec<&str> = err.violations().iter().map(|v| &*v.code).collect();
    assert_eq!(codes, ["account.deposit_limit", "account.owner_blocked"]);
    // Rules that hold let the command method decide.
    Fixture::<Account>::given(Events::one(blocked))
        .when(Deposit {
            account: "r-1".into(),
            cents: 50,
        })
        .then_expect(Events::one(Deposited {
            amount_cents: 50,
            currency: "EUR".into(),
        }));
}

#[test]
fn given_events_when_a_refused_command_then_its_error() {
    Fixture::<Account>::given(Events::one(opened()))
        .when(Withdraw {
            account: "f-1".into(),
            cents: 101,
        })
        .then_expect_error("account.overdraft");
    Fixture::<Account>::given_no_events()
        .when(Deposit {
            account: "f-2".into(),
            cents: 1,
        })
        .then_expect_error("account.not_open");
}

#[test]
fn given_commands_build_the_history() {
    Fixture::<Account>::given_command(open("f-3"))
        .and_command(Deposit {
            account: "f-3".into(),
            cents: 40,
        })
        .when(Close {
            account: "f-3".into(),
        })
        .then_expect(Events::one(Closed { balance_cents: 40 }));
}

#[test]
#[should_panic(expected = "raised other events than expected")]
fn a_fixture_fails_when_other_events_are_raised() {
    Fixture::<Account>::given(Events::one(opened()))
        .when(Deposit {
            account: "f-4".into(),
            cents: 5,
        })
        .then_expect(Events::one(Deposited {
            amount_cents: 6,
            currency: "EUR".into(),
        }));
}

#[test]
#[should_panic(expected = "expected error `account.overdraft`")]
fn a_fixture_fails_when_an_expected_error_does_not_happen() {
    Fixture::<Account>::given(Events::one(opened()))
        .when(Deposit {
            account: "f-5".into(),
            cents: 5,
        })
        .then_expect_error("account.overdraft");
}

// ---------------------------------------------------------------------------- cache

/// A caching repository decides from memory, and a write behind its back (another
/// process) is caught by the expected version: the command is decided again from the
/// store, never on the stale state.
#[tokio::test]
async fn a_cached_aggregate_made_stale_by_another_writer_is_reloaded() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let cached = Repository::<Account>::new(store.clone())
        .cache(16)
        .retry_on_conflict(1);
    let ctx = Context::new();
    cached.execute(&open("c-1"), &ctx).await.unwrap();
    let deposit = |cents| Deposit {
        account: "c-1".into(),
        cents,
    };
    cached.execute(&deposit(100), &ctx).await.unwrap();
    // Another process withdraws 1,000 (the overdraft allows it).
    let other = Repository::<Account>::new(store.clone());
    other
        .execute(
            &Withdraw {
                account: "c-1".into(),
                cents: 1_000,
            },
            &ctx,
        )
        .await
        .unwrap();
    // The cached state says +100; the store says -900. A withdrawal of 200 is fine on
    // the cached state and past the overdraft on the real one.
    let refused = cached
        .execute(
            &Withdraw {
                account: "c-1".into(),
                cents: 200,
            },
            &ctx,
        )
        .await
        .expect_err("decided again on the real balance");
    assert_eq!(refused.code(), "account.overdraft");
    let done = cached.execute(&deposit(50), &ctx).await.unwrap();
    assert_eq!(done.state.balance_cents, -850);
    assert_eq!(done.appended.version, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_through_one_caching_repository_lose_nothing() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let repo = Repository::<Account>::new(store.clone())
        .cache(4)
        .retry_on_conflict(1_000);
    repo.execute(&open("hot"), &Context::new()).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..8i64 {
        let repo = repo.clone();
        tasks.spawn(async move {
            for n in 0..10 {
                repo.execute(
                    &Deposit {
                        account: "hot".into(),
                        cents: t * 100 + n + 1,
                    },
                    &Context::new(),
                )
                .await
                .unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let loaded = Repository::<Account>::new(store).load("hot").await.unwrap();
    let expected: i64 = (0..8i64)
        .flat_map(|t| (0..10).map(move |n| t * 100 + n + 1))
        .sum();
    assert_eq!((loaded.version, loaded.state.balance_cents), (81, expected));
}
