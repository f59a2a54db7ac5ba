//! What a [`Repository`](super::Repository) keeps in memory: aggregates as the last
//! command left them ([`Repository::cache`](super::Repository::cache)), and one queue per
//! aggregate id ([`Repository::one_command_at_a_time`](super::Repository::one_command_at_a_time)).

use std::sync::Arc;

use super::Loaded;

/// One lock per aggregate id with commands waiting: [`Repository::one_command_at_a_time`].
#[derive(Default)]
pub(super) struct Serial {
    locks: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Serial {
    pub(super) fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(id.to_owned())
            .or_default()
            .clone()
    }

    /// Forgets `id`'s lock when no command holds or awaits it.
    pub(super) fn release(&self, id: &str, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The map's handle and this one: nobody else is waiting.
        if Arc::strong_count(&lock) == 2 {
            locks.remove(id);
        }
    }
}

/// Aggregates as the last command left them, by id: [`Repository::cache`].
pub(super) struct Cache<A> {
    pub(super) entries: std::sync::Mutex<std::collections::HashMap<String, Loaded<A>>>,
    pub(super) capacity: usize,
    pub(super) clone: fn(&A) -> A,
}

impl<A> Cache<A> {
    pub(super) fn take(&self, id: &str) -> Option<Loaded<A>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id)
    }

    pub(super) fn put(&self, id: String, state: &A, version: u64) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(&id) {
            // Full: forget one (the next command for it loads from the store).
            if let Some(victim) = entries.keys().next().cloned() {
                entries.remove(&victim);
            }
        }
        entries.insert(
            id,
            Loaded {
                state: (self.clone)(state),
                version,
            },
        );
    }
}
