//! The message bus: typed `send`, `query` and `publish`, by-name JSON dispatch, and the
//! link-time handler registry behind them.
//!
//! This is the source documents' `CommandBus`, `QueryBus` and `EventBus` in one value,
//! after MediatR's requests and notifications and Axon's command and event buses:
//! handlers are found by message type, a command or query has exactly one handler, an
//! event reaches every subscriber, and middleware wraps every dispatch.

mod handler;
mod message;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use futures_util::FutureExt;
use rustc_hash::FxHashMap;
use serde::Serialize;

pub use handler::{BoxFuture, FromState, HandlerRegistration, LocalHandler, State};
#[doc(hidden)]
pub use handler::{
    ErasedHandler, HandlerFor, JsonEntry, MessageRegistration, OneHandlerPerCommandOrQuery,
    StateMap, assert_command, assert_event, assert_query, command_async, command_sync, event_async,
    event_sync, json_command, json_event, json_query, query_async, query_sync,
};
#[doc(hidden)]
pub use message::OutputBounds;
pub use message::{Command, Event, Message, MessageKind, Query, Validate, Wire, kind};

use crate::context::Context;
use crate::error::{Error, ErrorKind, Result, RuleViolation};
use crate::middleware::{Dispatch, Middleware, Next};
use crate::registry::{HandlerStats, RegistryReport};
use handler::Handler;

/// The default limit of [`Bus::send_json`] and friends: 1 MiB.
pub const DEFAULT_MAX_JSON_BYTES: usize = 1 << 20;

struct Slot {
    /// An `Arc<Handler<M, O>>`.
    handler: Box<dyn Any + Send + Sync>,
    /// Index into `Inner::registrations` and `Inner::stats`.
    index: usize,
}

struct Inner {
    handlers: FxHashMap<TypeId, Slot>,
    subscribers: FxHashMap<TypeId, Vec<Slot>>,
    by_name: HashMap<&'static str, JsonEntry>,
    middleware: Vec<Arc<dyn Middleware>>,
    registrations: Vec<&'static HandlerRegistration>,
    stats: Option<Vec<HandlerStats>>,
    max_json_bytes: usize,
    /// Kept for handlers called through `send_local`, which extract their state per call.
    state: StateMap,
}

/// Dispatches commands, queries and events to the handlers registered with
/// `#[command_handler]`, `#[query_handler]` and `#[event_handler]`.
///
/// Build one with [`Bus::builder`]; it finds every handler linked into the program, so
/// building needs no list of handlers. `Bus` is cheap to clone (an `Arc`) and is shared
/// by every task. A handler can take `bus: &Bus` to send further messages.
///
/// Every dispatch gives the handler a [child](Context::child) of the caller's context:
/// the same correlation id, a new id, and the caller's id as causation id.
///
/// # Link-time registration
///
/// Handlers are collected with [`inventory`]: the linker keeps a handler only if its
/// crate is linked into the program. A crate of handlers that nothing else references
/// may be dropped; reference it once, for example `use my_handlers as _;` in `main.rs`.
///
/// # Example
///
/// ```rust,standalone_crate
/// use flext::prelude::*;
///
/// #[command(output = u64)]
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
/// struct Add { a: u64, b: u64 }
///
/// #[command_handler]
/// fn add(cmd: Add) -> Result<u64> {
///     Ok(cmd.a + cmd.b)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let bus = Bus::builder().build().unwrap();
/// assert_eq!(bus.send(Add { a: 2, b: 3 }, &Context::new()).await.unwrap(), 5);
///
/// let out = bus.send_json("Add", r#"{"a": 1, "b": 2}"#, &Context::new()).await.unwrap();
/// assert_eq!(out, serde_json::json!(3));
/// # }
/// ```
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("handlers", &self.inner.registrations.len())
            .field("middleware", &self.inner.middleware.len())
            .field("stats", &self.inner.stats.is_some())
            .finish()
    }
}

type Filter = dyn Fn(&HandlerRegistration) -> bool + Send + Sync;

