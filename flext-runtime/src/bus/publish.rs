//! Events: `Bus::publish` and its per-subscriber report.

use std::any::TypeId;
use std::sync::Arc;

use serde::Serialize;

use super::Bus;
use super::dispatch::slot_mismatch;
use super::handler::Handler;
use crate::context::Context;
use crate::error::Error;
use crate::message::Event;

/// What happened to one subscriber of a published event.
#[derive(Debug, Serialize)]
pub struct SubscriberOutcome {
    /// The subscriber, as written (`project_user_created`).
    pub handler: &'static str,
    /// `None` when the subscriber succeeded; its error (or the panic, as an
    /// [`ErrorKind::Internal`](crate::ErrorKind::Internal) error) otherwise.
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

impl Bus {
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
                    super::Dispatched::new(
                        self,
                        ctx,
                        Ok((&**handler, slot.index)),
                        event.duplicate(),
                    )
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
}
