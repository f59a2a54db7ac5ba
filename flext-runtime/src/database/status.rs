//! What a projection runner reports, and the decoding `#[projection]`'s generated code
//! calls: shared by the SQLite and PostgreSQL runners.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::event_store::EventEnvelope;

/// Decodes a stored event's payload as `E`, for a projection's `#[apply]` method. Used
/// by generated code.
///
/// # Errors
///
/// `flext.event.decode` when the payload does not decode as `E` (an event stored under
/// another schema version).
#[doc(hidden)]
pub fn decode_event<E: crate::message::Event>(envelope: &EventEnvelope) -> Result<E> {
    E::from_json_value(&envelope.payload).map_err(|e| {
        Error::internal(
            crate::codes::EVENT_DECODE,
            format!(
                "stored event {} (`{}`, schema version {}) does not decode: {e}",
                envelope.event_id,
                E::NAME,
                envelope.schema_version
            ),
        )
    })
}

/// The name of event `E`, for a projection's `#[apply]` method. Used by generated code.
#[doc(hidden)]
pub fn event_name<E: crate::message::Event>() -> &'static str {
    E::NAME
}

/// Where a projection stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectionStatus {
    /// The projection's name.
    pub name: String,
    /// The last global position it applied.
    pub checkpoint: u64,
    /// The store's last position.
    pub head: u64,
    /// How many events it has not applied yet.
    pub events_behind: u64,
    /// How old the oldest event it has not applied is, in milliseconds (0 when caught up).
    pub ms_behind: u64,
    /// The event it stopped at and why, when its handler failed.
    pub stopped_at: Option<(u64, String)>,
}

/// An outbox's backlog (`flext::operator::OutboxControl::status`).
///
/// The outbox has no dead letters: it keeps the order of the events it relays, so an
/// event its relay cannot deliver is tried again, and the ones after it wait. A
/// consumer's dead letters (such as `flext::nats`'s) are in its report under
/// `flext::operator::Operations::health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxStatus {
    /// Events appended and not yet delivered.
    pub undelivered: u64,
    /// How long ago the oldest undelivered event was appended, in milliseconds; 0 when
    /// none waits.
    pub oldest_age_ms: u64,
}

/// What one catch-up did (`SqliteProjectionRunner::catch_up` on SQLite,
/// `PgProjectionRunner::catch_up` on PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CatchUp {
    /// Events applied.
    pub applied: u64,
    /// The checkpoint after them.
    pub checkpoint: u64,
}