/// Configures and builds a [`Bus`].
pub struct BusBuilder {
    filter: Option<Box<Filter>>,
    state: StateMap,
    middleware: Vec<Arc<dyn Middleware>>,
    stats: bool,
    max_json_bytes: usize,
}

impl Default for BusBuilder {
    fn default() -> Self {
        BusBuilder {
            filter: None,
            state: StateMap::default(),
            middleware: Vec::new(),
            stats: true,
            max_json_bytes: DEFAULT_MAX_JSON_BYTES,
        }
    }
}

impl BusBuilder {
    /// Registers a value handlers receive as `State<T>`. A later value of the same type
    /// replaces an earlier one.
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// Keeps only the linked handlers for which `keep` is true, for example those of one
    /// module (`|h| h.module.starts_with("billing")`): for several buses in one program,
    /// or a test that builds a bus for part of it. By default every linked handler is
    /// kept.
    pub fn filter(
        mut self,
        keep: impl Fn(&HandlerRegistration) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.filter = Some(Box::new(keep));
        self
    }

    /// Registers shared state the caller keeps a handle to, as [`state`](Self::state)
    /// does for an owned value: handlers see the same `Arc`.
    pub fn shared_state<T: Send + Sync + 'static>(mut self, value: Arc<T>) -> Self {
        self.state.insert_arc(value);
        self
    }

    /// Adds a middleware. The first added is the outermost: it sees the dispatch first
    /// and the result last.
    pub fn middleware(mut self, middleware: impl Middleware) -> Self {
        self.middleware.push(Arc::new(middleware));
        self
    }

    /// Whether to keep per-handler counts, failures, last error and latency percentiles
    /// for [`Bus::report`]. On by default; costs two clock reads and an uncontended lock
    /// per dispatch.
    pub fn record_stats(mut self, on: bool) -> Self {
        self.stats = on;
        self
    }

    /// The largest JSON payload [`Bus::send_json`], [`Bus::query_json`] and
    /// [`Bus::publish_json`] accept, in bytes. Default [`DEFAULT_MAX_JSON_BYTES`].
    pub fn max_json_bytes(mut self, bytes: usize) -> Self {
        self.max_json_bytes = bytes;
        self
    }

    /// Collects every linked handler and builds the bus.
    ///
    /// # Errors
    ///
    /// Every problem found, in one error (each also listed in
    /// [`Error::violations`] when there are several):
    /// - [`ErrorKind::Conflict`], `flext.bus.duplicate_handler`: a command or query has
    ///   two handlers; the message names both with their source locations.
    /// - [`ErrorKind::Conflict`], `flext.bus.duplicate_message_name`: two message types
    ///   share a name, so JSON dispatch could not tell them apart.
    /// - [`ErrorKind::NotFound`], `flext.bus.missing_state`: a handler takes `State<T>`
    ///   and no value of `T` was registered with [`state`](Self::state).
    pub fn build(self) -> Result<Bus> {
        let mut registrations: Vec<&'static HandlerRegistration> =
            inventory::iter::<HandlerRegistration>
                .into_iter()
                .filter(|r| self.filter.as_ref().is_none_or(|keep| keep(r)))
                .collect();
        registrations.sort_by_key(|r| (r.file, r.line, r.handler));

        let mut problems: Vec<Error> = Vec::new();
        let mut handlers: FxHashMap<TypeId, Slot> = FxHashMap::default();
        let mut subscribers: FxHashMap<TypeId, Vec<Slot>> = FxHashMap::default();
        for (index, registration) in registrations.iter().enumerate() {
            let type_id = (registration.message_type)();
            let erased = match (registration.build)(&self.state) {
                Ok(erased) => erased,
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            let slot = Slot {
                handler: erased.handler,
                index,
            };
            match erased.kind {
                MessageKind::Event => subscribers.entry(type_id).or_default().push(slot),
                kind => {
                    if let Some(first) = handlers.get(&type_id) {
                        let first = registrations[first.index];
                        problems.push(Error::conflict(
                            "flext.bus.duplicate_handler",
                            format!(
                                "{} `{}` has two handlers, `{}` ({}) and `{}` ({}): a {} has exactly one handler, remove one",
                                kind.as_str(),
                                registration.message,
                                first.handler,
                                first.location(),
                                registration.handler,
                                registration.location(),
                                kind.as_str(),
                            ),
                        ));
                    } else {
                        handlers.insert(type_id, slot);
                    }
                }
            }
        }

        let mut by_name: HashMap<&'static str, JsonEntry> = HashMap::new();
        let mut modules: HashMap<&'static str, &'static str> = HashMap::new();
        for message in inventory::iter::<MessageRegistration> {
            if let Some(other) = modules.insert(message.name, message.module) {
                problems.push(Error::conflict(
                    "flext.bus.duplicate_message_name",
                    format!(
                        "two message types are named `{}` (in `{other}` and `{}`): give one a `name = \"...\"`",
                        message.name, message.module
                    ),
                ));
            }
            by_name.insert(message.name, message.entry);
        }

        if let Some(error) = combine(problems) {
            return Err(error);
        }
        tracing::debug!(
            handlers = registrations.len(),
            state = ?handler::state_names(&self.state),
            "bus built"
        );
        let stats = self.stats.then(|| {
            registrations
                .iter()
                .map(|_| HandlerStats::default())
                .collect()
        });
        Ok(Bus {
            inner: Arc::new(Inner {
                handlers,
                subscribers,
                by_name,
                middleware: self.middleware,
                registrations,
                stats,
                max_json_bytes: self.max_json_bytes,
                state: self.state,
            }),
        })
    }
}

