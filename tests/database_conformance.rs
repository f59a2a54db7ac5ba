//! The database conformance suite (`flext::database::conformance`, exported for other
//! backends to run) against SQLite and PostgreSQL (the in-memory stores have no
//! transaction to share). A new backend joins with one `flext::database_conformance!`
//! line and a `Backend`.
//!
//! The projection both backends run is one `#[projection]` type writing portable SQL
//! (`Seen` below): the same annotated type under `SqliteProjectionRunner` and
//! `PgProjectionRunner`.

#![cfg(any(feature = "sqlite", feature = "postgres"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use flext::Uuid;
use flext::database::{CatchUp, ProjectionStatus, ProjectionWrites, SqlValue};
use flext::event_store::{EventEnvelope, EventStore, NewEvent, StreamId};
use flext::prelude::*;
use flext::saga::{SagaLog, SagaRecord};
use serde::{Deserialize, Serialize};

use flext::database::conformance::{Backend, Recorder, calm};

// ---- the projection every backend runs ------------------------------------------------

/// The events the contracts append, each `{"n": 1}`.
macro_rules! events {
    ($($ty:ident = $name:literal),* $(,)?) => {$(
        #[event(name = $name)]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        struct $ty {
            n: i64,
        }
    )*};
}

events!(
    Opened = "opened",
    Deposited = "deposited",
    Withdrawn = "withdrawn",
    Closed = "closed",
    Noted = "noted",
    Poison = "poison",
    Refuse = "refuse",
);

/// One `#[projection]` type, run by the SQLite and the PostgreSQL runners alike: it
/// records each event's position with the order it was applied in, and fails at
/// `poison` while its flag is set.
struct Seen(Arc<AtomicBool>);

impl Seen {
    fn record(&self, writes: &mut ProjectionWrites, event: &EventEnvelope) -> flext::Result<()> {
        writes.execute(
            "INSERT INTO seen (applied, position) VALUES ((SELECT COALESCE(MAX(applied), 0) + 1 FROM seen), $1)",
            [SqlValue::from(event.position)],
        );
        Ok(())
    }
}

#[projection(name = "seen", tables = ["seen"])]
impl Seen {
    fn setup(&self, writes: &mut ProjectionWrites) -> flext::Result<()> {
        writes.execute(
            "CREATE TABLE IF NOT EXISTS seen (applied BIGINT NOT NULL, position BIGINT NOT NULL)",
            [],
        );
        Ok(())
    }
    #[apply]
    fn opened(&self, w: &mut ProjectionWrites, _: &Opened, e: &EventEnvelope) -> flext::Result<()> {
        self.record(w, e)
    }
    #[apply]
    fn deposited(
        &self,
        w: &mut ProjectionWrites,
        _: &Deposited,
        e: &EventEnvelope,
    ) -> flext::Result<()> {
        self.record(w, e)
    }
    #[apply]
    fn withdrawn(
        &self,
        w: &mut ProjectionWrites,
        _: &Withdrawn,
        e: &EventEnvelope,
    ) -> flext::Result<()> {
        self.record(w, e)
    }
    #[apply]
    fn closed(&self, w: &mut ProjectionWrites, _: &Closed, e: &EventEnvelope) -> flext::Result<()> {
        self.record(w, e)
    }
    #[apply]
    fn noted(&self, w: &mut ProjectionWrites, _: &Noted, e: &EventEnvelope) -> flext::Result<()> {
        self.record(w, e)
    }
    #[apply]
    fn refused(
        &self,
        w: &mut ProjectionWrites,
        _: &Refuse,
        e: &EventEnvelope,
    ) -> flext::Result<()> {
        self.record(w, e)
    }
    #[apply]
    fn poison(&self, w: &mut ProjectionWrites, p: &Poison, e: &EventEnvelope) -> flext::Result<()> {
        if self.0.load(Ordering::SeqCst) {
            return Err(flext::Error::validation(
                "test.poison",
                format!("poisoned ({})", p.n),
            ));
        }
        self.record(w, e)
    }
}

// ---- SQLite ---------------------------------------------------------------------------

#[cfg(feature = "sqlite")]
mod sqlite_backend {
    use super::*;
    use flext::sqlite::{
        SqliteDatabase, SqliteOutboxRelay, SqliteProjection, SqliteProjectionRunner,
    };

    pub struct Sqlite {
        db: SqliteDatabase,
        dir: std::path::PathBuf,
    }

    fn sql(e: flext::sqlite::rusqlite::Error) -> flext::Error {
        flext::Error::infrastructure("test.sql", e.to_string())
    }

