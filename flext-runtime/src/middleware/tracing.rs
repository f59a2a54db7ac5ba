//! [`Tracing`]: one span per dispatch.

use std::any::Any;

use super::{Dispatch, Interceptor};
use crate::context::Context;
use crate::error::{Error, Result};

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

impl Interceptor for Tracing {
    fn before(&self, dispatch: &Dispatch<'_>, ctx: &Context) -> Result<()> {
        // With no subscriber wanting the span, the macro is one atomic load: nothing
        // is recorded or entered.
        let span = tracing::info_span!(
            "flext.dispatch",
            message = dispatch.name(),
            kind = dispatch.kind().as_str(),
            handler = dispatch.handler(),
            message_id = %dispatch.message_id(),
            correlation_id = %ctx.correlation_id(),
            causation_id = %ctx.id(),
            error_code = tracing::field::Empty,
        );
        if !span.is_disabled() {
            dispatch.enter_span(span);
        }
        Ok(())
    }

    fn after(
        &self,
        dispatch: &Dispatch<'_>,
        _: &Context,
        outcome: std::result::Result<&dyn Any, &Error>,
    ) {
        if let (Err(e), Some(span)) = (outcome, dispatch.span()) {
            span.record("error_code", e.code());
            span.in_scope(|| tracing::warn!(error = %e, "dispatch failed"));
        }
    }
}
