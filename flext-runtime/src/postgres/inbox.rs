//! The PostgreSQL database as a consumer's [`Inbox`]: the `flext_inbox` table that
//! `PgUnitOfWork::first_delivery` writes.

use uuid::Uuid;

use crate::database::Inbox;
use crate::error::Result;
use crate::future::BoxFuture;

impl Inbox for super::PgDatabase {
    fn contains<'a>(&'a self, consumer: &'a str, event_id: Uuid) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT 1 FROM flext_inbox WHERE consumer = $1 AND event_id = $2",
                    &[&consumer, &event_id],
                )
                .await
                .map_err(super::pg_error)?;
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
