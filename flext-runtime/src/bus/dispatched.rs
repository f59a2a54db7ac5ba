//! [`Dispatched`], the future of one dispatch, and the state it keeps while a handler's
//! or a middleware chain's future runs.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::Poll;
use std::time::Instant;

use super::Bus;
use super::dispatch::unreachable_dispatch;
use super::erased::output_of;
use super::handler::{Handler, panicked};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::future::BoxFuture;
use crate::message::Message;
use crate::middleware::Output;
use crate::registry::HandlerStats;

/// The future of one dispatch: what [`Bus::send`], [`Bus::query`] and [`Handle::call`](super::Handle::call)
/// return. Its output is the handler's `Result`.
///
/// It does nothing until polled. On the first poll, a synchronous handler on a bus
/// without wrapping [`Middleware`](crate::middleware::Middleware) runs at once, inside
/// the poll, with its [interceptors](crate::middleware::Interceptor) and statistics:
/// no allocation, no future of its own. An `async` handler's future is polled in
/// place; a wrapping middleware chain runs in one boxed future. A panic in the handler
/// or a middleware becomes `flext.bus.handler_panicked` for this dispatch.
#[must_use = "a dispatch does nothing until it is awaited"]
pub struct Dispatched<'a, M, O> {
    bus: &'a Bus,
    ctx: &'a Context,
    // Separate fields rather than one enum: the first poll reads the message's tag
    // alone, not a whole state the caller has just written (measured: reading the enum
    // stalled on store forwarding, about a third of a typed `send`).
    message: Option<M>,
    handler: Option<(&'a Handler<M, O>, usize)>,
    error: Option<Error>,
    running: Option<Running<'a, O>>,
}

/// A dispatch that needed a future: an `async` handler or a wrapping middleware chain.
pub(super) struct Running<'a, O> {
    pub(super) future: Waiting<'a, O>,
    pub(super) handler: &'static str,
    /// Statistics to record when it ends, with the sampled start.
    pub(super) stats: Option<(&'a HandlerStats, Option<Instant>)>,
}

/// The future a dispatch waits on: the handler's own, or the erased path's
/// (interceptors around an `async` handler, a wrapping middleware chain), whose output
/// the typed poll takes back out.
pub(super) enum Waiting<'a, O> {
    Typed(BoxFuture<'a, Result<O>>),
    Erased(BoxFuture<'a, Result<Output>>),
}

// The message is moved out on the first poll and never pinned; the running future is
// boxed.
impl<M, O> Unpin for Dispatched<'_, M, O> {}

impl<'a, M: Message, O: Send + 'static> Dispatched<'a, M, O> {
    #[inline]
    pub(super) fn new(
        bus: &'a Bus,
        ctx: &'a Context,
        resolved: Result<(&'a Handler<M, O>, usize)>,
        message: M,
    ) -> Self {
        let (handler, error) = match resolved {
            Ok(found) => (Some(found), None),
            Err(e) => (None, Some(e)),
        };
        Dispatched {
            bus,
            ctx,
            message: Some(message),
            handler,
            error,
            running: None,
        }
    }
}

impl<M: Message, O: Send + 'static> Future for Dispatched<'_, M, O> {
    type Output = Result<O>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Result<O>> {
        let this = &mut *self;
        if let Some(message) = this.message.take() {
            let Some((handler, index)) = this.handler else {
                return Poll::Ready(Err(this
                    .error
                    .take()
                    .unwrap_or_else(|| unreachable_dispatch(M::NAME))));
            };
            match this.bus.start(handler, index, message, this.ctx) {
                Ok(result) => return Poll::Ready(result),
                Err(running) => this.running = Some(running),
            }
        }
        let Some(running) = this.running.as_mut() else {
            panic!("a `Dispatched` future was polled after it completed")
        };
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| match &mut running.future {
            Waiting::Typed(future) => future.as_mut().poll(cx),
            Waiting::Erased(future) => future
                .as_mut()
                .poll(cx)
                .map(|result| result.and_then(|output| output_of(output, M::NAME))),
        }));
        let result = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(result)) => result,
            Err(panic) => Err(panicked(running.handler, panic)),
        };
        if let Some((stats, started)) = running.stats {
            stats.record(started, result.as_ref().err());
        }
        this.running = None;
        Poll::Ready(result)
    }
}
