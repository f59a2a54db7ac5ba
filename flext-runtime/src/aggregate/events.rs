//! [`Events`]: what a command method raises.

use super::Apply;
use crate::bus::Bus;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::future::BoxFuture;
use crate::message::Event;

/// The events a command method raises, in order, for aggregate `A`. Only events `A`
/// has an `#[apply]` method for can be added (the [`Apply`] bound), so every raised event
/// evolves the state.
///
/// ```rust,standalone_crate
/// use flext::prelude::*;
/// use flext::aggregate::{Events, Fixture, Repository};
/// use serde::{Deserialize, Serialize};
///
/// #[command(output = u64)]
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// struct Deposit { #[aggregate_id] account: String, cents: u64 }
///
/// #[event(name = "account.deposited")]
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// struct Deposited { cents: u64 }
///
/// #[aggregate]
/// #[derive(Debug, Default)]
/// struct Account { #[aggregate_id] id: String, balance: u64 }
///
/// #[aggregate]
/// impl Account {
///     #[command_handler]
///     fn deposit(&self, c: &Deposit) -> Result<Events<Self>> {
///         if c.cents == 0 {
///             return Err(Error::validation("account.zero", "deposit at least one cent"));
///         }
///         Ok(Events::one(Deposited { cents: c.cents }))
///     }
///     #[apply]
///     fn deposited(&mut self, e: &Deposited) { self.balance += e.cents; }
/// }
/// let two: Events<Account> = Events::one(Deposited { cents: 1 }).and(Deposited { cents: 2 });
/// assert_eq!(two.len(), 2);
/// assert!(Events::<Account>::none().is_empty());
/// let json = two.to_json().unwrap();
/// assert_eq!(json[1], ("account.deposited", serde_json::json!({ "cents": 2 })));
/// ```
pub struct Events<A> {
    raised: Vec<Box<dyn RaisedEvent<A>>>,
}

impl<A> std::fmt::Debug for Events<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.raised.iter().map(|e| e.name()))
            .finish()
    }
}

impl<A: 'static> Events<A> {
    /// No events: the command changes nothing.
    pub fn none() -> Self {
        Events { raised: Vec::new() }
    }

    /// One event.
    pub fn one<E: Apply<A> + Event>(event: E) -> Self {
        Self::none().and(event)
    }

    /// These events and then `event`.
    #[allow(clippy::should_implement_trait)]
    pub fn and<E: Apply<A> + Event>(mut self, event: E) -> Self {
        self.raised.push(Box::new(event));
        self
    }

    /// How many events.
    pub fn len(&self) -> usize {
        self.raised.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.raised.is_empty()
    }

    /// The events, in order.
    pub fn iter(&self) -> impl Iterator<Item = &dyn RaisedEvent<A>> {
        self.raised.iter().map(|e| &**e)
    }

    /// Each event's name and payload as JSON, in order: what the store keeps, and what
    /// [`Fixture`](super::Fixture) compares.
    ///
    /// # Errors
    ///
    /// When an event does not serialise.
    pub fn to_json(&self) -> Result<Vec<(&'static str, serde_json::Value)>> {
        self.raised
            .iter()
            .map(|e| Ok((e.name(), e.to_json()?)))
            .collect()
    }

    pub(crate) fn apply_to(&self, aggregate: &mut A) {
        for e in &self.raised {
            e.apply_to(aggregate);
        }
    }

    pub(crate) fn into_vec(self) -> Vec<Box<dyn RaisedEvent<A>>> {
        self.raised
    }
}

/// One raised event, its type erased. Implemented for every event `A` applies.
pub trait RaisedEvent<A>: Send + Sync {
    /// The event type's name.
    fn name(&self) -> &'static str;
    /// The event type's schema version.
    fn version(&self) -> u32;
    /// The event as JSON.
    ///
    /// # Errors
    ///
    /// When it does not serialise.
    fn to_json(&self) -> Result<serde_json::Value>;
    /// Evolves `aggregate` by the event.
    fn apply_to(&self, aggregate: &mut A);
    /// Publishes the event on `bus` to its subscribers.
    fn publish<'a>(self: Box<Self>, bus: &'a Bus, ctx: &'a Context) -> BoxFuture<'a, ()>;
}

impl<A, E: Apply<A> + Event> RaisedEvent<A> for E {
    fn name(&self) -> &'static str {
        E::NAME
    }

    fn version(&self) -> u32 {
        E::VERSION
    }

    fn to_json(&self) -> Result<serde_json::Value> {
        crate::message::Wire::to_json_value(self).map_err(|e| {
            Error::internal(
                crate::codes::EVENT_DECODE,
                format!("event `{}` does not serialise: {e}", E::NAME),
            )
        })
    }

    fn apply_to(&self, aggregate: &mut A) {
        Apply::apply_to(self, aggregate);
    }

    fn publish<'a>(self: Box<Self>, bus: &'a Bus, ctx: &'a Context) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let report = bus.publish(*self, ctx).await;
            for o in &report.outcomes {
                if let Some(error) = &o.error {
                    tracing::warn!(event = E::NAME, subscriber = o.handler, %error, "a subscriber of an appended event failed");
                }
            }
        })
    }
}
