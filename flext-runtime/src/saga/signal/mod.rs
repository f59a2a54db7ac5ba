//! Signals: a `#[saga_step(signal)]` step waits for a typed message sent to its saga
//! ([`SagaRunner::signal`]), or for its time limit, leased to no runner meanwhile.
//!
//! The pattern is Temporal's and Restate's signal (an external message delivered to a
//! running workflow) over a per-saga *inbox*: a sent signal is kept in the log under
//! (saga id, sender id), so a retried send is kept once and a signal sent before the
//! saga waits (or while no process runs) is there when it does. The step that takes it
//! records which signal it took ([`Transition::SignalReceived`]) before it runs, so a
//! step run again after a crash sees the same one, and each sender's signal is taken
//! once.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

mod receive;
mod route;

pub use self::route::{KeyedSaga, SignalKey, saga_id_for_key};
use super::{Saga, SagaOutcome, SagaRunner, now_ms};
use crate::error::{Error, ErrorKind, Result};
use crate::future::BoxFuture;

/// What a signal step (`#[saga_step(signal)]`) receives: the signal sent to its saga, or
/// word that the wait timed out.
///
/// ```
/// use flext::saga::Signal;
/// let paid: Signal<u32> = Signal::Received(1200);
/// assert_eq!(paid.received().unwrap(), 1200);
/// let late: Signal<u32> = Signal::TimedOut;
/// assert_eq!(late.received().unwrap_err().code(), "flext.saga.signal_timed_out");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal<T> {
    /// The signal a sender sent.
    Received(T),
    /// The step's `wait_ms` passed before any signal came.
    TimedOut,
}

impl<T> Signal<T> {
    /// The signal, or an error when the wait timed out: `signal.received()?` in a step
    /// makes a timeout a failure that the saga compensates.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`], `flext.saga.signal_timed_out`, for [`Signal::TimedOut`].
    pub fn received(self) -> Result<T> {
        match self {
            Signal::Received(value) => Ok(value),
            Signal::TimedOut => Err(Error::new(
                ErrorKind::Timeout,
                crate::codes::SAGA_SIGNAL_TIMED_OUT,
                format!(
                    "no `{}` signal came before the step's time limit",
                    short_type_name::<T>()
                ),
            )),
        }
    }

    /// The signal, or `None` when the wait timed out: for a step that goes on another
    /// way without it (a declared alternative).
    pub fn into_option(self) -> Option<T> {
        match self {
            Signal::Received(value) => Some(value),
            Signal::TimedOut => None,
        }
    }
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

/// A saga that has a `#[saga_step(signal)]` step taking `Signal<P>`: what
/// [`SagaRunner::signal`] requires, so that sending a signal no step of the saga waits
/// for is a compile error at the send. Implemented by `#[saga]`, once per signal type.
#[diagnostic::on_unimplemented(
    message = "saga `{Self}` never waits for a `{P}` signal",
    label = "no step of `{Self}` takes `Signal<{P}>`",
    note = "send the signal to the saga that waits for it, or add a step `#[saga_step(signal)] async fn ...(&self, signal: Signal<{P}>) -> Result<T>` to `{Self}`"
)]
pub trait WaitsFor<P>: Saga {
    /// The name the signal is kept and waited for under: the type's name as the step's
    /// `Signal<P>` parameter writes it.
    const SIGNAL: &'static str;
}

/// A signal as the log keeps it in the saga's inbox, until a signal step takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalRecord {
    /// The saga it is sent to.
    pub saga_id: Uuid,
    /// The signal's name ([`WaitsFor::SIGNAL`]).
    pub name: String,
    /// The sender's id: the deduplication key, unique per saga (a webhook's event id, a
    /// message id). At most [`MAX_SENDER_BYTES`] bytes.
    pub sender: String,
    /// The signal, as JSON.
    pub payload: serde_json::Value,
    /// When it was kept, in milliseconds since the Unix epoch.
    pub sent_ms: u64,
}

/// The longest sender id [`SagaRunner::signal`] takes, in bytes.
pub const MAX_SENDER_BYTES: usize = 256;

/// What [`SagaRunner::signal`] did with a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalSent {
    /// Kept in the saga's inbox; a waiting saga was handed to the recovery loop.
    Kept,
    /// The saga already holds a signal from this sender: nothing changed.
    Duplicate,
}

/// What a signal step runs with, as recorded by [`Transition::SignalReceived`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Receipt {
    pub(crate) sender: Option<String>,
    pub(crate) payload: Option<serde_json::Value>,
}

/// The owner a saga waiting for signal `name` is leased to: no runner (no `/`, so that
/// no runner's restart takes it back as one of its own incarnations), and the log's
/// [`SagaLog::send_signal`](super::SagaLog::send_signal) hands it over at once when a
/// signal of that name comes.
pub(crate) fn waiting_owner(name: &str) -> String {
    format!("{WAITING_PREFIX}{name}")
}

/// The prefix of [`waiting_owner`].
pub(crate) const WAITING_PREFIX: &str = "signal:";

/// Whether `owner` is no runner but a timer, a wait for a signal or a queue: its lease
/// is when the saga is due, not a live process.
pub(crate) fn parked(owner: &str) -> bool {
    owner == super::timer::SLEEPING_OWNER
        || owner.starts_with(WAITING_PREFIX)
        || owner.starts_with(super::QUEUE_PREFIX)
}

