//! Handlers as the bus stores them, the link-time registrations the handler attributes
//! submit, and the state handlers get injected.

use std::any::{Any, TypeId};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::FutureExt;
use rustc_hash::FxHashMap;

use super::Bus;
use super::message::{Command, Event, MessageKind, Query};
use crate::context::Context;
use crate::error::{Error, Result};

/// A boxed, `Send` future, as middleware and async handlers return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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
            Call::Sync(f) => self.call_sync(f, message, ctx, bus),
            Call::Async(f) => match AssertUnwindSafe(f(message, ctx, bus)).catch_unwind().await {
                Ok(result) => result,
                Err(panic) => Err(panicked(self.name, panic)),
            },
        }
    }

    #[inline]
    fn call_sync(&self, f: &SyncFn<M, O>, message: M, ctx: &Context, bus: &Bus) -> Result<O> {
        match std::panic::catch_unwind(AssertUnwindSafe(|| f(message, ctx, bus))) {
            Ok(result) => result,
            Err(panic) => Err(panicked(self.name, panic)),
        }
    }

    /// The synchronous fast path: `Some` result for a synchronous handler, `None` (and
    /// the message back) for an async one.
    #[inline]
    pub(crate) fn try_call_sync(
        &self,
        message: M,
        ctx: &Context,
        bus: &Bus,
    ) -> std::result::Result<Result<O>, M> {
        match &self.call {
            Call::Sync(f) => Ok(self.call_sync(f, message, ctx, bus)),
            Call::Async(_) => Err(message),
        }
    }
}

#[cold]
pub(crate) fn panicked(handler: &'static str, panic: Box<dyn Any + Send>) -> Error {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".to_owned());
    tracing::error!(handler, panic = %what, "handler panicked");
    Error::internal(
        "flext.handler.panicked",
        format!("handler `{handler}` panicked: {what}"),
    )
}

/// A handler with its message type erased, as a registration's `build` returns it.
#[doc(hidden)]
pub struct ErasedHandler {
    pub(crate) kind: MessageKind,
    /// A `Handler<M, O>`.
    pub(crate) handler: Box<dyn Any + Send + Sync>,
}

fn erased<M: Send + Sync + 'static, O: 'static>(
    kind: MessageKind,
    handler: Handler<M, O>,
) -> ErasedHandler
where
    Handler<M, O>: Send + Sync,
{
    ErasedHandler {
        kind,
        handler: Box::new(Arc::new(handler)),
    }
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

constructors! {
    command_sync, command_async, Command, Command, M::Output;
    query_sync, query_async, Query, Query, M::Output;
    event_sync, event_async, Event, Event, ();
}

/// A handler registered at link time by `#[command_handler]`, `#[query_handler]` or
/// `#[event_handler]`. [`Bus::builder`](super::Bus::builder) collects all of them; the
/// [`handlers`](crate::registry::handlers) function lists them.
#[derive(Debug)]
pub struct HandlerRegistration {
    /// Command, query or event.
    pub kind: MessageKind,
    /// The message's stable name.
    pub message: &'static str,
    #[doc(hidden)]
    pub message_type: fn() -> TypeId,
    /// The handler as written: `create_user` or `UserHandlers::create`.
    pub handler: &'static str,
    /// The module the handler is defined in.
    pub module: &'static str,
    /// The source file of the handler.
    pub file: &'static str,
    /// The line of the handler in [`file`](Self::file).
    pub line: u32,
    #[doc(hidden)]
    pub build: fn(&StateMap) -> Result<ErasedHandler>,
}

impl HandlerRegistration {
    /// A registration; used by generated code.
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    pub const fn __new(
        kind: MessageKind,
        message: &'static str,
        message_type: fn() -> TypeId,
        handler: &'static str,
        module: &'static str,
        file: &'static str,
        line: u32,
        build: fn(&StateMap) -> Result<ErasedHandler>,
    ) -> Self {
        HandlerRegistration {
            kind,
            message,
            message_type,
            handler,
            module,
            file,
            line,
            build,
        }
    }

    /// `file:line` of the handler.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

inventory::collect!(HandlerRegistration);

/// The JSON entry point of one message type, registered by the message attributes.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub enum JsonEntry {
    Command(for<'a> fn(&'a Bus, &'a str, &'a Context) -> BoxFuture<'a, Result<serde_json::Value>>),
    Query(for<'a> fn(&'a Bus, &'a str, &'a Context) -> BoxFuture<'a, Result<serde_json::Value>>),
    Event(for<'a> fn(&'a Bus, &'a str, &'a Context) -> BoxFuture<'a, Result<super::PublishReport>>),
}

/// A message type registered at link time by `#[command]`, `#[query]` or `#[event]`, for
/// dispatch by name.
#[doc(hidden)]
pub struct MessageRegistration {
    pub name: &'static str,
    /// `module_path!()` of the message type, to name both types when two share a name.
    pub module: &'static str,
    pub entry: JsonEntry,
}

inventory::collect!(MessageRegistration);

/// Decodes `json` as `C` and sends it. Registered by `#[command]`.
#[doc(hidden)]
pub fn json_command<'a, C: Command>(
    bus: &'a Bus,
    json: &'a str,
    ctx: &'a Context,
) -> BoxFuture<'a, Result<serde_json::Value>> {
    Box::pin(async move {
        let command: C = crate::input::message_from_json(C::NAME, json)?;
        let output = bus.send(command, ctx).await?;
        to_json(C::NAME, &output)
    })
}

