//! The slow path of a dispatch, compiled once for every message type: interceptors
//! around an `async` handler, and the wrapping middleware chain. The typed part (the
//! handler and its message) sits behind [`Endpoint`], so that each command or query
//! instantiates only a small shim, not the whole path (issue 25, item 1: a type-erased
//! core, typed at the edges).

use std::any::Any;
use std::future::Future;
use std::sync::OnceLock;

use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use tracing::Instrument;

use super::Bus;
use super::dispatch::foreign_output;
use super::handler::{Handler, panicked};
use crate::context::Context;
use crate::error::Result;
use crate::future::BoxFuture;
use crate::message::Message;
use crate::middleware::{Cells, Dispatch, Next, Output};

/// A handler and its message, typed, behind the erased path.
pub(super) trait Endpoint<'a>: Send + Sync {
    /// The [`Dispatch`] interceptors and middleware see, over this message.
    fn dispatch<'c>(
        &'c self,
        cells: &'c Cells,
        memos: &'c [OnceLock<Box<dyn Any + Send + Sync>>],
        clock: bool,
    ) -> Dispatch<'c>;

    /// Runs the handler on a copy of the message: a wrapping middleware may call it
    /// more than once (retry).
    fn call(&self, ctx: Context) -> BoxFuture<'a, Result<Output>>;

    /// Runs the handler on the message itself, once.
    fn call_once(self: Box<Self>, ctx: Context) -> BoxFuture<'a, Result<Output>>;
}

/// The typed shim: what each message type instantiates.
pub(super) struct Typed<'a, M, O> {
    pub(super) bus: &'a Bus,
    pub(super) handler: &'a Handler<M, O>,
    pub(super) message: M,
}

impl<'a, M: Message, O: Send + 'static> Endpoint<'a> for Typed<'a, M, O> {
    fn dispatch<'c>(
        &'c self,
        cells: &'c Cells,
        memos: &'c [OnceLock<Box<dyn Any + Send + Sync>>],
        clock: bool,
    ) -> Dispatch<'c> {
        Dispatch::new::<M>(&self.message, self.handler.name, cells, memos, clock)
    }

    fn call(&self, ctx: Context) -> BoxFuture<'a, Result<Output>> {
        let (bus, handler, message) = (self.bus, self.handler, self.message.duplicate());
        Box::pin(async move { handler.call(message, &ctx, bus).await.map(Output::new) })
    }

    fn call_once(self: Box<Self>, ctx: Context) -> BoxFuture<'a, Result<Output>> {
        let Typed {
            bus,
            handler,
            message,
        } = *self;
        Box::pin(async move { handler.call(message, &ctx, bus).await.map(Output::new) })
    }
}

impl Bus {
    /// Dispatches `message` through the erased path alone, to the handler's output boxed
    /// (take it with [`output_of`]): what [`send`](Bus::send) does (interceptors, middleware, statistics, a panic as
    /// `flext.bus.handler_panicked`), with the boxes the erased path costs (the endpoint,
    /// its future, the output) and none of the typed fast path's code per message type.
    /// For entry points that decode their message at run time (`send_json`,
    /// `query_json`), where the decode costs far more than the boxes, so that a crate
    /// that reaches its commands only by name compiles the typed path for none of them.
    ///
    /// # Errors
    ///
    /// As [`send`](Bus::send).
    pub(super) fn dispatch_erased<'a, M: Message, O: Send + 'static>(
        &'a self,
        message: M,
        ctx: &'a Context,
    ) -> impl Future<Output = Result<Output>> + 'a {
        // Only the lookup and the box are typed; the future is the same for every type.
        let endpoint = self.resolve::<M, O>().map(|(handler, index)| {
            let name = handler.name;
            let endpoint: Box<dyn Endpoint<'a> + 'a> = Box::new(Typed {
                bus: self,
                handler,
                message,
            });
            (endpoint, index, name)
        });
        observed_catching(self, endpoint, ctx)
    }

    /// The wrapping middleware chain around the handler, on a bus without interceptors.
    pub(super) async fn wrapped<'a>(
        &'a self,
        endpoint: Box<dyn Endpoint<'a> + 'a>,
        ctx: &'a Context,
    ) -> Result<Output> {
        let cells = Cells::default();
        let dispatch = endpoint.dispatch(&cells, &[], false);
        let child = cells.handler_context(ctx);
        self.through_middleware(&*endpoint, &dispatch, child).await
    }

    /// An `async` handler, or a wrapping middleware chain, between the interceptors;
    /// counted when statistics are on.
    pub(super) async fn observed<'a>(
        &'a self,
        endpoint: Box<dyn Endpoint<'a> + 'a>,
        index: usize,
        ctx: &'a Context,
    ) -> Result<Output> {
        let inner = &*self.inner;
        let stats = inner.stats.as_ref().map(|s| &s[index]);
        let started = stats.and_then(crate::registry::HandlerStats::start);
        let cells = Cells::default();
        let memos = self.memos(index);
        let dispatch = endpoint.dispatch(&cells, memos, inner.clock);
        let (ran, after, result) = match self.before(&dispatch, ctx) {
            Err((ran, e)) => (ran, dispatch.finish(&cells, memos), Err(e)),
            Ok(()) => {
                let span = cells.span().cloned();
                let child = cells.handler_context(ctx);
                if inner.middleware.is_empty() {
                    let after = dispatch.finish(&cells, memos);
                    let call = endpoint.call_once(child);
                    let result = match span {
                        Some(span) => call.instrument(span).await,
                        None => call.await,
                    };
                    (inner.interceptors.len(), after, result)
                } else {
                    let call = self.through_middleware(&*endpoint, &dispatch, child);
                    let result = match span {
                        Some(span) => call.instrument(span).await,
                        None => call.await,
                    };
                    (
                        inner.interceptors.len(),
                        dispatch.finish(&cells, memos),
                        result,
                    )
                }
            }
        };
        self.after(&after, ctx, ran, || result.as_ref().map(Output::as_any));
        if let Some(stats) = stats {
            stats.record(started, result.as_ref().err());
        }
        result
    }

    async fn through_middleware<'a>(
        &'a self,
        endpoint: &(dyn Endpoint<'a> + 'a),
        dispatch: &Dispatch<'_>,
        ctx: Context,
    ) -> Result<Output> {
        let call = |ctx: Context| endpoint.call(ctx);
        Next::new(&self.inner.middleware, dispatch, &call)
            .run(ctx)
            .await
    }
}

/// The handler's output from the erased path, as the `O` its message declares.
///
/// # Errors
///
/// `flext.bus.handler_type_mismatch` when a middleware returned another dispatch's output.
pub(super) fn output_of<O: 'static>(output: Output, message: &str) -> Result<O> {
    output.take::<O>().map_err(|_| foreign_output(message))
}

/// [`Bus::observed`] with a panic in a middleware or interceptor turned into
/// `flext.bus.handler_panicked` naming `handler`, as [`Dispatched`](super::Dispatched)
/// does around the futures it polls.
async fn observed_catching<'a>(
    bus: &'a Bus,
    endpoint: Result<(Box<dyn Endpoint<'a> + 'a>, usize, &'static str)>,
    ctx: &'a Context,
) -> Result<Output> {
    let (endpoint, index, handler) = endpoint?;
    match AssertUnwindSafe(bus.observed(endpoint, index, ctx))
        .catch_unwind()
        .await
    {
        Ok(result) => result,
        Err(panic) => Err(panicked(handler, panic)),
    }
}