fn combine(mut problems: Vec<Error>) -> Option<Error> {
    match problems.len() {
        0 => None,
        1 => problems.pop(),
        n => {
            let kind = problems[0].kind();
            let violations = problems
                .iter()
                .map(|e| RuleViolation::new(e.message()).with_code(e.code().to_owned()))
                .collect();
            let mut error = Error::rule_violations(violations)
                .with_message(format!("the bus cannot be built: {n} problems"));
            error.set_kind(kind);
            Some(error)
        }
    }
}

/// What happened to one subscriber of a published event.
#[derive(Debug, Serialize)]
pub struct SubscriberOutcome {
    /// The subscriber, as written (`project_user_created`).
    pub handler: &'static str,
    /// `None` when the subscriber succeeded; its error (or the panic, as an
    /// [`ErrorKind::Internal`] error) otherwise.
    pub error: Option<Error>,
}

/// The outcome of [`Bus::publish`]: one entry per subscriber, in registration order.
/// A failing or panicking subscriber does not stop the others.
#[derive(Debug, Serialize)]
pub struct PublishReport {
    /// The event's name.
    pub event: &'static str,
    /// Every subscriber's outcome.
    pub outcomes: Vec<SubscriberOutcome>,
}

impl PublishReport {
    /// Whether every subscriber succeeded (true when there were none).
    pub fn is_success(&self) -> bool {
        self.outcomes.iter().all(|o| o.error.is_none())
    }

