//! [`NatsConsumer`]: a durable JetStream pull consumer that hands each event to this
//! service's bus, once, and acks after its handlers committed.

mod builder;
mod counts;
mod dead_letters;

pub use self::builder::NatsConsumerBuilder;
pub use self::counts::ConsumerCounts;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{PullConsumer, pull};
use async_nats::jetstream::{self, AckKind};
use flext_runtime::database::{Inbox, event_context};
use flext_runtime::event_store::Upcasters;
use flext_runtime::{Bus, Error, Uuid, codes};
use futures_util::StreamExt;
use tokio::sync::watch;
use tracing::Instrument;

use crate::headers;

/// A durable JetStream pull consumer feeding this service's bus: each event, decoded by
/// its name into its `#[event]` type (upcasters applied), is published to the event
/// handlers and event-started sagas on the bus under [`event_context`] (so
/// `event_id_of(ctx)` is the event id, the correlation id is the producer's, and the
/// `traceparent` continues its trace).
///
/// - **Once**: the consumer acknowledges a message only after every handler returned
///   and, with an [`inbox`](NatsConsumerBuilder::inbox), after the event id was recorded
///   there. A handler's effect happens once when it writes it in a unit of work with
///   `first_delivery(…, event_id_of(ctx))` (the inbox pattern) or starts a saga by
///   `saga_id_for_event`: a delivery repeated after a crash, a lost ack or a failure of
///   another handler finds its row and does nothing. An event no handler here knows is
///   acknowledged.
/// - **Failures**: a delivery some handler failed is delivered again after the retry
///   delay, up to the delivery limit; after the last, the message is published to
///   `{stream}_dead_letters.{durable}` with its headers, the error
///   ([`headers::ERROR`], [`headers::ERROR_CODE`]), its subject and delivery count, and
///   terminated. A message that is not a flext event goes there at once
///   (`flext.consumer.bad_message`). Dead letters are counted in [`ConsumerCounts`].
/// - **Long handlers**: while a handler runs, the consumer sends an in-progress ack every
///   third of the ack wait, so the server does not deliver the message elsewhere.
///
/// ```no_run
/// # async fn run(bus: flext::Bus, db: flext::sqlite::SqliteDatabase) -> flext::Result<()> {
/// use flext::nats::NatsConsumer;
///
/// let consumer = NatsConsumer::builder("orders", "shipping")
///     .filter_subject("orders.Order.>")
///     .inbox(db)
///     .connect("nats://127.0.0.1:4222", bus)
///     .await?;
/// let running = consumer.spawn();
/// // ...
/// running.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct NatsConsumer {
    inner: Arc<Inner>,
}

struct Inner {
    bus: Bus,
    jetstream: jetstream::Context,
    consumer: PullConsumer,
    durable: String,
    dead_letter_subject: String,
    ack_wait: Duration,
    max_deliver: i64,
    retry_delay: Duration,
    batch: usize,
    inbox: Option<Arc<dyn Inbox>>,
    upcasters: Upcasters,
    versions: HashMap<String, u32>,
    counts: ConsumerCounts,
}

impl std::fmt::Debug for NatsConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConsumer")
            .field("durable", &self.inner.durable)
            .field("dead_letter_subject", &self.inner.dead_letter_subject)
            .field("counts", &self.inner.counts)
            .finish_non_exhaustive()
    }
}

/// A received event, from its headers.
struct Incoming {
    event_id: Uuid,
    name: String,
    schema_version: u32,
    correlation_id: Uuid,
    trace: Vec<(&'static str, String)>,
    payload: serde_json::Value,
}

impl Incoming {
    fn parse(headers: Option<&HeaderMap>, payload: &[u8]) -> Result<Incoming, Error> {
        let headers = headers.ok_or_else(|| bad("the message has no headers".into()))?;
        let get = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
        let need = |name: &str| get(name).ok_or_else(|| bad(format!("header `{name}` is missing")));
        let uuid = |name: &str, text: String| {
            text.parse::<Uuid>().map_err(|_| {
                bad(format!(
                    "header `{name}` is not a UUID: {}",
                    flext_runtime::input::echo(&text)
                ))
            })
        };
        let event_id = headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .map(|v| v.as_str().to_owned())
            .ok_or_else(|| bad(format!("header `{}` is missing", headers::MSG_ID)))?;
        let event_id = uuid(headers::MSG_ID, event_id)?;
        let version = need(headers::SCHEMA_VERSION)?;
        let schema_version = version.parse().map_err(|_| {
            bad(format!(
                "header `{}` is not a number: {}",
                headers::SCHEMA_VERSION,
                flext_runtime::input::echo(&version)
            ))
        })?;
        let correlation_id = uuid(headers::CORRELATION_ID, need(headers::CORRELATION_ID)?)?;
        let payload = serde_json::from_slice(payload)
            .map_err(|e| bad(format!("the payload is not JSON: {e}")))?;
        let trace = [headers::TRACEPARENT, headers::TRACESTATE]
            .into_iter()
            .filter_map(|k| get(k).map(|v| (k, v)))
            .collect();
        Ok(Incoming {
            event_id,
            name: need(headers::EVENT_NAME)?,
            schema_version,
            correlation_id,
            trace,
            payload,
        })
    }
}

impl NatsConsumer {
    /// A consumer named `durable` (a durable consumer the server remembers across
    /// restarts) on the stream `stream` (the producer's [`NatsRelay`](crate::NatsRelay)
    /// prefix), with the defaults of [`NatsConsumerBuilder`].
    pub fn builder(stream: impl Into<String>, durable: impl Into<String>) -> NatsConsumerBuilder {
        NatsConsumerBuilder {
            stream: stream.into(),
            durable: durable.into(),
            filter_subject: None,
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            max_ack_pending: 1_000,
            retry_delay: Duration::from_secs(1),
            inbox: None,
            upcasters: Upcasters::new(),
            versions: HashMap::new(),
            counts: None,
        }
    }

