//! The contracts, each a function that panics when the backend breaks it.

use super::*;

// ---- projections ----------------------------------------------------------------------

/// Every event is applied once, in global order, across runners made anew (restarts).
pub async fn projection_once_in_order_contract(b: impl Backend) {
    let events = b.events();
    events
        .append(&stream("a"), 0, &[event("opened"), event("deposited")])
        .await
        .unwrap();
    events
        .append(&stream("b"), 0, &[event("opened")])
        .await
        .unwrap();
    events
        .append(&stream("a"), 2, &[event("withdrawn")])
        .await
        .unwrap();
    let first = b.catch_up(calm()).await.unwrap();
    assert_eq!(first.applied, 4);
    let all = positions(&b).await;
    assert_eq!(b.seen().await, all, "every event, in global order");
    assert_eq!(first.checkpoint, *all.last().unwrap());
    // A restarted runner applies nothing twice.
    assert_eq!(b.catch_up(calm()).await.unwrap().applied, 0);
    events
        .append(&stream("b"), 1, &[event("closed")])
        .await
        .unwrap();
    assert_eq!(b.catch_up(calm()).await.unwrap().applied, 1);
    assert_eq!(b.seen().await, positions(&b).await);
}

/// A failing event stops the projection before it: nothing of it is written, the
/// checkpoint stays before it, and the status names it; once it applies, the projection
/// goes on.
pub async fn projection_stops_at_a_failing_event_contract(b: impl Backend) {
    let events = b.events();
    events
        .append(
            &stream("a"),
            0,
            &[
                event("opened"),
                event("deposited"),
                event("poison"),
                event("closed"),
            ],
        )
        .await
        .unwrap();
    let all = positions(&b).await;
    let poisoned = Arc::new(AtomicBool::new(true));
    let err = b.catch_up(poisoned.clone()).await.unwrap_err();
    assert_eq!(err.code(), codes::PROJECTION_STOPPED, "{err}");
    assert_eq!(b.seen().await, all[..2], "the events before it are applied");
    assert_eq!(
        b.checkpoint("seen").await,
        all[1],
        "the checkpoint stays before it"
    );
    // Fixed (here: the poison cured), the next catch-up starts at the failing event.
    poisoned.store(false, Ordering::SeqCst);
    assert_eq!(b.catch_up(poisoned).await.unwrap().applied, 2);
    assert_eq!(b.seen().await, all);
}

/// The status reports the checkpoint, the head and the lag in events.
pub async fn projection_status_contract(b: impl Backend) {
    let events = b.events();
    let five: Vec<NewEvent> = (0..5).map(|_| event("deposited")).collect();
    events.append(&stream("a"), 0, &five).await.unwrap();
    let behind = b.status().await;
    assert_eq!((behind.checkpoint, behind.events_behind), (0, 5));
    assert_eq!(behind.head, *positions(&b).await.last().unwrap());
    assert_eq!(behind.name, "seen");
    b.catch_up(calm()).await.unwrap();
    let caught_up = b.status().await;
    assert_eq!((caught_up.events_behind, caught_up.ms_behind), (0, 0));
    assert_eq!(caught_up.checkpoint, caught_up.head);
}

