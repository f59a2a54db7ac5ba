//! The `otel` feature: one trace from the caller's `traceparent`, through the request's
//! server span and the handler's dispatch span, to the event the command appended, whose
//! metadata (and so its outbox row's event) names the request's span for the relay.
//! Spans are collected by the OpenTelemetry SDK's in-memory exporter.

use std::sync::Arc;

use flext::aggregate::{Events, Repository};
use flext::event_store::{EventStore, StreamId};
use flext::prelude::*;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use serde::{Deserialize, Serialize};
use tracing_subscriber::layer::SubscriberExt;

#[command(output = u64, http = "POST /accounts/{account}/deposits")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Deposit {
    #[aggregate_id]
    account: String,
    cents: i64,
}

#[event(name = "account.deposited")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Deposited {
    cents: i64,
}

#[aggregate]
#[derive(Debug, Default)]
struct Account {
    #[aggregate_id]
    id: String,
    cents: i64,
}

#[aggregate]
impl Account {
    #[command_handler]
    fn deposit(&self, c: &Deposit) -> Result<Events<Self>> {
        Ok(Events::one(Deposited { cents: c.cents }))
    }

    #[apply]
    fn deposited(&mut self, e: &Deposited) {
        self.cents += e.cents;
    }
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn one_trace_runs_from_the_request_through_the_handler_to_the_appended_event() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry().with(flext::http::otel::layer(&provider));
    // This test's thread only: the server runs on it (a current-thread runtime).
    let _default = tracing::subscriber::set_default(subscriber);

    let db = flext::sqlite::SqliteDatabase::in_memory().unwrap();
    let events: Arc<dyn EventStore> = Arc::new(db.event_store().unwrap());
    let bus = Bus::builder()
        .state(Repository::<Account>::new(events.clone()))
        .middleware(flext::middleware::Tracing)
        .build()
        .unwrap();
    let app = flext::http::router(bus).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let response = reqwest::Client::new()
        .post(format!("http://{address}/accounts/a-1/deposits"))
        .header("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01"))
        .json(&serde_json::json!({"cents": 250}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();

    let request = spans
        .iter()
        .find(|s| s.name == "flext.http.request")
        .expect("the request's span");
    assert_eq!(
        request.span_context.trace_id().to_string(),
        TRACE,
        "the caller's trace"
    );
    assert_eq!(
        request.parent_span_id.to_string(),
        CALLER_SPAN,
        "under the caller's span"
    );
    let dispatch = spans
        .iter()
        .find(|s| s.name == "flext.dispatch")
        .expect("the handler's span");
    assert_eq!(dispatch.span_context.trace_id().to_string(), TRACE);
    assert_eq!(
        dispatch.parent_span_id,
        request.span_context.span_id(),
        "the handler runs under the request"
    );

    // The appended event names the request's span: the outbox relay passes it on.
    let stored = events
        .load(&StreamId::new("Account", "a-1"), 0)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].metadata["traceparent"],
        format!("00-{TRACE}-{}-01", request.span_context.span_id())
    );
    assert_eq!(db.outbox_pending().unwrap(), 1, "its outbox row is waiting");
}
