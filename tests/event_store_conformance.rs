//! The `EventStore` conformance suite (`flext::event_store::conformance`, exported for
//! other backends to run) against every backend of this repository. A new backend
//! joins with one `flext::event_store_conformance!` line and a `Backend`.
//!
//! Contracts: appends with an expected version (a lost race is a conflict and writes
//! nothing), all-or-nothing batches, loading whole or from a version, the global order,
//! envelopes as written, snapshots (the newest kept), and eight writers racing on one
//! stream (each append succeeds or conflicts; the stream has no gap and loses nothing).

use std::sync::Arc;

#[cfg(feature = "sqlite")]
use flext::Uuid;
#[cfg(feature = "sqlite")]
use flext::event_store::SqliteEventStore;
use flext::event_store::{EventStore, MemoryEventStore};

use flext::event_store::conformance::Backend;

struct Memory(Arc<MemoryEventStore>);

impl Backend for Memory {
    async fn new() -> Self {
        Memory(Arc::new(MemoryEventStore::new()))
    }
    async fn connect(&self) -> Arc<dyn EventStore> {
        self.0.clone()
    }
}

#[cfg(feature = "sqlite")]
struct Sqlite(std::path::PathBuf);

#[cfg(feature = "sqlite")]
impl Backend for Sqlite {
    async fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("flext-events-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Sqlite(dir)
    }
    async fn connect(&self) -> Arc<dyn EventStore> {
        Arc::new(SqliteEventStore::open(self.0.join("events.db")).unwrap())
    }
}

#[cfg(feature = "sqlite")]
impl Drop for Sqlite {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// A PostgreSQL server of its own (or a fresh database on `DATABASE_URL`'s).
#[cfg(feature = "postgres")]
struct Postgres {
    _cluster: flext::postgres::TestCluster,
    url: String,
}

#[cfg(feature = "postgres")]
impl Backend for Postgres {
    async fn new() -> Self {
        let cluster = flext::postgres::TestCluster::start().unwrap_or_else(|e| panic!("{e}"));
        let url = cluster.fresh_database().await.unwrap();
        Postgres {
            _cluster: cluster,
            url,
        }
    }
    async fn connect(&self) -> Arc<dyn EventStore> {
        let db = flext::postgres::PgDatabase::connect(&self.url)
            .await
            .unwrap();
        Arc::new(db.event_store())
    }
}

flext::event_store_conformance!(memory, Memory);
#[cfg(feature = "sqlite")]
flext::event_store_conformance!(sqlite, Sqlite);
#[cfg(feature = "postgres")]
flext::event_store_conformance!(postgres, Postgres);
