//! Dispatch by name: the message registrations the message attributes submit, and
//! `Bus::send_json`, `query_json` and `publish_json`.

use super::{Bus, PublishReport};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::future::BoxFuture;
use crate::input::echo;

/// The longest message name `send_json`, `query_json` and `publish_json` look up: 256
/// bytes. A longer name is rejected with `flext.input.name_too_long` before any lookup,
/// so that an attacker's 50 MB name costs a length check, not a "did you mean" search.
pub const MAX_MESSAGE_NAME_BYTES: usize = 256;
use crate::message::{Command, Event, MessageKind, Query};

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
        crate::input::refuse_positional(C::NAME, C::POSITIONAL, json)?;
        let command: C = crate::input::message_from_json(C::NAME, json)?;
        let output = bus.dispatch_erased::<C, C::Output>(command, ctx).await?;
        let output: C::Output = super::erased::output_of(output, C::NAME)?;
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
        crate::input::refuse_positional(Q::NAME, Q::POSITIONAL, json)?;
        let query: Q = crate::input::message_from_json(Q::NAME, json)?;
        let output = bus.dispatch_erased::<Q, Q::Output>(query, ctx).await?;
        let output: Q::Output = super::erased::output_of(output, Q::NAME)?;
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
    crate::exact::to_exact_value(value).map_err(|e| {
        Error::internal(
            crate::codes::BUS_OUTPUT_NOT_SERIALISABLE,
            format!("the output of `{name}` could not be serialised to JSON: {e}"),
        )
        .with_source(e)
    })
}

impl Bus {
    /// Decodes `json` as the command named `name` and sends it; returns the output as
    /// JSON. For HTTP and CLI front ends.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::Validation`](crate::ErrorKind::Validation), `flext.input.name_too_long`: `name` is longer than
    ///   [`MAX_MESSAGE_NAME_BYTES`]; nothing is looked up.
    /// - [`ErrorKind::Validation`](crate::ErrorKind::Validation), `flext.input.too_large`: `json` is longer than the
    ///   bus's [`max_json_bytes`](crate::BusBuilder::max_json_bytes); nothing is parsed.
    /// - [`ErrorKind::NotFound`](crate::ErrorKind::NotFound), `flext.bus.unknown_message`: no message has that name
    ///   (the message suggests the closest one).
    /// - [`ErrorKind::Validation`](crate::ErrorKind::Validation), `flext.bus.wrong_kind`: the name is a query or event.
    /// - [`ErrorKind::Validation`](crate::ErrorKind::Validation), `flext.input.*`: the JSON is malformed or has the
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

    /// The JSON entry of the message `name`, after the checks that cost nothing: the
    /// name's length (before any lookup or "did you mean"), then the payload's size.
    fn entry(&self, name: &str, json: &str) -> Result<JsonEntry> {
        if name.len() > MAX_MESSAGE_NAME_BYTES {
            return Err(Error::validation(
                crate::codes::INPUT_NAME_TOO_LONG,
                format!(
                    "a message name is at most {MAX_MESSAGE_NAME_BYTES} bytes; `{}` is not one",
                    echo(name)
                ),
            ));
        }
        if json.len() > self.inner.max_json_bytes {
            return Err(Error::validation(
                crate::codes::INPUT_TOO_LARGE,
                format!(
                    "the payload for `{}` is {} bytes, over the limit of {} bytes",
                    echo(name),
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
                crate::codes::BUS_UNKNOWN_MESSAGE,
                format!("no message is named `{}`{suggestion}", echo(name)),
            )
        })
    }
}

fn wrong_kind(name: &str, wanted: MessageKind, found: &JsonEntry) -> Error {
    // A registered name: trusted, but bounded and escaped all the same.
    let name = echo(name);
    let (found, method) = match found {
        JsonEntry::Command(_) => ("command", "send_json"),
        JsonEntry::Query(_) => ("query", "query_json"),
        JsonEntry::Event(_) => ("event", "publish_json"),
    };
    Error::validation(
        crate::codes::BUS_WRONG_KIND,
        format!(
            "`{name}` is a {found}, not a {}: dispatch it with `{method}`",
            wanted.as_str()
        ),
    )
}
