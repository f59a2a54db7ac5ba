//! The bus as users rely on it: typed dispatch, fan-out isolation, context propagation,
//! every built-in middleware, the dynamic JSON entry's bad inputs, the registry report,
//! and the errors of bus construction.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flext::codes;
use flext::middleware::{
    Authorize, Dispatch, Interceptor, Metrics, Middleware, Next, Output, Retry, Timeout, Validation,
};
use flext::prelude::*;
use flext::{BoxFuture, HandlerRegistration};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------- messages and handlers

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Deposit {
    account: String,
    cents: u64,
}

/// Balances by account.
#[derive(Default)]
struct Ledger(Mutex<std::collections::HashMap<String, u64>>);

#[command_handler]
fn deposit(cmd: Deposit, ledger: State<Ledger>) -> Result<u64> {
    let mut balances = ledger.0.lock().unwrap();
    let balance = balances.entry(cmd.account).or_default();
    *balance += cmd.cents;
    Ok(*balance)
}

#[query(output = Option<u64>)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Balance {
    account: String,
}

#[query_handler]
async fn balance(q: Balance, ledger: State<Ledger>) -> Result<Option<u64>> {
    Ok(ledger.0.lock().unwrap().get(&q.account).copied())
}

#[command(output = ())]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Explode;

#[command_handler]
fn explode(_: Explode) -> Result<()> {
    panic!("the handler blew up")
}

/// No handler anywhere in this test binary.
#[command(output = ())]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Unhandled;

// Fan-out: three subscribers, one fails, one panics.

#[event(name = "account.opened")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AccountOpened {
    account: String,
}

#[derive(Default)]
struct Seen(Mutex<Vec<String>>);

#[event_handler]
fn record_opening(e: AccountOpened, seen: State<Seen>) -> Result<()> {
    seen.0
        .lock()
        .unwrap()
        .push(format!("recorded {}", e.account));
    Ok(())
}

#[event_handler]
async fn notify_owner(e: AccountOpened) -> Result<()> {
    Err(Error::infrastructure(
        "mail.down",
        format!("cannot notify the owner of {}", e.account),
    ))
}

#[event_handler]
async fn crash_on_opening(_: AccountOpened) -> Result<()> {
    panic!("subscriber crashed")
}

#[event_handler]
fn audit_opening(e: AccountOpened, seen: State<Seen>) -> Result<()> {
    seen.0
        .lock()
        .unwrap()
        .push(format!("audited {}", e.account));
    Ok(())
}

// Context propagation over three hops: Transfer -> Withdraw -> MoneyMoved.

#[derive(Default)]
struct Contexts(Mutex<Vec<(&'static str, Context)>>);

#[command(output = ())]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Transfer;

#[command(output = ())]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Withdraw;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MoneyMoved;

#[command_handler]
async fn transfer(_: Transfer, ctx: &Context, bus: &Bus, seen: State<Contexts>) -> Result<()> {
    seen.0.lock().unwrap().push(("transfer", ctx.clone()));
    bus.send(Withdraw, ctx).await
}

#[command_handler]
async fn withdraw(_: Withdraw, ctx: &Context, bus: &Bus, seen: State<Contexts>) -> Result<()> {
    seen.0.lock().unwrap().push(("withdraw", ctx.clone()));
    let report = bus.publish(MoneyMoved, ctx).await;
    assert!(report.is_success());
    Ok(())
}

#[event_handler]
fn money_moved(_: MoneyMoved, ctx: &Context, seen: State<Contexts>) -> Result<()> {
    seen.0.lock().unwrap().push(("money_moved", ctx.clone()));
    Ok(())
}

// Middleware targets.

#[command(output = u32, idempotent)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Flaky {
    fail_times: u32,
}

#[command(output = u32)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct NotIdempotent;

#[derive(Default)]
struct Attempts(AtomicU32);

#[command_handler]
fn flaky(cmd: Flaky, attempts: State<Attempts>) -> Result<u32> {
    let n = attempts.0.fetch_add(1, Ordering::SeqCst) + 1;
    if n <= cmd.fail_times {
        Err(Error::infrastructure(
            "db.unavailable",
            format!("attempt {n} failed"),
        ))
    } else {
        Ok(n)
    }
}

#[command_handler]
fn not_idempotent(_: NotIdempotent, attempts: State<Attempts>) -> Result<u32> {
    attempts.0.fetch_add(1, Ordering::SeqCst);
    Err(Error::infrastructure("db.unavailable", "always fails"))
}

#[query(output = (), timeout_ms = 50)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Slow;

#[query_handler]
async fn slow(_: Slow, ctx: &Context) -> Result<()> {
    assert!(
        ctx.deadline().is_some(),
        "the handler sees the tightened deadline"
    );
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Ok(())
}

#[command(output = String, validate)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OpenAccount {
    owner: String,
    initial_cents: i64,
}

