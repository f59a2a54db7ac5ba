//! [`NatsRelay`]: the outbox's events published to a JetStream stream, pipelined, exactly
//! once on the stream.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind};
use async_nats::jetstream::{self};
use flext_runtime::database::Relay;
use flext_runtime::event_store::EventEnvelope;
use flext_runtime::{BoxFuture, Error, Uuid, codes};
use tracing::Instrument;

use crate::{failed, headers, token, without_credentials};

/// How long the relay may keep retrying one event by default: JetStream's default
/// duplicate window, two minutes.
pub const DEFAULT_RETRY_HORIZON: Duration = Duration::from_secs(120);

/// How many publishes await their acks at once by default.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// A [`Relay`] publishing each outbox event to a JetStream stream, exactly once on the
/// stream.
///
/// - **Subject**: `{prefix}.{aggregate_type}.{aggregate_id}` ([`NatsRelay::subject`];
///   [`NatsRelay::map_aggregate_type`] replaces the middle part for one type).
/// - **Headers**: `Nats-Msg-Id` = the event id, and the [`headers`] for its name, schema
///   version, correlation and causation ids, sequence and `traceparent`.
/// - **Pipelined, in order**: up to [`DEFAULT_MAX_IN_FLIGHT`] publishes await their acks
///   at once ([`NatsRelay::with_max_in_flight`]). Each publish of a batch after the first
///   names the one before it as the stream's last message (`Nats-Expected-Last-Msg-Id`),
///   so the server refuses every successor of a publish it never got (one lost in a
///   reconnect): the stream holds the outbox's events in the outbox's order, whatever
///   fails, and the refused ones are published again on the next pass. The stream must
///   have this relay as its only publisher; another writer's message in between makes
///   the next publish fail once, and the pass after goes on.
/// - **Delivered after the ack**: the outbox marks the events acknowledged from the
///   first of a batch; a duplicate ack (JetStream had the id already) counts.
/// - **Exactly once**: JetStream drops an id it stored within the stream's duplicate
///   window. An event appended longer ago than half that window may have been published
///   by a relay that crashed before the window it would be dropped in, so for such an
///   event the relay first asks the stream for the last message on its subject, and
///   counts the event delivered when that message's sequence is at or past it
///   (per-stream order makes the last message enough). So an event is stored once even
///   after an outage longer than the window.
///
/// Build it with [`NatsRelay::connect`] or [`NatsRelay::with_client`], and give it to
/// `SqliteOutboxRelay::new` or `PgOutboxRelay::new` (one publisher at a time per
/// database, as the outboxes already ensure).
pub struct NatsRelay {
    jetstream: jetstream::Context,
    stream: stream::Stream,
    prefix: String,
    window: Duration,
    ack_timeout: Duration,
    max_in_flight: usize,
    types: HashMap<String, String>,
}

impl std::fmt::Debug for NatsRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsRelay")
            .field("prefix", &self.prefix)
            .field("window", &self.window)
            .field("ack_timeout", &self.ack_timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("types", &self.types)
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
    /// stream's duplicate window is shorter than `retry_horizon` (lengthen the window or
    /// retry for less); `flext.outbox.failed` when the stream cannot be created or read.
    pub async fn with_client(
        client: async_nats::Client,
        prefix: &str,
        retry_horizon: Duration,
    ) -> Result<NatsRelay, Error> {
        crate::check_token("stream prefix", prefix)?;
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
            stream,
            prefix: prefix.to_owned(),
            window,
            ack_timeout: Duration::from_secs(10),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            types: HashMap::new(),
        })
    }

    /// Sets how many publishes may await their acks at once (at least 1; 1 publishes one
    /// event at a time). Default [`DEFAULT_MAX_IN_FLIGHT`].
    pub fn with_max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max.max(1);
        self
    }

    /// Sets how long a publish waits for its ack before the relay stops the batch there
    /// (the event is published again on the next pass). Default 10 seconds.
    pub fn with_ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// Publishes the events of aggregate type `aggregate_type` under `{prefix}.{tokens}.{aggregate_id}`
    /// instead of `{prefix}.{aggregate_type}.{aggregate_id}`: `tokens` is one or more
    /// subject tokens joined by `.` (`"sales.orders"`), for consumers that filter by them.
    ///
    /// # Errors
    ///
    /// `flext.store.bad_config` when a token is empty or holds anything but letters,
    /// digits, `-` and `_`.
    pub fn map_aggregate_type(mut self, aggregate_type: &str, tokens: &str) -> Result<Self, Error> {
        for t in tokens.split('.') {
            crate::check_token("subject token", t)?;
        }
        self.types
            .insert(aggregate_type.to_owned(), tokens.to_owned());
        Ok(self)
    }

    /// The duplicate window of the stream, as the server reported it at start.
    pub fn duplicate_window(&self) -> Duration {
        self.window
    }

    /// The subject `event` is published to: `{prefix}.{aggregate_type}.{aggregate_id}`
    /// (or the mapped tokens), each part with every character but letters, digits, `-`
    /// and `_` percent-encoded (a `.` would split the subject).
    pub fn subject(&self, event: &EventEnvelope) -> String {
        match self.types.get(&event.aggregate_type) {
            Some(tokens) => format!("{}.{tokens}.{}", self.prefix, token(&event.aggregate_id)),
            None => format!(
                "{}.{}.{}",
                self.prefix,
                token(&event.aggregate_type),
                token(&event.aggregate_id)
            ),
        }
    }

    /// Whether `event` may have been published before the duplicate window that would
    /// drop it again: appended more than half the window ago.
    fn may_outlive_window(&self, event: &EventEnvelope) -> bool {
        let age_ms = flext_runtime::saga::now_ms().saturating_sub(event.timestamp_ms);
        u128::from(age_ms) >= self.window.as_millis() / 2
    }

    /// Whether the stream holds `event` already: the last message on its subject is at or
    /// past its sequence.
    async fn stored(&self, subject: &str, event: &EventEnvelope) -> Result<bool, Error> {
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(last) => Ok(last
                .headers
                .get(headers::SEQUENCE)
                .and_then(|v| v.as_str().parse::<u64>().ok())
                .is_some_and(|seq| seq >= event.sequence)),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(false),
            Err(e) => Err(failed(format!(
                "reading the last message on `{subject}` before publishing event {}: {e}",
                event.event_id
            ))),
        }
    }

    async fn publish(
        &self,
        subject: String,
        event: &EventEnvelope,
        after: Option<Uuid>,
    ) -> Result<PublishAckFuture, Error> {
        let payload = serde_json::to_vec(&event.payload)
            .map_err(|e| failed(format!("event {} does not encode: {e}", event.event_id)))?;
        let (span, trace) = crate::trace::publish_span(event, &subject);
        self.jetstream
            .publish_with_headers(subject, headers_of(event, after, trace), payload.into())
            .instrument(span)
            .await
            .map_err(|e| failed(format!("publishing event {}: {e}", event.event_id)))
    }

    async fn settle(
        &self,
        ack: Option<PublishAckFuture>,
        event: &EventEnvelope,
    ) -> Result<(), Error> {
        let Some(ack) = ack else { return Ok(()) };
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
            .map_err(|e| {
                failed(format!(
                    "event {} was not stored: {e} (a wrong last message id means the event before it never reached the stream, or another publisher wrote to it: the relay publishes from here on its next pass)",
                    event.event_id
                ))
            })?;
        Ok(())
    }
}

