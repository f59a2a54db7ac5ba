//! Events leave the process (`flext::nats`, the `nats` feature): the outbox relayed to
//! NATS JetStream.
//!
//! [`NatsRelay`] is a [`Relay`] for the SQLite and PostgreSQL outboxes
//! (`SqliteOutboxRelay`, `PgOutboxRelay`). Each event is published to
//! `{prefix}.{aggregate_type}.{aggregate_id}` with the header `Nats-Msg-Id` set to its
//! event id, and the outbox marks it delivered only after JetStream acknowledged it.
//! JetStream drops a message whose id it saw within the stream's duplicate window, so an
//! event published again after a crash between the publish and the outbox's mark is
//! stored once: exactly once on the stream, for as long as the relay retries within the
//! window. [`NatsRelay::connect`] refuses a stream whose window is shorter than the relay's
//! retry horizon. The transactional outbox with broker-side deduplication, as in
//! Wolverine's and NServiceBus's outboxes.
//!
//! ```no_run
//! # async fn run() -> flext::Result<()> {
//! use std::time::Duration;
//! use flext::nats::NatsRelay;
//! use flext::sqlite::{SqliteDatabase, SqliteOutboxRelay};
//!
//! let db = SqliteDatabase::open("orders.db")?;
//! let relay = NatsRelay::connect("nats://127.0.0.1:4222", "orders").await?;
//! let outbox = SqliteOutboxRelay::new(db, relay);
//! let running = outbox.spawn(Duration::from_millis(100));
//! # running.shutdown().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod server;

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use flext_runtime::database::Relay;
use flext_runtime::event_store::EventEnvelope;
use flext_runtime::{BoxFuture, Error, codes};

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
}

/// How long the relay may keep retrying one event by default: JetStream's default
/// duplicate window, two minutes.
pub const DEFAULT_RETRY_HORIZON: Duration = Duration::from_secs(120);

/// A [`Relay`] publishing each outbox event to a JetStream stream, exactly once on the
/// stream (module docs).
pub struct NatsRelay {
    jetstream: jetstream::Context,
    prefix: String,
    ack_timeout: Duration,
}

impl std::fmt::Debug for NatsRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsRelay")
            .field("prefix", &self.prefix)
            .field("ack_timeout", &self.ack_timeout)
            .finish_non_exhaustive()
    }
}

impl NatsRelay {
    /// Connects to the server at `url` and publishes to the stream named `prefix`
    /// (subjects `{prefix}.>`), creating it with a duplicate window of
    /// [`DEFAULT_RETRY_HORIZON`] when it does not exist.
    ///
    /// # Errors
    ///
    /// As [`NatsRelay::with_client`]; `flext.outbox.failed` when the server cannot be
    /// reached (the message names the URL, without its credentials).
    pub async fn connect(url: &str, prefix: &str) -> Result<NatsRelay, Error> {
        let client = async_nats::connect(url).await.map_err(|e| {
            Error::infrastructure(
                codes::OUTBOX_FAILED,
                format!("NATS at {}: {e}", without_credentials(url)),
            )
        })?;
        NatsRelay::with_client(client, prefix, DEFAULT_RETRY_HORIZON).await
    }

    /// Publishes through `client` to the stream named `prefix` (subjects `{prefix}.>`),
    /// creating it with a duplicate window of `retry_horizon` when it does not exist.
    /// `prefix` is a subject token: letters, digits, `-` and `_`.
    ///
    /// # Errors
    ///
    /// `flext.store.bad_config` when `prefix` is not a subject token, or when the existing
    /// stream's duplicate window is shorter than `retry_horizon` (an event retried after
    /// the window would be stored twice: lengthen the window or retry for less);
    /// `flext.outbox.failed` when the stream cannot be created or read.
    pub async fn with_client(
        client: async_nats::Client,
        prefix: &str,
        retry_horizon: Duration,
    ) -> Result<NatsRelay, Error> {
        if prefix.is_empty()
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::infrastructure(
                codes::STORE_BAD_CONFIG,
                format!(
                    "the stream prefix {} is not a subject token: use letters, digits, `-` and `_`",
                    flext_runtime::input::echo(prefix)
                ),
            ));
        }
        let jetstream = jetstream::new(client);
        let mut stream = jetstream
            .get_or_create_stream(stream::Config {
                name: prefix.to_owned(),
                subjects: vec![format!("{prefix}.>")],
                duplicate_window: retry_horizon,
                ..Default::default()
            })
            .await
            .map_err(|e| failed(format!("stream `{prefix}` cannot be created or read: {e}")))?;
        let window = stream
            .info()
            .await
            .map_err(|e| failed(format!("stream `{prefix}` cannot be read: {e}")))?
            .config
            .duplicate_window;
        if window < retry_horizon {
            return Err(Error::infrastructure(
                codes::STORE_BAD_CONFIG,
                format!(
                    "stream `{prefix}` drops duplicates within {} ms, less than the relay's retry horizon of {} ms: an event published again after the window would be stored twice; raise the stream's `duplicate_window` or retry for less",
                    window.as_millis(),
                    retry_horizon.as_millis()
                ),
            ));
        }
        Ok(NatsRelay {
            jetstream,
            prefix: prefix.to_owned(),
            ack_timeout: Duration::from_secs(10),
        })
    }

    /// The subject event `event` is published to: `{prefix}.{aggregate_type}.{aggregate_id}`,
    /// each part with every character but letters, digits, `-` and `_` percent-encoded (a
    /// `.` would split the subject).
    pub fn subject(&self, event: &EventEnvelope) -> String {
        format!(
            "{}.{}.{}",
            self.prefix,
            token(&event.aggregate_type),
            token(&event.aggregate_id)
        )
    }
}

impl Relay for NatsRelay {
    fn deliver<'a>(&'a self, event: &'a EventEnvelope) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let mut headers = HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                event.event_id.to_string().as_str(),
            );
            headers.insert(headers::EVENT_NAME, event.name.as_str());
            headers.insert(
                headers::SCHEMA_VERSION,
                event.schema_version.to_string().as_str(),
            );
            headers.insert(
                headers::CORRELATION_ID,
                event.correlation_id.to_string().as_str(),
            );
            if let Some(causation) = event.causation_id {
                headers.insert(headers::CAUSATION_ID, causation.to_string().as_str());
            }
            headers.insert(headers::SEQUENCE, event.sequence.to_string().as_str());
            if let Some(serde_json::Value::String(t)) = event.metadata.get("traceparent") {
                headers.insert(headers::TRACEPARENT, t.as_str());
            }
            let payload = serde_json::to_vec(&event.payload)
                .map_err(|e| failed(format!("event {} does not encode: {e}", event.event_id)))?;
            let ack = self
                .jetstream
                .publish_with_headers(self.subject(event), headers, payload.into())
                .await
                .map_err(|e| failed(format!("publishing event {}: {e}", event.event_id)))?;
            // A duplicate ack means JetStream has it already: delivered.
            tokio::time::timeout(self.ack_timeout, ack)
                .await
                .map_err(|_| {
                    failed(format!(
                        "no ack for event {} within {} ms",
                        event.event_id,
                        self.ack_timeout.as_millis()
                    ))
                })?
                .map_err(|e| failed(format!("event {} was not stored: {e}", event.event_id)))?;
            Ok(())
        })
    }
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