#[business_rules]
impl OpenAccount {
    #[business_rule(code = "account.owner.required")]
    fn owner_present(&self) -> RuleResult {
        ensure!(!self.owner.trim().is_empty(), "an owner is required")
    }

    #[business_rule(code = "account.initial.non_negative")]
    fn initial_non_negative(&self) -> RuleResult {
        ensure!(
            self.initial_cents >= 0,
            "the initial deposit cannot be negative"
        )
    }
}

#[command_handler]
fn open_account(cmd: OpenAccount, seen: State<Seen>) -> Result<String> {
    seen.0
        .lock()
        .unwrap()
        .push(format!("opened for {}", cmd.owner));
    Ok(format!("acct-{}", cmd.owner.to_lowercase()))
}

// Two handlers of one command, in a module the other tests filter out. `external` keeps
// the compile-time check out of the way so that the bus's own check can be seen.
mod duplicates {
    use super::*;

    #[command(output = ())]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Archive;

    #[command_handler(external)]
    fn archive_fast(_: Archive) -> Result<()> {
        Ok(())
    }

    #[command_handler(external)]
    fn archive_slow(_: Archive) -> Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------- helpers

fn not_duplicates(h: &HandlerRegistration) -> bool {
    !h.module().ends_with("duplicates")
}

fn builder() -> flext::BusBuilder {
    Bus::builder()
        .filter(not_duplicates)
        .state(Ledger::default())
        .state(Seen::default())
        .state(Contexts::default())
        .state(Attempts::default())
}

// ---------------------------------------------------------------- typed dispatch

#[tokio::test]
async fn typed_send_and_query_return_the_handlers_output() {
    let bus = builder().build().unwrap();
    let ctx = Context::new();
    let dep = |cents| Deposit {
        account: "acme".into(),
        cents,
    };
    assert_eq!(bus.send(dep(500), &ctx).await.unwrap(), 500);
    assert_eq!(bus.send(dep(250), &ctx).await.unwrap(), 750);
    assert_eq!(
        bus.query(
            Balance {
                account: "acme".into()
            },
            &ctx
        )
        .await
        .unwrap(),
        Some(750)
    );
    assert_eq!(
        bus.query(
            Balance {
                account: "none".into()
            },
            &ctx
        )
        .await
        .unwrap(),
        None
    );

    let handle = bus.command_handle::<Deposit>().unwrap();
    assert_eq!(handle.call(dep(1), &ctx).await.unwrap(), 751);
}

#[tokio::test]
async fn send_local_calls_the_handler_the_compiler_resolved() {
    let ledger = Arc::new(Ledger::default());
    let bus = builder()
        .shared_state(ledger.clone())
        .record_stats(false)
        .build()
        .unwrap();
    let ctx = Context::new();
    assert_eq!(
        bus.send_local(
            Deposit {
                account: "s".into(),
                cents: 7
            },
            &ctx
        )
        .await
        .unwrap(),
        7
    );
    assert_eq!(
        bus.send_local(
            Balance {
                account: "s".into()
            },
            &ctx
        )
        .await
        .unwrap(),
        Some(7)
    );
    assert_eq!(
        ledger.0.lock().unwrap().get("s"),
        Some(&7),
        "the bus's state was used"
    );
    let err = bus.send_local(Explode, &ctx).await.unwrap_err();
    assert_eq!(err.code(), codes::BUS_HANDLER_PANICKED);

    // With middleware, the dispatch goes through it like `send`.
    let bus = builder()
        .middleware(Authorize::require_role("teller"))
        .build()
        .unwrap();
    let err = bus
        .send_local(
            Deposit {
                account: "s".into(),
                cents: 7,
            },
            &ctx,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
}

#[tokio::test]
async fn a_message_without_handler_is_a_not_found_error_naming_it() {
    let bus = builder().build().unwrap();
    let err = bus.send(Unhandled, &Context::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.code(), codes::BUS_NO_HANDLER);
    assert!(err.message().contains("command `Unhandled`"), "{err}");
    assert_eq!(
        bus.command_handle::<Unhandled>().err().map(|e| e.kind()),
        Some(ErrorKind::NotFound)
    );
}

#[tokio::test]
async fn a_panicking_handler_is_an_error_and_the_bus_keeps_serving() {
    let bus = builder().build().unwrap();
    let err = bus.send(Explode, &Context::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert_eq!(err.code(), codes::BUS_HANDLER_PANICKED);
    assert!(err.message().contains("the handler blew up"), "{err}");
    let ok = bus
        .send(
            Deposit {
                account: "x".into(),
                cents: 1,
            },
            &Context::new(),
        )
        .await;
    assert_eq!(ok.unwrap(), 1);
}

// ---------------------------------------------------------------- fan-out

#[tokio::test]
async fn a_failing_and_a_panicking_subscriber_do_not_stop_the_others() {
    let bus = builder().build().unwrap();
    let report = bus
        .publish(
            AccountOpened {
                account: "a-1".into(),
            },
            &Context::new(),
        )
        .await;
    assert_eq!(report.event, "account.opened");
    // Subscribers run in source order.
    let handlers: Vec<_> = report.outcomes.iter().map(|o| o.handler).collect();
    assert_eq!(
        handlers,
        [
            "record_opening",
            "notify_owner",
            "crash_on_opening",
            "audit_opening"
        ]
    );
    assert!(!report.is_success());
    let failures: Vec<(&str, String)> = report
        .failures()
        .map(|(h, e)| (h, e.code().to_owned()))
        .collect();
    assert_eq!(
        failures,
        [
            ("notify_owner", "mail.down".to_owned()),
            ("crash_on_opening", codes::BUS_HANDLER_PANICKED.to_owned())
        ]
    );
    // The report serialises for an operator.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["outcomes"][2]["error"]["kind"], "internal");
}

#[tokio::test]
async fn the_subscribers_effects_happen_despite_the_failures() {
    let bus = builder().build().unwrap();
    bus.publish(
        AccountOpened {
            account: "a-2".into(),
        },
        &Context::new(),
    )
    .await;
    let report = bus.report();
    let audit = report
        .handlers
        .iter()
        .find(|h| h.handler == "audit_opening")
        .unwrap();
    assert_eq!((audit.count, audit.failures), (1, 0));
    let crash = report
        .handlers
        .iter()
        .find(|h| h.handler == "crash_on_opening")
        .unwrap();
    assert_eq!((crash.count, crash.failures), (1, 1));
    assert!(
        crash
            .last_error
            .as_deref()
            .unwrap()
            .contains("subscriber crashed")
    );
}

// ---------------------------------------------------------------- context propagation

#[tokio::test]
async fn context_propagates_over_three_hops() {
    let bus = builder().build().unwrap();
    let root = Context::new().with_principal(Principal::new("teller-7"));
    bus.send(Transfer, &root).await.unwrap();

    // (handler, id, correlation id, causation id, principal) of each hop.
    let chain = bus.query(ReadContexts, &root).await.unwrap();
    let names: Vec<&str> = chain.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(names, ["transfer", "withdraw", "money_moved"]);
    for hop in &chain {
        assert_eq!(
            hop.2,
            root.correlation_id().to_string(),
            "one correlation id for the whole chain"
        );
        assert_eq!(
            hop.4.as_deref(),
            Some("teller-7"),
            "the principal travels along"
        );
    }
    assert_eq!(
        chain[0].3,
        Some(root.id().to_string()),
        "the first hop is caused by the caller"
    );
    assert_eq!(
        chain[1].3,
        Some(chain[0].1.clone()),
        "the second hop is caused by the first"
    );
    assert_eq!(
        chain[2].3,
        Some(chain[1].1.clone()),
        "the event is caused by the second hop"
    );
    assert_ne!(chain[0].1, chain[1].1);
}

/// Records, per dispatch, the message, the id the handler's context gets, and the id
/// of the context the interceptor was given.
struct Ids(Arc<Mutex<Vec<SeenIds>>>);

/// (message, the handler context's id, the id of the context the interceptor saw).
type SeenIds = (&'static str, String, String);

impl Interceptor for Ids {
    fn before(&self, dispatch: &Dispatch<'_>, ctx: &Context) -> Result<()> {
        self.0.lock().unwrap().push((
            dispatch.name(),
            dispatch.message_id().to_string(),
            ctx.id().to_string(),
        ));
        Ok(())
    }
}

#[tokio::test]
async fn an_interceptor_sees_the_callers_context_and_the_id_the_handlers_context_gets() {
    let ids = Arc::new(Mutex::new(Vec::new()));
    let bus = builder().interceptor(Ids(ids.clone())).build().unwrap();
    let root = Context::new();
    bus.send(Transfer, &root).await.unwrap();
    let chain = bus.query(ReadContexts, &root).await.unwrap();
    let ids = ids.lock().unwrap().clone();
    let seen: Vec<&str> = ids.iter().map(|i| i.0).collect();
    assert_eq!(seen, ["Transfer", "Withdraw", "MoneyMoved", "ReadContexts"]);
    for (hop, id) in chain.iter().zip(&ids) {
        assert_eq!(
            hop.1, id.1,
            "{}: the handler's context has the id the interceptor saw",
            hop.0
        );
        assert_eq!(
            hop.3.as_ref(),
            Some(&id.2),
            "{}: caused by the context the interceptor saw",
            hop.0
        );
    }
    assert_eq!(
        ids[0].2,
        root.id().to_string(),
        "the first dispatch is the caller's"
    );
}

type Hop = (String, String, String, Option<String>, Option<String>);

#[query(output = Vec<Hop>)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ReadContexts;

#[query_handler]
fn read_contexts(_: ReadContexts, seen: State<Contexts>) -> Result<Vec<Hop>> {
    Ok(seen
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(name, ctx)| {
            (
                (*name).to_owned(),
                ctx.id().to_string(),
                ctx.correlation_id().to_string(),
                ctx.causation_id().map(|c| c.to_string()),
                ctx.principal().map(|p| p.id.clone()),
            )
        })
        .collect())
}

// ---------------------------------------------------------------- middleware

/// Records `before:<name>` and `after:<name>` around the rest of the chain.
struct Trace(&'static str, Arc<Mutex<Vec<String>>>);

impl Middleware for Trace {
    fn handle<'a>(
        &'a self,
        dispatch: &'a Dispatch<'a>,
        ctx: Context,
        next: Next<'a>,
    ) -> BoxFuture<'a, Result<Output>> {
        Box::pin(async move {
            self.1
                .lock()
                .unwrap()
                .push(format!("before:{}:{}", self.0, dispatch.name()));
            let result = next.run(ctx).await;
            // The handler's output, as the middleware sees it.
            let seen = match &result {
                Ok(output) => format!("{:?}", output.downcast_ref::<u64>()),
                Err(_) => "error".to_owned(),
            };
            self.1
                .lock()
                .unwrap()
                .push(format!("after:{}:{}:{seen}", self.0, result.is_ok()));
            result
        })
    }
}

#[tokio::test]
async fn middleware_runs_in_the_order_added_around_the_handler() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let bus = builder()
        .middleware(Trace("outer", log.clone()))
        .middleware(Trace("inner", log.clone()))
        .build()
        .unwrap();
    bus.send(
        Deposit {
            account: "m".into(),
            cents: 3,
        },
        &Context::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [
            "before:outer:Deposit",
            "before:inner:Deposit",
            "after:inner:true:Some(3)",
            "after:outer:true:Some(3)"
        ]
    );
}

/// Records `in:<name>` and `out:<name>:<outcome>`; refuses when `refuse` is set.
struct Watch {
    name: &'static str,
    refuse: bool,
    log: Arc<Mutex<Vec<String>>>,
}

impl Interceptor for Watch {
    fn before(&self, dispatch: &Dispatch<'_>, _: &Context) -> Result<()> {
        self.log
            .lock()
            .unwrap()
            .push(format!("in:{}:{}", self.name, dispatch.name()));
        if self.refuse {
            return Err(Error::unauthorized(
                "test.refused",
                format!("{} refused", self.name),
            ));
        }
        Ok(())
    }

