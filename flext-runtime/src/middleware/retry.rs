//! [`Retry`]: retries idempotent messages with exponential backoff.

use std::time::Duration;

use super::{Dispatch, Middleware, Next, Output};
use crate::backoff::Backoff;
use crate::context::Context;
use crate::error::Result;
use crate::future::BoxFuture;

/// Runs a failed dispatch again when the message is marked idempotent
/// (`#[command(output = T, idempotent)]`) and the error is transient
/// ([`ErrorKind::is_transient`](crate::ErrorKind::is_transient): timeout or
/// infrastructure). Waits `base`, then `2 * base`, `4 * base`, ... capped at `max`,
/// between attempts, and makes at most `attempts` attempts in all; the last error is
/// returned. Non-idempotent messages and other errors are never retried.
///
/// Place it outside [`Timeout`](super::Timeout) to bound each attempt, inside to bound
/// all of them together. Needs a tokio runtime with the time driver.
///
/// ```
/// use std::time::Duration;
/// let retry = flext::middleware::Retry::new(3).backoff(Duration::from_millis(10), Duration::from_secs(1));
/// # let _ = retry;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    attempts: u32,
    backoff: Backoff,
}

impl Retry {
    /// At most `attempts` attempts (at least 1), 50 ms base backoff capped at 5 s.
    pub fn new(attempts: u32) -> Self {
        Retry {
            attempts: attempts.max(1),
            backoff: Backoff::new(Duration::from_millis(50), Duration::from_secs(5)),
        }
    }

    /// Sets the first wait and the cap of the exponential backoff ([`Backoff`]).
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff = Backoff::new(base, max);
        self
    }

    /// The wait before attempt `n + 1` (after the `n`-th failure, `n` from 1).
    pub fn delay(&self, n: u32) -> Duration {
        self.backoff.delay(n)
    }
}

impl Middleware for Retry {
    fn handle<'a>(
        &'a self,
        dispatch: &'a Dispatch<'a>,
        ctx: Context,
        next: Next<'a>,
    ) -> BoxFuture<'a, Result<Output>> {
        if !dispatch.idempotent() || self.attempts == 1 {
            return next.run(ctx);
        }
        Box::pin(async move {
            let mut attempt = 1;
            loop {
                match next.run(ctx.clone()).await {
                    Err(e) if e.kind().is_transient() && attempt < self.attempts => {
                        let wait = self.delay(attempt);
                        tracing::info!(
                            message = dispatch.name(),
                            attempt,
                            wait_ms = wait.as_millis() as u64,
                            error = %e,
                            "retrying idempotent message"
                        );
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                    result => return result,
                }
            }
        })
    }
}
