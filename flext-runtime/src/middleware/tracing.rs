//! [`Tracing`]: one span per dispatch.

use tracing::Instrument;

use super::{Dispatch, Middleware, Next, Output};
use crate::context::Context;
use crate::error::Result;
use crate::future::BoxFuture;

/// Opens an INFO span `flext.dispatch` around each dispatch with the fields `message`,
/// `kind`, `handler`, `message_id` (the handler context's id), `correlation_id`,
/// `causation_id` and, on failure, `error_code`; logs failures at WARN.
///
/// ```
/// let bus = flext::Bus::builder().middleware(flext::middleware::Tracing).build().unwrap();
/// # let _ = bus;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Tracing;

impl Middleware for Tracing {
    fn handle<'a>(
        &'a self,
        dispatch: &'a Dispatch<'a>,
        ctx: Context,
        next: Next<'a>,
    ) -> BoxFuture<'a, Result<Output>> {
        let span = tracing::info_span!(
            "flext.dispatch",
            message = dispatch.name(),
            kind = dispatch.kind().as_str(),
            handler = dispatch.handler(),
            message_id = %ctx.id(),
            correlation_id = %ctx.correlation_id(),
            causation_id = ctx.causation_id().map(tracing::field::display),
            error_code = tracing::field::Empty,
        );
        // No subscriber wants the span: pass the dispatch through, no future of our own.
        if span.is_disabled() {
            return next.run(ctx);
        }
        let recorder = span.clone();
        Box::pin(
            async move {
                let result = next.run(ctx).await;
                if let Err(e) = &result {
                    recorder.record("error_code", e.code());
                    tracing::warn!(error = %e, "dispatch failed");
                }
                result
            }
            .instrument(span),
        )
    }
}