    fn after(
        &self,
        dispatch: &Dispatch<'_>,
        _: &Context,
        outcome: std::result::Result<&dyn std::any::Any, &Error>,
    ) {
        // The handler has the message by now.
        assert!(dispatch.message::<Deposit>().is_none());
        let seen = match outcome {
            Ok(out) => format!(
                "{:?}",
                out.downcast_ref::<u64>()
                    .copied()
                    .or_else(|| out.downcast_ref::<Option<u64>>().copied().flatten())
            ),
            Err(e) => e.code().to_owned(),
        };
        self.log
            .lock()
            .unwrap()
            .push(format!("out:{}:{seen}", self.name));
    }
}

#[tokio::test]
async fn interceptors_run_outside_the_wrapping_middleware_and_see_the_output_or_the_refusal() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let watch = |name, refuse| Watch {
        name,
        refuse,
        log: log.clone(),
    };
    let bus = builder()
        .middleware(Trace("wrap", log.clone()))
        .interceptor(watch("a", false))
        .interceptor(watch("b", false))
        .build()
        .unwrap();
    let ctx = Context::new();
    let deposit = |cents| Deposit {
        account: "i".into(),
        cents,
    };
    assert_eq!(bus.send(deposit(4), &ctx).await.unwrap(), 4);
    assert_eq!(
        std::mem::take(&mut *log.lock().unwrap()),
        [
            "in:a:Deposit",
            "in:b:Deposit",
            "before:wrap:Deposit",
            "after:wrap:true:Some(4)",
            "out:b:Some(4)",
            "out:a:Some(4)"
        ]
    );

