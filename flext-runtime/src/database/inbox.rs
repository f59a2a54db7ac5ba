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

#[cfg(feature = "sqlite")]
impl Inbox for crate::sqlite::SqliteDatabase {
    fn contains<'a>(&'a self, consumer: &'a str, event_id: Uuid) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            self.read(|conn| {
                conn.prepare_cached(
                    "SELECT 1 FROM flext_inbox WHERE consumer = ?1 AND event_id = ?2",
                )
                .and_then(|mut s| s.exists(rusqlite::params![consumer, event_id.to_string()]))
                .map_err(crate::db::db_error)
            })
        })
    }

    fn record<'a>(&'a self, consumer: &'a str, event_id: Uuid) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { self.transaction(|uow| uow.first_delivery(consumer, event_id)) })
    }
}

#[cfg(feature = "postgres")]
impl Inbox for crate::postgres::PgDatabase {
    fn contains<'a>(&'a self, consumer: &'a str, event_id: Uuid) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT 1 FROM flext_inbox WHERE consumer = $1 AND event_id = $2",
                    &[&consumer, &event_id],
                )
                .await
                .map_err(crate::postgres::pg_error)?;
            Ok(row.is_some())
        })
    }

    fn record<'a>(&'a self, consumer: &'a str, event_id: Uuid) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let uow = self.begin().await?;
            let first = uow.first_delivery(consumer, event_id).await?;
            uow.commit().await?;
            Ok(first)
        })
    }
}
