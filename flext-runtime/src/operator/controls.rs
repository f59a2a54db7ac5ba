//! What the operator views read and do beyond the saga log: projections (status,
//! rebuild) and outboxes (backlog, oldest row's age), as object-safe traits with an
//! implementation for each backend's runner and relay.

use crate::database::{OutboxStatus, ProjectionStatus};
use crate::error::Result;
use crate::future::BoxFuture;

/// A projection as the operator views see it: its [status](ProjectionStatus) and a
/// rebuild. Implemented for `SqliteProjectionRunner` and `PgProjectionRunner`; register
/// one with [`Operations::projection`](super::Operations::projection).
pub trait ProjectionControl: Send + Sync + 'static {
    /// The projection's name.
    fn name(&self) -> &str;
    /// Where it stands: checkpoint, head, lag in events and milliseconds, the event it
    /// stopped at and why.
    fn status(&self) -> BoxFuture<'_, Result<ProjectionStatus>>;
    /// Rebuilds it from the first event; returns how many events were applied.
    ///
    /// # Errors
    ///
    /// The runner's rebuild errors; `flext.operator.unsupported` where the backend has
    /// no rebuild.
    fn rebuild(&self) -> BoxFuture<'_, Result<u64>>;
}

/// An outbox as the operator views see it. Implemented for `SqliteOutboxRelay` and
/// `PgOutboxRelay`; register one with [`Operations::outbox`](super::Operations::outbox).
pub trait OutboxControl: Send + Sync + 'static {
    /// Its backlog now.
    fn status(&self) -> BoxFuture<'_, Result<OutboxStatus>>;
}

/// A consumer's dead letters as the operator views see them: listed, and replayed
/// through the consumer's own handling (its bus, its inbox). Implemented by
/// `flext::nats::NatsConsumer`; register one with
/// [`Operations::dead_letters`](super::Operations::dead_letters).
pub trait DeadLetterControl: Send + Sync + 'static {
    /// The consumer's name.
    fn name(&self) -> &str;
    /// Up to `limit` of its dead letters, oldest first.
    fn list(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>>>;
    /// Handles the dead letter `id` again as the consumer would have, and removes it
    /// once its handlers succeeded (or its event is in the consumer's inbox already).
    ///
    /// # Errors
    ///
    /// `flext.operator.unknown_target` when no such dead letter is kept; the handler's
    /// error, or `flext.consumer.bad_message` for a message that is not a flext event,
    /// and the letter stays; `flext.consumer.failed` when the broker cannot be reached.
    fn replay(&self, id: u64) -> BoxFuture<'_, Result<()>>;
}

/// One dead letter ([`DeadLetterControl::list`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeadLetter {
    /// Its id among the consumer's dead letters (the dead-letter stream's sequence).
    pub id: u64,
    /// The event's id, when the message had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// The event's name, when the message had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Where it was published.
    pub subject: String,
    /// The last error's code.
    pub error_code: String,
    /// The last error's message.
    pub error: String,
    /// How many times it was delivered before it was given up.
    pub deliveries: u64,
    /// When it was given up, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Its payload, when the operator views show payloads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::{OutboxControl, ProjectionControl};
    use crate::database::{OutboxStatus, ProjectionStatus};
    use crate::error::Result;
    use crate::future::BoxFuture;
    use crate::sqlite::{SqliteOutboxRelay, SqliteProjection, SqliteProjectionRunner};

    impl<P: SqliteProjection> ProjectionControl for SqliteProjectionRunner<P> {
        fn name(&self) -> &str {
            self.projection().name()
        }
        fn status(&self) -> BoxFuture<'_, Result<ProjectionStatus>> {
            Box::pin(async move { SqliteProjectionRunner::status(self) })
        }
        fn rebuild(&self) -> BoxFuture<'_, Result<u64>> {
            Box::pin(async move { SqliteProjectionRunner::rebuild(self) })
        }
    }

    impl OutboxControl for SqliteOutboxRelay {
        fn status(&self) -> BoxFuture<'_, Result<OutboxStatus>> {
            Box::pin(async move { self.backlog() })
        }
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::{OutboxControl, ProjectionControl};
    use crate::database::{OutboxStatus, ProjectionStatus};
    use crate::error::{Error, Result};
    use crate::future::BoxFuture;
    use crate::postgres::{PgOutboxRelay, PgProjection, PgProjectionRunner};

    impl<P: PgProjection> ProjectionControl for PgProjectionRunner<P> {
        fn name(&self) -> &str {
            self.projection().name()
        }
        fn status(&self) -> BoxFuture<'_, Result<ProjectionStatus>> {
            Box::pin(PgProjectionRunner::status(self))
        }
        fn rebuild(&self) -> BoxFuture<'_, Result<u64>> {
            let name = self.projection().name().to_owned();
            Box::pin(async move {
                Err(Error::validation(
                    crate::codes::OPERATOR_UNSUPPORTED,
                    format!(
                        "projection `{}` runs on PostgreSQL, where flext cannot rebuild a projection yet: truncate its tables and delete its row in flext_checkpoints, and its runners rebuild it from the first event",
                        crate::input::echo(&name)
                    ),
                ))
            })
        }
    }

    impl OutboxControl for PgOutboxRelay {
        fn status(&self) -> BoxFuture<'_, Result<OutboxStatus>> {
            Box::pin(self.backlog())
        }
    }
}
