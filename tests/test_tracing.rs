//! What an operator sees in traces: `execute` opens a span named after the service that
//! carries the correlation id, and records which rule or step failed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use flext::prelude::*;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::{Layer, registry::LookupSpan};

type Spans = Arc<Mutex<Vec<(String, BTreeMap<String, String>)>>>;

/// Keeps every span's name and fields, including fields recorded after creation.
struct Capture(Spans);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: LayerContext<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        fields.insert("#id".into(), id.into_u64().to_string());
        self.0
            .lock()
            .unwrap()
            .push((attrs.metadata().name().to_owned(), fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: LayerContext<'_, S>) {
        let mut spans = self.0.lock().unwrap();
        let key = id.into_u64().to_string();
        if let Some((_, fields)) = spans.iter_mut().find(|(_, f)| f.get("#id") == Some(&key)) {
            values.record(&mut Fields(fields));
        }
    }
}

struct Checkout {
    items: u32,
    payment_fails: bool,
}

#[domain_service]
impl Checkout {
    #[business_rule(code = "checkout.items")]
    fn has_items(&self) -> RuleResult {
        ensure!(self.items > 0, "the cart is empty")
    }

    #[step]
    fn price(&self) -> Result<u32> {
        Ok(self.items * 3)
    }

    #[step]
    fn pay(&self, amount: u32) -> Result<u32> {
        if self.payment_fails {
            Err(Error::infrastructure("payment.declined", "card declined"))
        } else {
            Ok(amount)
        }
    }
}

fn run(svc: Checkout, ctx: &Context) -> Vec<(String, BTreeMap<String, String>)> {
    let spans: Spans = Arc::default();
    let subscriber = tracing_subscriber::registry().with(Capture(spans.clone()));
    tracing::subscriber::with_default(subscriber, || {
        let _ = svc.execute_sync(ctx);
    });
    spans.lock().unwrap().clone()
}

#[test]
fn the_span_names_the_service_and_carries_the_correlation_id() {
    let ctx = Context::new();
    let spans = run(
        Checkout {
            items: 2,
            payment_fails: false,
        },
        &ctx,
    );
    assert_eq!(spans.len(), 1);
    let (name, fields) = &spans[0];
    assert_eq!(name, "domain_service");
    assert_eq!(fields["service"], "Checkout");
    assert_eq!(fields["correlation_id"], ctx.correlation_id().to_string());
    assert!(
        !fields.contains_key("failed_at"),
        "nothing failed: {fields:?}"
    );
}

#[test]
fn the_failing_step_is_recorded() {
    let spans = run(
        Checkout {
            items: 2,
            payment_fails: true,
        },
        &Context::new(),
    );
    assert_eq!(spans[0].1["failed_at"], "pay");
}

#[test]
fn the_failing_rule_is_recorded() {
    let spans = run(
        Checkout {
            items: 0,
            payment_fails: false,
        },
        &Context::new(),
    );
    assert_eq!(spans[0].1["failed_at"], "has_items");
}

// ---------------------------------------------------------------- the Tracing middleware

#[command(output = u32)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Charge {
    cents: u32,
}

#[command_handler]
fn charge(cmd: Charge) -> Result<u32> {
    if cmd.cents == 0 {
        Err(Error::validation("charge.zero", "nothing to charge"))
    } else {
        Ok(cmd.cents)
    }
}

fn dispatch_spans(cents: u32, ctx: &Context) -> Vec<(String, BTreeMap<String, String>)> {
    let spans: Spans = Arc::default();
    let subscriber = tracing_subscriber::registry().with(Capture(spans.clone()));
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let bus = Bus::builder()
                .middleware(flext::middleware::Tracing)
                .build()
                .unwrap();
            let _ = bus.send(Charge { cents }, ctx).await;
        });
    });
    spans.lock().unwrap().clone()
}

#[test]
fn the_tracing_middleware_opens_a_span_with_the_message_and_its_ids() {
    let ctx = Context::new();
    let spans = dispatch_spans(5, &ctx);
    let (name, fields) = spans
        .iter()
        .find(|(n, _)| n == "flext.dispatch")
        .expect("a dispatch span");
    assert_eq!(name, "flext.dispatch");
    assert_eq!(fields["message"], "Charge");
    assert_eq!(fields["kind"], "command");
    assert_eq!(fields["handler"], "charge");
    assert_eq!(fields["correlation_id"], ctx.correlation_id().to_string());
    assert_eq!(
        fields["causation_id"],
        ctx.id().to_string(),
        "the dispatch is caused by the caller"
    );
    assert_ne!(fields["message_id"], ctx.id().to_string());
    assert!(!fields.contains_key("error_code"));
}

#[test]
fn the_tracing_middleware_records_the_error_code() {
    let spans = dispatch_spans(0, &Context::new());
    let (_, fields) = spans.iter().find(|(n, _)| n == "flext.dispatch").unwrap();
    assert_eq!(fields["error_code"], "charge.zero");
}
