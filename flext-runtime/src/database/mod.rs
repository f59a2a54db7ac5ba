//! One database for every durable part of flext: the saga log, the event store with its
//! outbox, projection checkpoints and consumers' inboxes, written through one unit of
//! work so that what belongs together commits together. This module holds what every
//! backend shares ([`Relay`], [`BusRelay`], [`Inbox`], [`ProjectionStatus`], [`CatchUp`], and the
//! portable projection: [`PortableProjection`], [`ProjectionWrites`], [`SqlValue`]); the
//! backends are `flext::sqlite` (the `sqlite` feature: `SqliteDatabase`,
//! `SqliteUnitOfWork`, `SqliteProjectionRunner`, `SqliteOutboxRelay`) and
//! `flext::postgres` (the `postgres` feature: `PgDatabase`, `PgUnitOfWork`,
//! `PgProjectionRunner`, `PgOutboxRelay`), one shape with one prefix each.
//!
//! The transactional outbox is Chris Richardson's pattern ("Microservices Patterns",
//! 2018): an appended event's outbox row is written in the append's transaction, and a
//! relay publishes rows after they commit, at least once; consumers deduplicate on the
//! event id with an inbox. Projections keep their checkpoint in the same transaction as
//! the state change it covers, so a restart never writes an event's changes twice:
//! exactly once for what a projection writes through the unit of work, at least once
//! for any other effect of its code (see [`PortableProjection`] for the pattern that
//! makes such an effect idempotent).
//!
//! # No skipped events
//!
//! A reader that follows the global order (a projection runner, an outbox relay) must
//! never move past a position whose transaction may still commit. SQLite runs one write
//! transaction at a time and assigns positions inside it, so positions become visible in
//! order: once a reader sees position `p`, every position below `p` that will ever
//! commit has committed. On PostgreSQL, where sequence values commit out of order, the
//! same guarantee needs a horizon: readers only take positions written by transactions
//! older than the oldest transaction still running (`pg_snapshot_xmin(pg_current_snapshot())`
//! against each row's `xid8`), which is what `flext::postgres::PgEventStore` does.

mod inbox;
mod portable;
mod relay;
mod status;

#[cfg(feature = "sqlite")]
pub(crate) use self::portable::check_table_name;
pub mod conformance;
pub use self::inbox::Inbox;
pub use self::portable::{PortableProjection, ProjectionWrites, SqlValue, Statement};
pub use self::relay::{BusRelay, Relay, event_context, event_id_of};
pub use self::status::{CatchUp, OutboxStatus, ProjectionStatus};
#[doc(hidden)]
pub use self::status::{decode_event, event_name};
#[doc(hidden)]
pub use crate::event_store::EventEnvelope;