    /// The subscribers that failed, with their errors.
    pub fn failures(&self) -> impl Iterator<Item = (&'static str, &Error)> {
        self.outcomes
            .iter()
            .filter_map(|o| o.error.as_ref().map(|e| (o.handler, e)))
    }
}

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
    /// A builder with no state, no middleware, statistics on and the default JSON limit.
    pub fn builder() -> BusBuilder {
        BusBuilder::default()
    }

    /// Sends a command to its handler and returns the handler's output.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::NotFound`], `flext.bus.no_handler`: no handler for `C` is linked.
    /// - [`ErrorKind::Internal`], `flext.handler.panicked`: the handler panicked; the bus
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
    /// The handler is called even if the bus's [`filter`](BusBuilder::filter) left it
    /// out; its injected state is taken from the bus on each call.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send); [`ErrorKind::NotFound`], `flext.bus.missing_state`, when
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
                Err(panic) => Err(handler::panicked(M::HANDLER, panic)),
            };
        }
        let (handler, index) = self.resolve::<M, M::Output>()?;
        self.dispatch(handler, index, message, ctx).await
    }

    #[doc(hidden)]
    pub fn __state(&self) -> &StateMap {
        &self.inner.state
    }

    /// Delivers an event to every subscriber, one after another in registration order,
    /// each with its own child context. A subscriber's error or panic is logged, reported
    /// in the returned [`PublishReport`], and does not stop the others. An event nobody
    /// subscribes to is delivered to no one and reports no outcome.
    pub async fn publish<E: Event>(&self, event: E, ctx: &Context) -> PublishReport {
        let subscribers = self
            .inner
            .subscribers
            .get(&TypeId::of::<E>())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut outcomes = Vec::with_capacity(subscribers.len());
        for slot in subscribers {
            let name = self.inner.registrations[slot.index].handler;
            let result = match slot.handler.downcast_ref::<Arc<Handler<E, ()>>>() {
                Some(handler) => {
                    self.dispatch(handler, slot.index, event.duplicate(), ctx)
                        .await
                }
                None => Err(slot_mismatch(E::NAME)),
            };
            let error = result.err();
            if let Some(e) = &error {
                tracing::warn!(event = E::NAME, handler = name, error = %e, "event subscriber failed");
            }
            outcomes.push(SubscriberOutcome {
                handler: name,
                error,
            });
        }
        PublishReport {
            event: E::NAME,
            outcomes,
        }
    }

    /// Resolves the handler of command `C` once; see [`Handle`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`], `flext.bus.no_handler`, when no handler is linked.
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
    /// [`ErrorKind::NotFound`], `flext.bus.no_handler`, when no handler is linked.
    pub fn query_handle<Q: Query>(&self) -> Result<Handle<Q, Q::Output>> {
        let (handler, index) = self.resolve::<Q, Q::Output>()?;
        Ok(Handle {
            bus: self.clone(),
            handler: Arc::clone(handler),
            index,
        })
    }

    /// Decodes `json` as the command named `name` and sends it; returns the output as
    /// JSON. For HTTP and CLI front ends.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::Validation`], `flext.input.too_large`: `json` is longer than the
    ///   bus's [`max_json_bytes`](BusBuilder::max_json_bytes); nothing is parsed.
    /// - [`ErrorKind::NotFound`], `flext.bus.unknown_message`: no message has that name
    ///   (the message suggests the closest one).
    /// - [`ErrorKind::Validation`], `flext.bus.wrong_kind`: the name is a query or event.
    /// - [`ErrorKind::Validation`], `flext.input.*`: the JSON is malformed or has the
    ///   wrong shape; see [`input::from_json`](crate::input::from_json).
    /// - Everything [`send`](Self::send) returns.
    pub async fn send_json(
        &self,
        name: &str,
        json: &str,
        ctx: &Context,
    ) -> Result<serde_json::Value> {
        match self.entry(name, json)? {
            JsonEntry::Command(f) => f(self, json, ctx).await,
            other => Err(wrong_kind(name, MessageKind::Command, &other)),
        }
    }

    /// Decodes `json` as the query named `name` and runs it; errors as in
    /// [`send_json`](Self::send_json).
    pub async fn query_json(
        &self,
        name: &str,
        json: &str,
        ctx: &Context,
    ) -> Result<serde_json::Value> {
        match self.entry(name, json)? {
            JsonEntry::Query(f) => f(self, json, ctx).await,
            other => Err(wrong_kind(name, MessageKind::Query, &other)),
        }
    }

    /// Decodes `json` as the event named `name` and publishes it; errors as in
    /// [`send_json`](Self::send_json) (a subscriber's failure is in the report, not an
    /// error).
    pub async fn publish_json(
        &self,
        name: &str,
        json: &str,
        ctx: &Context,
    ) -> Result<PublishReport> {
        match self.entry(name, json)? {
            JsonEntry::Event(f) => f(self, json, ctx).await,
            other => Err(wrong_kind(name, MessageKind::Event, &other)),
        }
    }

    /// Every handler of this bus with its message, kind, source location and, when
    /// statistics are on, its counts, failures, last error and latency percentiles.
    pub fn report(&self) -> RegistryReport {
        crate::registry::report(&self.inner.registrations, self.inner.stats.as_deref())
    }

    fn entry(&self, name: &str, json: &str) -> Result<JsonEntry> {
        if json.len() > self.inner.max_json_bytes {
            return Err(Error::validation(
                "flext.input.too_large",
                format!(
                    "the payload for `{name}` is {} bytes, over the limit of {} bytes",
                    json.len(),
                    self.inner.max_json_bytes
                ),
            ));
        }
        self.inner.by_name.get(name).copied().ok_or_else(|| {
            let suggestion = crate::suggest::did_you_mean(name, self.inner.by_name.keys().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            Error::not_found(
                "flext.bus.unknown_message",
                format!("no message is named `{name}`{suggestion}"),
            )
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

    #[inline]
    async fn dispatch<M: Message, O: Send + 'static>(
        &self,
        handler: &Handler<M, O>,
        index: usize,
        message: M,
        ctx: &Context,
    ) -> Result<O> {
        let inner = &*self.inner;
        if inner.middleware.is_empty() && inner.stats.is_none() {
            let child;
            let ctx = if handler.takes_context {
                child = ctx.child();
                &child
            } else {
                ctx
            };
            return match handler.try_call_sync(message, ctx, self) {
                Ok(result) => result,
                Err(message) => handler.call(message, ctx, self).await,
            };
        }
        self.dispatch_observed(handler, index, message, ctx).await
    }

    async fn dispatch_observed<M: Message, O: Send + 'static>(
        &self,
        handler: &Handler<M, O>,
        index: usize,
        message: M,
        ctx: &Context,
    ) -> Result<O> {
        let inner = &*self.inner;
        let child = ctx.child();
        let started = inner.stats.as_ref().map(|_| Instant::now());
        let result = if inner.middleware.is_empty() {
            handler.call(message, &child, self).await
        } else {
            let output: Mutex<Option<O>> = Mutex::new(None);
            let dispatch = Dispatch::new::<M>(&message, handler.name);
            let endpoint = |ctx: Context| -> BoxFuture<'_, Result<()>> {
                let message = message.duplicate();
                let output = &output;
                Box::pin(async move {
                    let value = handler.call(message, &ctx, self).await?;
                    *output.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
                    Ok(())
                })
            };
            let next = Next::new(&inner.middleware, &dispatch, &endpoint);
            match next.run(child).await {
                Ok(()) => output
                    .into_inner()
                    .unwrap_or_else(PoisonError::into_inner)
                    .ok_or_else(|| {
                        Error::internal(
                            "flext.middleware.skipped_handler",
                            format!(
                                "a middleware returned success for `{}` without running its handler: call `next.run(ctx)` or return an error",
                                M::NAME
                            ),
                        )
                    }),
                Err(e) => Err(e),
            }
        };
        if let (Some(stats), Some(started)) = (&inner.stats, started) {
            stats[index].record(started.elapsed(), result.as_ref().err());
        }
        result
    }
}

