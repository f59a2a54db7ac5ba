//! [`NatsConsumerBuilder`]: a consumer's settings, and its creation on the server.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, stream};
use flext_runtime::database::Inbox;
use flext_runtime::event_store::Upcasters;
use flext_runtime::{Bus, Error};

use super::{ConsumerCounts, Inner, NatsConsumer, failed};
use crate::without_credentials;

/// How a [`NatsConsumer`] is set up; from [`NatsConsumer::builder`].
pub struct NatsConsumerBuilder {
    pub(super) stream: String,
    pub(super) durable: String,
    pub(super) filter_subject: Option<String>,
    pub(super) ack_wait: Duration,
    pub(super) max_deliver: i64,
    pub(super) max_ack_pending: i64,
    pub(super) retry_delay: Duration,
    pub(super) inbox: Option<Arc<dyn Inbox>>,
    pub(super) upcasters: Upcasters,
    pub(super) versions: HashMap<String, u32>,
    pub(super) counts: Option<ConsumerCounts>,
}

impl std::fmt::Debug for NatsConsumerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConsumerBuilder")
            .field("stream", &self.stream)
            .field("durable", &self.durable)
            .field("filter_subject", &self.filter_subject)
            .field("ack_wait", &self.ack_wait)
            .field("max_deliver", &self.max_deliver)
            .field("max_ack_pending", &self.max_ack_pending)
            .field("inbox", &self.inbox.is_some())
            .finish_non_exhaustive()
    }
}

impl NatsConsumerBuilder {
    /// Takes only the messages whose subject matches `subject` (NATS wildcards: `*` one
    /// token, `>` the rest), such as `orders.Order.>`. Default: the whole stream.
    pub fn filter_subject(mut self, subject: impl Into<String>) -> Self {
        self.filter_subject = Some(subject.into());
        self
    }

    /// How long the server waits for an ack before delivering a message again; a
    /// handler that runs longer keeps it with in-progress acks every third of it.
    /// Default 30 seconds.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    /// How many deliveries a message gets (at least 1): after the last one fails, it goes
    /// to the dead letters. Default 5.
    pub fn max_deliver(mut self, deliveries: u32) -> Self {
        self.max_deliver = i64::from(deliveries.max(1));
        self
    }

    /// How many messages may be delivered and not yet acknowledged (at least 1). Messages
    /// are handled one at a time in stream order; after a crash or a failed delivery, a
    /// message delivered again may come after later ones of its stream, unless this is 1
    /// (strict order, one round trip per message). Default 1,000.
    pub fn max_ack_pending(mut self, pending: u32) -> Self {
        self.max_ack_pending = i64::from(pending.max(1));
        self
    }

    /// How long after a failed delivery the server delivers the message again. Default
    /// 1 second.
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// Records each handled event id in `inbox` (table `flext_inbox`, consumer = the
    /// durable name) before the ack, and acknowledges a message whose id it holds without
    /// handling it again. `SqliteDatabase` and `PgDatabase` are inboxes. Without one, a
    /// message whose ack was lost is handled again (each handler deduplicates on
    /// `event_id_of(ctx)` in its own unit of work, as for the local outbox).
    pub fn inbox(mut self, inbox: impl Inbox) -> Self {
        self.inbox = Some(Arc::new(inbox));
        self
    }

    /// Upgrades event `E`'s payloads stored under an older schema version with
    /// `upcasters` before decoding (the same chains an aggregate's repository uses).
    pub fn upcast<E: flext_runtime::Message>(mut self, upcasters: &Upcasters) -> Self {
        self.versions.insert(E::NAME.to_owned(), E::VERSION);
        self.upcasters = upcasters.clone();
        self
    }

    /// Counts into `counts` (registered in the bus's report) instead of fresh ones.
    pub fn counts(mut self, counts: ConsumerCounts) -> Self {
        self.counts = Some(counts);
        self
    }

    /// Connects to the server at `url` and creates (or binds to) the durable consumer;
    /// handled events go to `bus`.
    ///
    /// # Errors
    ///
    /// As [`NatsConsumerBuilder::build`]; `flext.consumer.failed` when the server cannot
    /// be reached (the message names the URL without its credentials).
    pub async fn connect(self, url: &str, bus: Bus) -> Result<NatsConsumer, Error> {
        let client = async_nats::connect(url)
            .await
            .map_err(|e| failed(format!("NATS at {}: {e}", without_credentials(url))))?;
        self.build(client, bus).await
    }

    /// Creates (or binds to) the durable consumer through `client`, and the dead-letter
    /// stream `{stream}_dead_letters` (subjects `{stream}_dead_letters.>`); handled
    /// events go to `bus`.
    ///
    /// # Errors
    ///
    /// `flext.store.bad_config` when the stream or durable name is not a subject token;
    /// `flext.consumer.failed` when the stream does not exist or the consumer cannot be
    /// created (an existing durable with other settings is refused by the server).
    pub async fn build(self, client: async_nats::Client, bus: Bus) -> Result<NatsConsumer, Error> {
        crate::check_token("stream", &self.stream)?;
        crate::check_token("durable name", &self.durable)?;
        let jetstream = jetstream::new(client);
        let source = jetstream
            .get_stream(&self.stream)
            .await
            .map_err(|e| failed(format!("stream `{}`: {e}", self.stream)))?;
        let dead = format!("{}_dead_letters", self.stream);
        jetstream
            .get_or_create_stream(stream::Config {
                name: dead.clone(),
                subjects: vec![format!("{dead}.>")],
                ..Default::default()
            })
            .await
            .map_err(|e| failed(format!("dead-letter stream `{dead}`: {e}")))?;
        let consumer: PullConsumer = source
            .get_or_create_consumer(
                &self.durable,
                pull::Config {
                    durable_name: Some(self.durable.clone()),
                    filter_subject: self.filter_subject.clone().unwrap_or_default(),
                    deliver_policy: DeliverPolicy::All,
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: self.ack_wait,
                    max_deliver: self.max_deliver,
                    max_ack_pending: self.max_ack_pending,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| {
                failed(format!(
                    "consumer `{}` on `{}`: {e}",
                    self.durable, self.stream
                ))
            })?;
        let counts = self
            .counts
            .unwrap_or_else(|| ConsumerCounts::new(self.durable.clone()));
        Ok(NatsConsumer {
            inner: Arc::new(Inner {
                bus,
                jetstream,
                consumer,
                dead_letter_subject: format!("{dead}.{}", self.durable),
                durable: self.durable,
                ack_wait: self.ack_wait,
                max_deliver: self.max_deliver,
                retry_delay: self.retry_delay,
                batch: usize::try_from(self.max_ack_pending).unwrap_or(1).min(256),
                inbox: self.inbox,
                upcasters: self.upcasters,
                versions: self.versions,
                counts,
            }),
        })
    }
}
