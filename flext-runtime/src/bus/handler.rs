//! Handlers as the bus stores them and the erased-handler constructors generated code
//! calls; the compiler-known handler (`LocalHandler`) `Bus::send_local` uses.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;

use super::Bus;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::future::BoxFuture;
use crate::message::{Message, MessageKind};
use crate::registry::ErasedHandler;

type SyncFn<M, O> = dyn Fn(M, &Context, &Bus) -> Result<O> + Send + Sync;
type AsyncFn<M, O> =
    dyn for<'a> Fn(M, &'a Context, &'a Bus) -> BoxFuture<'a, Result<O>> + Send + Sync;

enum Call<M, O> {
    Sync(Box<SyncFn<M, O>>),
    Async(Box<AsyncFn<M, O>>),
}

/// One resolved handler for messages `M` with output `O`.
pub(crate) struct Handler<M, O> {
    call: Call<M, O>,
    /// Whether the handler asks for `&Context`; when it does not, the bus skips deriving
    /// a child context on the fast path.
    pub(crate) takes_context: bool,
    pub(crate) name: &'static str,
}

impl<M: 'static, O: 'static> Handler<M, O> {
    /// Runs the handler; a panic becomes an [`ErrorKind::Internal`](crate::ErrorKind)
    /// error for this call. A synchronous handler runs without an extra future.
    #[inline]
    pub(crate) async fn call(&self, message: M, ctx: &Context, bus: &Bus) -> Result<O> {
        match &self.call {
            Call::Sync(f) => self.call_sync_fn(f, message, ctx, bus),
            Call::Async(f) => match AssertUnwindSafe(f(message, ctx, bus)).catch_unwind().await {
                Ok(result) => result,
                Err(panic) => Err(panicked(self.name, panic)),
            },
        }
    }

    #[inline]
    fn call_sync_fn(&self, f: &SyncFn<M, O>, message: M, ctx: &Context, bus: &Bus) -> Result<O> {
        match std::panic::catch_unwind(AssertUnwindSafe(|| f(message, ctx, bus))) {
            Ok(result) => result,
            Err(panic) => Err(panicked(self.name, panic)),
        }
    }

    /// Runs a synchronous handler; for an `async` one (which callers rule out with
    /// `is_sync`), an internal error.
    #[inline]
    pub(crate) fn call_sync(&self, message: M, ctx: &Context, bus: &Bus) -> Result<O> {
        match &self.call {
            Call::Sync(f) => self.call_sync_fn(f, message, ctx, bus),
            Call::Async(_) => Err(super::dispatch::unreachable_dispatch(self.name)),
        }
    }
}

impl<M, O> Handler<M, O> {
    /// Whether the handler is a plain function, called without a future.
    #[inline]
    pub(crate) fn is_sync(&self) -> bool {
        matches!(self.call, Call::Sync(_))
    }

    /// The future of an `async` handler, borrowing `ctx` and `bus`; `Err` gives the
    /// message back for a synchronous one. Panics are the caller's to catch.
    #[inline]
    pub(crate) fn start_async<'a>(
        &self,
        message: M,
        ctx: &'a Context,
        bus: &'a Bus,
    ) -> std::result::Result<BoxFuture<'a, Result<O>>, M> {
        match &self.call {
            Call::Async(f) => Ok(f(message, ctx, bus)),
            Call::Sync(_) => Err(message),
        }
    }
}

#[cold]
pub(crate) fn panicked(handler: &'static str, panic: Box<dyn Any + Send>) -> Error {
    // The payload may quote what the handler was given: bounded and escaped.
    let what = match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => crate::input::echo(s).into_owned(),
        (_, Some(s)) => crate::input::echo(s).into_owned(),
        _ => "a non-string payload".to_owned(),
    };
    tracing::error!(handler, panic = %what, "handler panicked");
    Error::internal(
        crate::codes::BUS_HANDLER_PANICKED,
        format!("handler `{handler}` panicked: {what}"),
    )
}

fn erased<M: Send + Sync + 'static, O: 'static>(
    kind: MessageKind,
    handler: Handler<M, O>,
) -> ErasedHandler
where
    Handler<M, O>: Send + Sync,
{
    ErasedHandler::new(kind, Box::new(Arc::new(handler)))
}

