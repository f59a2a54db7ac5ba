//! [`MemoryEventStore`]: streams in memory, for tests and examples.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use uuid::Uuid;

use super::store::{conflict, duplicate_id};
use super::{EventEnvelope, EventStore, NewEvent, Snapshot, StreamId};
use crate::error::Result;
use crate::future::BoxFuture;
use crate::saga::now_ms;

/// An event store in memory: survives nothing but the values holding it. Cheap to share
/// behind an `Arc`.
#[derive(Default)]
pub struct MemoryEventStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Every event, in global order (position = index + 1).
    all: Vec<EventEnvelope>,
    /// Each stream's events, as indexes into `all`.
    streams: HashMap<StreamId, Vec<usize>>,
    ids: HashSet<Uuid>,
    snapshots: HashMap<StreamId, Snapshot>,
}

impl MemoryEventStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> Result<T>) -> Result<T> {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl EventStore for MemoryEventStore {
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected_version: u64,
        events: &'a [NewEvent],
    ) -> BoxFuture<'a, Result<u64>> {
        let result = self.with(|inner| {
            let version = inner.streams.get(stream).map_or(0, |s| s.len() as u64);
            if version != expected_version {
                return Err(conflict(stream, expected_version, version));
            }
            let mut fresh = HashSet::new();
            for e in events {
                if inner.ids.contains(&e.event_id) || !fresh.insert(e.event_id) {
                    return Err(duplicate_id(e.event_id));
                }
            }
            let now = now_ms();
            let Inner {
                all, streams, ids, ..
            } = inner;
            let indexes = streams.entry(stream.clone()).or_default();
            for (i, e) in events.iter().enumerate() {
                let position = all.len() as u64 + 1;
                all.push(EventEnvelope::stored(
                    stream,
                    version + i as u64 + 1,
                    position,
                    now,
                    e,
                ));
                indexes.push(all.len() - 1);
                ids.insert(e.event_id);
            }
            Ok(version + events.len() as u64)
        });
        Box::pin(std::future::ready(result))
    }

    fn load<'a>(
        &'a self,
        stream: &'a StreamId,
        after: u64,
    ) -> BoxFuture<'a, Result<Vec<EventEnvelope>>> {
        let result = self.with(|inner| {
            Ok(inner.streams.get(stream).map_or_else(Vec::new, |s| {
                s.iter()
                    .skip(usize::try_from(after).unwrap_or(usize::MAX))
                    .map(|&i| inner.all[i].clone())
                    .collect()
            }))
        });
        Box::pin(std::future::ready(result))
    }

    /// Hands the stored envelopes on under the store's lock, without copying them.
    fn replay<'a>(
        &'a self,
        stream: &'a StreamId,
        after: u64,
        apply: &'a mut (dyn FnMut(&EventEnvelope) -> Result<()> + Send),
    ) -> BoxFuture<'a, Result<()>> {
        let result = self.with(|inner| {
            if let Some(s) = inner.streams.get(stream) {
                for &i in s.iter().skip(usize::try_from(after).unwrap_or(usize::MAX)) {
                    apply(&inner.all[i])?;
                }
            }
            Ok(())
        });
        Box::pin(std::future::ready(result))
    }

    fn version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<u64>> {
        let result = self.with(|inner| Ok(inner.streams.get(stream).map_or(0, |s| s.len() as u64)));
        Box::pin(std::future::ready(result))
    }

    fn read_all<'a>(
        &'a self,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<EventEnvelope>>> {
        let result = self.with(|inner| {
            Ok(inner
                .all
                .iter()
                .skip(usize::try_from(after).unwrap_or(usize::MAX))
                .take(limit)
                .cloned()
                .collect())
        });
        Box::pin(std::future::ready(result))
    }

    fn save_snapshot<'a>(&'a self, snapshot: &'a Snapshot) -> BoxFuture<'a, Result<()>> {
        let result = self.with(|inner| {
            let newer = inner
                .snapshots
                .get(&snapshot.stream)
                .is_none_or(|kept| kept.version < snapshot.version);
            if newer {
                inner
                    .snapshots
                    .insert(snapshot.stream.clone(), snapshot.clone());
            }
            Ok(())
        });
        Box::pin(std::future::ready(result))
    }

    fn load_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
    ) -> BoxFuture<'a, Result<Option<Snapshot>>> {
        let result = self.with(|inner| Ok(inner.snapshots.get(stream).cloned()));
        Box::pin(std::future::ready(result))
    }
}
