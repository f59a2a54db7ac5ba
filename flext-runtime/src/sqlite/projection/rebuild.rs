//! Rebuilding a projection into fresh tables while its current ones keep serving.

use super::{REBUILD, SqliteProjection, SqliteProjectionRunner, SqliteUnitOfWork};
use crate::error::Result;

impl<P: SqliteProjection> SqliteProjectionRunner<P> {
    /// Rebuilds the projection from the first event into fresh copies of its
    /// [`tables`](SqliteProjection::tables), while the current ones keep serving (and this
    /// runner keeps catching them up), then swaps the fresh ones in, with their
    /// checkpoint, in one transaction. Returns how many events the rebuild applied.
    ///
    /// # Errors
    ///
    /// `flext.projection.bad_table` when a table name is not a plain SQL identifier
    /// (letters, digits, `_`; names are quoted in the DDL); the projection's error (the
    /// current tables are left as they were); a `flext.store.*` code when the database
    /// fails.
    pub fn rebuild(&self) -> Result<u64> {
        let name = self.projection.name().to_owned();
        for table in self.projection.tables() {
            crate::database::check_table_name(table)?;
        }
        // Start from nothing: fresh tables, no checkpoint.
        self.db.transaction_as(REBUILD, |uow| {
            for table in self.projection.tables() {
                uow.connection()
                    .execute_batch(&format!("DROP TABLE IF EXISTS \"{}\"", uow.table(table)))
                    .map_err(crate::db::db_error)?;
            }
            forget_checkpoint(uow, &name)?;
            Ok(())
        })?;
        let mut applied = self.catch_up_as(REBUILD)?.applied;
        // The swap: the last events, then the fresh tables take the current ones' names.
        applied += self.db.transaction_as(REBUILD, |uow| {
            let from = uow.checkpoint(&name)?;
            let mut last = from;
            let events = uow.events_after(from, usize::MAX)?;
            for event in &events {
                self.projection.apply(uow, event)?;
                last = event.position;
            }
            for table in self.projection.tables() {
                uow.connection()
                    .execute_batch(&format!(
                        "DROP TABLE IF EXISTS \"{table}\"; ALTER TABLE \"{}\" RENAME TO \"{table}\";",
                        uow.table(table)
                    ))
                    .map_err(crate::db::db_error)?;
            }
            // The live checkpoint is where the fresh tables are, in the same transaction.
            forget_checkpoint(uow, &name)?;
            uow.connection()
                .execute(
                    "INSERT INTO flext_checkpoints (name, position, updated_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_ms = excluded.updated_ms",
                    rusqlite::params![
                        name,
                        i64::try_from(last).unwrap_or(i64::MAX),
                        i64::try_from(crate::saga::now_ms()).unwrap_or(0)
                    ],
                )
                .map_err(crate::db::db_error)?;
            Ok(events.len() as u64)
        })?;
        Ok(applied)
    }
}

/// Deletes the rebuild's own checkpoint (`{name}__rebuild`).
fn forget_checkpoint(uow: &SqliteUnitOfWork<'_>, name: &str) -> Result<()> {
    uow.connection()
        .execute(
            "DELETE FROM flext_checkpoints WHERE name = ?1",
            [format!("{name}{REBUILD}")],
        )
        .map(drop)
        .map_err(crate::db::db_error)
}
