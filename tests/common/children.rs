//! Child sagas in the `SagaLog` conformance suite: a `#[saga_step(child)]` step starts
//! its child under an id derived from the parent's and runs with its outcome; a child
//! that sleeps parks its parent, leased to no runner, across a process restart, and the
//! child's final write wakes the parent; a parent that compensates compensates its
//! completed child through the child's own compensations (in reverse, before the
//! parent's earlier steps); a child that compensated fails its parent's step, and is
//! not compensated again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flext::Uuid;
use flext::prelude::*;
use flext::saga::{
    Child, OperatorAction, Queue, SagaLog, SagaOutcome, SagaRunner, SagaState, Transition,
    child_saga_id,
};
use serde::{Deserialize, Serialize};

/// Every effect of the two sagas, in the order they happened.
#[derive(Default)]
pub struct Effects {
    done: Mutex<Vec<String>>,
    /// Whether the parent's `charge` step fails.
    fail_charge: AtomicBool,
}

impl Effects {
    fn push(&self, effect: impl Into<String>) {
        self.done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(effect.into());
    }
    fn taken(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .done
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// The child: packs a parcel, waits for the courier, prints its label.
#[derive(Debug, Serialize, Deserialize)]
pub struct Packing {
    pub order: String,
    pub hold_ms: u64,
    pub refuse_label: bool,
}

#[saga]
impl Packing {
    #[saga_step(compensate = unpack)]
    async fn pack(&self, effects: State<Effects>) -> Result<String> {
        effects.push(format!("pack {}", self.order));
        Ok(format!("box {}", self.order))
    }
    async fn unpack(&self, _packed: &String, effects: State<Effects>) -> Result<()> {
        effects.push(format!("unpack {}", self.order));
        Ok(())
    }

    #[saga_step(sleep)]
    async fn courier(&self, _packed: &str) -> Result<Duration> {
        Ok(Duration::from_millis(self.hold_ms))
    }

    #[saga_step(compensate = void)]
    async fn label(&self, packed: &str, effects: State<Effects>) -> Result<u64> {
        if self.refuse_label {
            return Err(Error::validation(
                "carrier.refused",
                "no label for this address",
            ));
        }
        effects.push(format!("label {packed}"));
        Ok(42)
    }
    async fn void(&self, _label: &u64, effects: State<Effects>) -> Result<()> {
        effects.push(format!("void {}", self.order));
        Ok(())
    }
}

/// The parent: reserves stock, ships the parcel through the child, charges.
#[derive(Serialize, Deserialize)]
pub struct Shipment {
    pub order: String,
    pub hold_ms: u64,
    pub refuse_label: bool,
}

#[saga]
impl Shipment {
    #[saga_step(compensate = release)]
    async fn reserve(&self, effects: State<Effects>) -> Result<u32> {
        effects.push(format!("reserve {}", self.order));
        Ok(1)
    }
    async fn release(&self, _reserved: &u32, effects: State<Effects>) -> Result<()> {
        effects.push(format!("release {}", self.order));
        Ok(())
    }

    #[saga_step]
    async fn plan(&self, _reserved: &u32) -> Result<Packing> {
        Ok(Packing {
            order: self.order.clone(),
            hold_ms: self.hold_ms,
            refuse_label: self.refuse_label,
        })
    }

    #[saga_step(child)]
    async fn ship(&self, shipped: Child<Packing>) -> Result<u64> {
        shipped.completed()
    }

    #[saga_step]
    async fn charge(&self, label: &u64, effects: State<Effects>) -> Result<String> {
        if effects.fail_charge.load(Ordering::SeqCst) {
            return Err(Error::validation("card.declined", "the card was declined"));
        }
        effects.push(format!("charge {}", self.order));
        Ok(format!("{} shipped with label {label}", self.order))
    }
}

/// A parent whose child waits in a queue: the packing line takes so many at a time.
#[derive(Serialize, Deserialize)]
pub struct QueuedShipment {
    pub order: String,
}

#[saga]
impl QueuedShipment {
    #[saga_step]
    async fn plan(&self) -> Result<Packing> {
        Ok(Packing {
            order: self.order.clone(),
            hold_ms: 0,
            refuse_label: false,
        })
    }

    #[saga_step(child, queue = "packing-line")]
    async fn ship(&self, shipped: Child<Packing>) -> Result<u64> {
        shipped.completed()
    }
}

fn runner(log: Arc<dyn SagaLog>, effects: &Arc<Effects>) -> SagaRunner {
    SagaRunner::builder_shared(log)
        .owner("children")
        .shared_state(effects.clone())
        .build()
}

/// The kinds of `transitions`, for comparing whole histories.
fn kinds(transitions: &[Transition]) -> Vec<String> {
    transitions
        .iter()
        .map(|t| match t {
            Transition::StepCompleted { index, .. } => format!("completed {index}"),
            Transition::StepFailed { index, .. } => format!("failed {index}"),
            Transition::CompensationCompleted { index, .. } => format!("compensated {index}"),
            Transition::Sleeping { index, .. } => format!("sleeping {index}"),
            Transition::Waiting { index, signal, .. } => format!("waiting {index} for {signal}"),
            Transition::SignalReceived { index, signal, .. } => {
                format!("received {index} {signal}")
            }
            Transition::Operator { action, .. } => format!("operator {action}"),
            other => format!("{other:?}"),
        })
        .collect()
}

/// Recovery passes of `process` until saga `id` is no longer in flight (at most 5 s).
async fn until_finished(process: &SagaRunner, log: &Arc<dyn SagaLog>, id: Uuid) -> SagaState {
    for _ in 0..250 {
        process.recover().await.unwrap();
        let state = log.load(id).await.unwrap().state;
        if !state.is_in_flight() {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("saga {id} is still in flight after 5 s of recovery passes");
}

/// `connect` opens another process's connection to the same store.
pub async fn child_contract<F, Fut>(connect: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn SagaLog>>,
{
    let effects = Arc::new(Effects::default());

    // A child that finishes at once: the parent runs on with its output.
    let log = connect().await;
    let process = runner(log.clone(), &effects);
    let id = Uuid::new_v4();
    let shipment = |order: &str, hold_ms, refuse_label| Shipment {
        order: order.into(),
        hold_ms,
        refuse_label,
    };
    let outcome = process
        .run_with_id(id, shipment("o-1", 0, false), &Context::new())
        .await
        .unwrap();
    let SagaOutcome::Completed { output, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(output, "o-1 shipped with label 42");
    assert_eq!(
        effects.taken(),
        ["reserve o-1", "pack o-1", "label box o-1", "charge o-1"]
    );
    let child = log.load(child_saga_id(id, "ship")).await.unwrap();
    assert_eq!(
        (child.name.as_str(), child.state),
        ("Packing", SagaState::Completed)
    );
    assert_eq!(
        kinds(&log.load(id).await.unwrap().transitions),
        [
            "completed 0",
            "completed 1",
            "received 2 child:Packing",
            "completed 2",
            "completed 3"
        ]
    );
    // A second start of the parent runs nothing, and starts no second child.
    process
        .run_with_id(id, shipment("o-1", 0, false), &Context::new())
        .await
        .unwrap();
    assert!(effects.taken().is_empty());

    // A child that sleeps parks its parent; the process goes away.
    let id = Uuid::new_v4();
    {
        let process = runner(connect().await, &effects);
        let outcome = process
            .run_with_id(id, shipment("o-2", 300, false), &Context::new())
            .await
            .unwrap();
        let SagaOutcome::Waiting {
            step,
            signal,
            until_ms,
            ..
        } = outcome
        else {
            panic!("{outcome:?}");
        };
        assert_eq!(
            (step.as_str(), signal.as_str(), until_ms),
            ("ship", "child:Packing", None)
        );
    }
    let parked = log.load(id).await.unwrap();
    assert_eq!(parked.owner, "signal:child:Packing", "leased to no runner");
    let child_id = child_saga_id(id, "ship");
    assert_eq!(log.load(child_id).await.unwrap().owner, "timer");
    assert_eq!(effects.taken(), ["reserve o-2", "pack o-2"]);

    // Another process: the child wakes when due, and its final write wakes the parent.
    let process = runner(connect().await, &effects);
    assert_eq!(
        until_finished(&process, &log, id).await,
        SagaState::Completed
    );
    assert_eq!(
        effects.taken(),
        ["label box o-2", "charge o-2"],
        "each effect once"
    );
    let inbox = log.signals(id).await.unwrap();
    assert_eq!(inbox.len(), 1, "one wake-up from the child: {inbox:?}");
    assert_eq!(
        (inbox[0].name.as_str(), inbox[0].sender.clone()),
        ("child:Packing", child_id.to_string())
    );

    // The parent fails after its child completed: the child is compensated through its
    // own compensations, last first, before the parent's earlier step.
    effects.fail_charge.store(true, Ordering::SeqCst);
    let id = Uuid::new_v4();
    let outcome = process
        .run_with_id(id, shipment("o-3", 0, false), &Context::new())
        .await
        .unwrap();
    let SagaOutcome::Compensated {
        failed_step,
        compensated,
        ..
    } = outcome
    else {
        panic!("{outcome:?}");
    };
    assert_eq!(failed_step, "charge");
    assert_eq!(compensated, ["ship", "reserve"]);
    assert_eq!(
        effects.taken(),
        [
            "reserve o-3",
            "pack o-3",
            "label box o-3",
            "void o-3",
            "unpack o-3",
            "release o-3"
        ]
    );
    let child = log.load(child_saga_id(id, "ship")).await.unwrap();
    assert_eq!(child.state, SagaState::Compensated);
    assert!(
        child.transitions.iter().any(|t| matches!(
            t,
            Transition::Operator { action: OperatorAction::Compensate, principal, .. } if *principal == format!("saga {id}")
        )),
        "the reopening is recorded with the parent as principal: {:?}",
        kinds(&child.transitions)
    );
    effects.fail_charge.store(false, Ordering::SeqCst);

    // A child that fails compensates itself; the parent's step fails with its error, and
    // the parent compensates its own earlier step without compensating the child again.
    let id = Uuid::new_v4();
    let outcome = process
        .run_with_id(id, shipment("o-4", 0, true), &Context::new())
        .await
        .unwrap();
    let SagaOutcome::Compensated {
        failed_step,
        error,
        compensated,
        ..
    } = outcome
    else {
        panic!("{outcome:?}");
    };
    assert_eq!(
        (failed_step.as_str(), error.code()),
        ("ship", flext::codes::SAGA_CHILD_FAILED)
    );
    assert!(
        error.message().contains("no label for this address"),
        "{error}"
    );
    assert_eq!(compensated, ["reserve"]);
    assert_eq!(
        effects.taken(),
        ["reserve o-4", "pack o-4", "unpack o-4", "release o-4"]
    );

    // A child started through a queue waits there, its parent parked; a queue loop's
    // pass starts it, and its final write wakes the parent.
    let id = Uuid::new_v4();
    let order = QueuedShipment {
        order: "o-5".into(),
    };
    let outcome = process
        .run_with_id(id, order, &Context::new())
        .await
        .unwrap();
    assert!(
        matches!(outcome, SagaOutcome::Waiting { .. }),
        "{outcome:?}"
    );
    let child_id = child_saga_id(id, "ship");
    assert_eq!(
        log.load(child_id).await.unwrap().owner,
        "queue:packing-line"
    );
    assert!(effects.taken().is_empty(), "the child waits in its queue");
    let line = Queue::new("packing-line").unwrap().limit(1);
    let ran = process.dispatch(&line).await.unwrap();
    assert!(ran.iter().any(|(ran, _)| *ran == child_id));
    assert_eq!(
        until_finished(&process, &log, id).await,
        SagaState::Completed
    );
    assert_eq!(effects.taken(), ["pack o-5", "label box o-5"]);
}
