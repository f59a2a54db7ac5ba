//! Signals in the `SagaLog` conformance suite: a saga waiting at a
//! `#[saga_step(signal)]` step is leased to no runner; a signal sent while no process
//! drives it is kept once per sender and taken once after a restart; a signal sent
//! before the saga waits is kept for it; a timeout compensates, or takes the step's
//! declared alternative; an operator's abort of a waiting saga compensates it; a runner
//! with a recovery loop takes a signalled saga without waiting for its next pass; a
//! signal routed by the correlation key the saga declares reaches that saga only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use flext::Uuid;
use flext::prelude::*;
use flext::saga::{SagaLog, SagaOutcome, SagaRunner, SagaState, Signal, SignalSent, Transition};
use serde::{Deserialize, Serialize};

#[path = "signal_routes.rs"]
mod routes;

#[derive(Default)]
pub struct Calls {
    placed: AtomicU32,
    cancelled: AtomicU32,
    paid: AtomicU32,
    paid_cents: AtomicU64,
    refunded: AtomicU32,
    shipped: AtomicU32,
}

/// The payment webhook's message.
#[derive(Debug, Serialize, Deserialize)]
pub struct Paid {
    pub cents: u64,
}

#[derive(Serialize, Deserialize)]
pub struct Checkout {
    pub order: String,
    /// How long the saga sleeps before it waits for payment.
    pub hold_ms: u64,
}

