//! What refusing values JSON cannot give back costs: encoding a typical event through
//! `Wire::to_json_value` (one walk that checks floats and `Some(null)`, then
//! `serde_json::to_value`) against `serde_json::to_value` alone, in one run.
//!
//! ```text
//! cargo bench --bench exact
//! ```

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use flext::Wire;
use flext::prelude::*;
use serde::{Deserialize, Serialize};

#[event(name = "order.placed")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderPlaced {
    order: String,
    customer: String,
    lines: Vec<Line>,
    total: f64,
    coupon: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Line {
    sku: String,
    quantity: u32,
    price: f64,
}

fn exact(c: &mut Criterion) {
    let event = OrderPlaced {
        order: "o-1042".into(),
        customer: "c-7".into(),
        lines: (0..3)
            .map(|i| Line {
                sku: format!("sku-{i}"),
                quantity: i + 1,
                price: 9.99 + f64::from(i),
            })
            .collect(),
        total: 36.410000000000004,
        coupon: None,
    };
    let mut group = c.benchmark_group("encode_an_event");
    group.bench_function("serde_json::to_value", |b| {
        b.iter(|| serde_json::to_value(black_box(&event)).unwrap())
    });
    group.bench_function("Wire::to_json_value (checked)", |b| {
        b.iter(|| black_box(&event).to_json_value().unwrap())
    });
    group.finish();
}

criterion_group!(benches, exact);
criterion_main!(benches);