macro_rules! constructors {
    ($($sync:ident, $async_:ident, $trait_:ident, $kind:ident, $out:ty;)*) => {$(
        /// Wraps a synchronous handler function. Used by generated code.
        #[doc(hidden)]
        pub fn $sync<M: $trait_, F>(name: &'static str, takes_context: bool, f: F) -> ErasedHandler
        where
            F: Fn(M, &Context, &Bus) -> Result<$out> + Send + Sync + 'static,
        {
            erased(MessageKind::$kind, Handler::<M, $out> { call: Call::Sync(Box::new(f)), takes_context, name })
        }

        /// Wraps an `async` handler function. Used by generated code.
        #[doc(hidden)]
        pub fn $async_<M: $trait_, F>(name: &'static str, takes_context: bool, f: F) -> ErasedHandler
        where
            F: for<'a> Fn(M, &'a Context, &'a Bus) -> BoxFuture<'a, Result<$out>> + Send + Sync + 'static,
        {
            erased(MessageKind::$kind, Handler::<M, $out> { call: Call::Async(Box::new(f)), takes_context, name })
        }
    )*};
}

// Bounded by `Message`, not by the kind: generated code checks the kind once, at the
// message type (`assert_command` and its kin), and a wrong kind is one error there.
constructors! {
    command_sync, command_async, Message, Command, M::Reply;
    query_sync, query_async, Message, Query, M::Reply;
    event_sync, event_async, Message, Event, ();
}

/// The handler of a command or query, known to the compiler: implemented by
/// `#[command_handler]` and `#[query_handler]` for a message defined in the same crate
/// (not with `external`). It gives three things:
///
/// - a second handler for the message in that crate is a compile error (E0119,
///   conflicting implementations of `OneHandlerPerCommandOrQuery`, naming both);
/// - [`Bus::send_local`](super::Bus::send_local) calls the handler without looking it
///   up, and fails to compile for a message that has no such handler;
/// - [`assert_handled!`](crate::assert_handled) checks that messages have handlers.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no handler in this crate",
    label = "no `#[command_handler]` or `#[query_handler]` takes this message",
    note = "write a handler `#[command_handler] fn ...(message: {Self}, ...) -> Result<...>` (or `#[query_handler]`) in the crate that defines `{Self}`; for a handler in another crate use `Bus::send` or `Bus::query`, which find it at run time"
)]
pub trait LocalHandler: crate::message::Message {
    /// The handler's output.
    type Output: Send + 'static;
    /// Whether the handler takes `&Context`.
    const TAKES_CONTEXT: bool;
    /// The handler name, as written.
    const HANDLER: &'static str;

    /// Calls the handler, extracting its injected state from `bus`. Used by
    /// [`Bus::send_local`](super::Bus::send_local).
    ///
    /// # Errors
    ///
    /// The handler's error; [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when
    /// its state is not registered on the bus.
    fn handle<'a>(
        message: Self,
        ctx: &'a Context,
        bus: &'a Bus,
    ) -> impl Future<Output = Result<Self::Output>> + Send + 'a;
}

/// The rule that a command or query has one handler, as a trait: `#[command_handler]`
/// and `#[query_handler]` implement it for the message, so that a second handler in the
/// message's crate is E0119, "conflicting implementations of trait
/// `OneHandlerPerCommandOrQuery`", with both handlers named. Used by generated code.
#[doc(hidden)]
pub trait OneHandlerPerCommandOrQuery: Sized {
    /// The generated type that calls the handler.
    type Handler: HandlerFor<Self>;
}

/// The compiler-known handler of message `M`. Used by generated code.
#[doc(hidden)]
pub trait HandlerFor<M>: 'static {
    /// The handler's output.
    type Output: Send + 'static;
    /// Whether the handler takes `&Context`.
    const TAKES_CONTEXT: bool;
    /// The handler name, as written.
    const HANDLER: &'static str;
    /// Calls the handler.
    fn handle<'a>(
        message: M,
        ctx: &'a Context,
        bus: &'a Bus,
    ) -> impl Future<Output = Result<Self::Output>> + Send + 'a;
}

#[diagnostic::do_not_recommend]
impl<M: OneHandlerPerCommandOrQuery + crate::message::Message> LocalHandler for M {
    type Output = <M::Handler as HandlerFor<M>>::Output;
    const TAKES_CONTEXT: bool = <M::Handler as HandlerFor<M>>::TAKES_CONTEXT;
    const HANDLER: &'static str = <M::Handler as HandlerFor<M>>::HANDLER;

    #[inline]
    fn handle<'a>(
        message: Self,
        ctx: &'a Context,
        bus: &'a Bus,
    ) -> impl Future<Output = Result<Self::Output>> + Send + 'a {
        <M::Handler as HandlerFor<M>>::handle(message, ctx, bus)
    }
}

/// Fails to compile unless every listed command or query has a handler in this crate.
/// The compile-time form of the bus's "no handler" error, for messages whose handlers
/// live with them.
///
/// ```rust,standalone_crate
/// use flext::prelude::*;
///
/// #[query(output = u32)]
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Answer;
///
/// #[query_handler]
/// fn answer(_: Answer) -> Result<u32> { Ok(42) }
///
/// flext::assert_handled!(Answer);
/// ```
///
/// ```compile_fail
/// use flext::prelude::*;
///
/// #[query(output = u32)]
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Orphan;
///
/// flext::assert_handled!(Orphan); // error: `Orphan` has no handler in this crate
/// ```
#[macro_export]
macro_rules! assert_handled {
    ($($message:ty),+ $(,)?) => {
        const _: () = {
            fn __flext_assert_handled<T: $crate::bus::LocalHandler>() {}
            fn __flext_check() { $(__flext_assert_handled::<$message>();)+ }
        };
    };
}