#[saga]
impl Checkout {
    #[saga_step(compensate = cancel)]
    async fn place(&self, calls: State<Calls>) -> Result<String> {
        calls.placed.fetch_add(1, Ordering::SeqCst);
        Ok(format!("order {}", self.order))
    }
    async fn cancel(&self, _placed: &String, calls: State<Calls>) -> Result<()> {
        calls.cancelled.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    #[saga_step(sleep)]
    async fn hold(&self, _placed: &str) -> Result<Duration> {
        Ok(Duration::from_millis(self.hold_ms))
    }

    /// Waits a minute for the payment; without it, the order is cancelled.
    #[saga_step(signal, wait_ms = 60_000, compensate = refund)]
    async fn payment(&self, _placed: &str, paid: Signal<Paid>, calls: State<Calls>) -> Result<u64> {
        let paid = paid.received()?;
        calls.paid.fetch_add(1, Ordering::SeqCst);
        calls.paid_cents.store(paid.cents, Ordering::SeqCst);
        Ok(paid.cents)
    }
    async fn refund(&self, _cents: &u64, calls: State<Calls>) -> Result<()> {
        calls.refunded.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    #[saga_step]
    async fn ship(&self, cents: &u64, calls: State<Calls>) -> Result<String> {
        calls.shipped.fetch_add(1, Ordering::SeqCst);
        Ok(format!("shipped {} for {cents}", self.order))
    }
}

/// A customer's answer to a quote.
#[derive(Debug, Serialize, Deserialize)]
pub struct Accepted {
    pub by: String,
}

#[derive(Serialize, Deserialize)]
pub struct Quote {
    pub wait_ms: u64,
}

#[saga]
impl Quote {
    #[saga_step]
    async fn offer(&self) -> Result<u64> {
        Ok(self.wait_ms)
    }

    /// Without an answer in time, the quote expires: an alternative, not a failure.
    #[saga_step(signal, wait_ms = 150, compensate = withdraw)]
    async fn answer(&self, _offer: &u64, answer: Signal<Accepted>) -> Result<String> {
        Ok(match answer.into_option() {
            Some(accepted) => format!("accepted by {}", accepted.by),
            None => "expired".to_owned(),
        })
    }
    async fn withdraw(&self, _answer: &String) -> Result<()> {
        Ok(())
    }
}

fn runner(log: Arc<dyn SagaLog>, calls: &Arc<Calls>) -> SagaRunner {
    SagaRunner::builder_shared(log)
        .owner("signals")
        .shared_state(calls.clone())
        .build()
}

fn kinds(transitions: &[Transition]) -> Vec<String> {
    transitions
        .iter()
        .map(|t| match t {
            Transition::StepCompleted { index, .. } => format!("completed {index}"),
            Transition::StepFailed { index, .. } => format!("failed {index}"),
            Transition::CompensationCompleted { index, .. } => format!("compensated {index}"),
            Transition::Sleeping { index, .. } => format!("sleeping {index}"),
            Transition::Waiting { index, .. } => format!("waiting {index}"),
            Transition::SignalReceived {
                index,
                sender: Some(sender),
                ..
            } => format!("received {index} from {sender}"),
            Transition::SignalReceived { index, .. } => format!("timed out {index}"),
            Transition::Operator { action, .. } => format!("operator {action:?}"),
            other => format!("{other:?}"),
        })
        .collect()
}

/// Runs `saga` under a new id to its wait; the id.
async fn parked<S>(process: &SagaRunner, saga: S) -> Uuid
where
    S: flext::saga::Saga,
    S::Output: std::fmt::Debug,
{
    let id = Uuid::new_v4();
    let outcome = process
        .run_with_id(id, saga, &Context::new())
        .await
        .unwrap();
    assert!(
        matches!(
            outcome,
            SagaOutcome::Waiting { .. } | SagaOutcome::Sleeping { .. }
        ),
        "{outcome:?}"
    );
    id
}

/// What a recovery pass of `process` (the recovery loop's) made of saga `id`.
async fn recovered(process: &SagaRunner, id: Uuid) -> SagaOutcome<serde_json::Value> {
    let report = process.recover().await.unwrap();
    let ours = report
        .sagas
        .into_iter()
        .find(|s| s.saga_id == id)
        .unwrap_or_else(|| panic!("saga {id} is recovered"));
    ours.result.unwrap()
}

/// Waits until saga `id`'s lease has expired (a signal or a time limit handed it over).
async fn until_due(log: &Arc<dyn SagaLog>, id: Uuid) {
    let lease_until = log.load(id).await.unwrap().lease_until_ms;
    let wait = lease_until.saturating_sub(flext::saga::now_ms()) + 20;
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

/// `connect` opens another process's connection to the same store.
pub async fn signal_contract<F, Fut>(connect: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn SagaLog>>,
{
    let calls = Arc::new(Calls::default());
    let id = Uuid::new_v4();
    let checkout = || Checkout {
        order: "o-1".into(),
        hold_ms: 0,
    };

    // A process runs the saga to its signal step: it waits, leased to no runner.
    let first = connect().await;
    let before = flext::saga::now_ms();
    {
        let process = runner(first.clone(), &calls);
        let outcome = process
            .run_with_id(id, checkout(), &Context::new())
            .await
            .unwrap();
        let SagaOutcome::Waiting {
            step,
            signal,
            until_ms,
            ..
        } = &outcome
        else {
            panic!("{outcome:?}");
        };
        assert_eq!((step.as_str(), signal.as_str()), ("payment", "Paid"));
        assert!(until_ms.unwrap() >= before + 60_000);
        let record = first.load(id).await.unwrap();
        assert_eq!(record.owner, "signal:Paid");
        assert_eq!(
            kinds(&record.transitions),
            ["completed 0", "completed 1", "waiting 2"]
        );
        // A second start reports the wait and writes nothing.
        let again = process
            .run_with_id(id, checkout(), &Context::new())
            .await
            .unwrap();
        assert!(matches!(again, SagaOutcome::Waiting { .. }), "{again:?}");
        assert_eq!(first.load(id).await.unwrap().transitions.len(), 3);
    }
    drop(first);

    // While no process drives it, a webhook handler sends the payment, twice (a retried
    // delivery), and a second payment from another sender.
    let sender_side = connect().await;
    let webhook = SagaRunner::builder_shared(sender_side.clone())
        .owner("webhook")
        .build();
    let paid = Paid { cents: 1_200 };
    assert_eq!(
        webhook
            .signal::<Checkout, _>(id, "psp-evt-1", &paid)
            .await
            .unwrap(),
        SignalSent::Kept
    );
    assert_eq!(
        webhook
            .signal::<Checkout, _>(id, "psp-evt-1", &paid)
            .await
            .unwrap(),
        SignalSent::Duplicate
    );
    assert_eq!(
        webhook
            .signal::<Checkout, _>(id, "psp-evt-2", &Paid { cents: 5 })
            .await
            .unwrap(),
        SignalSent::Kept
    );
    assert_eq!(sender_side.signals(id).await.unwrap().len(), 2);
    // The signal handed the saga over: its lease has expired.
    assert!(sender_side.load(id).await.unwrap().lease_until_ms <= flext::saga::now_ms());
    drop(sender_side);

    // A process started afterwards takes it once, with the first sender's signal.
    let third = connect().await;
    let process = runner(third.clone(), &calls);
    let report = process.recover().await.unwrap();
    let ours = report
        .sagas
        .iter()
        .find(|s| s.saga_id == id)
        .expect("the signalled saga is recovered");
    match ours.result.as_ref().unwrap() {
        SagaOutcome::Completed { output, .. } => assert_eq!(output, "shipped o-1 for 1200"),
        other => panic!("{other:?}"),
    }
    assert!(
        process
            .recover()
            .await
            .unwrap()
            .sagas
            .iter()
            .all(|s| s.saga_id != id)
    );
    assert_eq!(calls.paid.load(Ordering::SeqCst), 1);
    assert_eq!(calls.paid_cents.load(Ordering::SeqCst), 1_200);
    assert_eq!(calls.shipped.load(Ordering::SeqCst), 1);
    let record = third.load(id).await.unwrap();
    assert_eq!(record.state, SagaState::Completed);
    assert_eq!(
        kinds(&record.transitions),
        [
            "completed 0",
            "completed 1",
            "waiting 2",
            "received 2 from psp-evt-1",
            "completed 2",
            "completed 3"
        ]
    );

    // A finished saga takes no signal; an unknown one is not found.
    let late = process
        .signal::<Checkout, _>(id, "psp-evt-3", &paid)
        .await
        .unwrap_err();
    assert_eq!(late.code(), flext::codes::SAGA_FINISHED);
    let unknown = process
        .signal::<Checkout, _>(Uuid::new_v4(), "psp-evt-4", &paid)
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), flext::codes::SAGA_NOT_FOUND);
    let empty = process
        .signal::<Checkout, _>(id, "", &paid)
        .await
        .unwrap_err();
    assert_eq!(empty.code(), flext::codes::SAGA_SIGNAL_INPUT);

    before_the_wait(&third, &calls).await;
    timeouts(&third, &calls).await;
    routes::abort_while_waiting(&third).await;
    routes::nudged_loop(&third).await;
    routes::routed_by_key(&third).await;
}

/// A signal sent while the saga still sleeps before its signal step is kept for it: the
/// step takes it without waiting.
async fn before_the_wait(log: &Arc<dyn SagaLog>, calls: &Arc<Calls>) {
    let process = runner(log.clone(), calls);
    // Asleep at `hold`, before its signal step.
    let id = parked(
        &process,
        Checkout {
            order: "o-2".into(),
            hold_ms: 300,
        },
    )
    .await;
    let sent = process
        .signal::<Checkout, _>(id, "psp-early", &Paid { cents: 99 })
        .await
        .unwrap();
    assert_eq!(sent, SignalSent::Kept);
    // Still asleep: a signal for a later step does not wake a timer.
    assert_eq!(log.load(id).await.unwrap().owner, "timer");
    until_due(log, id).await;
    match recovered(&process, id).await {
        SagaOutcome::Completed { output, .. } => assert_eq!(output, "shipped o-2 for 99"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        kinds(&log.load(id).await.unwrap().transitions),
        [
            "completed 0",
            "sleeping 1",
            "completed 1",
            "received 2 from psp-early",
            "completed 2",
            "completed 3"
        ]
    );
}

/// A wait that times out: a failure the saga compensates (`received()?`), or the step's
/// alternative (`into_option()`).
async fn timeouts(log: &Arc<dyn SagaLog>, calls: &Arc<Calls>) {
    let process = runner(log.clone(), calls);
    let id = parked(&process, Quote { wait_ms: 150 }).await;
    until_due(log, id).await;
    match recovered(&process, id).await {
        SagaOutcome::Completed { output, .. } => assert_eq!(output, "expired"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        kinds(&log.load(id).await.unwrap().transitions),
        ["completed 0", "waiting 1", "timed out 1", "completed 1"]
    );

    // A payment that does not come in time: the order is compensated.
    let cancelled_before = calls.cancelled.load(Ordering::SeqCst);
    let id = parked(
        &process,
        ShortCheckout {
            order: "o-3".into(),
        },
    )
    .await;
    until_due(log, id).await;
    match recovered(&process, id).await {
        SagaOutcome::Compensated {
            failed_step,
            error,
            compensated,
            ..
        } => {
            assert_eq!(failed_step, "payment");
            assert_eq!(error.code(), flext::codes::SAGA_SIGNAL_TIMED_OUT);
            assert_eq!(compensated, &["place"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(calls.cancelled.load(Ordering::SeqCst), cancelled_before + 1);
    assert_eq!(
        kinds(&log.load(id).await.unwrap().transitions),
        [
            "completed 0",
            "waiting 1",
            "timed out 1",
            "failed 1",
            "compensated 0"
        ]
    );
}

/// A checkout whose payment wait is short, for the timeout that compensates.
#[derive(Serialize, Deserialize)]
pub struct ShortCheckout {
    pub order: String,
}

#[saga]
impl ShortCheckout {
    #[saga_step(compensate = cancel)]
    async fn place(&self, calls: State<Calls>) -> Result<String> {
        calls.placed.fetch_add(1, Ordering::SeqCst);
        Ok(format!("order {}", self.order))
    }
    async fn cancel(&self, _placed: &String, calls: State<Calls>) -> Result<()> {
        calls.cancelled.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    #[saga_step(signal, wait_ms = 150)]
    async fn payment(&self, _placed: &str, paid: Signal<Paid>) -> Result<u64> {
        Ok(paid.received()?.cents)
    }
}
