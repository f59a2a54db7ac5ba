//! The outbox relay on PostgreSQL: one publisher at a time, in global order, at least once.

use std::sync::Arc;
use std::time::Duration;

use super::{PgDatabase, PgEventStore, pg_error};
use crate::database::Relay;
use crate::error::Result;

/// The advisory lock a publisher holds while it delivers a batch ("flxobx").
const OUTBOX_LOCK: i64 = 0x0000_666c_786f_6278;

/// Publishes the outbox's undelivered events through a [`Relay`], in global order, and
/// marks them delivered in the transaction that claimed them: the PostgreSQL counterpart
/// of `flext::sqlite::SqliteOutboxRelay`.
///
/// Relays in several processes take turns: a batch is claimed under a transaction-level
/// advisory lock, so one publisher at a time delivers, in order, and a relay that finds
/// the lock taken returns at once (the holder is doing the work). A publisher killed
/// mid-batch ends its transaction with its connection: the lock is released and the
/// batch stays undelivered, for the next publisher to deliver again (at least once;
/// consumers deduplicate on the event id with
/// [`PgUnitOfWork::first_delivery`](super::PgUnitOfWork::first_delivery)).
pub struct PgOutboxRelay {
    db: PgDatabase,
    store: PgEventStore,
    relay: Arc<dyn Relay>,
    batch: usize,
}

impl Clone for PgOutboxRelay {
    fn clone(&self) -> Self {
        PgOutboxRelay {
            db: self.db.clone(),
            store: self.store.clone(),
            relay: self.relay.clone(),
            batch: self.batch,
        }
    }
}

impl PgOutboxRelay {
    /// A relay of `db`'s outbox through `relay`, claiming up to 256 rows at a time.
    pub fn new(db: PgDatabase, relay: impl Relay) -> Self {
        PgOutboxRelay {
            store: db.event_store(),
            db,
            relay: Arc::new(relay),
            batch: 256,
        }
    }

    /// The outbox's backlog: how many events wait, and how long ago the oldest was
    /// appended (milliseconds). What the operator views show.
    ///
    /// # Errors
    ///
    /// A `flext.store.*` code when the database cannot be read.
    pub async fn backlog(&self) -> Result<crate::database::OutboxStatus> {
        let row = self
            .db
            .client()
            .await?
            .query_one(
                "SELECT COUNT(*), MIN(e.timestamp_ms) FROM flext_outbox o JOIN flext_events e ON e.id = o.id WHERE o.delivered_ms IS NULL",
                &[],
            )
            .await
            .map_err(pg_error)?;
        let oldest: Option<i64> = row.get(1);
        Ok(crate::database::OutboxStatus {
            undelivered: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
            oldest_age_ms: oldest.map_or(0, |t| {
                crate::saga::now_ms().saturating_sub(u64::try_from(t).unwrap_or(0))
            }),
        })
    }

    /// At most `batch` rows per claim (at least 1).
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Delivers every undelivered event, in order; returns how many this call delivered
    /// (0 when another publisher holds the outbox).
    ///
    /// # Errors
    ///
    /// The relay's error for the first event it could not deliver (the ones before it in
    /// the batch are marked delivered; it and those after stay undelivered for the next
    /// pass); `flext.store.failed` when the database fails.
    pub async fn deliver_pending(&self) -> Result<u64> {
        let mut delivered = 0;
        self.store.sequence().await?;
        loop {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            let claimed: bool = tx
                .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&OUTBOX_LOCK])
                .await
                .map_err(pg_error)?
                .get(0);
            if !claimed {
                return Ok(delivered);
            }
            let pending = tx
                .prepare_cached(&format!(
                    "SELECT {}, e.id FROM flext_outbox o JOIN flext_events e ON e.id = o.id
                     WHERE o.delivered_ms IS NULL AND e.position IS NOT NULL
                     ORDER BY e.position LIMIT $1",
                    super::events::COLUMNS
                ))
                .await
                .map_err(pg_error)?;
            let rows = tx
                .query(&pending, &[&super::to_bigint(self.batch)])
                .await
                .map_err(pg_error)?;
            if rows.is_empty() {
                tx.commit().await.map_err(pg_error)?;
                // Sequencing numbers a batch at a time: go on while it finds more.
                if self.store.sequence().await? == 0 {
                    return Ok(delivered);
                }
                continue;
            }
            let events: Vec<_> = rows.iter().map(super::events::envelope).collect();
            let (count, failure) = self.relay.deliver_all(&events).await;
            let done: Vec<i64> = rows[..count].iter().map(|row| row.get(12)).collect();
            tx.execute(
                "UPDATE flext_outbox SET delivered_ms = $1 WHERE id = ANY($2)",
                &[&super::to_bigint(crate::saga::now_ms()), &done],
            )
            .await
            .map_err(pg_error)?;
            tx.commit().await.map_err(pg_error)?;
            delivered += done.len() as u64;
            if let Some(e) = failure {
                return Err(e);
            }
        }
    }

    /// Delivers now and then every `every` on the current tokio runtime, until
    /// [`PgOutboxLoop::shutdown`].
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn(&self, every: Duration) -> PgOutboxLoop {
        let relay = self.clone();
        PgOutboxLoop(crate::background::Background::spawn(every, move || {
            let relay = relay.clone();
            async move {
                if let Err(e) = relay.deliver_pending().await {
                    tracing::warn!(error = %e, "outbox pass failed; retrying on the next");
                }
            }
        }))
    }
}

/// The PostgreSQL outbox relay's background loop; see [`PgOutboxRelay::spawn`].
#[derive(Debug)]
pub struct PgOutboxLoop(crate::background::Background);

impl PgOutboxLoop {
    /// Stops the loop after its current pass; returns when it has.
    pub async fn shutdown(self) {
        self.0.shutdown().await;
    }
}
