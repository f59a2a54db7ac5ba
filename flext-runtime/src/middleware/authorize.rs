//! [`Authorize`]: a predicate over the principal and the message.

use std::sync::Arc;

use super::{Dispatch, Interceptor};
use crate::context::{Context, Principal};
use crate::error::{Error, Result};

type Predicate = dyn Fn(Option<&Principal>, &Dispatch<'_>) -> bool + Send + Sync;

/// Fails a dispatch with [`ErrorKind::Unauthorized`](crate::ErrorKind::Unauthorized)
/// (code `flext.bus.unauthorized`) unless the predicate allows the context's principal to
/// send the message. The handler does not run.
///
/// ```
/// use flext::middleware::Authorize;
/// use flext::MessageKind;
///
/// // Commands need the "writer" role; queries and events pass.
/// let authorize = Authorize::new(|principal, dispatch| {
///     dispatch.kind() != MessageKind::Command || principal.is_some_and(|p| p.has_role("writer"))
/// });
/// # let _ = authorize;
/// ```
#[derive(Clone)]
pub struct Authorize {
    predicate: Arc<Predicate>,
}

impl Authorize {
    /// Allows a dispatch when `predicate(principal, dispatch)` is true. Use
    /// [`Dispatch::message`] to look at the message itself.
    pub fn new(
        predicate: impl Fn(Option<&Principal>, &Dispatch<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        Authorize {
            predicate: Arc::new(predicate),
        }
    }

    /// Allows every message to principals with `role`, and nothing to anonymous callers.
    pub fn require_role(role: impl Into<String>) -> Self {
        let role = role.into();
        Self::new(move |principal, _| principal.is_some_and(|p| p.has_role(&role)))
    }
}

impl std::fmt::Debug for Authorize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorize").finish_non_exhaustive()
    }
}

impl Interceptor for Authorize {
    fn before(&self, dispatch: &Dispatch<'_>, ctx: &Context) -> Result<()> {
        if (self.predicate)(ctx.principal(), dispatch) {
            return Ok(());
        }
        let who = ctx.principal().map_or_else(
            || "an anonymous caller".to_owned(),
            |p| format!("principal `{}`", p.id),
        );
        Err(Error::unauthorized(
            crate::codes::BUS_UNAUTHORIZED,
            format!(
                "{who} may not dispatch {} `{}`",
                dispatch.kind().as_str(),
                dispatch.name()
            ),
        ))
    }
}
