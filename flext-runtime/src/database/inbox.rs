//! A consumer's inbox as a trait ([`Inbox`]), for consumers that live outside the
//! backend crate (`flext::nats::NatsConsumer`): the same `flext_inbox` table that
//! `first_delivery` writes, on SQLite and PostgreSQL.

use uuid::Uuid;

use crate::error::Result;
use crate::future::BoxFuture;

/// Which events a consumer has handled: the inbox half of the transactional outbox
/// pattern (Chris Richardson, "Microservices Patterns", 2018), one row per (consumer,
/// event id) in `flext_inbox`. Implemented by `flext::sqlite::SqliteDatabase` and
/// `flext::postgres::PgDatabase`; a handler that writes through a unit of work records
/// its own row there with `first_delivery`, in its own transaction.
pub trait Inbox: Send + Sync + 'static {
    /// Whether `consumer` has recorded event `event_id`.
    ///
    /// # Errors
    ///
    /// `flext.store.failed` when the database cannot be read.
    fn contains<'a>(&'a self, consumer: &'a str, event_id: Uuid) -> BoxFuture<'a, Result<bool>>;

    /// Records that `consumer` handled event `event_id`, in a transaction of its own:
    /// `true` the first time, `false` when it was recorded already.
    ///
    /// # Errors
    ///
    /// `flext.store.failed` when the database cannot be written.
    fn record<'a>(&'a self, consumer: &'a str, event_id: Uuid) -> BoxFuture<'a, Result<bool>>;
}
