//! The `EventStore` conformance suite, for every backend, flext's and yours: each
//! contract an event store keeps, as a function that panics (like `assert!`) when the
//! store breaks it, in the manner of `tower-test`. Run them all with
//! [`event_store_conformance!`](crate::event_store_conformance) and a [`Backend`]:
//!
//! ```
//! use std::sync::Arc;
//! use flext::event_store::conformance::Backend;
//! use flext::event_store::{EventStore, MemoryEventStore};
//!
//! struct Memory(Arc<MemoryEventStore>);
//!
//! impl Backend for Memory {
//!     async fn new() -> Self {
//!         Memory(Arc::new(MemoryEventStore::new()))
//!     }
//!     async fn connect(&self) -> Arc<dyn EventStore> {
//!         self.0.clone()
//!     }
//! }
//!
//! // In a test file: one `#[tokio::test]` per contract, in a module `memory`.
//! flext::event_store_conformance!(memory, Memory);
//! # fn main() {}
//! ```
//!
//! Contracts: appends with an expected version (a lost race is a conflict and writes
//! nothing), all-or-nothing batches, loading whole or from a version, the global order,
//! envelopes as written, snapshots (the newest kept), and eight writers racing on one
//! stream (each append succeeds or conflicts; the stream has no gap and loses nothing).
//! The caller needs `tokio` with its `macros` and `rt-multi-thread` features.

use std::sync::Arc;

use uuid::Uuid;

use super::{EventStore, NewEvent, Snapshot, StreamId};
use crate::codes;
use crate::context::Context;
use crate::error::ErrorKind;

/// A store the suite runs against.
#[allow(async_fn_in_trait)]
pub trait Backend: Sized {
    /// A fresh, empty store (a new file, a new database).
    async fn new() -> Self;
    /// Another connection to the same store, as another process would open it.
    async fn connect(&self) -> Arc<dyn EventStore>;
}

/// One `#[tokio::test]` per contract of [`conformance`](crate::event_store::conformance),
/// in a module named `$module`, for the [`Backend`](crate::event_store::conformance::Backend)
/// `$backend`.
#[macro_export]
macro_rules! event_store_conformance {
    ($module:ident, $backend:ty) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            use suite::Backend as _;
            use $crate::event_store::conformance as suite;

            async fn backend() -> $backend {
                <$backend as suite::Backend>::new().await
            }

            #[tokio::test]
            async fn appends_with_an_expected_version_and_loads_in_order() {
                suite::append_contract(backend().await.connect().await).await;
            }

            #[tokio::test]
            async fn a_lost_race_is_a_conflict_and_writes_nothing() {
                suite::conflict_contract(backend().await.connect().await).await;
            }

            #[tokio::test]
            async fn a_batch_is_appended_whole_or_not_at_all() {
                suite::batch_contract(backend().await.connect().await).await;
            }

            #[tokio::test]
            async fn every_stream_reads_back_in_one_global_order() {
                suite::global_order_contract(backend().await.connect().await).await;
            }

            #[tokio::test]
            async fn the_newest_snapshot_is_kept() {
                suite::snapshot_contract(backend().await.connect().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn eight_writers_on_one_stream_leave_no_gap_and_lose_nothing() {
                suite::racing_writers_contract(&backend().await).await;
            }
        }
    };
}

fn event(name: &str, n: u64, ctx: &Context) -> NewEvent {
    let mut e = NewEvent::new(name, 2, serde_json::json!({ "n": n }), ctx);
    e.metadata
        .insert("source".into(), serde_json::json!("conformance"));
    e
}