    // An async handler, with interceptors only.
    let bus = builder().interceptor(watch("a", false)).build().unwrap();
    let balance = bus
        .query(
            Balance {
                account: "i".into(),
            },
            &ctx,
        )
        .await
        .unwrap();
    assert_eq!(balance, None, "a new bus has a new ledger");
    assert_eq!(
        std::mem::take(&mut *log.lock().unwrap()),
        ["in:a:Balance", "out:a:None"]
    );

    // A refusal stops the dispatch: the handler does not run, later interceptors are
    // not asked, and only those that let it through see the error.
    let bus = builder()
        .middleware(Trace("wrap", log.clone()))
        .interceptor(watch("a", false))
        .interceptor(watch("no", true))
        .interceptor(watch("c", false))
        .build()
        .unwrap();
    let err = bus.send(deposit(5), &ctx).await.unwrap_err();
    assert_eq!(err.code(), "test.refused");
    assert_eq!(
        std::mem::take(&mut *log.lock().unwrap()),
        ["in:a:Deposit", "in:no:Deposit", "out:a:test.refused"],
        "neither the wrapping middleware nor the handler ran"
    );
}

#[tokio::test]
async fn authorization_rejects_before_the_handler_runs() {
    let bus = builder()
        .middleware(Authorize::require_role("teller"))
        .build()
        .unwrap();
    let anonymous = Context::new();
    let err = bus
        .send(
            Deposit {
                account: "z".into(),
                cents: 5,
            },
            &anonymous,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert_eq!(
        err.message(),
        "an anonymous caller may not dispatch command `Deposit`"
    );

    let clerk = Context::new().with_principal(Principal::new("clerk-1"));
    let err = bus
        .query(
            Balance {
                account: "z".into(),
            },
            &clerk,
        )
        .await
        .unwrap_err();
    assert!(
        err.message().starts_with("principal `clerk-1` may not"),
        "{err}"
    );

    let teller = Context::new().with_principal(Principal::new("t-1").with_role("teller"));
    // Nothing was deposited by the rejected calls.
    assert_eq!(
        bus.query(
            Balance {
                account: "z".into()
            },
            &teller
        )
        .await
        .unwrap(),
        None
    );
    assert_eq!(
        bus.send(
            Deposit {
                account: "z".into(),
                cents: 5
            },
            &teller
        )
        .await
        .unwrap(),
        5
    );
}

#[tokio::test]
async fn authorization_can_look_at_the_message() {
    let bus = builder()
        .middleware(Authorize::new(|_, d| {
            d.message::<Deposit>().is_none_or(|m| m.cents <= 100)
        }))
        .build()
        .unwrap();
    let ctx = Context::new();
    assert!(
        bus.send(
            Deposit {
                account: "y".into(),
                cents: 100
            },
            &ctx
        )
        .await
        .is_ok()
    );
    let err = bus
        .send(
            Deposit {
                account: "y".into(),
                cents: 101,
            },
            &ctx,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
}

#[tokio::test]
async fn validation_reports_every_violation_and_skips_the_handler() {
    let bus = builder().middleware(Validation).build().unwrap();
    let err = bus
        .send(
            OpenAccount {
                owner: " ".into(),
                initial_cents: -5,
            },
            &Context::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RuleViolation);
    let codes: Vec<_> = err
        .violations()
        .iter()
        .map(|v| v.code.to_string())
        .collect();
    assert_eq!(
        codes,
        ["account.owner.required", "account.initial.non_negative"]
    );
    let report = bus.report();
    let open = report
        .handlers
        .iter()
        .find(|h| h.handler == "open_account")
        .unwrap();
    assert_eq!(
        (open.count, open.failures),
        (1, 1),
        "the dispatch failed in the middleware"
    );

    let id = bus
        .send(
            OpenAccount {
                owner: "Ada".into(),
                initial_cents: 0,
            },
            &Context::new(),
        )
        .await
        .unwrap();
    assert_eq!(id, "acct-ada");
}

#[tokio::test(start_paused = true)]
async fn timeout_uses_the_message_limit() {
    let bus = builder().middleware(Timeout::new()).build().unwrap();
    let err = bus.query(Slow, &Context::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(err.code(), codes::BUS_TIMED_OUT);
    assert_eq!(err.message(), "`Slow` did not finish within 50 ms");
}

#[tokio::test(start_paused = true)]
async fn timeout_uses_the_context_deadline_when_it_is_earlier() {
    let bus = builder().middleware(Timeout::new()).build().unwrap();
    let ctx = Context::new().with_timeout(Duration::from_millis(10));
    let err = bus.query(Slow, &ctx).await.unwrap_err();
    // The context's clock is the wall clock: the limit the handler got is the 10 ms less
    // whatever passed before dispatch, never the message's own 50 ms.
    let ms: u64 = err
        .message()
        .strip_prefix("`Slow` did not finish within ")
        .and_then(|rest| rest.strip_suffix(" ms"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected message: {}", err.message()));
    assert!(
        ms <= 10,
        "the context's 10 ms deadline applies, got {ms} ms"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_retries_idempotent_messages_on_transient_errors() {
    let bus = builder()
        .middleware(Retry::new(3).backoff(Duration::from_millis(100), Duration::from_secs(1)))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let attempt = bus
        .send(Flaky { fail_times: 2 }, &Context::new())
        .await
        .unwrap();
    assert_eq!(attempt, 3, "succeeded on the third attempt");
    // Waited 100 ms, then 200 ms (virtual time).
    assert_eq!(started.elapsed(), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn retry_gives_up_after_the_last_attempt_and_never_retries_the_rest() {
    let attempts = Arc::new(Attempts::default());
    let bus = builder()
        .shared_state(attempts.clone())
        .middleware(Retry::new(2).backoff(Duration::from_millis(1), Duration::from_millis(1)))
        .build()
        .unwrap();
    let err = bus
        .send(Flaky { fail_times: 5 }, &Context::new())
        .await
        .unwrap_err();
    assert_eq!(err.message(), "attempt 2 failed");
    assert_eq!(attempts.0.load(Ordering::SeqCst), 2, "two attempts in all");

    let err = bus.send(NotIdempotent, &Context::new()).await.unwrap_err();
    assert_eq!(err.code(), "db.unavailable");
    assert_eq!(
        attempts.0.load(Ordering::SeqCst),
        3,
        "a non-idempotent message is tried once"
    );

    // The report counts dispatches, not attempts.
    let report = bus.report();
    let count = |name: &str| {
        report
            .handlers
            .iter()
            .find(|h| h.handler == name)
            .unwrap()
            .count
    };
    assert_eq!((count("flaky"), count("not_idempotent")), (1, 1));
}

#[test]
fn metrics_counts_dispatches_failures_and_latency() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let bus = builder().middleware(Metrics).build().unwrap();
            let ctx = Context::new();
            bus.send(
                Deposit {
                    account: "q".into(),
                    cents: 1,
                },
                &ctx,
            )
            .await
            .unwrap();
            bus.send(
                Deposit {
                    account: "q".into(),
                    cents: 1,
                },
                &ctx,
            )
            .await
            .unwrap();
            bus.send(Explode, &ctx).await.unwrap_err();
        });
    });
    let mut total = std::collections::BTreeMap::new();
    let mut failures = std::collections::BTreeMap::new();
    let mut latencies = std::collections::BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let labels: Vec<String> = key
            .key()
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let message = labels
            .iter()
            .find(|l| l.starts_with("message="))
            .cloned()
            .unwrap_or_default();
        match (key.key().name(), value) {
            ("flext_dispatch_total", DebugValue::Counter(n)) => {
                total.insert(message, n);
            }
            ("flext_dispatch_failures_total", DebugValue::Counter(n)) => {
                failures.insert(labels.join(","), n);
            }
            ("flext_dispatch_duration_seconds", DebugValue::Histogram(v)) => {
                latencies.insert(message, v.len());
            }
            _ => {}
        }
    }
    assert_eq!(total.get("message=Deposit"), Some(&2));
    assert_eq!(total.get("message=Explode"), Some(&1));
    assert_eq!(
        failures.into_iter().collect::<Vec<_>>(),
        [(
            "message=Explode,kind=command,code=flext.bus.handler_panicked".to_owned(),
            1
        )]
    );
    assert_eq!(latencies.get("message=Deposit"), Some(&2));
}

// ---------------------------------------------------------------- dynamic entry

#[tokio::test]
async fn json_entry_dispatches_by_name() {
    let bus = builder().build().unwrap();
    let ctx = Context::new();
    let out = bus
        .send_json("Deposit", r#"{"account": "j", "cents": 40}"#, &ctx)
        .await
        .unwrap();
    assert_eq!(out, serde_json::json!(40));
    let out = bus
        .query_json("Balance", r#"{"account": "j"}"#, &ctx)
        .await
        .unwrap();
    assert_eq!(out, serde_json::json!(40));
    let report = bus
        .publish_json("account.opened", r#"{"account": "j"}"#, &ctx)
        .await
        .unwrap();
    assert_eq!(report.outcomes.len(), 4);
}

#[tokio::test]
async fn json_entry_bad_inputs_are_clear_errors() {
    let bus = builder().max_json_bytes(64).build().unwrap();
    let ctx = Context::new();
    let send = |name: &'static str, json: &'static str| {
        let bus = bus.clone();
        let ctx = ctx.clone();
        async move { bus.send_json(name, json, &ctx).await.unwrap_err() }
    };

    let e = send("Deposti", "{}").await;
    assert_eq!(
        (e.kind(), e.code()),
        (ErrorKind::NotFound, codes::BUS_UNKNOWN_MESSAGE)
    );
    assert_eq!(
        e.message(),
        "no message is named `Deposti`; did you mean `Deposit`?"
    );

    let e = send("Deposit", r#"{"account": "j", "cents": 4"#).await;
    assert_eq!(
        (e.kind(), e.code()),
        (ErrorKind::Validation, codes::INPUT_MALFORMED_JSON)
    );
    assert!(
        e.message()
            .starts_with("Deposit: malformed JSON: EOF while parsing"),
        "{e}"
    );

    let e = send("Deposit", r#"{"account": "j", "cents": "forty"}"#).await;
    assert_eq!(e.code(), codes::INPUT_INVALID_FIELD);
    assert!(
        e.message()
            .starts_with("Deposit: field `cents`: invalid type: string \"forty\""),
        "{e}"
    );

    let e = send("Deposit", r#"{"account": "j", "cents": 4, "memo": "x"}"#).await;
    assert_eq!(e.code(), codes::INPUT_UNKNOWN_FIELD);

    let e = send("Deposit", r#"{"account": "j"}"#).await;
    assert_eq!(e.code(), codes::INPUT_MISSING_FIELD);

    let e = send("Deposit", r#"{"account": "j"}"#).await;
    assert_eq!(e.violations()[0].subject.as_deref(), Some("cents"));

    // A positional array would bind fields by order: refused unless the type opts in.
    let e = send("Deposit", r#"["j", 4]"#).await;
    assert_eq!(e.code(), codes::INPUT_POSITIONAL, "{e}");
    assert!(e.message().contains("`#[command(positional)]`"), "{e}");

    let e = send(
        "Deposit",
        r#"{"account": "an account name long enough to pass the limit", "cents": 1}"#,
    )
    .await;
    assert_eq!(
        (e.kind(), e.code()),
        (ErrorKind::Validation, codes::INPUT_TOO_LARGE)
    );
    assert_eq!(
        e.message(),
        "the payload for `Deposit` is 72 bytes, over the limit of 64 bytes"
    );

    let e = send("Balance", r#"{"account": "j"}"#).await;
    assert_eq!(e.code(), codes::BUS_WRONG_KIND);
    assert_eq!(
        e.message(),
        "`Balance` is a query, not a command: dispatch it with `query_json`"
    );

    let e = bus.publish_json("Deposit", "{}", &ctx).await.unwrap_err();
    assert_eq!(e.code(), codes::BUS_WRONG_KIND);

    // Nothing was deposited.
    assert_eq!(
        bus.query(
            Balance {
                account: "j".into()
            },
            &ctx
        )
        .await
        .unwrap(),
        None
    );
}

// ---------------------------------------------------------------- registry

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_count_every_dispatch_exactly_though_latency_is_sampled() {
    let bus = builder().build().unwrap();
    let mut tasks = Vec::new();
    for task in 0..4 {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            let ctx = Context::new();
            for i in 0..250u64 {
                let account = format!("stats-{task}");
                bus.send(Deposit { account, cents: i }, &ctx).await.unwrap();
            }
            for _ in 0..5 {
                bus.send(Explode, &ctx).await.unwrap_err();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let report = bus.report();
    let find = |name: &str| report.handlers.iter().find(|h| h.handler == name).unwrap();
    assert_eq!((find("deposit").count, find("deposit").failures), (1000, 0));
    assert_eq!((find("explode").count, find("explode").failures), (20, 20));
    assert!(find("deposit").latency_us.is_some(), "a sample was timed");
}

#[tokio::test]
async fn the_registry_report_lists_every_handler_with_its_health() {
    let bus = builder().build().unwrap();
    let ctx = Context::new();
    for cents in [1, 2, 3] {
        bus.send(
            Deposit {
                account: "r".into(),
                cents,
            },
            &ctx,
        )
        .await
        .unwrap();
    }
    bus.send(Explode, &ctx).await.unwrap_err();
    let report = bus.report();
    assert!(report.stats_enabled);
    let deposit = report
        .handlers
        .iter()
        .find(|h| h.handler == "deposit")
        .unwrap();
    assert_eq!(deposit.message, "Deposit");
    assert_eq!(deposit.kind, flext::MessageKind::Command);
    assert!(
        deposit.location.starts_with("tests/test_bus.rs:"),
        "{}",
        deposit.location
    );
    assert_eq!(
        (
            deposit.count,
            deposit.failures,
            deposit.last_error.as_deref()
        ),
        (3, 0, None)
    );
    let p = deposit.latency_us.unwrap();
    assert!(p.p50 <= p.p95 && p.p95 <= p.p99);
    let explode = report
        .handlers
        .iter()
        .find(|h| h.handler == "explode")
        .unwrap();
    assert_eq!((explode.count, explode.failures), (1, 1));
    assert!(
        explode
            .last_error
            .as_deref()
            .unwrap()
            .starts_with(&format!("[{}]", codes::BUS_HANDLER_PANICKED))
    );

    let json = serde_json::to_value(&report).unwrap();
    let entry = json["handlers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["handler"] == "deposit")
        .unwrap();
    assert_eq!(entry["kind"], "command");
    assert_eq!(entry["count"], 3);

    // Handlers never dispatched are listed with zero counts; the link-time registry
    // lists them all, duplicates included.
    let balance = report
        .handlers
        .iter()
        .find(|h| h.handler == "balance")
        .unwrap();
    assert_eq!((balance.count, balance.latency_us), (0, None));
    assert_eq!(
        flext::registry::handlers()
            .filter(|h| h.message() == "Archive")
            .count(),
        2
    );
}

// ---------------------------------------------------------------- construction

#[test]
fn two_handlers_of_one_command_fail_bus_construction_naming_both() {
    let err = Bus::builder()
        .filter(|h| h.module().ends_with("duplicates"))
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(err.code(), codes::BUS_DUPLICATE_HANDLER);
    let m = err.message();
    assert!(
        m.starts_with("command `Archive` has two handlers, `archive_fast` (tests/test_bus.rs:"),
        "{m}"
    );
    assert!(m.contains("and `archive_slow` (tests/test_bus.rs:"), "{m}");
}

#[test]
fn a_missing_state_fails_bus_construction_naming_handler_and_type() {
    let err = Bus::builder()
        .filter(not_duplicates)
        .state(Seen::default())
        .state(Contexts::default())
        .state(Attempts::default())
        .build()
        .unwrap_err();
    // Two handlers need the ledger: both are reported, each as its own error with its
    // kind, code and the handler's location.
    assert_eq!(err.code(), codes::BUS_BUILD_FAILED);
    assert_eq!(
        err.kind(),
        ErrorKind::NotFound,
        "both problems are NotFound"
    );
    assert!(err.related().iter().all(|p| p.kind() == ErrorKind::NotFound
        && p.code() == codes::BUS_MISSING_STATE
        && p.message().contains("(tests/test_bus.rs:")));
    let problems: Vec<&str> = err.related().iter().map(|p| p.message()).collect();
    assert_eq!(problems.len(), 2, "{err}");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("handler `deposit` takes `State<test_bus::Ledger>`")),
        "{err}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("handler `balance` takes `State<test_bus::Ledger>`")),
        "{err}"
    );
}
