//! Middleware around every bus dispatch: the source documents' handler chain and
//! pipeline, MediatR's pipeline behaviours, Axon's dispatch interceptors.
//!
//! A middleware receives the [`Dispatch`] (which message, for which handler), the
//! handler's [`Context`], and [`Next`], the rest of the chain. It may act before and
//! after `next.run(ctx)`, run it several times (retry), change the context it passes on
//! (timeout), or return an error without running it (authorization, validation). What
//! `next.run` returns on success is the handler's [`Output`], type-erased; a middleware
//! passes it on (or looks at it), and cannot make one up, so a dispatch that succeeds
//! has always run its handler.
//!
//! Built in, each in its own module: [`Tracing`], [`Metrics`], [`Timeout`], [`Retry`],
//! [`Authorize`], [`Validation`]. Write your own by implementing [`Middleware`].
//!
//! Why not tower: a tower `Service` is typed by its request, so a bus of many message
//! types would need one stack per type, and `poll_ready` back-pressure has no meaning for
//! an in-process dispatch. This trait is object safe and sees every message the same way.

mod authorize;
mod breaker;
mod metrics;
mod retry;
mod timeout;
mod tracing;
mod validation;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

pub use self::authorize::Authorize;
pub use self::breaker::{
    BreakerState, BreakerTransition, CircuitBreaker, CircuitBreakerBuilder, Trip,
};
pub use self::metrics::Metrics;
pub use self::retry::Retry;
pub use self::timeout::Timeout;
pub use self::tracing::Tracing;
pub use self::validation::Validation;
use crate::context::Context;
use crate::error::Result;
use crate::future::BoxFuture;
use crate::message::{Message, MessageKind};

/// Wraps every dispatch of a [`Bus`](crate::Bus).
///
/// `handle` calls `next.run(ctx)` to reach the handler and returns what it returns (the
/// handler's [`Output`]), or returns an error without running it. An [`Output`] cannot
/// be built outside the bus, so success always means the handler ran.
///
/// ```rust,standalone_crate
/// use flext::prelude::*;
/// use flext::middleware::{Dispatch, Middleware, Next, Output};
/// use flext::BoxFuture;
/// use std::sync::{Arc, Mutex};
///
/// /// Records the name of every message dispatched.
/// struct Audit(Arc<Mutex<Vec<&'static str>>>);
///
/// impl Middleware for Audit {
///     fn handle<'a>(&'a self, dispatch: &'a Dispatch<'a>, ctx: Context, next: Next<'a>)
///         -> BoxFuture<'a, Result<Output>>
///     {
///         Box::pin(async move {
///             self.0.lock().unwrap().push(dispatch.name());
///             next.run(ctx).await
///         })
///     }
/// }
///
/// #[query(output = u8)]
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Ping;
///
/// #[query_handler]
/// fn ping(_: Ping) -> Result<u8> { Ok(1) }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let bus = Bus::builder().middleware(Audit(seen.clone())).build().unwrap();
/// bus.query(Ping, &Context::new()).await.unwrap();
/// assert_eq!(*seen.lock().unwrap(), ["Ping"]);
/// # }
/// ```
pub trait Middleware: Send + Sync + 'static {
    /// Handles one dispatch. `ctx` is the handler's context (a child of the caller's).
    fn handle<'a>(
        &'a self,
        dispatch: &'a Dispatch<'a>,
        ctx: Context,
        next: Next<'a>,
    ) -> BoxFuture<'a, Result<Output>>;
}

/// The output of a handler, type-erased, as it travels back through the middleware
/// chain. Only the bus makes one (from what the handler returned); a middleware gets it
/// from [`Next::run`] and returns it, or looks at it with [`downcast_ref`](Self::downcast_ref).
pub struct Output(Box<dyn Any + Send>);

impl Output {
    pub(crate) fn new<O: Send + 'static>(value: O) -> Self {
        Output(Box::new(value))
    }

    /// The output, when the handler returns a `T`.
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }

    /// The output as an `O`, or itself when it is something else.
    pub(crate) fn take<O: 'static>(self) -> std::result::Result<O, Output> {
        self.0.downcast().map(|b| *b).map_err(Output)
    }
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Output(..)")
    }
}

/// What a middleware knows about the dispatch it wraps.
pub struct Dispatch<'a> {
    name: &'static str,
    kind: MessageKind,
    handler: &'static str,
    idempotent: bool,
    timeout: Option<Duration>,
    message: &'a (dyn Any + Send + Sync),
    validate: fn(&(dyn Any + Send + Sync)) -> Result<()>,
}

impl<'a> Dispatch<'a> {
    pub(crate) fn new<M: Message>(message: &'a M, handler: &'static str) -> Self {
        Dispatch {
            name: M::NAME,
            kind: M::KIND,
            handler,
            idempotent: M::IDEMPOTENT,
            timeout: M::timeout(),
            message,
            validate: validate_erased::<M>,
        }
    }

    /// The message's stable name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Command, query or event.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// The handler the dispatch goes to.
    pub fn handler(&self) -> &'static str {
        self.handler
    }

    /// Whether the message is marked idempotent (may be retried).
    pub fn idempotent(&self) -> bool {
        self.idempotent
    }

    /// The message's own timeout, if it declares one.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The message, when it is an `M`.
    pub fn message<M: 'static>(&self) -> Option<&M> {
        self.message.downcast_ref()
    }

    /// Runs the message's business rules.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::RuleViolation`](crate::ErrorKind::RuleViolation) with every violation.
    pub fn validate(&self) -> Result<()> {
        (self.validate)(self.message)
    }
}

fn validate_erased<M: Message>(message: &(dyn Any + Send + Sync)) -> Result<()> {
    match message.downcast_ref::<M>() {
        Some(m) => m.validate(),
        None => Ok(()),
    }
}

type Endpoint<'a> = dyn Fn(Context) -> BoxFuture<'a, Result<Output>> + Send + Sync + 'a;

/// The rest of the middleware chain, ending at the handler. `Copy`, so a middleware can
/// run it more than once (retry).
#[derive(Clone, Copy)]
pub struct Next<'a> {
    rest: &'a [Arc<dyn Middleware>],
    dispatch: &'a Dispatch<'a>,
    endpoint: &'a Endpoint<'a>,
}

impl<'a> Next<'a> {
    pub(crate) fn new(
        chain: &'a [Arc<dyn Middleware>],
        dispatch: &'a Dispatch<'a>,
        endpoint: &'a Endpoint<'a>,
    ) -> Self {
        Next {
            rest: chain,
            dispatch,
            endpoint,
        }
    }

    /// Runs the rest of the chain and the handler under `ctx`; on success, the handler's
    /// output.
    ///
    /// # Errors
    ///
    /// Whatever the inner middleware or the handler returns.
    pub fn run(self, ctx: Context) -> BoxFuture<'a, Result<Output>> {
        match self.rest.split_first() {
            Some((first, rest)) => first.handle(
                self.dispatch,
                ctx,
                Next {
                    rest,
                    dispatch: self.dispatch,
                    endpoint: self.endpoint,
                },
            ),
            None => (self.endpoint)(ctx),
        }
    }
}
