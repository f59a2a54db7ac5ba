//! The background loop behind every runner's `spawn`: a pass now, then one every
//! period, until shut down.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// A task running `pass` now and then every `every`, until [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub(crate) struct Background {
    stop: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Background {
    /// Spawns the loop on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub(crate) fn spawn<F, Fut>(every: Duration, mut pass: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                pass().await;
                let wait = std::pin::pin!(tokio::time::sleep(every));
                let stop = std::pin::pin!(stopped.notified());
                if let futures_util::future::Either::Right(_) =
                    futures_util::future::select(wait, stop).await
                {
                    break;
                }
            }
        });
        Background { stop, task }
    }

    /// Stops the loop after its current pass; returns when it has.
    pub(crate) async fn shutdown(self) {
        self.stop.notify_one();
        let _ = self.task.await;
    }
}
