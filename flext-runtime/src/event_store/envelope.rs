//! What the event store keeps: envelopes, the events appended, snapshots.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::context::Context;

/// A stream: the events of one aggregate, named by its type and id.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct StreamId {
    /// The aggregate type's name (`Account`).
    pub aggregate_type: String,
    /// The aggregate's id (`acc-17`).
    pub aggregate_id: String,
}

impl StreamId {
    /// The stream of aggregate `aggregate_id` of type `aggregate_type`.
    pub fn new(aggregate_type: impl Into<String>, aggregate_id: impl Into<String>) -> Self {
        StreamId {
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id.into(),
        }
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.aggregate_type, self.aggregate_id)
    }
}

/// An event to append: the store adds the stream, the sequence number, the position
/// and the time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// The event's id: what consumers deduplicate on.
    pub event_id: Uuid,
    /// The event type's name (`Message::NAME`, such as `account.deposited`).
    pub name: String,
    /// The event type's schema version (`Message::VERSION`).
    pub schema_version: u32,
    /// The event, as JSON.
    pub payload: serde_json::Value,
    /// The correlation id of the context that raised it.
    pub correlation_id: Uuid,
    /// The id of the message that caused it, when known (the context's message id).
    pub causation_id: Option<Uuid>,
    /// Free metadata, kept as given.
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl NewEvent {
    /// An event raised under `ctx`: a fresh event id, the context's correlation id, its
    /// id (the operation raising the event) as the causation id, and the context's W3C
    /// trace context (`traceparent`, `tracestate`) as metadata, when it has one, for the
    /// outbox relay to pass on.
    pub fn new(
        name: impl Into<String>,
        schema_version: u32,
        payload: serde_json::Value,
        ctx: &Context,
    ) -> Self {
        NewEvent {
            event_id: Uuid::new_v4(),
            name: name.into(),
            schema_version,
            payload,
            correlation_id: ctx.correlation_id(),
            causation_id: Some(ctx.id()),
            metadata: trace_context(ctx),
        }
    }
}

/// The context's W3C trace context entries, as event metadata.
fn trace_context(ctx: &Context) -> serde_json::Map<String, serde_json::Value> {
    let mut metadata = serde_json::Map::new();
    for key in ["traceparent", "tracestate"] {
        if let Some(value) = ctx.metadata(key) {
            metadata.insert(key.to_owned(), serde_json::Value::String(value.to_owned()));
        }
    }
    metadata
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// Its place in the store's global order, from 1.
    pub position: u64,
    /// Its id.
    pub event_id: Uuid,
    /// The aggregate type's name.
    pub aggregate_type: String,
    /// The aggregate's id.
    pub aggregate_id: String,
    /// Its place in its stream, from 1: the stream's version once it was stored.
    pub sequence: u64,
    /// The event type's name.
    pub name: String,
    /// The schema version it was stored under.
    pub schema_version: u32,
    /// When it was stored, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The correlation id of the context that raised it.
    pub correlation_id: Uuid,
    /// The id of the message that caused it.
    pub causation_id: Option<Uuid>,
    /// Free metadata.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The event, as JSON.
    pub payload: serde_json::Value,
}

impl EventEnvelope {
    /// The stream the event belongs to.
    pub fn stream(&self) -> StreamId {
        StreamId::new(self.aggregate_type.clone(), self.aggregate_id.clone())
    }

    pub(crate) fn stored(
        stream: &StreamId,
        sequence: u64,
        position: u64,
        timestamp_ms: u64,
        event: &NewEvent,
    ) -> Self {
        EventEnvelope {
            position,
            event_id: event.event_id,
            aggregate_type: stream.aggregate_type.clone(),
            aggregate_id: stream.aggregate_id.clone(),
            sequence,
            name: event.name.clone(),
            schema_version: event.schema_version,
            timestamp_ms,
            correlation_id: event.correlation_id,
            causation_id: event.causation_id,
            metadata: event.metadata.clone(),
            payload: event.payload.clone(),
        }
    }
}

/// An aggregate's state as of a version of its stream, so that loading replays only the
/// events after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The stream.
    pub stream: StreamId,
    /// The stream's version the state includes.
    pub version: u64,
    /// The aggregate's state, as JSON.
    pub state: serde_json::Value,
    /// When it was taken, in milliseconds since the Unix epoch.
    pub taken_ms: u64,
}
