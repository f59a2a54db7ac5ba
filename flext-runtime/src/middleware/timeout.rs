//! [`Timeout`]: bounds each dispatch by the context deadline or a per-message limit.

use std::time::{Duration, Instant};

use super::{Dispatch, Middleware, Next, Output};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::future::BoxFuture;

/// Fails a dispatch with [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) (code
/// `flext.bus.timed_out`) when it runs past the earliest of: the context's deadline,
/// the message's `timeout_ms`, and this middleware's default. The handler's future is
/// dropped at that point; the handler sees the tightened deadline in its context.
///
/// Needs a tokio runtime with the time driver.
///
/// ```
/// use std::time::Duration;
/// let timeout = flext::middleware::Timeout::default_after(Duration::from_secs(5));
/// # let _ = timeout;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Timeout {
    default: Option<Duration>,
}

impl Timeout {
    /// Bounds only by the context deadline and the messages' own `timeout_ms`.
    pub fn new() -> Self {
        Timeout { default: None }
    }

    /// Also bounds every dispatch by `limit`.
    pub fn default_after(limit: Duration) -> Self {
        Timeout {
            default: Some(limit),
        }
    }
}

impl Middleware for Timeout {
    fn handle<'a>(
        &'a self,
        dispatch: &'a Dispatch<'a>,
        ctx: Context,
        next: Next<'a>,
    ) -> BoxFuture<'a, Result<Output>> {
        let now = Instant::now();
        let own = [dispatch.timeout(), self.default]
            .into_iter()
            .flatten()
            .min()
            .map(|d| now + d);
        let deadline = [ctx.deadline(), own].into_iter().flatten().min();
        let Some(deadline) = deadline else {
            return next.run(ctx);
        };
        let ctx = ctx.with_deadline(deadline);
        Box::pin(async move {
            match tokio::time::timeout_at(deadline.into(), next.run(ctx)).await {
                Ok(result) => result,
                Err(_) => Err(Error::timeout(
                    crate::codes::BUS_TIMED_OUT,
                    format!(
                        "`{}` did not finish within {} ms",
                        dispatch.name(),
                        (deadline.saturating_duration_since(now).as_secs_f64() * 1000.0).round()
                    ),
                )),
            }
        })
    }
}