    impl Backend for Sqlite {
        async fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("flext-db-{}", Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            Sqlite {
                db: SqliteDatabase::open(dir.join("app.db")).unwrap(),
                dir,
            }
        }
        fn events(&self) -> Arc<dyn EventStore> {
            Arc::new(self.db.event_store().unwrap())
        }
        fn sagas(&self) -> Arc<dyn SagaLog> {
            Arc::new(self.db.saga_log().unwrap())
        }
        async fn catch_up(&self, poisoned: Arc<AtomicBool>) -> flext::Result<CatchUp> {
            SqliteProjectionRunner::new(self.db.clone(), Seen(poisoned))
                .batch(16)
                .catch_up()
        }
        async fn status(&self) -> ProjectionStatus {
            SqliteProjectionRunner::new(self.db.clone(), Seen(calm()))
                .status()
                .unwrap()
        }
        async fn seen(&self) -> Vec<u64> {
            self.db
                .transaction(|uow| {
                    SqliteProjection::setup(&Seen(calm()), uow)?;
                    let mut stmt = uow
                        .connection()
                        .prepare("SELECT position FROM seen ORDER BY applied")
                        .map_err(sql)?;
                    let rows = stmt
                        .query_map([], |r| r.get::<_, i64>(0))
                        .map_err(sql)?
                        .map(|p| p.map(|p| p as u64).map_err(sql))
                        .collect::<flext::Result<Vec<_>>>()?;
                    Ok(rows)
                })
                .unwrap()
        }
        async fn deliver(&self, relay: Recorder) -> flext::Result<u64> {
            SqliteOutboxRelay::new(self.db.clone(), relay)
                .deliver_pending()
                .await
        }
        async fn pending(&self) -> u64 {
            self.db.outbox_pending().unwrap()
        }
        async fn unit(
            &self,
            stream: &StreamId,
            expected: u64,
            events: &[NewEvent],
            inbox: Uuid,
            saga: &SagaRecord,
            commit: bool,
        ) -> flext::Result<bool> {
            let mut first = false;
            let outcome = self.db.transaction(|uow| {
                first = uow.first_delivery("mailer", inbox)?;
                uow.append_events(stream, expected, events)?;
                uow.save_checkpoint("uow", 7)?;
                uow.create_saga(saga)?;
                if commit {
                    Ok(())
                } else {
                    Err(flext::Error::internal("test.rollback", "rolled back"))
                }
            });
            match outcome {
                Err(e) if e.code() == "test.rollback" => Ok(first),
                Err(e) => Err(e),
                Ok(()) => Ok(first),
            }
        }
        async fn checkpoint(&self, name: &str) -> u64 {
            self.db.transaction(|uow| uow.checkpoint(name)).unwrap()
        }
    }

    impl Drop for Sqlite {
        fn drop(&mut self) {
            std::fs::remove_dir_all(&self.dir).ok();
        }
    }
}

#[cfg(feature = "sqlite")]
flext::database_conformance!(sqlite, super::sqlite_backend::Sqlite);

// ---- PostgreSQL -----------------------------------------------------------------------

#[cfg(feature = "postgres")]
mod postgres_backend {
    use super::*;
    use flext::postgres::{PgDatabase, PgOutboxRelay, PgProjectionRunner, TestCluster};

    /// A PostgreSQL server of its own (or a fresh database on `DATABASE_URL`'s).
    pub struct Postgres {
        _cluster: TestCluster,
        db: PgDatabase,
    }

    impl Backend for Postgres {
        async fn new() -> Self {
            let cluster = TestCluster::start().unwrap_or_else(|e| panic!("{e}"));
            let url = cluster.fresh_database().await.unwrap();
            let db = PgDatabase::connect(&url).await.unwrap();
            Postgres {
                _cluster: cluster,
                db,
            }
        }
        fn events(&self) -> Arc<dyn EventStore> {
            Arc::new(self.db.event_store())
        }
        fn sagas(&self) -> Arc<dyn SagaLog> {
            Arc::new(self.db.saga_log())
        }
        async fn catch_up(&self, poisoned: Arc<AtomicBool>) -> flext::Result<CatchUp> {
            PgProjectionRunner::new(self.db.clone(), Seen(poisoned))
                .batch(16)
                .catch_up()
                .await
        }
        async fn status(&self) -> ProjectionStatus {
            PgProjectionRunner::new(self.db.clone(), Seen(calm()))
                .status()
                .await
                .unwrap()
        }
        async fn seen(&self) -> Vec<u64> {
            self.db
                .client()
                .await
                .unwrap()
                .query("SELECT position FROM seen ORDER BY applied", &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, i64>(0) as u64)
                .collect()
        }
        async fn deliver(&self, relay: Recorder) -> flext::Result<u64> {
            PgOutboxRelay::new(self.db.clone(), relay)
                .deliver_pending()
                .await
        }
        async fn pending(&self) -> u64 {
            self.db.outbox_pending().await.unwrap()
        }
        async fn unit(
            &self,
            stream: &StreamId,
            expected: u64,
            events: &[NewEvent],
            inbox: Uuid,
            saga: &SagaRecord,
            commit: bool,
        ) -> flext::Result<bool> {
            let uow = self.db.begin().await?;
            let first = uow.first_delivery("mailer", inbox).await?;
            uow.append_events(stream, expected, events).await?;
            uow.save_checkpoint("uow", 7).await?;
            uow.create_saga(saga).await?;
            if commit {
                uow.commit().await?;
            } else {
                uow.rollback().await?;
            }
            Ok(first)
        }
        async fn checkpoint(&self, name: &str) -> u64 {
            self.db
                .client()
                .await
                .unwrap()
                .query_opt(
                    "SELECT position FROM flext_checkpoints WHERE name = $1",
                    &[&name],
                )
                .await
                .unwrap()
                .map_or(0, |r| r.get::<_, i64>(0) as u64)
        }
    }
}

#[cfg(feature = "postgres")]
flext::database_conformance!(postgres, super::postgres_backend::Postgres);
