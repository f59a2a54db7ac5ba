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