/// Decodes `json` as `Q` and runs it. Registered by `#[query]`.
#[doc(hidden)]
pub fn json_query<'a, Q: Query>(
    bus: &'a Bus,
    json: &'a str,
    ctx: &'a Context,
) -> BoxFuture<'a, Result<serde_json::Value>> {
    Box::pin(async move {
        let query: Q = crate::input::message_from_json(Q::NAME, json)?;
        let output = bus.query(query, ctx).await?;
        to_json(Q::NAME, &output)
    })
}

/// Decodes `json` as `E` and publishes it. Registered by `#[event]`.
#[doc(hidden)]
pub fn json_event<'a, E: Event>(
    bus: &'a Bus,
    json: &'a str,
    ctx: &'a Context,
) -> BoxFuture<'a, Result<super::PublishReport>> {
    Box::pin(async move {
        let event: E = crate::input::message_from_json(E::NAME, json)?;
        Ok(bus.publish(event, ctx).await)
    })
}

fn to_json<T: serde::Serialize>(name: &str, value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| {
        Error::internal(
            "flext.output.not_serialisable",
            format!("the output of `{name}` could not be serialised to JSON: {e}"),
        )
        .with_source(e)
    })
}

/// Values registered with [`BusBuilder::state`](super::BusBuilder::state), by type.
#[doc(hidden)]
#[derive(Default)]
pub struct StateMap {
    values: FxHashMap<TypeId, (&'static str, Box<dyn Any + Send + Sync>)>,
}

impl StateMap {
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.insert_arc(Arc::new(value));
    }

    pub(crate) fn insert_arc<T: Send + Sync + 'static>(&mut self, value: Arc<T>) {
        self.values.insert(
            TypeId::of::<T>(),
            (std::any::type_name::<T>(), Box::new(value)),
        );
    }

    fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.values
            .get(&TypeId::of::<T>())
            .and_then(|(_, v)| v.downcast_ref::<Arc<T>>())
            .cloned()
    }
}

/// Shared state injected into a handler: a parameter `repo: State<UserRepository>`
/// receives the value registered with `Bus::builder().state(UserRepository::new())`.
/// Cloning is an `Arc` clone. In the spirit of axum's `State` extractor.
///
/// ```rust,standalone_crate
/// use flext::prelude::*;
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// #[command(output = u64)]
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Increment;
///
/// #[derive(Default)]
/// struct Counter { next: AtomicU64 }
///
/// #[command_handler]
/// fn increment(_: Increment, counter: State<Counter>) -> Result<u64> {
///     Ok(counter.next.fetch_add(1, Ordering::Relaxed) + 1)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let bus = Bus::builder().state(Counter::default()).build().unwrap();
/// let ctx = Context::new();
/// assert_eq!(bus.send(Increment, &ctx).await.unwrap(), 1);
/// assert_eq!(bus.send(Increment, &ctx).await.unwrap(), 2);
/// # }
/// ```
pub struct State<T: ?Sized>(Arc<T>);

impl<T: ?Sized> State<T> {
    /// Wraps shared state, for calling a handler directly (in a unit test, say).
    pub fn new(value: Arc<T>) -> Self {
        State(value)
    }

    /// The shared value.
    pub fn into_inner(self) -> Arc<T> {
        self.0
    }
}

impl<T: ?Sized> Clone for State<T> {
    fn clone(&self) -> Self {
        State(Arc::clone(&self.0))
    }
}

impl<T: ?Sized> std::ops::Deref for State<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A handler parameter the bus fills in when it is built. Implemented for [`State`];
/// implement it for your own extractors.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be injected into a handler",
    label = "not the message, `&Context`, `&Bus` or injectable state",
    note = "a handler takes the message first, then any of `ctx: &Context`, `bus: &Bus` and `State<T>` (registered with `Bus::builder().state(value)`)"
)]
pub trait FromState: Sized + Clone + Send + Sync + 'static {
    /// Extracts the value from the bus's state when the bus is built.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when the state was not
    /// registered; the message names `handler` and the missing type.
    fn from_state(state: &StateMap, handler: &'static str) -> Result<Self>;

    /// The value handed to one call of the handler: a clone (for [`State`], an `Arc`
    /// clone).
    fn share(&self) -> Self {
        self.clone()
    }
}

impl<T: Send + Sync + 'static> FromState for State<T> {
    fn from_state(state: &StateMap, handler: &'static str) -> Result<Self> {
        state.get::<T>().map(State).ok_or_else(|| {
            let ty = std::any::type_name::<T>();
            Error::not_found(
                "flext.bus.missing_state",
                format!(
                    "handler `{handler}` takes `State<{ty}>`, but the bus has no state of that type: add `.state(value)` to `Bus::builder()`"
                ),
            )
        })
    }
}

pub(crate) fn state_names(state: &StateMap) -> Vec<&'static str> {
    state.values.values().map(|(n, _)| *n).collect()
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
pub trait LocalHandler: super::Message {
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
pub trait OneHandlerPerCommandOrQuery: super::Message {
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
impl<M: OneHandlerPerCommandOrQuery> LocalHandler for M {
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

/// Compile-time checks of a handler's message kind, spanned at the message type by the
/// handler attributes.
#[doc(hidden)]
pub fn assert_command<M: Command>() {}
#[doc(hidden)]
pub fn assert_query<M: Query>() {}
#[doc(hidden)]
pub fn assert_event<M: Event>() {}
