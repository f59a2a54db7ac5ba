//! Signals in the conformance suite, continued: an operator's abort of a waiting saga, a
//! recovery loop woken by a send, and a signal routed by the correlation key its saga
//! declares.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use flext::prelude::*;
use flext::saga::{
    Intervention, OperatorAction, SagaLog, SagaOutcome, SagaRunner, SagaState, Signal, SignalSent,
};
use serde::{Deserialize, Serialize};

use super::{Calls, Checkout, Paid, parked, runner};

/// A runner whose recovery loop runs once an hour takes a saga signalled through it at
/// once: the signal wakes the loop.
pub(super) async fn nudged_loop(log: &Arc<dyn SagaLog>) {
    let calls = Arc::new(Calls::default());
    let process = runner(log.clone(), &calls);
    let id = parked(
        &process,
        Checkout {
            order: "o-5".into(),
            hold_ms: 0,
        },
    )
    .await;
    let recovery = process.spawn_recovery(Duration::from_secs(3_600));
    let mut reports = recovery.reports();
    // The loop's first pass, at once.
    reports.changed().await.unwrap();
    process
        .signal::<Checkout, _>(id, "psp-evt-9", &Paid { cents: 7 })
        .await
        .unwrap();
    // A guard against a hang, far beyond any pass: the loop would otherwise sleep an hour.
    let taken = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            reports.changed().await.unwrap();
            let report = reports.borrow_and_update().clone();
            if let Some(ours) = report.sagas.iter().find(|s| s.saga_id == id) {
                return ours.result.as_ref().map(|o| o.state()).unwrap();
            }
        }
    })
    .await
    .expect("the signal woke the recovery loop");
    assert_eq!(taken, SagaState::Completed);
    assert_eq!(calls.paid_cents.load(Ordering::SeqCst), 7);
    recovery.shutdown().await;
}

/// The payment service's event, naming the order it pays.
#[derive(Debug, Serialize, Deserialize)]
pub struct PaymentSettled {
    pub order_id: String,
    pub cents: u64,
}

#[derive(Serialize, Deserialize)]
pub struct Settle {
    pub order: String,
}

#[saga(key = order)]
impl Settle {
    #[saga_step(signal, key = order_id)]
    async fn settled(&self, paid: Signal<PaymentSettled>) -> Result<String> {
        Ok(format!(
            "{} settled for {}",
            self.order,
            paid.received()?.cents
        ))
    }
}

/// A signal routed by the key the saga declares, as an event handler of the bus sends
/// it: to the saga started under that key, and to no other.
pub(super) async fn routed_by_key(log: &Arc<dyn SagaLog>) {
    let process = SagaRunner::builder_shared(log.clone())
        .owner("routes")
        .build();
    let mut ids = Vec::new();
    for order in ["o-10", "o-11"] {
        let outcome = process
            .run_keyed(
                Settle {
                    order: order.into(),
                },
                &Context::new(),
            )
            .await
            .unwrap();
        assert!(
            matches!(outcome, SagaOutcome::Waiting { .. }),
            "{outcome:?}"
        );
        assert_eq!(
            outcome.saga_id(),
            flext::saga::saga_id_for_key("Settle", order)
        );
        ids.push(outcome.saga_id());
    }
    let event = PaymentSettled {
        order_id: "o-11".into(),
        cents: 450,
    };
    assert_eq!(
        process
            .route_signal::<Settle, _>("evt-11", &event)
            .await
            .unwrap(),
        SignalSent::Kept
    );
    let report = process.recover().await.unwrap();
    let routed = report.sagas.iter().find(|s| s.saga_id == ids[1]).unwrap();
    match routed.result.as_ref().unwrap() {
        SagaOutcome::Completed { output, .. } => assert_eq!(output, "o-11 settled for 450"),
        other => panic!("{other:?}"),
    }
    assert!(
        report.sagas.iter().all(|s| s.saga_id != ids[0]),
        "o-10 still waits"
    );
    assert_eq!(log.load(ids[0]).await.unwrap().state, SagaState::Running);
    let nobody = PaymentSettled {
        order_id: "o-99".into(),
        cents: 1,
    };
    let refused = process
        .route_signal::<Settle, _>("evt-99", &nobody)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), flext::codes::SAGA_NOT_FOUND);
}

/// An operator's abort of a waiting saga compensates it at once.
pub(super) async fn abort_while_waiting(log: &Arc<dyn SagaLog>) {
    let calls = Arc::new(Calls::default());
    let process = runner(log.clone(), &calls);
    let id = parked(
        &process,
        Checkout {
            order: "o-4".into(),
            hold_ms: 0,
        },
    )
    .await;
    let abort = Intervention::new(OperatorAction::Abort, "alice", "customer left").unwrap();
    match process.intervene(id, &abort).await.unwrap() {
        SagaOutcome::Compensated {
            failed_step,
            compensated,
            ..
        } => {
            assert_eq!(failed_step, "payment");
            assert_eq!(compensated, &["place"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(calls.cancelled.load(Ordering::SeqCst), 1);
    assert_eq!(calls.paid.load(Ordering::SeqCst), 0);
}
