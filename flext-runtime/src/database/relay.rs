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
            let ctx = Context::new()
                .with_correlation_id(event.correlation_id)
                .with_metadata(EVENT_ID, event.event_id.to_string());
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
