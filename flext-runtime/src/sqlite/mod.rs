//! SQLite backends (the `sqlite` feature, on by default): one file on one machine for
//! every durable part of flext, in the same shape as `flext::postgres`, one prefix for
//! every type.
//!
//! - [`SqliteDatabase`]: the file, its connections ([`SqliteOptions`]: durability, busy
//!   timeout, read connections, read-only), and every store opened on it;
//! - [`SqliteUnitOfWork`]: one transaction every store writes through (events with their
//!   outbox rows, saga transitions, checkpoints, inbox entries, the caller's tables);
//!   [`SqliteReadUnitOfWork`]: one snapshot, read without the write lock;
//! - [`SqliteLog`] (the saga log) and [`SqliteEventStore`];
//! - [`SqliteProjection`] and [`SqliteProjectionRunner`] (every
//!   [`PortableProjection`](crate::database::PortableProjection) is a
//!   [`SqliteProjection`]), [`SqliteOutboxRelay`].
//!
//! What both backends share is in `flext::database`.

mod inbox;
mod outbox;
mod portable;
mod projection;
mod uow;

pub use self::outbox::{SqliteOutboxLoop, SqliteOutboxRelay};
pub use self::projection::{SqliteProjection, SqliteProjectionLoop, SqliteProjectionRunner};
pub use self::uow::{SqliteDatabase, SqliteReadUnitOfWork, SqliteUnitOfWork};
pub use crate::db::{SqliteOptions, Synchronous};
pub use crate::event_store::SqliteEventStore;
pub use crate::saga::SqliteLog;
/// The SQLite binding flext uses, for a projection's own SQL through
/// [`SqliteUnitOfWork::connection`].
pub use rusqlite;
