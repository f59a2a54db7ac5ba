//! [`Validation`]: runs the message's business rules before its handler.

use super::{Dispatch, Interceptor};
use crate::context::Context;
use crate::error::Result;

/// Runs [`Message::validate`](crate::Message::validate), the message's
/// `#[business_rules]` when it is marked `validate`, before the handler; on violations the
/// dispatch fails with [`ErrorKind::RuleViolation`](crate::ErrorKind::RuleViolation)
/// listing every one, and the handler does not run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Validation;

impl Interceptor for Validation {
    fn before(&self, dispatch: &Dispatch<'_>, _: &Context) -> Result<()> {
        dispatch.validate()
    }
}