#[cold]
fn no_handler<M: Message>() -> Error {
    Error::not_found(
        "flext.bus.no_handler",
        format!(
            "no handler for {} `{}` is linked into this program: write a `#[{}_handler]` for it, or reference the crate that has one",
            M::KIND.as_str(),
            M::NAME,
            M::KIND.as_str()
        ),
    )
}

#[cold]
fn slot_mismatch(name: &str) -> Error {
    Error::internal(
        "flext.bus.handler_type",
        format!(
            "the handler registered for `{name}` has another output type than the message declares"
        ),
    )
}

fn wrong_kind(name: &str, wanted: MessageKind, found: &JsonEntry) -> Error {
    let (found, method) = match found {
        JsonEntry::Command(_) => ("command", "send_json"),
        JsonEntry::Query(_) => ("query", "query_json"),
        JsonEntry::Event(_) => ("event", "publish_json"),
    };
    Error::validation(
        "flext.bus.wrong_kind",
        format!(
            "`{name}` is a {found}, not a {}: dispatch it with `{method}`",
            wanted.as_str()
        ),
    )
}

impl ErrorKind {
    /// Whether an error of this kind is usually transient, so that retrying an idempotent
    /// message may succeed: [`Timeout`](Self::Timeout) and
    /// [`Infrastructure`](Self::Infrastructure).
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Timeout | ErrorKind::Infrastructure)
    }
}
