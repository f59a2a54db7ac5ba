//! The services layer against the same work written by hand, in one run.
//!
//! ```text
//! cargo bench --bench services
//! ```
//!
//! - `run_batch`: a sync `ServiceProcessor` validating 100,000 birdstrike-like rows
//!   (a date, three costs that must add up, a known flight phase, an optional speed)
//!   against a hand-written loop doing the same parsing and collecting the same
//!   `(index, result)` pairs.
//! - `workflow`: a `#[workflow]` of 4 trivial async steps (two independent, then two
//!   that take their outputs) against awaiting the 4 functions in a row.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use flext::prelude::*;
use flext::service::{BatchOptions, ServiceProcessor};
use flext::workflow::Workflow;

#[derive(Clone)]
struct Row {
    date: String,
    phase: String,
    cost_other: String,
    cost_repair: String,
    cost_total: String,
    speed: String,
}

#[derive(Debug)]
#[allow(dead_code)] // read through `black_box` only
struct Strike {
    year: u16,
    phase: usize,
    cost: u64,
    speed: Option<u16>,
}

const PHASES: [&str; 7] = [
    "Approach",
    "Climb",
    "Descent",
    "Take-off run",
    "Landing Roll",
    "Taxi",
    "Parked",
];

/// The work both sides do for one row.
fn validate(row: &Row) -> Result<Strike> {
    let bad = |what: &str| Error::validation("strike.invalid", format!("bad {what}"));
    let mut parts = row.date.split('-');
    let year: u16 = parts
        .next()
        .and_then(|y| y.parse().ok())
        .ok_or_else(|| bad("date"))?;
    for _ in 0..2 {
        parts
            .next()
            .and_then(|p| p.parse::<u8>().ok())
            .ok_or_else(|| bad("date"))?;
    }
    let cost = |t: &str| t.parse::<u64>().map_err(|_| bad("cost"));
    let (other, repair, total) = (
        cost(&row.cost_other)?,
        cost(&row.cost_repair)?,
        cost(&row.cost_total)?,
    );
    if other + repair != total {
        return Err(bad("cost sum"));
    }
    let phase = PHASES
        .iter()
        .position(|p| *p == row.phase)
        .ok_or_else(|| bad("phase"))?;
    let speed = match row.speed.as_str() {
        "" => None,
        s => Some(s.parse().map_err(|_| bad("speed"))?),
    };
    Ok(Strike {
        year,
        phase,
        cost: total,
        speed,
    })
}

struct ValidateStrike;

impl ServiceProcessor for ValidateStrike {
    type Request = Row;
    type Domain = Strike;
    type Response = Strike;
    fn name(&self) -> &str {
        "bench.validate_strike"
    }
    fn process(&self, row: &Row, _: &Context) -> Result<Strike> {
        validate(row)
    }
    fn build(&self, strike: Strike, _: Uuid) -> Strike {
        strike
    }
}

fn rows(n: usize) -> Vec<Row> {
    (0..n)
        .map(|i| Row {
            date: format!("{}-{:02}-{:02}", 1990 + i % 13, 1 + i % 12, 1 + i % 28),
            phase: PHASES[i % 7].to_owned(),
            cost_other: (i % 50).to_string(),
            cost_repair: (i % 1000).to_string(),
            // One row in a hundred does not add up.
            cost_total: (i % 50 + i % 1000 + usize::from(i % 100 == 0)).to_string(),
            speed: if i % 3 == 0 {
                String::new()
            } else {
                (100 + i % 200).to_string()
            },
        })
        .collect()
}

fn batch(c: &mut Criterion) {
    const N: usize = 100_000;
    let input = rows(N);
    let mut group = c.benchmark_group("run_batch_100k");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("hand_loop", |b| {
        b.iter_batched(
            || input.clone(),
            |rows| {
                let mut ok = Vec::new();
                let mut failed = Vec::new();
                for (i, row) in rows.into_iter().enumerate() {
                    match validate(&row) {
                        Ok(s) => ok.push((i, s)),
                        Err(e) => failed.push((i, e)),
                    }
                }
                black_box((ok, failed))
            },
            BatchSize::LargeInput,
        )
    });
    let options = BatchOptions::default();
    group.bench_function("run_batch", |b| {
        b.iter_batched(
            || input.clone(),
            |rows| black_box(ValidateStrike.run_batch(rows, &options)),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

// ---- a workflow of four trivial steps ----------------------------------------------------

struct Four(u64);

async fn one(x: u64) -> u64 {
    black_box(x + 1)
}
async fn two(x: u64) -> u64 {
    black_box(x * 2)
}

#[workflow(name = "bench.four")]
impl Four {
    #[workflow_step]
    async fn a(&self) -> Result<u64> {
        Ok(one(self.0).await)
    }
    #[workflow_step]
    async fn b(&self) -> Result<u32> {
        Ok(two(self.0).await as u32)
    }
    #[workflow_step(depends_on = [a, b])]
    async fn c(&self, a: &u64, b: &u32) -> Result<i64> {
        Ok(one(a + u64::from(*b)).await as i64)
    }
    #[workflow_step(depends_on = [c])]
    async fn d(&self, c: &i64) -> Result<u64> {
        Ok(two(*c as u64).await)
    }
}

fn workflow(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("workflow_4_steps");
    group.bench_function("direct_calls", |b| {
        b.iter(|| {
            rt.block_on(async {
                let x = black_box(7);
                let a = one(x).await;
                let b = two(x).await as u32;
                let c = one(a + u64::from(b)).await as i64;
                black_box(two(c as u64).await)
            })
        })
    });
    let ctx = Context::new();
    group.bench_function("workflow", |b| {
        b.iter(|| {
            rt.block_on(async {
                let run = Four(black_box(7)).run(&ctx).await;
                black_box(run.output::<u64>("d").copied())
            })
        })
    });
    group.finish();
}

criterion_group!(benches, batch, workflow);
criterion_main!(benches);
