//! The SQLite database as a consumer's [`Inbox`]: the `flext_inbox` table that
//! `SqliteUnitOfWork::first_delivery` writes.

use uuid::Uuid;

use crate::database::Inbox;
use crate::error::Result;
use crate::future::BoxFuture;

impl Inbox for super::SqliteDatabase {
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
