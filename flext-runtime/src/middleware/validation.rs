//! [`Validation`]: runs the message's business rules before its handler.

use super::{Dispatch, Middleware, Next, Output};
use crate::context::Context;
use crate::error::Result;
use crate::future::BoxFuture;

/// Runs [`Message::validate`](crate::Message::validate), the message's
/// `#[business_rules]` when it is marked `validate`, before the handler; on violations the
/// dispatch fails with [`ErrorKind::RuleViolation`](crate::ErrorKind::RuleViolation)
/// listing every one, and the handler does not run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Validation;

impl Middleware for Validation {
    fn handle<'a>(
        &'a self,
        dispatch: &'a Dispatch<'a>,
        ctx: Context,
        next: Next<'a>,
    ) -> BoxFuture<'a, Result<Output>> {
        match dispatch.validate() {
            Ok(()) => next.run(ctx),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}
