//! Spans for publishing and consuming, and the W3C trace context they pass on. With the
//! `otel` feature, a publish span's parent is the trace context the event was appended
//! under, and a consume span's parent is the one the message carries, so one trace runs
//! from the command in one service, through the relay, to the handlers in another
//! (OpenTelemetry's messaging conventions: a producer span, then a consumer span). Without
//! it the spans are plain `tracing` spans and the event's trace context travels as it is.

use flext_runtime::event_store::EventEnvelope;

use crate::headers;

/// The trace context to send on: `traceparent` and, when there is one, `tracestate`.
pub(crate) type TraceContext = Vec<(&'static str, String)>;

/// The span publishing `event`, and the trace context its message carries.
pub(crate) fn publish_span(event: &EventEnvelope, subject: &str) -> (tracing::Span, TraceContext) {
    let span = tracing::info_span!(
        "flext.nats.publish",
        otel.kind = "producer",
        messaging.system = "nats",
        messaging.destination.name = subject,
        messaging.message.id = %event.event_id,
        event = %event.name,
    );
    let from: TraceContext = [headers::TRACEPARENT, headers::TRACESTATE]
        .into_iter()
        .filter_map(|k| match event.metadata.get(k) {
            Some(serde_json::Value::String(v)) => Some((k, v.clone())),
            _ => None,
        })
        .collect();
    continue_trace(span, from)
}

/// The span consuming a message with trace context `from`, and the trace context its
/// handlers run under.
pub(crate) fn consume_span(
    consumer: &str,
    subject: &str,
    event: &str,
    event_id: &flext_runtime::Uuid,
    delivered: i64,
    from: TraceContext,
) -> (tracing::Span, TraceContext) {
    let span = tracing::info_span!(
        "flext.nats.consume",
        otel.kind = "consumer",
        messaging.system = "nats",
        messaging.consumer.group.name = consumer,
        messaging.destination.name = subject,
        messaging.message.id = %event_id,
        event = event,
        delivered,
    );
    continue_trace(span, from)
}

#[cfg(not(feature = "otel"))]
fn continue_trace(span: tracing::Span, from: TraceContext) -> (tracing::Span, TraceContext) {
    (span, from)
}

#[cfg(feature = "otel")]
fn continue_trace(span: tracing::Span, from: TraceContext) -> (tracing::Span, TraceContext) {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let map: std::collections::HashMap<String, String> = from
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let parent = TraceContextPropagator::new().extract(&map);
    if parent.span().span_context().is_valid() {
        // Fails only without an OpenTelemetry layer: then there is no trace to join.
        let _ = span.set_parent(parent);
    }
    let cx = span.context();
    let own = cx.span();
    let sc = own.span_context();
    if !sc.is_valid() {
        // No OpenTelemetry layer records this span: pass the trace on unchanged.
        return (span, from);
    }
    let mut out = vec![(
        headers::TRACEPARENT,
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        ),
    )];
    let state = sc.trace_state().header();
    if !state.is_empty() {
        out.push((headers::TRACESTATE, state));
    }
    (span, out)
}
