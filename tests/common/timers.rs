//! Durable timers in the `SagaLog` conformance suite: a saga sleeping at a
//! `#[saga_step(sleep)]` step is leased to no runner, is not woken early, survives its
//! process, wakes once on whichever runner's recovery pass comes after its time, and an
//! operator's abort of a sleeping saga compensates it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flext::Uuid;
use flext::prelude::*;
use flext::saga::{
    Intervention, OperatorAction, SagaLog, SagaOutcome, SagaRunner, SagaState, Transition,
};
use serde::{Deserialize, Serialize};

#[derive(Default)]
pub struct Calls {
    placed: AtomicU32,
    cancelled: AtomicU32,
    reminded: AtomicU32,
}

#[derive(Serialize, Deserialize)]
pub struct Reminder {
    pub order: String,
    pub wait_ms: u64,
}

#[saga]
impl Reminder {
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
    async fn wait(&self, _placed: &str) -> Result<Duration> {
        Ok(Duration::from_millis(self.wait_ms))
    }

    #[saga_step]
    async fn remind(&self, placed: &str, calls: State<Calls>) -> Result<String> {
        calls.reminded.fetch_add(1, Ordering::SeqCst);
        Ok(format!("reminded about {placed}"))
    }
}

fn runner(log: Arc<dyn SagaLog>, calls: &Arc<Calls>) -> SagaRunner {
    SagaRunner::builder_shared(log)
        .owner("timers")
        .shared_state(calls.clone())
        .build()
}

/// `connect` opens another process's connection to the same store.
pub async fn sleep_contract<F, Fut>(connect: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn SagaLog>>,
{
    let calls = Arc::new(Calls::default());
    let id = Uuid::new_v4();
    let saga = || Reminder {
        order: "o-7".into(),
        wait_ms: 1_200,
    };
    let first = connect().await;
    let before = flext::saga::now_ms();
    let until = {
        let process = runner(first.clone(), &calls);
        let outcome = process
            .run_with_id(id, saga(), &Context::new())
            .await
            .unwrap();
        let SagaOutcome::Sleeping { step, until_ms, .. } = &outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(step, "wait");
        assert!(*until_ms >= before + 1_200, "{until_ms} against {before}");
        assert_eq!(outcome.state(), SagaState::Running);
        // Leased to no runner until it wakes.
        let record = first.load(id).await.unwrap();
        // Leased until its time (the store adds the duration to its own clock, which may
        // have moved on by a millisecond or so: never earlier).
        assert_eq!(record.owner, "timer");
        assert!(
            (*until_ms..*until_ms + 5_000).contains(&record.lease_until_ms),
            "lease until {} for a wake-up at {until_ms}",
            record.lease_until_ms
        );
        assert!(matches!(
            record.transitions.last(),
            Some(Transition::Sleeping { index: 1, .. })
        ));
        // A second start reports the sleep and writes nothing.
        let again = process
            .run_with_id(id, saga(), &Context::new())
            .await
            .unwrap();
        assert!(matches!(again, SagaOutcome::Sleeping { .. }), "{again:?}");
        assert_eq!(first.load(id).await.unwrap().transitions.len(), 2);
        *until_ms
    };
    drop(first);

    // Another process, before the time: nothing is woken early.
    let second = connect().await;
    let process = runner(second.clone(), &calls);
    let asked = flext::saga::now_ms();
    let early = process.recover().await.unwrap();
    let mut woken = early.sagas.into_iter().find(|s| s.saga_id == id);
    if asked + 100 < until {
        // Asked well before its time (a slow machine may not manage that).
        assert!(woken.is_none(), "woken early: {woken:?}");
        assert_eq!(calls.reminded.load(Ordering::SeqCst), 0);
    }

    // After the time: woken once, by this process.
    if woken.is_none() {
        let lease_until = second.load(id).await.unwrap().lease_until_ms;
        let wait = lease_until.saturating_sub(flext::saga::now_ms()) + 30;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        assert!(flext::saga::now_ms() > until);
        let woke = process.recover().await.unwrap();
        woken = woke.sagas.into_iter().find(|s| s.saga_id == id);
    }
    let ours = woken.expect("woken once its time came");
    match ours.result.as_ref().unwrap() {
        SagaOutcome::Completed { output, .. } => assert_eq!(output, "reminded about order o-7"),
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
    assert_eq!(calls.placed.load(Ordering::SeqCst), 1);
    assert_eq!(calls.reminded.load(Ordering::SeqCst), 1);
    let record = second.load(id).await.unwrap();
    assert_eq!(record.state, SagaState::Completed);
    let kinds: Vec<String> = record
        .transitions
        .iter()
        .map(|t| match t {
            Transition::StepCompleted { index, .. } => format!("completed {index}"),
            Transition::Sleeping { index, .. } => format!("sleeping {index}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        ["completed 0", "sleeping 1", "completed 1", "completed 2"]
    );

    // A saga sleeping for a minute, aborted by an operator: compensated at once.
    let long = Uuid::new_v4();
    let outcome = process
        .run_with_id(
            long,
            Reminder {
                order: "o-8".into(),
                wait_ms: 60_000,
            },
            &Context::new(),
        )
        .await
        .unwrap();
    assert!(matches!(outcome, SagaOutcome::Sleeping { .. }));
    let abort = Intervention::new(OperatorAction::Abort, "alice", "order withdrawn").unwrap();
    let aborted = process.intervene(long, &abort).await.unwrap();
    match &aborted {
        SagaOutcome::Compensated {
            failed_step,
            compensated,
            ..
        } => {
            assert_eq!(failed_step, "wait");
            assert_eq!(compensated, &["place"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(calls.cancelled.load(Ordering::SeqCst), 1);
    assert_eq!(calls.reminded.load(Ordering::SeqCst), 1);
}