    /// What it did so far.
    pub fn counts(&self) -> &ConsumerCounts {
        &self.inner.counts
    }

    /// Consumes until `stop` turns `true`: each message handled as the type docs say, one
    /// at a time. A lost connection is retried every second (counted unhealthy
    /// meanwhile); the message in hand is finished before it returns.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        let inner = &self.inner;
        while !*stop.borrow() {
            let batch = tokio::select! {
                batch = inner.next_batch() => batch,
                _ = stop.changed() => return,
            };
            let batch = match batch {
                Ok(batch) => {
                    inner.counts.0.disconnected.store(false, Ordering::Relaxed);
                    batch
                }
                Err(e) => {
                    inner.counts.0.disconnected.store(true, Ordering::Relaxed);
                    tracing::warn!(consumer = %inner.durable, error = %e, "cannot pull; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
            };
            // One at a time, in stream order; every message of the batch not yet handled
            // gets in-progress acks meanwhile, so none waits out its ack wait in line.
            for i in 0..batch.len() {
                if *stop.borrow() {
                    // Stopping: what is left goes back to the server for another consumer
                    // (or this one, restarted) at once.
                    for left in &batch[i..] {
                        let _ = left.ack_with(AckKind::Nak(None)).await;
                    }
                    return;
                }
                let work = inner.handle(&batch[i]);
                tokio::pin!(work);
                // The first beat a third of the ack wait from now (an interval's
                // immediate first tick would cost a timer round per message).
                let period = (inner.ack_wait / 3).max(Duration::from_millis(1));
                let mut beat =
                    tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                let outcome = loop {
                    tokio::select! {
                        outcome = &mut work => break outcome,
                        _ = beat.tick() => {
                            for waiting in &batch[i..] {
                                let _ = waiting.ack_with(AckKind::Progress).await;
                            }
                        }
                    }
                };
                if let Err(e) = outcome {
                    tracing::warn!(consumer = %inner.durable, error = %e, "a message stays unacknowledged; it is delivered again");
                }
            }
        }
    }

    /// Runs [`run`](NatsConsumer::run) on the current tokio runtime until
    /// [`ConsumerLoop::shutdown`].
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn(&self) -> ConsumerLoop {
        let (tx, rx) = watch::channel(false);
        let consumer = self.clone();
        ConsumerLoop {
            stop: tx,
            task: tokio::spawn(async move { consumer.run(rx).await }),
        }
    }
}

impl Inner {
    /// The next messages: what is there now, up to the batch size, or else the first to
    /// arrive within five seconds (none when none did).
    async fn next_batch(&self) -> Result<Vec<jetstream::Message>, Error> {
        let now = self
            .consumer
            .fetch()
            .max_messages(self.batch)
            .messages()
            .await
            .map_err(|e| failed(format!("pulling: {e}")))?;
        let batch = collect(now).await?;
        if !batch.is_empty() {
            return Ok(batch);
        }
        let first = self
            .consumer
            .batch()
            .max_messages(1)
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .map_err(|e| failed(format!("pulling: {e}")))?;
        collect(first).await
    }

