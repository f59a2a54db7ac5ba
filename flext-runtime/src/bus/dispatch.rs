//! Commands and queries: `send`, `query`, `send_local`, resolved handles, and the
//! dispatch through middleware and statistics.

use std::any::TypeId;
use std::sync::Arc;

use futures_util::FutureExt;

use super::Bus;
use super::handler::{Handler, LocalHandler};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::future::BoxFuture;
use crate::message::{Command, Message, Query};
use crate::middleware::{Dispatch, Next, Output};
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
    pub async fn call(&self, message: M, ctx: &Context) -> Result<O> {
        self.bus
            .dispatch(&self.handler, self.index, message, ctx)
            .await
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
    pub async fn send<C: Command>(&self, command: C, ctx: &Context) -> Result<C::Output> {
        let (handler, index) = self.resolve::<C, C::Output>()?;
        self.dispatch(handler, index, command, ctx).await
    }

    /// Runs a query on its handler; same effects and errors as [`send`](Self::send).
    pub async fn query<Q: Query>(&self, query: Q, ctx: &Context) -> Result<Q::Output> {
        let (handler, index) = self.resolve::<Q, Q::Output>()?;
        self.dispatch(handler, index, query, ctx).await
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
        if inner.middleware.is_empty() && inner.stats.is_none() {
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
        let (handler, index) = self.resolve::<M, M::Output>()?;
        self.dispatch(handler, index, message, ctx).await
    }

    /// Resolves the handler of command `C` once; see [`Handle`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound), `flext.bus.no_handler`, when no handler is linked.
    pub fn command_handle<C: Command>(&self) -> Result<Handle<C, C::Output>> {
        let (handler, index) = self.resolve::<C, C::Output>()?;
        Ok(Handle {
            bus: self.clone(),
            handler: Arc::clone(handler),
            index,
        })
    }

    /// Resolves the handler of query `Q` once; see [`Handle`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound), `flext.bus.no_handler`, when no handler is linked.
    pub fn query_handle<Q: Query>(&self) -> Result<Handle<Q, Q::Output>> {
        let (handler, index) = self.resolve::<Q, Q::Output>()?;
        Ok(Handle {
            bus: self.clone(),
            handler: Arc::clone(handler),
            index,
        })
    }

    #[inline]
    fn resolve<M: Message, O: 'static>(&self) -> Result<(&Arc<Handler<M, O>>, usize)> {
        match self.inner.handlers.get(&TypeId::of::<M>()) {
            Some(slot) => match slot.handler.downcast_ref::<Arc<Handler<M, O>>>() {
                Some(handler) => Ok((handler, slot.index)),
                None => Err(slot_mismatch(M::NAME)),
            },
            None => Err(no_handler::<M>()),
        }
    }

    /// Calls the handler: directly when the bus has no middleware (counting the call
    /// when statistics are on), through the middleware chain otherwise.
    #[inline]
    pub(super) async fn dispatch<M: Message, O: Send + 'static>(
        &self,
        handler: &Handler<M, O>,
        index: usize,
        message: M,
        ctx: &Context,
    ) -> Result<O> {
        let inner = &*self.inner;
        if !inner.middleware.is_empty() {
            return self.observed(handler, index, message, ctx).await;
        }
        let stats = inner.stats.as_ref().map(|s| &s[index]);
        let started = stats.and_then(HandlerStats::start);
        let child;
        let ctx = if handler.takes_context {
            child = ctx.child();
            &child
        } else {
            ctx
        };
        let result = match handler.try_call_sync(message, ctx, self) {
            Ok(result) => result,
            Err(message) => handler.call(message, ctx, self).await,
        };
        if let Some(stats) = stats {
            stats.record(started, result.as_ref().err());
        }
        result
    }

    /// The dispatch through the middleware chain, counted when statistics are on.
    async fn observed<M: Message, O: Send + 'static>(
        &self,
        handler: &Handler<M, O>,
        index: usize,
        message: M,
        ctx: &Context,
    ) -> Result<O> {
        let stats = self.inner.stats.as_ref().map(|s| &s[index]);
        let started = stats.and_then(HandlerStats::start);
        let result = self.through_middleware(handler, message, ctx.child()).await;
        if let Some(stats) = stats {
            stats.record(started, result.as_ref().err());
        }
        result
    }

    async fn through_middleware<M: Message, O: Send + 'static>(
        &self,
        handler: &Handler<M, O>,
        message: M,
        ctx: Context,
    ) -> Result<O> {
        let dispatch = Dispatch::new::<M>(&message, handler.name);
        let endpoint = |ctx: Context| -> BoxFuture<'_, Result<Output>> {
            let message = message.duplicate();
            Box::pin(async move { handler.call(message, &ctx, self).await.map(Output::new) })
        };
        let output = Next::new(&self.inner.middleware, &dispatch, &endpoint)
            .run(ctx)
            .await?;
        output.take::<O>().map_err(|_| foreign_output(M::NAME))
    }
}

/// A middleware returned an [`Output`] it kept from another dispatch.
#[cold]
fn foreign_output(name: &str) -> Error {
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
