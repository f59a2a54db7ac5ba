//! Commands and queries: `send`, `query`, `send_local`, resolved handles, and the
//! dispatch through middleware and statistics.

use std::any::{Any, TypeId};
use std::sync::Arc;

use futures_util::FutureExt;

use super::Bus;
use super::dispatched::{Dispatched, Running, Waiting};
use super::erased::Typed;
use super::handler::{Handler, LocalHandler};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::message::{Command, Message, Query};
use crate::middleware::{Cells, Dispatch};
use crate::registry::HandlerStats;

/// A command or query handler resolved once, for call sites that dispatch the same
/// message type many times: it skips the lookup by type. Middleware and statistics still
/// apply. Get one with [`Bus::command_handle`] or [`Bus::query_handle`].
pub struct Handle<M, O> {
    bus: Bus,
    handler: Arc<Handler<M, O>>,
    index: usize,
}

impl<M: Message, O: Send + 'static> Handle<M, O> {
    /// Dispatches `message` to the resolved handler; same effects and errors as
    /// [`Bus::send`].
    #[inline]
    pub fn call<'a>(&'a self, message: M, ctx: &'a Context) -> Dispatched<'a, M, O> {
        Dispatched::new(&self.bus, ctx, Ok((&*self.handler, self.index)), message)
    }
}