/// Appends with an expected version return the new version; loads return the events as
/// written (ids, names, schema versions, payloads, metadata, correlation and causation
/// ids, stream), whole or after a version; each stream is its own.
pub async fn append_contract(store: Arc<dyn EventStore>) {
    let stream = StreamId::new("Account", "a-1");
    let ctx = Context::new();
    assert_eq!(store.version(&stream).await.unwrap(), 0);
    assert!(store.load(&stream, 0).await.unwrap().is_empty());
    let first = [event("account.opened", 1, &ctx)];
    assert_eq!(store.append(&stream, 0, &first).await.unwrap(), 1);
    let more = [
        event("account.deposited", 2, &ctx),
        event("account.deposited", 3, &ctx),
    ];
    assert_eq!(store.append(&stream, 1, &more).await.unwrap(), 3);
    assert_eq!(store.version(&stream).await.unwrap(), 3);

    let loaded = store.load(&stream, 0).await.unwrap();
    assert_eq!(
        loaded.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let written: Vec<&NewEvent> = first.iter().chain(&more).collect();
    for (stored, new) in loaded.iter().zip(&written) {
        assert_eq!(stored.event_id, new.event_id);
        assert_eq!(stored.name, new.name);
        assert_eq!(stored.schema_version, 2);
        assert_eq!(stored.payload, new.payload);
        assert_eq!(stored.metadata, new.metadata);
        assert_eq!(stored.correlation_id, ctx.correlation_id());
        assert_eq!(stored.causation_id, Some(ctx.id()));
        assert_eq!(
            (stored.aggregate_type.as_str(), stored.aggregate_id.as_str()),
            ("Account", "a-1")
        );
        assert!(stored.timestamp_ms > 0);
    }
    let after_one = store.load(&stream, 1).await.unwrap();
    assert_eq!(
        after_one.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [2, 3]
    );
    assert!(store.load(&stream, 3).await.unwrap().is_empty());
    // `replay` hands on what `load` returns, in order, and stops at the first error.
    for after in [0, 1, 3] {
        let mut seen = Vec::new();
        store
            .replay(&stream, after, &mut |e| {
                seen.push((e.sequence, e.event_id, e.payload.clone()));
                Ok(())
            })
            .await
            .unwrap();
        let loaded: Vec<_> = store
            .load(&stream, after)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.sequence, e.event_id, e.payload))
            .collect();
        assert_eq!(seen, loaded, "replay after {after}");
    }
    let mut handed = 0;
    let stopped = store
        .replay(&stream, 0, &mut |e| {
            handed += 1;
            if e.sequence == 2 {
                return Err(crate::Error::internal("test.stop", "stop here"));
            }
            Ok(())
        })
        .await
        .unwrap_err();
    assert_eq!((stopped.code(), handed), ("test.stop", 2));
    // Another stream is its own.
    let other = StreamId::new("Account", "a-2");
    assert_eq!(store.version(&other).await.unwrap(), 0);
    assert_eq!(
        store
            .append(&other, 0, &[event("account.opened", 9, &ctx)])
            .await
            .unwrap(),
        1
    );
}

/// An append at a version the stream is not at is a conflict (`flext.event.conflict`,
/// naming the version the stream is at) and writes nothing.
pub async fn conflict_contract(store: Arc<dyn EventStore>) {
    let stream = StreamId::new("Account", "a-1");
    let ctx = Context::new();
    store
        .append(&stream, 0, &[event("e", 1, &ctx), event("e", 2, &ctx)])
        .await
        .unwrap();
    for expected in [0, 1, 3, 7] {
        let err = store
            .append(&stream, expected, &[event("e", 9, &ctx)])
            .await
            .unwrap_err();
        assert_eq!(
            (err.kind(), err.code()),
            (ErrorKind::Conflict, codes::EVENT_CONFLICT),
            "{err}"
        );
        assert!(err.message().contains("is at version 2"), "{err}");
    }
    assert_eq!(store.version(&stream).await.unwrap(), 2);
    assert_eq!(store.load(&stream, 0).await.unwrap().len(), 2);
}

/// A batch is appended whole or not at all: one reused event id
/// (`flext.event.duplicate_id`) keeps every event of it out.
pub async fn batch_contract(store: Arc<dyn EventStore>) {
    let stream = StreamId::new("Account", "a-1");
    let ctx = Context::new();
    let first = event("e", 1, &ctx);
    store
        .append(&stream, 0, std::slice::from_ref(&first))
        .await
        .unwrap();
    // The batch's second event reuses a stored id: nothing of the batch is kept.
    let mut reused = event("e", 3, &ctx);
    reused.event_id = first.event_id;
    let err = store
        .append(&stream, 1, &[event("e", 2, &ctx), reused])
        .await
        .unwrap_err();
    assert_eq!(err.code(), codes::EVENT_DUPLICATE_ID, "{err}");
    assert_eq!(store.version(&stream).await.unwrap(), 1);
    assert_eq!(store.read_all(0, 100).await.unwrap().len(), 1);
    // The stream goes on from where it was.
    assert_eq!(
        store
            .append(&stream, 1, &[event("e", 2, &ctx)])
            .await
            .unwrap(),
        2
    );
}

