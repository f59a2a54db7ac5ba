//! [`ConsumerCounts`]: what a consumer did, for `bus.report()`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use flext_runtime::registry::{ComponentReport, ReportSource};

/// Counts of what a [`NatsConsumer`](crate::NatsConsumer) did since it started, shared by clones; register it
/// with `BusBuilder::report` to see them in `bus.report()` (kind `consumer`).
///
/// ```
/// use flext::nats::ConsumerCounts;
/// let counts = ConsumerCounts::new("shipping");
/// assert_eq!(counts.dead_letters(), 0);
/// ```
#[derive(Clone, Debug)]
pub struct ConsumerCounts(pub(super) Arc<Counts>);

#[derive(Debug, Default)]
pub(super) struct Counts {
    pub(super) name: String,
    pub(super) handled: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) redelivered: AtomicU64,
    pub(super) failed_attempts: AtomicU64,
    pub(super) dead_letters: AtomicU64,
    pub(super) last_dead_letter: Mutex<Option<String>>,
    pub(super) disconnected: AtomicBool,
}

impl ConsumerCounts {
    /// Zero counts for the consumer named `durable` (its durable name).
    pub fn new(durable: impl Into<String>) -> Self {
        ConsumerCounts(Arc::new(Counts {
            name: durable.into(),
            ..Counts::default()
        }))
    }

    /// Messages whose handlers all succeeded and that were acknowledged.
    pub fn handled(&self) -> u64 {
        self.0.handled.load(Ordering::Relaxed)
    }

    /// Messages acknowledged without handling, because the inbox had their event id (a
    /// redelivery of one handled before).
    pub fn duplicates(&self) -> u64 {
        self.0.duplicates.load(Ordering::Relaxed)
    }

    /// Deliveries that were not a message's first.
    pub fn redelivered(&self) -> u64 {
        self.0.redelivered.load(Ordering::Relaxed)
    }

    /// Deliveries a handler failed (each is retried until the delivery limit).
    pub fn failed_attempts(&self) -> u64 {
        self.0.failed_attempts.load(Ordering::Relaxed)
    }

    /// Messages sent to the dead letters.
    pub fn dead_letters(&self) -> u64 {
        self.0.dead_letters.load(Ordering::Relaxed)
    }
}

impl ReportSource for ConsumerCounts {
    /// The counts, and the last dead letter's event id and error; unhealthy while the
    /// consumer cannot reach its server.
    fn report(&self) -> ComponentReport {
        let last = self
            .0
            .last_dead_letter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        ComponentReport {
            kind: "consumer",
            name: self.0.name.clone(),
            healthy: !self.0.disconnected.load(Ordering::Relaxed),
            status: serde_json::json!({
                "handled": self.handled(),
                "duplicates": self.duplicates(),
                "redelivered": self.redelivered(),
                "failed_attempts": self.failed_attempts(),
                "dead_letters": self.dead_letters(),
                "last_dead_letter": last,
            }),
        }
    }
}