impl Bus {
    /// Sends a command to its handler and returns the handler's output.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::NotFound`](crate::ErrorKind::NotFound), `flext.bus.no_handler`: no handler for `C` is linked.
    /// - [`ErrorKind::Internal`](crate::ErrorKind::Internal), `flext.bus.handler_panicked`: the handler panicked; the bus
    ///   keeps serving.
    /// - Whatever the handler or a middleware returns.
    #[inline]
    pub fn send<'a, C: Command>(
        &'a self,
        command: C,
        ctx: &'a Context,
    ) -> Dispatched<'a, C, C::Output> {
        Dispatched::new(self, ctx, self.resolve::<C, C::Output>(), command)
    }

    /// Runs a query on its handler; same effects and errors as [`send`](Self::send).
    #[inline]
    pub fn query<'a, Q: Query>(
        &'a self,
        query: Q,
        ctx: &'a Context,
    ) -> Dispatched<'a, Q, Q::Output> {
        Dispatched::new(self, ctx, self.resolve::<Q, Q::Output>(), query)
    }

    /// Calls the command's or query's handler that the compiler resolved: the handler in
    /// the message's own crate (see [`LocalHandler`]). Without middleware and statistics
    /// this is a direct, inlinable call with no lookup; with them, the dispatch goes
    /// through them as [`send`](Self::send) does. Sending a message that has no handler
    /// in its crate does not compile.
    ///
    /// The handler is called even if the bus's [`filter`](crate::BusBuilder::filter) left it
    /// out; its injected state is taken from the bus on each call.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send); [`ErrorKind::NotFound`](crate::ErrorKind::NotFound), `flext.bus.missing_state`, when
    /// the handler's state was not registered.
    ///
    /// ```rust,standalone_crate
    /// use flext::prelude::*;
    ///
    /// #[query(output = u32)]
    /// #[derive(Clone, serde::Serialize, serde::Deserialize)]
    /// struct Double(u32);
    ///
    /// #[query_handler]
    /// fn double(q: Double) -> Result<u32> { Ok(q.0 * 2) }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let bus = Bus::builder().record_stats(false).build().unwrap();
    /// assert_eq!(bus.send_local(Double(21), &Context::new()).await.unwrap(), 42);
    /// # }
    /// ```
    pub async fn send_local<M: LocalHandler>(
        &self,
        message: M,
        ctx: &Context,
    ) -> Result<M::Output> {
        let inner = &*self.inner;
        if inner.middleware.is_empty() && inner.interceptors.is_empty() && inner.stats.is_none() {
            let child;
            let ctx = if M::TAKES_CONTEXT {
                child = ctx.child();
                &child
            } else {
                ctx
            };
            return match std::panic::AssertUnwindSafe(M::handle(message, ctx, self))
                .catch_unwind()
                .await
            {
                Ok(result) => result,
                Err(panic) => Err(super::handler::panicked(M::HANDLER, panic)),
            };
        }
        Dispatched::new(self, ctx, self.resolve::<M, M::Output>(), message).await
    }

    /// Resolves the handler of command `C` once; see [`Handle`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound), `flext.bus.no_handler`, when no handler is linked.
    pub fn command_handle<C: Command>(&self) -> Result<Handle<C, C::Output>> {
        let (handler, index) = self.typed_slot::<C, C::Output>()?;
        Ok(Handle {
            bus: self.clone(),
            handler,
            index,
        })
    }

    /// Resolves the handler of query `Q` once; see [`Handle`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound), `flext.bus.no_handler`, when no handler is linked.
    pub fn query_handle<Q: Query>(&self) -> Result<Handle<Q, Q::Output>> {
        let (handler, index) = self.typed_slot::<Q, Q::Output>()?;
        Ok(Handle {
            bus: self.clone(),
            handler,
            index,
        })
    }

    #[inline]
    pub(super) fn resolve<M: Message, O: 'static>(&self) -> Result<(&Handler<M, O>, usize)> {
        match self.inner.handlers.get(&TypeId::of::<M>()) {
            Some(slot) => match slot.handler.downcast_ref::<Arc<Handler<M, O>>>() {
                Some(handler) => Ok((&**handler, slot.index)),
                None => Err(slot_mismatch(M::NAME)),
            },
            None => Err(no_handler::<M>()),
        }
    }

    /// The handler of `M` with its index, shared, for a [`Handle`].
    fn typed_slot<M: Message, O: 'static>(&self) -> Result<(Arc<Handler<M, O>>, usize)> {
        match self.inner.handlers.get(&TypeId::of::<M>()) {
            Some(slot) => match slot.handler.downcast_ref::<Arc<Handler<M, O>>>() {
                Some(handler) => Ok((Arc::clone(handler), slot.index)),
                None => Err(slot_mismatch(M::NAME)),
            },
            None => Err(no_handler::<M>()),
        }
    }

    /// The first poll of a dispatch: the result when it finished there (a synchronous
    /// handler without wrapping middleware), the running state otherwise.
    #[inline]
    pub(super) fn start<'a, M: Message, O: Send + 'static>(
        &'a self,
        handler: &'a Handler<M, O>,
        index: usize,
        message: M,
        ctx: &'a Context,
    ) -> std::result::Result<Result<O>, Running<'a, O>> {
        let inner = &*self.inner;
        if !inner.middleware.is_empty() || !handler.is_sync() {
            return Err(self.start_future(handler, index, message, ctx));
        }
        let stats = inner.stats.as_ref().map(|s| &s[index]);
        let started = stats.and_then(HandlerStats::start);
        let result = if !inner.interceptors.is_empty() {
            self.intercepted(handler, index, message, ctx)
        } else if handler.takes_context {
            let child = ctx.child();
            handler.call_sync(message, &child, self)
        } else {
            handler.call_sync(message, ctx, self)
        };
        if let Some(stats) = stats {
            stats.record(started, result.as_ref().err());
        }
        Ok(result)
    }

    /// The running state of a dispatch that needs a future: an `async` handler, or a
    /// wrapping middleware chain. Kept out of line, so that the synchronous path's poll
    /// stays small; the interceptor and middleware paths are compiled once for every
    /// message type (`erased.rs`).
    #[inline(never)]
    fn start_future<'a, M: Message, O: Send + 'static>(
        &'a self,
        handler: &'a Handler<M, O>,
        index: usize,
        message: M,
        ctx: &'a Context,
    ) -> Running<'a, O> {
        let inner = &*self.inner;
        if !inner.interceptors.is_empty() {
            // Counted inside, around the interceptors.
            let endpoint = Box::new(Typed {
                bus: self,
                handler,
                message,
            });
            return Running {
                future: Waiting::Erased(Box::pin(self.observed(endpoint, index, ctx))),
                handler: handler.name,
                stats: None,
            };
        }
        let stats = inner.stats.as_ref().map(|s| &s[index]);
        let started = stats.and_then(HandlerStats::start);
        let stats = stats.map(|s| (s, started));
        let future = if !inner.middleware.is_empty() {
            let endpoint = Box::new(Typed {
                bus: self,
                handler,
                message,
            });
            Waiting::Erased(Box::pin(self.wrapped(endpoint, ctx)))
        } else if handler.takes_context {
            // The child context lives in the future.
            let child = ctx.child();
            Waiting::Typed(Box::pin(async move {
                handler.call(message, &child, self).await
            }))
        } else {
            Waiting::Typed(match handler.start_async(message, ctx, self) {
                Ok(future) => future,
                Err(_) => Box::pin(std::future::ready(Err(unreachable_dispatch(handler.name)))),
            })
        };
        Running {
            future,
            handler: handler.name,
            stats,
        }
    }

    /// A synchronous handler between the interceptors: `before` in order, the handler
    /// in the span an interceptor set, `after` in reverse. The handler's child context
    /// is made only when the handler takes one.
    fn intercepted<M: Message, O: Send + 'static>(
        &self,
        handler: &Handler<M, O>,
        index: usize,
        message: M,
        ctx: &Context,
    ) -> Result<O> {
        let cells = Cells::default();
        let memos = self.memos(index);
        let dispatch = Dispatch::new::<M>(&message, handler.name, &cells, memos, self.inner.clock);
        let ran = self.before(&dispatch, ctx);
        let dispatch = dispatch.finish(&cells, memos);
        let (ran, result) = match ran {
            Ok(()) => {
                let call = |message| {
                    if handler.takes_context {
                        handler.call_sync(message, &cells.handler_context(ctx), self)
                    } else {
                        handler.call_sync(message, ctx, self)
                    }
                };
                let result = match cells.span() {
                    Some(span) => span.in_scope(|| call(message)),
                    None => call(message),
                };
                (self.inner.interceptors.len(), result)
            }
            Err((ran, e)) => (ran, Err(e)),
        };
        self.after(&dispatch, ctx, ran, || {
            result.as_ref().map(|o| o as &dyn Any)
        });
        result
    }

    /// Runs every interceptor's `before`; on an error, how many ran before it.
    #[inline]
    pub(super) fn before(
        &self,
        dispatch: &Dispatch<'_>,
        ctx: &Context,
    ) -> std::result::Result<(), (usize, Error)> {
        for (i, interceptor) in self.inner.interceptors.iter().enumerate() {
            interceptor.before(dispatch, ctx).map_err(|e| (i, e))?;
        }
        Ok(())
    }

    /// Runs `after` of the first `ran` interceptors, last first. The outcome is made
    /// afresh for each call: copying one made before the loop stalled on store
    /// forwarding at every interceptor (`perf` of `five_noop` in `cargo bench --bench bus`).
    #[inline]
    pub(super) fn after<'r>(
        &self,
        dispatch: &Dispatch<'_>,
        ctx: &Context,
        ran: usize,
        outcome: impl Fn() -> std::result::Result<&'r dyn Any, &'r Error>,
    ) {
        for interceptor in self.inner.interceptors[..ran].iter().rev() {
            interceptor.after(dispatch, ctx, outcome());
        }
    }

    /// The memo slots of handler `index`, one per interceptor.
    #[inline]
    pub(super) fn memos(&self, index: usize) -> &[std::sync::OnceLock<Box<dyn Any + Send + Sync>>] {
        let n = self.inner.interceptors.len();
        &self.inner.memos[index * n..(index + 1) * n]
    }
}

