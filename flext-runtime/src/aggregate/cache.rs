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

/// A command's place in its aggregate's queue: its handle on the aggregate's lock,
/// released when the command ends, however it ends (also when its future is dropped
/// mid-await, a cancelled or timed-out command), so that no entry outlives its users.
pub(super) struct Turn {
    serial: Arc<Serial>,
    id: String,
    lock: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl Turn {
    /// Waits for the aggregate's lock.
    pub(super) async fn wait(&self) -> tokio::sync::MutexGuard<'_, ()> {
        match &self.lock {
            Some(lock) => lock.lock().await,
            // Taken only by `drop`.
            None => unreachable!("a turn holds its lock until it is dropped"),
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(lock) = self.lock.take() {
            self.serial.release(&self.id, lock);
        }
    }
}

impl Serial {
    /// A place in `id`'s queue.
    pub(super) fn enter(self: &Arc<Self>, id: &str) -> Turn {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(id.to_owned())
            .or_default()
            .clone();
        Turn {
            serial: self.clone(),
            id: id.to_owned(),
            lock: Some(lock),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Forgets `id`'s lock when no command holds or awaits it.
    fn release(&self, id: &str, lock: Arc<tokio::sync::Mutex<()>>) {
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

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};

    use super::Serial;

    /// Polls `f` once (it waits on the lock or holds it), then drops it: a command
    /// cancelled mid-await.
    fn cancel_after_one_poll(f: impl Future<Output = ()>) {
        let mut f = Box::pin(f);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(f.as_mut().poll(&mut cx), Poll::Pending));
    }

    #[test]
    fn a_cancelled_command_leaves_no_queue_entry_behind() {
        let serial = Arc::new(Serial::default());
        // Cancelled while holding the lock.
        cancel_after_one_poll(async {
            let turn = serial.enter("a-1");
            let _held = turn.wait().await;
            std::future::pending::<()>().await;
        });
        assert_eq!(serial.len(), 0);
        // Cancelled while waiting behind another command: the entry stays for the
        // holder, and goes with it.
        let holder = serial.enter("a-2");
        let held = futures_util::FutureExt::now_or_never(holder.wait()).unwrap();
        cancel_after_one_poll(async {
            let turn = serial.enter("a-2");
            let _held = turn.wait().await;
        });
        assert_eq!(serial.len(), 1);
        drop(held);
        drop(holder);
        assert_eq!(serial.len(), 0);
    }
}