/// The headers `event` is published with: `after` the event that must be the stream's
/// last message (JetStream's `Nats-Expected-Last-Msg-Id`), `trace` its trace context.
fn headers_of(
    event: &EventEnvelope,
    after: Option<Uuid>,
    trace: crate::trace::TraceContext,
) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        async_nats::header::NATS_MESSAGE_ID,
        event.event_id.to_string().as_str(),
    );
    h.insert(headers::EVENT_NAME, event.name.as_str());
    h.insert(
        headers::SCHEMA_VERSION,
        event.schema_version.to_string().as_str(),
    );
    h.insert(
        headers::CORRELATION_ID,
        event.correlation_id.to_string().as_str(),
    );
    if let Some(causation) = event.causation_id {
        h.insert(headers::CAUSATION_ID, causation.to_string().as_str());
    }
    h.insert(headers::SEQUENCE, event.sequence.to_string().as_str());
    if let Some(after) = after {
        h.insert(
            async_nats::header::NATS_EXPECTED_LAST_MESSAGE_ID,
            after.to_string().as_str(),
        );
    }
    for (key, value) in trace {
        h.insert(key, value.as_str());
    }
    h
}

impl Relay for NatsRelay {
    fn deliver<'a>(&'a self, event: &'a EventEnvelope) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            match self.deliver_all(std::slice::from_ref(event)).await {
                (_, Some(e)) => Err(e),
                (_, None) => Ok(()),
            }
        })
    }

    /// Publishes `events` pipelined (type docs): at most the configured number awaiting
    /// acks, one per stream at a time; answers how many from the first were acknowledged.
    fn deliver_all<'a>(
        &'a self,
        events: &'a [EventEnvelope],
    ) -> BoxFuture<'a, (usize, Option<Error>)> {
        Box::pin(async move {
            let mut in_flight: VecDeque<(usize, Option<PublishAckFuture>)> = VecDeque::new();
            // The event published (or found on the stream) just before: each publish
            // after the first names it as the stream's last message, so that the server
            // refuses every successor of a publish it never got.
            let mut previous: Option<Uuid> = None;
            let mut done = 0;
            for (i, event) in events.iter().enumerate() {
                let subject = self.subject(event);
                while in_flight.len() >= self.max_in_flight {
                    let Some((j, ack)) = in_flight.pop_front() else {
                        break;
                    };
                    if let Err(e) = self.settle(ack, &events[j]).await {
                        return (done, Some(e));
                    }
                    done = j + 1;
                }
                let stored = if self.may_outlive_window(event) {
                    match self.stored(&subject, event).await {
                        Ok(stored) => stored,
                        Err(e) => return (done, Some(e)),
                    }
                } else {
                    false
                };
                if stored {
                    tracing::debug!(event = %event.event_id, %subject, "already on the stream");
                    in_flight.push_back((i, None));
                    previous = Some(event.event_id);
                    continue;
                }
                match self.publish(subject, event, previous).await {
                    Ok(ack) => {
                        in_flight.push_back((i, Some(ack)));
                        previous = Some(event.event_id);
                    }
                    Err(e) => {
                        // What is already in flight may still be acknowledged.
                        while let Some((j, ack)) = in_flight.pop_front() {
                            if self.settle(ack, &events[j]).await.is_err() {
                                break;
                            }
                            done = j + 1;
                        }
                        return (done, Some(e));
                    }
                }
            }
            while let Some((j, ack)) = in_flight.pop_front() {
                if let Err(e) = self.settle(ack, &events[j]).await {
                    return (done, Some(e));
                }
                done = j + 1;
            }
            (done, None)
        })
    }
}