/// A handler's kind changed between two checks of the same dispatch: cannot happen.
#[cold]
pub(super) fn unreachable_dispatch(handler: &str) -> Error {
    Error::internal(
        crate::codes::BUS_HANDLER_TYPE_MISMATCH,
        format!(
            "handler `{handler}` was dispatched as the wrong kind of function: report this as a flext bug"
        ),
    )
}

/// A middleware returned an [`Output`] it kept from another dispatch.
#[cold]
pub(super) fn foreign_output(name: &str) -> Error {
    Error::internal(
        crate::codes::BUS_HANDLER_TYPE_MISMATCH,
        format!(
            "a middleware returned, for `{name}`, the output of another message's handler: return what `next.run(ctx)` gave for this dispatch"
        ),
    )
}

fn no_handler<M: Message>() -> Error {
    Error::not_found(
        crate::codes::BUS_NO_HANDLER,
        format!(
            "no handler for {} `{}` is linked into this program: write a `#[{}_handler]` for it, or reference the crate that has one",
            M::KIND.as_str(),
            M::NAME,
            M::KIND.as_str()
        ),
    )
}

#[cold]
pub(super) fn slot_mismatch(name: &str) -> Error {
    Error::internal(
        crate::codes::BUS_HANDLER_TYPE_MISMATCH,
        format!(
            "the handler registered for `{name}` has another output type than the message declares"
        ),
    )
}