/// A wait without a time limit is leased until the year 9999 (a value every backend
/// stores).
pub(super) const NO_LIMIT_MS: u64 = 253_402_300_799_000;

/// Where a signal step stands when the runner reaches it.
pub(in crate::saga) enum Reached {
    /// Its receipt is recorded: run the step.
    Ready,
    /// No signal yet: the saga waits, leased to no runner.
    Parked(SagaOutcome<serde_json::Value>),
}

impl SagaRunner {
    /// Sends signal `payload` from `sender` to saga `saga_id`, an `S` that waits for a
    /// `P` (a compile error otherwise, at this call). The log keeps it in the saga's
    /// inbox, once per sender id (a retried webhook is kept once), until the saga's
    /// signal step takes it: at once when the saga waits for it (the recovery loop of
    /// this runner is woken; other processes' loops take it at their next pass), or when
    /// the saga reaches the step later. Works while no runner drives the saga (it is
    /// kept in the log).
    ///
    /// ```
    /// use flext::prelude::*;
    /// use flext::saga::{MemoryLog, SagaOutcome, SagaRunner, Signal, SignalSent};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Paid { cents: u64 }
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct PaidOrder { id: String }
    ///
    /// #[saga]
    /// impl PaidOrder {
    ///     #[saga_step]
    ///     async fn place(&self) -> Result<String> { Ok(self.id.clone()) }
    ///
    ///     #[saga_step(signal, wait_ms = 86_400_000)]
    ///     async fn payment(&self, _placed: &str, paid: Signal<Paid>) -> Result<u64> {
    ///         Ok(paid.received()?.cents)
    ///     }
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let runner = SagaRunner::builder(MemoryLog::new()).build();
    /// let outcome = runner.run(PaidOrder { id: "o-1".into() }, &Context::new()).await.unwrap();
    /// assert!(matches!(outcome, SagaOutcome::Waiting { .. }));
    /// let id = outcome.saga_id();
    /// let sent = runner.signal::<PaidOrder, _>(id, "psp-evt-1", &Paid { cents: 1200 }).await.unwrap();
    /// assert_eq!(sent, SignalSent::Kept);
    /// // The webhook retried: kept once.
    /// let again = runner.signal::<PaidOrder, _>(id, "psp-evt-1", &Paid { cents: 1200 }).await.unwrap();
    /// assert_eq!(again, SignalSent::Duplicate);
    /// let report = runner.recover().await.unwrap(); // what the recovery loop does
    /// assert_eq!(report.completed(), 1);
    /// # });
    /// ```
    ///
    /// # Errors
    ///
    /// - `flext.saga.signal_input` ([`ErrorKind::Validation`]): `sender` is empty or
    ///   longer than [`MAX_SENDER_BYTES`], or `payload` does not serialise;
    /// - `flext.saga.not_found` ([`ErrorKind::NotFound`]): no saga `saga_id`;
    /// - `flext.saga.finished` ([`ErrorKind::Conflict`]): the saga completed, was
    ///   compensated or resolved, and waits for nothing more;
    /// - [`ErrorKind::Infrastructure`] when the log fails (the signal may or may not
    ///   be kept: send it again with the same sender id).
    ///
    /// The future is boxed and holds no `P` (the signal is encoded before it), so that
    /// a signal the saga never waits for is one error, at the call.
    pub fn signal<'a, S, P>(
        &'a self,
        saga_id: Uuid,
        sender: &str,
        payload: &P,
    ) -> BoxFuture<'a, Result<SignalSent>>
    where
        S: WaitsFor<P>,
        P: Serialize,
    {
        // Checked and encoded before the future: the future holds no `P`, and a type
        // the saga never waits for is one error, at the call.
        let record = signal_record(saga_id, S::SIGNAL, sender, payload);
        Box::pin(async move { self.keep_signal(record?).await })
    }

    async fn keep_signal(&self, record: SignalRecord) -> Result<SignalSent> {
        let sent = self.log.send_signal(&record).await?;
        tracing::info!(saga_id = %record.saga_id, signal = record.name, ?sent, "signal sent");
        self.nudge.notify_one();
        Ok(sent)
    }
}

/// The record of signal `payload` named `name` from `sender` to saga `saga_id`.
fn signal_record<P: Serialize>(
    saga_id: Uuid,
    name: &str,
    sender: &str,
    payload: &P,
) -> Result<SignalRecord> {
    if sender.is_empty() || sender.len() > MAX_SENDER_BYTES {
        return Err(Error::validation(
            crate::codes::SAGA_SIGNAL_INPUT,
            format!(
                "a signal's sender id is its deduplication key: give 1 to {MAX_SENDER_BYTES} bytes (got {})",
                sender.len()
            ),
        ));
    }
    let payload = serde_json::to_value(payload).map_err(|e| {
        Error::validation(
            crate::codes::SAGA_SIGNAL_INPUT,
            format!("the `{name}` signal does not serialise: {e}"),
        )
    })?;
    Ok(SignalRecord {
        saga_id,
        name: name.to_owned(),
        sender: sender.to_owned(),
        payload,
        sent_ms: now_ms(),
    })
}
