//! Where an outbox delivers events ([`Relay`]), and delivery to this process's bus
//! ([`BusRelay`]): shared by the SQLite and PostgreSQL outboxes.

use crate::bus::Bus;
use crate::context::Context;
use crate::error::Result;
use crate::event_store::EventEnvelope;
use crate::future::BoxFuture;

/// Where the outbox delivers events: the bus in this process ([`BusRelay`]), or a broker
/// added later without changing the store.
pub trait Relay: Send + Sync + 'static {
    /// Delivers one event. Called again for the same event after a crash or an error:
    /// consumers deduplicate on `event.event_id`.
    ///
    /// # Errors
    ///
    /// When the event could not be delivered; the relay stops there and retries it on its
    /// next pass.
    fn deliver<'a>(&'a self, event: &'a EventEnvelope) -> BoxFuture<'a, Result<()>>;

    /// Delivers `events` (a batch in global order) and answers how many of them, counted
    /// from the first, were delivered, with the error that stopped it when one did. The
    /// outboxes mark exactly that prefix delivered; the rest is delivered again on the
    /// next pass. The default delivers one event at a time through
    /// [`deliver`](Relay::deliver); a broker relay overrides it to pipeline (`flext::nats`
    /// keeps a bounded number of publishes awaiting acks).
    fn deliver_all<'a>(
        &'a self,
        events: &'a [EventEnvelope],
    ) -> BoxFuture<'a, (usize, Option<crate::Error>)> {
        Box::pin(async move {
            for (i, event) in events.iter().enumerate() {
                if let Err(e) = self.deliver(event).await {
                    return (i, Some(e));
                }
            }
            (events.len(), None)
        })
    }
}

/// The context metadata key under which [`BusRelay`] passes the event id to subscribers.
const EVENT_ID: &str = "flext.event_id";

/// The id of the stored event a subscriber is handling, when it was delivered by
/// [`BusRelay`]: what to deduplicate on (`SqliteUnitOfWork::first_delivery`,
/// `PgUnitOfWork::first_delivery`),
/// or to derive an event-started saga's id from
/// ([`saga_id_for_event`](crate::saga::saga_id_for_event)).
pub fn event_id_of(ctx: &Context) -> Option<uuid::Uuid> {
    ctx.metadata(EVENT_ID).and_then(|id| id.parse().ok())
}

/// The context an event's subscribers run under, wherever it was delivered from: a new
/// root context joining the event's correlation id, caused by the event, with the event
/// id as metadata for [`event_id_of`]. [`BusRelay`] and `flext::nats::NatsConsumer` use
/// it.
///
/// ```
/// use flext::database::{event_context, event_id_of};
/// let (event, correlation) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
/// let ctx = event_context(event, correlation);
/// assert_eq!(event_id_of(&ctx), Some(event));
/// assert_eq!(ctx.correlation_id(), correlation);
/// assert_eq!(ctx.causation_id(), Some(event));
/// ```
pub fn event_context(event_id: uuid::Uuid, correlation_id: uuid::Uuid) -> Context {
    Context::new()
        .with_correlation_id(correlation_id)
        .with_causation_id(event_id)
        .with_metadata(EVENT_ID, event_id.to_string())
}

/// Delivers events to this process's bus by name (`Bus::publish_json`), under a context
/// carrying the event's correlation id and, as metadata, its id ([`event_id_of`]).
pub struct BusRelay {
    bus: Bus,
}

impl BusRelay {
    /// A relay publishing on `bus`.
    pub fn new(bus: Bus) -> Self {
        BusRelay { bus }
    }
}

impl Relay for BusRelay {
    fn deliver<'a>(&'a self, event: &'a EventEnvelope) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut ctx = event_context(event.event_id, event.correlation_id);
            for key in ["traceparent", "tracestate"] {
                if let Some(serde_json::Value::String(v)) = event.metadata.get(key) {
                    ctx = ctx.with_metadata(key, v.clone());
                }
            }
            let json = serde_json::to_string(&event.payload).map_err(|e| {
                crate::Error::internal(
                    crate::codes::OUTBOX_FAILED,
                    format!("event {} does not encode: {e}", event.event_id),
                )
            })?;
            match self.bus.publish_json(&event.name, &json, &ctx).await {
                Ok(report) => {
                    for o in &report.outcomes {
                        if let Some(error) = &o.error {
                            tracing::warn!(event = %event.name, subscriber = o.handler, %error, "a subscriber failed an outbox event");
                        }
                    }
                    Ok(())
                }
                // An event no subscriber in this process knows is delivered to nobody.
                Err(e) if e.code() == crate::codes::BUS_UNKNOWN_MESSAGE => Ok(()),
                Err(e) => Err(e),
            }
        })
    }
}
