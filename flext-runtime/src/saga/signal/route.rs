//! Signals routed by a correlation key the saga declares: `#[saga(key = field)]` and
//! `#[saga_step(signal, key = field)]`.

use serde::Serialize;
use uuid::Uuid;

use super::{SignalSent, WaitsFor};
use crate::context::Context;
use crate::error::Result;
use crate::future::BoxFuture;
use crate::saga::{Saga, SagaOutcome, SagaRunner};

/// A saga with a correlation key (`#[saga(key = field)]`: a field of its input, as a
/// string): started with [`SagaRunner::run_keyed`], its id is [`saga_id_for_key`] of its
/// name and key, so that a signal carrying the key finds it
/// ([`SagaRunner::route_signal`]) without a lookup. Implemented by `#[saga]`.
#[diagnostic::on_unimplemented(
    message = "saga `{Self}` declares no correlation key",
    label = "`{Self}` has no `key`",
    note = "write `#[saga(key = field)]` on `impl {Self}`, naming the input field that identifies it (an order id, say)"
)]
pub trait KeyedSaga: Saga {
    /// The saga's correlation key.
    fn key(&self) -> String;
}

/// A signal `P` that names its saga by a field (`#[saga_step(signal, key = field)]`):
/// [`SagaRunner::route_signal`] sends it to the `Self` whose key that field holds.
/// Implemented by `#[saga]`.
#[diagnostic::on_unimplemented(
    message = "a `{P}` signal does not say which `{Self}` it goes to",
    label = "no `key` routes `{P}` to a `{Self}`",
    note = "write `#[saga_step(signal, key = field)]` on the step that takes `Signal<{P}>`, naming the field of `{P}` that holds the saga's key (and `#[saga(key = ...)]` on `{Self}`)"
)]
pub trait SignalKey<P>: WaitsFor<P> + KeyedSaga {
    /// The key of the saga that `signal` goes to.
    fn key_of(signal: &P) -> String;
}

/// The namespace of keyed saga ids.
const KEYS: Uuid = Uuid::from_u128(0x1f0e_6c3a_94d2_4b8e_a7c5_30d9_e2b4_7a61);

/// The id of the saga of type `saga` (its name) whose correlation key is `key`: a UUID
/// v5 of the two, the same in every process.
///
/// ```
/// use flext::saga::saga_id_for_key;
/// assert_eq!(saga_id_for_key("Checkout", "o-1"), saga_id_for_key("Checkout", "o-1"));
/// assert_ne!(saga_id_for_key("Checkout", "o-1"), saga_id_for_key("Checkout", "o-2"));
/// ```
pub fn saga_id_for_key(saga: &str, key: &str) -> Uuid {
    Uuid::new_v5(&KEYS, format!("{saga}\n{key}").as_bytes())
}

impl SagaRunner {
    /// Starts `saga` under the id its correlation key gives ([`saga_id_for_key`]), as
    /// [`run_with_id`](Self::run_with_id) does: a second start of the same key runs
    /// nothing new. What [`route_signal`](Self::route_signal) finds it by.
    ///
    /// # Errors
    ///
    /// As [`run_with_id`](Self::run_with_id); `flext.saga.id_reused` when a saga of the
    /// same key was started with another input.
    pub fn run_keyed<'a, S: KeyedSaga>(
        &'a self,
        saga: S,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<SagaOutcome<S::Output>>> {
        let id = saga_id_for_key(S::NAME, &saga.key());
        self.run_with_id(id, saga, ctx)
    }

    /// Sends `payload` to the `S` whose key the signal carries (`#[saga_step(signal, key
    /// = field)]`; the saga started with [`run_keyed`](Self::run_keyed)): a correlation
    /// key the saga declares, as an event handler of the bus routes the event it
    /// handles. Otherwise as [`signal`](Self::signal).
    ///
    /// ```
    /// use flext::prelude::*;
    /// use flext::saga::{MemoryLog, SagaOutcome, SagaRunner, Signal};
    ///
    /// /// An event of the payment service, naming the order.
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct PaymentSettled { order_id: String, cents: u64 }
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Settle { order: String }
    ///
    /// #[saga(key = order)]
    /// impl Settle {
    ///     #[saga_step(signal, key = order_id)]
    ///     async fn settled(&self, paid: Signal<PaymentSettled>) -> Result<u64> {
    ///         Ok(paid.received()?.cents)
    ///     }
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let runner = SagaRunner::builder(MemoryLog::new()).build();
    /// let outcome = runner.run_keyed(Settle { order: "o-7".into() }, &Context::new()).await.unwrap();
    /// assert!(matches!(outcome, SagaOutcome::Waiting { .. }));
    /// // In the handler of `PaymentSettled`, with the event's id as the sender:
    /// let event = PaymentSettled { order_id: "o-7".into(), cents: 900 };
    /// runner.route_signal::<Settle, _>("evt-41", &event).await.unwrap();
    /// assert_eq!(runner.recover().await.unwrap().completed(), 1);
    /// # });
    /// ```
    ///
    /// # Errors
    ///
    /// As [`signal`](Self::signal): `flext.saga.not_found` when no `S` was started with
    /// that key.
    pub fn route_signal<'a, S, P>(
        &'a self,
        sender: &str,
        payload: &P,
    ) -> BoxFuture<'a, Result<SignalSent>>
    where
        S: SignalKey<P>,
        P: Serialize,
    {
        let id = saga_id_for_key(S::NAME, &S::key_of(payload));
        self.signal::<S, P>(id, sender, payload)
    }
}
