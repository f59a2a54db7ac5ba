//! The message traits `#[command]`, `#[query]` and `#[event]` implement.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;

/// Which of the three kinds a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// Changes state; exactly one handler; has an output.
    Command,
    /// Reads state; exactly one handler; has an output.
    Query,
    /// Something that happened; any number of subscribers; no output.
    Event,
}

impl MessageKind {
    /// `"command"`, `"query"` or `"event"`.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Command => "command",
            MessageKind::Query => "query",
            MessageKind::Event => "event",
        }
    }
}

/// What a message needs to cross a process boundary and to be handed to several
/// handlers: a clone and a JSON form. Implemented for every
/// `Clone + Serialize + DeserializeOwned` type; derive those three for a message type.
///
/// It is one trait rather than three supertraits of [`Message`] so that a message type
/// that lacks them gets one error that names all three derives, not one per trait and
/// per use.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a message: messages are cloned for retries and fan-out and cross processes as JSON",
    label = "add `#[derive(Clone, serde::Serialize, serde::Deserialize)]` to `{Self}`",
    note = "a command, query or event must be `Clone + Serialize + Deserialize`; derive them on the type and on the types of its fields"
)]
pub trait Wire: Sized {
    /// A copy of the message, for a retry or another subscriber.
    #[must_use]
    fn duplicate(&self) -> Self;
    /// Deserialises the message from any serde deserializer, naming the failing field
    /// through `serde_path_to_error`.
    ///
    /// # Errors
    ///
    /// The deserializer's error, with the path of the field that failed.
    fn from_deserializer<'de, D: serde::Deserializer<'de>>(
        de: D,
    ) -> std::result::Result<Self, serde_path_to_error::Error<D::Error>>;
    /// Decodes the message from a JSON value it does not consume: with serde directly,
    /// and only when that fails a second time through
    /// [`from_deserializer`](Self::from_deserializer), for the failing field's path. What
    /// loading a stream and a projection's catch-up decode stored events with: a stored
    /// event nearly always decodes, and tracking the path on every one cost about a
    /// sixth of loading 1,000 events (`cargo bench --bench event_store`).
    ///
    /// # Errors
    ///
    /// The deserializer's error, with the path of the field that failed.
    fn from_json_value(
        value: &serde_json::Value,
    ) -> std::result::Result<Self, serde_path_to_error::Error<serde_json::Error>> {
        Self::from_deserializer(value)
    }
    /// The message as a JSON value.
    ///
    /// # Errors
    ///
    /// serde_json's, when the message's `Serialize` impl fails, or when its JSON would
    /// not read back as the same value (a NaN or infinite float; `Some` of a value that
    /// serialises as `null`).
    fn to_json_value(&self) -> serde_json::Result<serde_json::Value>;
}

#[diagnostic::do_not_recommend]
impl<T: Clone + Serialize + DeserializeOwned> Wire for T {
    #[inline]
    fn duplicate(&self) -> Self {
        self.clone()
    }
    fn from_deserializer<'de, D: serde::Deserializer<'de>>(
        de: D,
    ) -> std::result::Result<Self, serde_path_to_error::Error<D::Error>> {
        serde_path_to_error::deserialize(de)
    }
    fn from_json_value(
        value: &serde_json::Value,
    ) -> std::result::Result<Self, serde_path_to_error::Error<serde_json::Error>> {
        match T::deserialize(value) {
            Ok(message) => Ok(message),
            Err(_) => serde_path_to_error::deserialize(value),
        }
    }
    fn to_json_value(&self) -> serde_json::Result<serde_json::Value> {
        crate::exact::to_exact_value(self)
    }
}

/// Type-level message kinds, the values of [`Message::Kind`].
pub mod kind {
    /// A command: one handler, an output.
    #[derive(Debug)]
    pub enum Command {}
    /// A query: one handler, an output.
    #[derive(Debug)]
    pub enum Query {}
    /// An event: any number of subscribers.
    #[derive(Debug)]
    pub enum Event {}
}