/// Eight writers append while two runners catch up over and over: when they are done,
/// the projection has every event once, in global order.
/// Eight writers and two runners at once: no event skipped, none applied twice, the
/// order global.
pub async fn projection_under_concurrent_writers_contract(b: impl Backend) {
    let b = Arc::new(b);
    let writing = Arc::new(AtomicBool::new(true));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let events = b.events();
            tokio::spawn(async move {
                for n in 0..15 {
                    events
                        .append(&stream(&format!("w{w}")), n, &[event("deposited")])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let runners: Vec<_> = (0..2)
        .map(|_| {
            let (b, writing) = (b.clone(), writing.clone());
            tokio::spawn(async move {
                while writing.load(Ordering::SeqCst) {
                    b.catch_up(calm()).await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    writing.store(false, Ordering::SeqCst);
    for r in runners {
        r.await.unwrap();
    }
    b.catch_up(calm()).await.unwrap();
    let all = positions(&*b).await;
    assert_eq!(all.len(), 120);
    assert_eq!(b.seen().await, all, "no event skipped, none applied twice");
}

// ---- outbox ---------------------------------------------------------------------------

/// Every appended event is delivered in global order and marked delivered once.
pub async fn outbox_delivers_in_order_contract(b: impl Backend) {
    let events = b.events();
    events
        .append(&stream("a"), 0, &[event("opened"), event("deposited")])
        .await
        .unwrap();
    events
        .append(&stream("b"), 0, &[event("opened")])
        .await
        .unwrap();
    assert_eq!(b.pending().await, 3, "each append wrote its outbox rows");
    let relay = Recorder::default();
    assert_eq!(b.deliver(relay.clone()).await.unwrap(), 3);
    assert_eq!(relay.delivered(), positions(&b).await);
    assert_eq!(b.pending().await, 0);
    assert_eq!(b.deliver(relay.clone()).await.unwrap(), 0, "delivered once");
    assert_eq!(relay.delivered().len(), 3);
}

/// An event the relay refuses, and those after it, stay pending and are delivered by a
/// later pass.
pub async fn outbox_keeps_what_was_refused_contract(b: impl Backend) {
    let events = b.events();
    events
        .append(
            &stream("a"),
            0,
            &[event("opened"), event("refuse"), event("closed")],
        )
        .await
        .unwrap();
    let all = positions(&b).await;
    let relay = Recorder::default();
    relay.refusing.store(true, Ordering::SeqCst);
    let err = b.deliver(relay.clone()).await.unwrap_err();
    assert_eq!(err.code(), "test.broker");
    assert_eq!(relay.delivered(), all[..1]);
    assert_eq!(
        b.pending().await,
        2,
        "the refused event and the one after it"
    );
    relay.refusing.store(false, Ordering::SeqCst);
    assert_eq!(b.deliver(relay.clone()).await.unwrap(), 2);
    assert_eq!(relay.delivered(), all, "in order, each once");
}

/// Two relays at once deliver each event once.
pub async fn outbox_one_publisher_at_a_time_contract(b: impl Backend) {
    let b = Arc::new(b);
    for s in 0..10 {
        let batch: Vec<NewEvent> = (0..30).map(|_| event("deposited")).collect();
        b.events()
            .append(&stream(&format!("s{s}")), 0, &batch)
            .await
            .unwrap();
    }
    let relay = Recorder::default();
    let publishers: Vec<_> = (0..2)
        .map(|_| {
            let (b, relay) = (b.clone(), relay.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while b.pending().await > 0 {
                    n += b.deliver(relay.clone()).await.unwrap();
                    // Let the other publisher, holding the outbox, go on (a busy loop
                    // would starve it on this worker thread).
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for p in publishers {
        total += p.await.unwrap();
    }
    assert_eq!(total, 300);
    assert_eq!(
        relay.delivered(),
        positions(&*b).await,
        "each event delivered once, in order"
    );
}

// ---- unit of work ---------------------------------------------------------------------

/// Events, outbox rows, a checkpoint, an inbox entry and a saga commit together, or
/// (rolled back) not at all.
pub async fn unit_of_work_all_or_nothing_contract(b: impl Backend) {
    let inbox = Uuid::new_v4();
    let rolled_back = Uuid::new_v4();
    let first = b
        .unit(
            &stream("a"),
            0,
            &[event("opened")],
            inbox,
            &saga(rolled_back),
            false,
        )
        .await
        .unwrap();
    assert!(first);
    assert_eq!(b.events().version(&stream("a")).await.unwrap(), 0);
    assert_eq!(b.pending().await, 0, "no outbox row");
    assert_eq!(b.checkpoint("uow").await, 0);
    let err = b.sagas().load(rolled_back).await.unwrap_err();
    assert_eq!(err.code(), codes::SAGA_NOT_FOUND);

    let committed = Uuid::new_v4();
    assert!(
        b.unit(
            &stream("a"),
            0,
            &[event("opened")],
            inbox,
            &saga(committed),
            true
        )
        .await
        .unwrap(),
        "the rolled-back inbox entry is not there"
    );
    assert_eq!(b.events().version(&stream("a")).await.unwrap(), 1);
    assert_eq!(b.pending().await, 1);
    assert_eq!(b.checkpoint("uow").await, 7);
    assert_eq!(b.sagas().load(committed).await.unwrap().name, "Transfer");
}

/// The inbox answers "first delivery" once per consumer and event.
pub async fn unit_of_work_inbox_contract(b: impl Backend) {
    let inbox = Uuid::new_v4();
    let unit = |n: u64| {
        let b = &b;
        async move {
            b.unit(
                &stream("a"),
                n,
                &[event("noted")],
                inbox,
                &saga(Uuid::new_v4()),
                true,
            )
            .await
            .unwrap()
        }
    };
    assert!(unit(0).await, "first delivery");
    assert!(!unit(1).await, "a redelivery");
}

/// A conflicting append fails the whole unit of work: nothing of it is written.
pub async fn unit_of_work_conflict_contract(b: impl Backend) {
    b.events()
        .append(&stream("a"), 0, &[event("opened")])
        .await
        .unwrap();
    let id = Uuid::new_v4();
    let err = b
        .unit(
            &stream("a"),
            0,
            &[event("opened")],
            Uuid::new_v4(),
            &saga(id),
            true,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), codes::EVENT_CONFLICT, "{err}");
    assert_eq!(b.events().version(&stream("a")).await.unwrap(), 1);
    assert_eq!(
        b.checkpoint("uow").await,
        0,
        "nothing of the unit committed"
    );
    assert!(b.sagas().load(id).await.is_err());
}
