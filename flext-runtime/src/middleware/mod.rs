//! Middleware around every bus dispatch: the source documents' handler chain and
//! pipeline, MediatR's pipeline behaviours and pre/post-processors, Axon's dispatch and
//! handler interceptors. Two forms, so that each costs what it does:
//!
//! - An [`Interceptor`] looks before and after: `before` may refuse the dispatch,
//!   `after` sees the handler's output or the error. The bus runs interceptors as a loop
//!   over a slice, with no future and no allocation of their own; the built-in
//!   [`Tracing`], [`Metrics`], [`Authorize`] and [`Validation`] are interceptors.
//! - A wrapping [`Middleware`] holds the rest of the dispatch as a future: it receives
//!   the [`Dispatch`] (which message, for which handler), the handler's [`Context`], and
//!   [`Next`], the rest of the chain. It may act before and after `next.run(ctx)`, run
//!   it several times (retry), change the context it passes on (timeout), or return an
//!   error without running it. What `next.run` returns on success is the handler's
//!   [`Output`], type-erased; a middleware passes it on (or looks at it), and cannot make
//!   one up, so a dispatch that succeeds has always run its handler. The built-in
//!   [`Timeout`], [`Retry`] and [`CircuitBreaker`] are wrapping middleware.
//!
//! Interceptors run outside the wrapping chain: every `before` in the order added, then
//! the wrapping middleware in the order added, then the handler, then every `after` in
//! reverse order.
//!
//! Why not tower: a tower `Service` is typed by its request, so a bus of many message
//! types would need one stack per type, and `poll_ready` back-pressure has no meaning for
//! an in-process dispatch. These traits are object safe and see every message the same
//! way.

mod authorize;
mod breaker;
mod dispatch;
mod metrics;
mod retry;
mod timeout;
mod tracing;
mod validation;

use std::any::Any;
use std::sync::Arc;

pub use self::authorize::Authorize;
pub use self::breaker::{
    BreakerState, BreakerTransition, CircuitBreaker, CircuitBreakerBuilder, Trip,
};
pub(crate) use self::dispatch::Cells;
pub use self::dispatch::Dispatch;
pub use self::metrics::Metrics;
pub use self::retry::Retry;
pub use self::timeout::Timeout;
pub use self::tracing::Tracing;
pub use self::validation::Validation;
use crate::context::Context;
use crate::error::Result;
use crate::future::BoxFuture;

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

/// Middleware that only looks before and after a dispatch: tracing, metrics,
/// authorization, validation. The bus runs the interceptors as a loop over a slice,
/// with no future and no allocation of their own: `before` in the order they were
/// added, then the wrapping [`Middleware`] and the handler, then `after` in reverse
/// order. This is MediatR's request pre- and post-processors and Axon's handler
/// interceptors; a middleware that must hold the handler's future (timeout, retry,
/// circuit breaker) implements [`Middleware`] instead.
///
/// Add one with [`BusBuilder::interceptor`](crate::BusBuilder::interceptor); the
/// built-in [`Tracing`], [`Metrics`], [`Authorize`] and [`Validation`] are interceptors
/// that [`BusBuilder::middleware`](crate::BusBuilder::middleware) also takes.
///
/// If `before` returns an error, the dispatch stops there: the handler is not called,
/// and `after` runs for the interceptors whose `before` returned `Ok`, with that error.
///
/// ```rust,standalone_crate
/// use flext::prelude::*;
/// use flext::middleware::{Dispatch, Interceptor};
/// use std::sync::{Arc, Mutex};
///
/// /// Records every dispatch and how it ended.
/// struct Audit(Arc<Mutex<Vec<String>>>);
///
/// impl Interceptor for Audit {
///     fn before(&self, dispatch: &Dispatch<'_>, _: &Context) -> Result<()> {
///         self.0.lock().unwrap().push(format!("> {}", dispatch.name()));
///         Ok(())
///     }
///     fn after(&self, dispatch: &Dispatch<'_>, _: &Context, outcome: std::result::Result<&dyn std::any::Any, &Error>) {
///         let seen = match outcome {
///             Ok(output) => format!("< {} = {:?}", dispatch.name(), output.downcast_ref::<u8>()),
///             Err(e) => format!("< {} failed: {}", dispatch.name(), e.code()),
///         };
///         self.0.lock().unwrap().push(seen);
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
/// let bus = Bus::builder().interceptor(Audit(seen.clone())).build().unwrap();
/// bus.query(Ping, &Context::new()).await.unwrap();
/// assert_eq!(*seen.lock().unwrap(), ["> Ping", "< Ping = Some(1)"]);
/// # }
/// ```
pub trait Interceptor: Send + Sync + 'static {
    /// Runs before the handler, with the caller's context (the handler's own id is
    /// [`Dispatch::message_id`]).
    ///
    /// # Errors
    ///
    /// An error stops the dispatch: the caller gets it, and the handler is not called.
    fn before(&self, dispatch: &Dispatch<'_>, ctx: &Context) -> Result<()> {
        let _ = (dispatch, ctx);
        Ok(())
    }

    /// Runs after the handler, or after a later interceptor refused the dispatch, with
    /// the handler's output (downcast it to the message's output type) or the error.
    fn after(
        &self,
        dispatch: &Dispatch<'_>,
        ctx: &Context,
        outcome: std::result::Result<&dyn Any, &crate::error::Error>,
    ) {
        let _ = (dispatch, ctx, outcome);
    }

    /// Whether this interceptor reads [`Dispatch::elapsed`]; when one of a bus's
    /// interceptors does, the bus reads the clock at the start of each dispatch.
    fn timed(&self) -> bool {
        false
    }
}

/// What [`BusBuilder::middleware`](crate::BusBuilder::middleware) takes: any
/// [`Middleware`], and the built-in interceptors ([`Tracing`], [`Metrics`],
/// [`Authorize`], [`Validation`]). Add an interceptor of your own with
/// [`BusBuilder::interceptor`](crate::BusBuilder::interceptor).
pub trait Layer {
    #[doc(hidden)]
    fn into_layer(self) -> Installed;
}

/// How a [`Layer`] runs. Used by the bus builder.
#[doc(hidden)]
pub enum Installed {
    /// Wraps the handler's future.
    Wrap(Arc<dyn Middleware>),
    /// Looks before and after.
    Intercept(Arc<dyn Interceptor>),
}

impl<M: Middleware> Layer for M {
    fn into_layer(self) -> Installed {
        Installed::Wrap(Arc::new(self))
    }
}

macro_rules! interceptor_layers {
    ($($t:ty),*) => {$(
        impl Layer for $t {
            fn into_layer(self) -> Installed {
                Installed::Intercept(Arc::new(self))
            }
        }
    )*};
}
interceptor_layers!(Tracing, Metrics, Authorize, Validation);

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

    /// The output itself, for an interceptor's `after`.
    pub(crate) fn as_any(&self) -> &dyn Any {
        &*self.0
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