/// What every message has: a stable name (the key for JSON dispatch and logs), a
/// [`Wire`] form, and optional dispatch settings. Implemented by `#[command]`,
/// `#[query]` and `#[event]`; [`Command`], [`Query`] and [`Event`] follow from
/// [`Message::Kind`].
///
/// Messages are [`Wire`] (clone and JSON) because a retried dispatch hands the handler a
/// fresh copy, an event goes to every subscriber, and `send_json` reads them from JSON.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a flext message",
    label = "not a message",
    note = "mark the type with `#[command(output = T)]`, `#[query(output = T)]` or `#[event]`"
)]
pub trait Message: Wire + Send + Sync + 'static {
    /// The stable name, such as `"CreateUser"` or `"user.created"`.
    const NAME: &'static str;
    /// Which kind of message this is.
    const KIND: MessageKind;
    /// Whether a failed dispatch may be retried (the `Retry` middleware retries only
    /// these). Set with `#[command(idempotent)]`.
    const IDEMPOTENT: bool = false;
    /// Whether JSON input (`send_json`, `query_json`) may give a command or query as a
    /// positional array of its fields (`["ada", 36]`); refused by default, as a client
    /// that reorders fields would silently swap them. Set with
    /// `#[command(positional)]` or `#[query(positional)]`.
    const POSITIONAL: bool = false;
    /// A per-message timeout in milliseconds, applied by the `Timeout` middleware. Set
    /// with `#[command(timeout_ms = N)]`.
    const TIMEOUT_MS: Option<u64> = None;
    /// The schema version of an event, for upcasting stored events; starts at 1. Set
    /// with `#[event(version = N)]`.
    const VERSION: u32 = 1;
    /// [`kind::Command`], [`kind::Query`] or [`kind::Event`].
    type Kind;
    /// What the handler of a command or query returns; `()` for an event.
    type Reply: Serialize + Send + 'static;

    /// Runs the message's `#[business_rules]`, when it has them (`#[command(validate)]`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::RuleViolation`](crate::ErrorKind::RuleViolation) with every violation.
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// [`TIMEOUT_MS`](Self::TIMEOUT_MS) as a `Duration`.
    fn timeout() -> Option<Duration> {
        Self::TIMEOUT_MS.map(Duration::from_millis)
    }
}

/// A request to change state, handled by exactly one `#[command_handler]`. Implemented
/// for every [`Message`] whose `Kind` is [`kind::Command`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a command",
    note = "mark the type with `#[command(output = T)]`; a `#[query]` is taken by a `#[query_handler]`, an `#[event]` by an `#[event_handler]`"
)]
pub trait Command: Message {
    /// What the handler returns on success.
    type Output: Serialize + Send + 'static;
}

#[diagnostic::do_not_recommend]
impl<M: Message<Kind = kind::Command>> Command for M {
    type Output = M::Reply;
}

/// A request to read state, handled by exactly one `#[query_handler]`. Implemented for
/// every [`Message`] whose `Kind` is [`kind::Query`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a query",
    note = "mark the type with `#[query(output = T)]`; a `#[command]` is taken by a `#[command_handler]`, an `#[event]` by an `#[event_handler]`"
)]
pub trait Query: Message {
    /// What the handler returns on success.
    type Output: Serialize + Send + 'static;
}

#[diagnostic::do_not_recommend]
impl<M: Message<Kind = kind::Query>> Query for M {
    type Output = M::Reply;
}

/// Something that happened, delivered to every `#[event_handler]` that subscribes to it.
/// Implemented for every [`Message`] whose `Kind` is [`kind::Event`]; its schema version
/// is [`Message::VERSION`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event",
    note = "mark the type with `#[event]` (optionally `#[event(name = \"...\", version = N)]`)"
)]
pub trait Event: Message {}

#[diagnostic::do_not_recommend]
impl<M: Message<Kind = kind::Event>> Event for M {}

/// The rules of a message, generated by `#[business_rules]` on an `impl` of the message
/// type and run by `Message::validate` when the message is marked `validate`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no business rules",
    note = "add `#[business_rules] impl {Self} {{ #[business_rule] fn ...(&self) -> RuleResult {{ ... }} }}`, or drop `validate` from the message attribute"
)]
pub trait Validate {
    /// Runs every rule in order and collects the violations.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::RuleViolation`](crate::ErrorKind::RuleViolation) with every violation.
    fn validate(&self) -> Result<()>;
}

/// What a command's or query's output must be.
#[doc(hidden)]
pub trait OutputBounds: Serialize + Send + 'static {}
impl<T: Serialize + Send + 'static> OutputBounds for T {}

/// Compile-time checks of a handler's message kind, spanned at the message type by the
/// handler attributes.
#[doc(hidden)]
pub fn assert_command<M: Command>() {}
#[doc(hidden)]
pub fn assert_query<M: Query>() {}
#[doc(hidden)]
pub fn assert_event<M: Event>() {}

/// `M::NAME` for generated code. Written as `<M as Message>::NAME` at a concrete type,
/// the path would re-check `Message`'s supertraits there, and a message without its serde
/// derives would get one error per path instead of one at its `#[command]`.
#[doc(hidden)]
pub const fn message_name<M: Message>() -> &'static str {
    M::NAME
}

/// `M::Reply` for generated code, through a trait with no supertraits: the handler
/// attributes name a handler's output as `<M as ReplyOf>::Reply`, so that the message's
/// kind is checked in one place (`assert_command` and its kin) and a wrong kind is one
/// error.
#[doc(hidden)]
pub trait ReplyOf {
    /// [`Message::Reply`].
    type Reply: Serialize + Send + 'static;
}

impl<M: Message> ReplyOf for M {
    type Reply = M::Reply;
}
