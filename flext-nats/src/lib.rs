//! Events between services (`flext::nats`, the `nats` feature): the outbox relayed to
//! NATS JetStream, and a consumer that feeds another service's bus.
//!
//! - [`NatsRelay`] is a [`Relay`](flext_runtime::database::Relay) for the SQLite and
//!   PostgreSQL outboxes (`SqliteOutboxRelay`, `PgOutboxRelay`). Each event is published
//!   to `{prefix}.{aggregate_type}.{aggregate_id}` with `Nats-Msg-Id` set to its event id
//!   and the [`headers`], pipelined, and marked delivered only after JetStream
//!   acknowledged it: exactly once on the stream, in the outbox's order (the
//!   transactional outbox with broker-side deduplication, as in Wolverine's and
//!   NServiceBus's outboxes).
//! - [`NatsConsumer`] is a durable pull consumer: each message is decoded by its event
//!   name, published to this service's event handlers and event-started sagas, recorded
//!   in an inbox, and acknowledged after they returned; a message that fails its last
//!   delivery goes to the dead letters, counted in `bus.report()` ([`ConsumerCounts`]).
//! - [`NatsTestServer`] runs the machine's `nats-server -js` for tests.
//!
//! With the `otel` feature, publishing and consuming are spans in the trace the event
//! was appended under, so one trace runs from a command in one service to the handlers
//! in another.
//!
//! ```no_run
//! # async fn run(bus: flext::Bus) -> flext::Result<()> {
//! use std::time::Duration;
//! use flext::nats::{NatsConsumer, NatsRelay};
//! use flext::sqlite::{SqliteDatabase, SqliteOutboxRelay};
//!
//! let db = SqliteDatabase::open("orders.db")?;
//! // Out: this service's events to the stream `orders`.
//! let relay = NatsRelay::connect("nats://127.0.0.1:4222", "orders").await?;
//! let publishing = SqliteOutboxRelay::new(db.clone(), relay).spawn(Duration::from_millis(100));
//! // In: the `shipping` service's events, to this service's handlers.
//! let consuming = NatsConsumer::builder("shipping", "orders")
//!     .inbox(db)
//!     .connect("nats://127.0.0.1:4222", bus)
//!     .await?
//!     .spawn();
//! # consuming.shutdown().await;
//! # publishing.shutdown().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod consumer;
mod relay;
mod server;
mod trace;

use flext_runtime::{Error, codes};

pub use consumer::{ConsumerCounts, ConsumerLoop, NatsConsumer, NatsConsumerBuilder};
pub use relay::{DEFAULT_MAX_IN_FLIGHT, DEFAULT_RETRY_HORIZON, NatsRelay};
pub use server::NatsTestServer;

/// The headers each published event carries beside its payload.
pub mod headers {
    /// JetStream's deduplication key: the event id (`async_nats::header::NATS_MESSAGE_ID`
    /// when reading it back with async-nats).
    pub const MSG_ID: &str = "Nats-Msg-Id";
    /// The event's name (`Message::NAME`), to decode it by.
    pub const EVENT_NAME: &str = "Flext-Event-Name";
    /// The event's schema version, for upcasting.
    pub const SCHEMA_VERSION: &str = "Flext-Schema-Version";
    /// The correlation id of the command that raised it.
    pub const CORRELATION_ID: &str = "Flext-Correlation-Id";
    /// The id of the message that caused it.
    pub const CAUSATION_ID: &str = "Flext-Causation-Id";
    /// Its position in its stream (the aggregate's version after it).
    pub const SEQUENCE: &str = "Flext-Sequence";
    /// The W3C trace context it was appended under, when it had one.
    pub const TRACEPARENT: &str = "traceparent";
    /// The W3C trace state that came with the trace context, when there was one.
    pub const TRACESTATE: &str = "tracestate";
    /// On a dead letter: the error of the message's last delivery.
    pub const ERROR: &str = "Flext-Error";
    /// On a dead letter: the error's flext code.
    pub const ERROR_CODE: &str = "Flext-Error-Code";
    /// On a dead letter: the subject the message was consumed from.
    pub const SUBJECT: &str = "Flext-Subject";
    /// On a dead letter: how many times it was delivered.
    pub const DELIVERIES: &str = "Flext-Deliveries";
}

/// `Ok` when `text` is one subject token: letters, digits, `-` and `_`.
fn check_token(what: &str, text: &str) -> Result<(), Error> {
    if text.is_empty()
        || !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::infrastructure(
            codes::STORE_BAD_CONFIG,
            format!(
                "the {what} {} is not a subject token: use letters, digits, `-` and `_`",
                flext_runtime::input::echo(text)
            ),
        ));
    }
    Ok(())
}

fn failed(message: String) -> Error {
    Error::infrastructure(codes::OUTBOX_FAILED, message)
}

/// `text` as one subject token: letters, digits, `-` and `_` as they are, every other
/// byte as `%XX`.
fn token(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// `url` without a `user:password@` part.
fn without_credentials(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{token, without_credentials};

    #[test]
    fn a_token_never_splits_or_wildcards_a_subject() {
        assert_eq!(token("a-1_B"), "a-1_B");
        assert_eq!(token("a.b *>"), "a%2Eb%20%2A%3E");
        assert_eq!(token(""), "_");
    }

    #[test]
    fn credentials_never_reach_a_message() {
        assert_eq!(
            without_credentials("nats://me:secret@host:4222"),
            "nats://host:4222"
        );
        assert_eq!(without_credentials("nats://host:4222"), "nats://host:4222");
    }
}
