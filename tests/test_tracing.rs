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
        self.0.lock().unwrap().push((attrs.metadata().name().to_owned(), fields));
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
    let spans = spans.lock().unwrap().clone();
    spans
}

#[test]
fn the_span_is_named_after_the_service_and_carries_the_correlation_id() {
    let ctx = Context::new();
    let spans = run(Checkout { items: 2, payment_fails: false }, &ctx);
    assert_eq!(spans.len(), 1);
    let (name, fields) = &spans[0];
    assert_eq!(name, "Checkout");
    assert_eq!(fields["correlation_id"], ctx.correlation_id().to_string());
    assert!(!fields.contains_key("failed_at"), "nothing failed: {fields:?}");
}

#[test]
fn the_failing_step_is_recorded() {
    let spans = run(Checkout { items: 2, payment_fails: true }, &Context::new());
    assert_eq!(spans[0].1["failed_at"], "pay");
}

#[test]
fn the_failing_rule_is_recorded() {
    let spans = run(Checkout { items: 0, payment_fails: false }, &Context::new());
    assert_eq!(spans[0].1["failed_at"], "has_items");
}
