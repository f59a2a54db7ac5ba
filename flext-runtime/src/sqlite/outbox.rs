//! The outbox relay: publishes appended events after their append committed, at least
//! once, in global order.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::params;

use super::SqliteDatabase;
use crate::database::Relay;
use crate::db::db_error;
use crate::error::Result;

/// Publishes the outbox's undelivered events through a [`Relay`], oldest first, and
/// marks them delivered after the relay accepted them (a batch at a time, up to 256): at
/// least once, across crashes (a crash between delivery and mark delivers those events
/// again; consumers deduplicate on the event id).
pub struct SqliteOutboxRelay {
    db: SqliteDatabase,
    relay: Arc<dyn Relay>,
    batch: usize,
}

impl Clone for SqliteOutboxRelay {
    fn clone(&self) -> Self {
        SqliteOutboxRelay {
            db: self.db.clone(),
            relay: self.relay.clone(),
            batch: self.batch,
        }
    }
}

impl SqliteOutboxRelay {
    /// A relay of `db`'s outbox through `relay`, reading up to 256 rows at a time.
    pub fn new(db: SqliteDatabase, relay: impl Relay) -> Self {
        SqliteOutboxRelay {
            db,
            relay: Arc::new(relay),
            batch: 256,
        }
    }

    /// The outbox's backlog: how many events wait, and how long ago the oldest was
    /// appended (milliseconds). What the operator views and the report show.
    ///
    /// # Errors
    ///
    /// A `flext.store.*` code when the database cannot be read.
    pub fn backlog(&self) -> Result<crate::database::OutboxStatus> {
        let (undelivered, oldest) = self.db.read(|conn| {
            conn.query_row(
                "SELECT COUNT(*), MIN(e.timestamp_ms) FROM flext_outbox o JOIN flext_events e ON e.position = o.position WHERE o.delivered_ms IS NULL",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?)),
            )
            .map_err(db_error)
        })?;
        Ok(crate::database::OutboxStatus {
            undelivered: u64::try_from(undelivered).unwrap_or(0),
            oldest_age_ms: oldest.map_or(0, |t| {
                crate::saga::now_ms().saturating_sub(u64::try_from(t).unwrap_or(0))
            }),
        })
    }

    /// Delivers every undelivered event, in order; returns how many this call delivered
    /// (0 when another relay on this database, or a clone of it, is delivering: one
    /// publisher at a time; relays in other processes on the same file are not excluded,
    /// and may deliver an event twice).
    ///
    /// # Errors
    ///
    /// The relay's error for the first event it could not deliver (it and the ones after
    /// it stay undelivered for the next pass); `flext.store.failed` when the database
    /// fails.
    pub async fn deliver_pending(&self) -> Result<u64> {
        let Ok(_claim) = self.db.outbox_claim.try_lock() else {
            return Ok(0);
        };
        let mut delivered = 0;
        loop {
            let pending = self.db.read(|conn| {
                crate::event_store::query_sqlite(
                    conn,
                    "position IN (SELECT position FROM flext_outbox WHERE delivered_ms IS NULL ORDER BY position LIMIT ?1)",
                    params![i64::try_from(self.batch).unwrap_or(i64::MAX)],
                )
            })?;
            if pending.is_empty() {
                return Ok(delivered);
            }
            // Delivered events are marked together after the batch, or up to the one the
            // relay refused: a crash in between delivers the batch again (at least once).
            let (count, failure) = self.relay.deliver_all(&pending).await;
            let done: Vec<u64> = pending[..count].iter().map(|e| e.position).collect();
            self.mark_delivered(&done)?;
            delivered += done.len() as u64;
            if let Some(e) = failure {
                return Err(e);
            }
        }
    }

    fn mark_delivered(&self, positions: &[u64]) -> Result<()> {
        if positions.is_empty() {
            return Ok(());
        }
        let now = i64::try_from(crate::saga::now_ms()).unwrap_or(0);
        self.db.transaction(|uow| {
            let mut stmt = uow
                .connection()
                .prepare_cached("UPDATE flext_outbox SET delivered_ms = ?1 WHERE position = ?2")
                .map_err(db_error)?;
            for p in positions {
                stmt.execute(params![now, i64::try_from(*p).unwrap_or(i64::MAX)])
                    .map_err(db_error)?;
            }
            Ok(())
        })
    }

    /// Delivers now and then every `every` on the current tokio runtime, until
    /// [`SqliteOutboxLoop::shutdown`].
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn(&self, every: Duration) -> SqliteOutboxLoop {
        let relay = self.clone();
        SqliteOutboxLoop(crate::background::Background::spawn(every, move || {
            let relay = relay.clone();
            async move {
                if let Err(e) = relay.deliver_pending().await {
                    tracing::warn!(error = %e, "outbox pass failed; retrying on the next");
                }
            }
        }))
    }
}

impl crate::registry::ReportSource for SqliteOutboxRelay {
    /// How many appended events the outbox has not delivered yet, and the oldest one's age.
    fn report(&self) -> crate::registry::ComponentReport {
        match self.backlog() {
            Ok(backlog) => crate::registry::ComponentReport {
                kind: "outbox",
                name: "outbox".into(),
                healthy: true,
                status: serde_json::to_value(backlog).unwrap_or_default(),
            },
            Err(e) => crate::registry::ComponentReport {
                kind: "outbox",
                name: "outbox".into(),
                healthy: false,
                status: serde_json::json!({ "error": e.to_string() }),
            },
        }
    }
}

/// The outbox relay's background loop; see [`SqliteOutboxRelay::spawn`].
#[derive(Debug)]
pub struct SqliteOutboxLoop(crate::background::Background);

impl SqliteOutboxLoop {
    /// Stops the loop after its current pass; returns when it has.
    pub async fn shutdown(self) {
        self.0.shutdown().await;
    }
}