/// Every stream reads back in one global order, paged by position.
pub async fn global_order_contract(store: Arc<dyn EventStore>) {
    let ctx = Context::new();
    let a = StreamId::new("Account", "a");
    let b = StreamId::new("Account", "b");
    store.append(&a, 0, &[event("e", 1, &ctx)]).await.unwrap();
    store
        .append(&b, 0, &[event("e", 2, &ctx), event("e", 3, &ctx)])
        .await
        .unwrap();
    store.append(&a, 1, &[event("e", 4, &ctx)]).await.unwrap();
    let all = store.read_all(0, 100).await.unwrap();
    let order: Vec<(String, u64)> = all
        .iter()
        .map(|e| (e.aggregate_id.clone(), e.payload["n"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        order,
        [
            ("a".into(), 1),
            ("b".into(), 2),
            ("b".into(), 3),
            ("a".into(), 4)
        ]
    );
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    // Paging: after a position, at most a limit.
    let page = store.read_all(all[0].position, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.position).collect::<Vec<_>>(),
        [all[1].position, all[2].position]
    );
    assert!(
        store
            .read_all(all[3].position, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The newest snapshot of a stream is kept; an older one saved late does not replace it.
pub async fn snapshot_contract(store: Arc<dyn EventStore>) {
    let stream = StreamId::new("Account", "a-1");
    assert_eq!(store.load_snapshot(&stream).await.unwrap(), None);
    let snapshot = |version: u64| Snapshot {
        stream: stream.clone(),
        version,
        state: serde_json::json!({ "balance": version * 10 }),
        taken_ms: 1,
    };
    store.save_snapshot(&snapshot(100)).await.unwrap();
    store.save_snapshot(&snapshot(200)).await.unwrap();
    // An older snapshot arriving late does not replace the newer one.
    store.save_snapshot(&snapshot(150)).await.unwrap();
    assert_eq!(
        store.load_snapshot(&stream).await.unwrap(),
        Some(snapshot(200))
    );
    let other = StreamId::new("Account", "a-2");
    assert_eq!(store.load_snapshot(&other).await.unwrap(), None);
}

/// Eight writers, each with its own connection, append to one stream at once, each
/// reading the version and appending on it, again and again: every append succeeds or
/// is a conflict, and the stream ends with exactly the successful appends' events, in
/// a gapless sequence.
pub async fn racing_writers_contract(backend: &impl Backend) {
    let stream = StreamId::new("Account", "hot");
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..8u64 {
        let store = backend.connect().await;
        let stream = stream.clone();
        writers.spawn(async move {
            let ctx = Context::new();
            let (mut appended, mut conflicts) = (Vec::new(), 0);
            for n in 0..25u64 {
                let version = store.version(&stream).await.unwrap();
                let e = event("e", w * 1000 + n, &ctx);
                match store
                    .append(&stream, version, std::slice::from_ref(&e))
                    .await
                {
                    Ok(now) => {
                        assert_eq!(now, version + 1);
                        appended.push(e.event_id);
                    }
                    Err(err) => {
                        assert_eq!(err.code(), codes::EVENT_CONFLICT, "{err}");
                        conflicts += 1;
                    }
                }
                tokio::task::yield_now().await;
            }
            (appended, conflicts)
        });
    }
    let mut appended = Vec::new();
    let mut conflicts = 0;
    while let Some(done) = writers.join_next().await {
        let (ids, c) = done.unwrap();
        appended.extend(ids);
        conflicts += c;
    }
    assert_eq!(appended.len() + conflicts, 200);
    let store = backend.connect().await;
    let events = store.load(&stream, 0).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=appended.len() as u64).collect::<Vec<_>>(),
        "no gap"
    );
    let mut stored: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    stored.sort();
    appended.sort();
    assert_eq!(
        stored, appended,
        "every successful append is stored, nothing else"
    );
}
