//! OpenTelemetry (the `otel` feature): every request a server span whose parent is the
//! caller's W3C `traceparent`, the handler's `tracing` spans beneath it, and the span's
//! own trace context in the [`Context`](flext_runtime::Context)'s metadata, so that the
//! events the command appends (and their outbox rows) name the request's span for the
//! relay to pass on. [`otlp`] builds a tracer provider exporting over OTLP (HTTP and
//! protobuf); [`layer`] joins it to a `tracing` subscriber.
//!
//! ```no_run
//! use tracing_subscriber::layer::SubscriberExt;
//! # fn main() -> flext::Result<()> {
//! let provider = flext::http::otel::otlp("bank", "http://localhost:4318/v1/traces")?;
//! let subscriber = tracing_subscriber::registry().with(flext::http::otel::layer(&provider));
//! tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
//! // ... serve; at exit, `provider.shutdown()` sends what is buffered.
//! # Ok(()) }
//! ```

use axum::http::HeaderMap;
use flext_runtime::Error;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};

/// The tracer provider's exporter, for the caller's own pipeline.
pub use opentelemetry_sdk::trace::SdkTracerProvider as TracerProvider;

/// A tracer provider that batches spans and exports them to `endpoint` (an OTLP/HTTP
/// traces URL, such as `http://localhost:4318/v1/traces`) under `service_name`. Call
/// `shutdown()` on it before the process exits to send what is buffered.
///
/// # Errors
///
/// [`ErrorKind::Infrastructure`](flext_runtime::ErrorKind::Infrastructure),
/// `flext.http.otel`, when the exporter cannot be built (a malformed endpoint).
pub fn otlp(service_name: &str, endpoint: &str) -> Result<SdkTracerProvider, Error> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| {
            Error::infrastructure(
                "flext.http.otel",
                format!("the OTLP exporter cannot be built: {e}"),
            )
        })?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build())
}

/// The `tracing` layer that records spans through `provider`'s tracer (named `flext`).
pub fn layer<S>(provider: &SdkTracerProvider) -> OpenTelemetryLayer<S, Tracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("flext"))
}

/// The request's server span, its parent the caller's `traceparent` when it is valid.
pub(crate) fn request_span(headers: &HeaderMap, method: &str, route: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "flext.http.request",
        otel.kind = "server",
        http.request.method = method,
        http.route = route
    );
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    if parent.span().span_context().is_valid() {
        // Fails only without an OpenTelemetry layer, when there is no trace to join.
        let _ = span.set_parent(parent);
    }
    span
}

/// The W3C `traceparent` of `span`, when an OpenTelemetry layer records it.
pub(crate) fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let otel = cx.span();
    let sc = otel.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}