    /// Handles one message; an `Err` leaves it unacknowledged (a broker or inbox
    /// failure: the server delivers it again after the ack wait).
    async fn handle(&self, message: &jetstream::Message) -> Result<(), Error> {
        let delivered = message
            .info()
            .map(|i| i.delivered)
            .map_err(|e| failed(format!("not a JetStream message: {e}")))?;
        let mut event = match Incoming::parse(message.headers.as_ref(), &message.payload) {
            Ok(event) => event,
            Err(e) => return self.dead_letter(message, delivered, &e).await,
        };
        if delivered > 1 {
            self.counts.0.redelivered.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(inbox) = &self.inbox
            && inbox.contains(&self.durable, event.event_id).await?
        {
            self.counts.0.duplicates.fetch_add(1, Ordering::Relaxed);
            return settle(message).await;
        }
        let (span, trace) = crate::trace::consume_span(
            &self.durable,
            message.subject.as_str(),
            &event.name,
            &event.event_id,
            delivered,
            std::mem::take(&mut event.trace),
        );
        event.trace = trace;
        match self.dispatch(&event).instrument(span).await {
            Ok(()) => {
                if let Some(inbox) = &self.inbox {
                    inbox.record(&self.durable, event.event_id).await?;
                }
                settle(message).await?;
                self.counts.0.handled.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.counts
                    .0
                    .failed_attempts
                    .fetch_add(1, Ordering::Relaxed);
                if delivered >= self.max_deliver {
                    self.dead_letter(message, delivered, &e).await
                } else {
                    tracing::warn!(error = %e, "a handler failed; the message is delivered again");
                    ack(message, AckKind::Nak(Some(self.retry_delay))).await
                }
            }
        }
    }

    /// Publishes `event` to the bus; `Err` with the first failing handler's error.
    async fn dispatch(&self, event: &Incoming) -> Result<(), Error> {
        let mut ctx = event_context(event.event_id, event.correlation_id);
        for (k, v) in &event.trace {
            ctx = ctx.with_metadata(*k, v.clone());
        }
        let payload = match self.versions.get(&event.name) {
            Some(&target) if target != event.schema_version => self.upcasters.upcast(
                &event.name,
                event.schema_version,
                target,
                event.payload.clone(),
            )?,
            _ => event.payload.clone(),
        };
        let json = payload.to_string();
        match self.bus.publish_json(&event.name, &json, &ctx).await {
            Ok(report) => match report.failures().next() {
                None => Ok(()),
                Some((handler, e)) => Err(Error::new(
                    e.kind(),
                    e.code().to_owned(),
                    format!(
                        "handler `{handler}` failed event {}: {}",
                        event.event_id,
                        e.message()
                    ),
                )),
            },
            Err(e) if e.code() == codes::BUS_UNKNOWN_MESSAGE => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sends `message` to the dead letters with `error`, then terminates it.
    async fn dead_letter(
        &self,
        message: &jetstream::Message,
        delivered: i64,
        error: &Error,
    ) -> Result<(), Error> {
        // The message's headers but JetStream's own publish expectations, which name the
        // source stream's messages, not the dead letters'.
        let mut h = HeaderMap::new();
        for (name, values) in message.headers.iter().flat_map(|h| h.iter()) {
            if name.to_string().starts_with("Nats-Expected") {
                continue;
            }
            for value in values {
                h.append(name.clone(), value.clone());
            }
        }
        let id = h
            .get(async_nats::header::NATS_MESSAGE_ID)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_else(|| {
                message
                    .info()
                    .map(|i| i.stream_sequence.to_string())
                    .unwrap_or_default()
            });
        // Deduplicated by the dead-letter stream if this is repeated after a crash.
        h.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("{id}:{}", self.durable).as_str(),
        );
        let text: String = error.to_string().chars().take(1_000).collect();
        h.insert(headers::ERROR, text.replace(['\r', '\n'], " ").as_str());
        h.insert(headers::ERROR_CODE, error.code());
        h.insert(headers::SUBJECT, message.subject.as_str());
        h.insert(headers::DELIVERIES, delivered.to_string().as_str());
        let stored = self
            .jetstream
            .publish_with_headers(self.dead_letter_subject.clone(), h, message.payload.clone())
            .await
            .map_err(|e| failed(format!("publishing a dead letter: {e}")))?
            .await
            .map_err(|e| failed(format!("storing a dead letter: {e}")))?;
        ack(message, AckKind::Term).await?;
        if stored.duplicate {
            // Sent before a crash or a lost ack: counted then.
            return Ok(());
        }
        self.counts.0.dead_letters.fetch_add(1, Ordering::Relaxed);
        *self
            .counts
            .0
            .last_dead_letter
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(format!("{id}: {text}"));
        tracing::error!(consumer = %self.durable, message = %id, error = %text, "sent to the dead letters");
        Ok(())
    }
}

/// Every message of a pull, in order.
async fn collect(mut batch: pull::Batch) -> Result<Vec<jetstream::Message>, Error> {
    let mut out = Vec::new();
    while let Some(message) = batch.next().await {
        out.push(message.map_err(|e| failed(format!("pulling: {e}")))?);
    }
    Ok(out)
}

/// Acknowledges a handled `message` without waiting for the server to confirm: should
/// the ack be lost, the message comes again and finds its event id in the inbox (the
/// consumer's, or each handler's), so a confirmation round trip per message buys nothing.
async fn settle(message: &jetstream::Message) -> Result<(), Error> {
    message
        .ack()
        .await
        .map_err(|e| failed(format!("acknowledging: {e}")))
}

/// Acknowledges `message` with `kind`, waiting for the server to confirm.
async fn ack(message: &jetstream::Message, kind: AckKind) -> Result<(), Error> {
    message
        .double_ack_with(kind)
        .await
        .map_err(|e| failed(format!("acknowledging: {e}")))
}

fn failed(message: String) -> Error {
    Error::infrastructure(codes::CONSUMER_FAILED, message)
}

fn bad(message: String) -> Error {
    Error::validation(codes::CONSUMER_BAD_MESSAGE, message)
}

/// A running [`NatsConsumer`]; see [`NatsConsumer::spawn`].
#[derive(Debug)]
pub struct ConsumerLoop {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ConsumerLoop {
    /// Stops after the message in hand; returns when it has.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
