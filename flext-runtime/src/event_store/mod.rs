//! The event store: streams of events, one per aggregate, appended with optimistic
//! concurrency and read back whole, from a version, or all together in global order.
//!
//! Every stored event is an [`EventEnvelope`]: the event's JSON payload with its id, its
//! stream (aggregate type and id), its sequence number in the stream, its name and
//! schema version, when it was stored, the correlation and causation ids of the context
//! that raised it, and free metadata. The names follow the event-sourcing literature
//! (Greg Young's event store, EventStoreDB's expected-version appends, Marten's
//! streams).
//!
//! Backends: [`MemoryEventStore`] for tests, and [`SqliteEventStore`] (the `sqlite`
//! feature) as the embedded default; a SQLite file may hold the saga log and the event
//! store side by side. Both pass one conformance suite (`tests/event_store_conformance.rs`).
//!
//! # Concurrency
//!
//! [`EventStore::append`] takes the version the caller's decision was based on. When
//! another writer appended first, the append fails with
//! [`ErrorKind::Conflict`](crate::ErrorKind::Conflict), `flext.event.conflict`, and
//! writes nothing: reload, decide again. Nothing is ever overwritten.
//!
//! # Global order
//!
//! Every event also gets a `position`, increasing across all streams, for readers of
//! everything ([`EventStore::read_all`]). A reader never misses an event that commits
//! after a later position was read: on SQLite, positions are assigned inside the one
//! write transaction SQLite allows at a time, so they commit in order.

pub mod conformance;
mod envelope;
mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;
mod store;
mod upcast;

pub use self::envelope::{EventEnvelope, NewEvent, Snapshot, StreamId};
pub use self::memory::MemoryEventStore;
#[cfg(feature = "sqlite")]
pub use self::sqlite::SqliteEventStore;
#[cfg(feature = "sqlite")]
pub(crate) use self::sqlite::{
    append_in as append_sqlite, migrate as migrate_sqlite, query_where as query_sqlite,
    read_after as read_after_sqlite,
};
pub use self::store::EventStore;
#[cfg(feature = "postgres")]
pub(crate) use self::store::{conflict as conflict_error, duplicate_id as duplicate_id_error};
pub use self::upcast::{Upcaster, Upcasters};
