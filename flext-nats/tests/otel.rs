//! The `otel` feature: one trace from a command in the sending service, through the
//! relay's publish span, across the broker (the message's `traceparent` header), to the
//! consume span and the handler's spans in the receiving service. Spans are collected by
//! the OpenTelemetry SDK's in-memory exporter.

use std::sync::Arc;
use std::time::Duration;

use flext::aggregate::{Events, Repository};
use flext::event_store::EventStore;
use flext::nats::{NatsConsumer, NatsRelay, NatsTestServer};
use flext::prelude::*;
use flext::sqlite::{SqliteDatabase, SqliteOutboxRelay};
use opentelemetry::trace::{SpanId, TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pack {
    #[aggregate_id]
    crate_id: String,
}

#[event(name = "crate.sealed")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sealed {
    crate_id: String,
}

#[aggregate]
#[derive(Debug, Default)]
struct Crate {
    #[aggregate_id]
    id: String,
}

#[aggregate]
impl Crate {
    #[command_handler]
    fn pack(&self, c: &Pack) -> Result<Events<Self>> {
        Ok(Events::one(Sealed {
            crate_id: c.crate_id.clone(),
        }))
    }

    #[apply]
    fn sealed(&mut self, _: &Sealed) {}
}

/// The receiving service's handler: its own span, under the consume span.
#[event_handler]
async fn label_crate(e: Sealed) -> Result<()> {
    async move {
        tracing::info!(crate_id = %e.crate_id, "labelled");
    }
    .instrument(tracing::info_span!("warehouse.label"))
    .await;
    Ok(())
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
        panic!(
            "no span `{name}` in {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_command_across_the_broker_to_the_handler() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("flext")));
    // Every thread: the consumer and the relay run on the runtime's workers.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let server = NatsTestServer::start().unwrap_or_else(|e| panic!("{e}"));
    let db = SqliteDatabase::in_memory().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(db.event_store().unwrap());
    let sender = Bus::builder()
        .state(Repository::<Crate>::new(store.clone()).publish_on_bus(false))
        .build()
        .unwrap();

    // The command, under a request span whose trace context its context carries (what
    // the HTTP front door does).
    let request = tracing::info_span!("packing.request");
    let traceparent = {
        let cx = request.context();
        let sc = cx.span().span_context().clone();
        format!("00-{}-{}-01", sc.trace_id(), sc.span_id())
    };
    let ctx = Context::new().with_metadata("traceparent", traceparent);
    sender
        .send(
            Pack {
                crate_id: "c-1".into(),
            },
            &ctx,
        )
        .instrument(request.clone())
        .await
        .unwrap();
    drop(request);

    let relay = NatsRelay::connect(server.url(), "packing").await.unwrap();
    SqliteOutboxRelay::new(db.clone(), relay)
        .deliver_pending()
        .await
        .unwrap();

    // One test binary links both services' handlers: the receiver's bus needs the
    // aggregate's repository too, though nothing sends it a command.
    let receiver = Bus::builder()
        .state(Repository::<Crate>::new(store))
        .build()
        .unwrap();
    let consumer = NatsConsumer::builder("packing", "warehouse")
        .connect(server.url(), receiver)
        .await
        .unwrap();
    let counts = consumer.counts().clone();
    let running = consumer.spawn();
    for _ in 0..200 {
        if counts.handled() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.shutdown().await;
    assert_eq!(counts.handled(), 1);

    let spans = exporter.get_finished_spans().unwrap();
    let request = named(&spans, "packing.request");
    let publish = named(&spans, "flext.nats.publish");
    let consume = named(&spans, "flext.nats.consume");
    let label = named(&spans, "warehouse.label");
    let trace = request.span_context.trace_id();
    for span in [publish, consume, label] {
        assert_eq!(
            span.span_context.trace_id(),
            trace,
            "`{}` is in the command's trace",
            span.name
        );
    }
    assert_eq!(
        publish.parent_span_id,
        request.span_context.span_id(),
        "publish under the request"
    );
    assert_eq!(
        consume.parent_span_id,
        publish.span_context.span_id(),
        "consume under the publish"
    );
    assert_ne!(label.parent_span_id, SpanId::INVALID);
    assert_eq!(
        label.parent_span_id,
        consume.span_context.span_id(),
        "the handler under the consume"
    );
}
