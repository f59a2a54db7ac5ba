//! The services layer: service processors (batches with indexes, progress, cancellation,
//! bounded concurrency; JSON input; metrics) and the circuit breaker (every transition,
//! on tokio's paused clock; on the bus; in the report).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flext::BoxFuture;
use flext::middleware::{BreakerState, CircuitBreaker};
use flext::prelude::*;
use flext::registry::{Selection, ServiceRegistry};
use flext::service::{
    AsyncServiceProcessor, BatchOptions, CancellationToken, MetricsReport, ServiceProcessor,
};
use serde::{Deserialize, Serialize};

// ---- processors -----------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    species: String,
    cost: i64,
}

struct Validate;

impl ServiceProcessor for Validate {
    type Request = Row;
    type Domain = (String, u64);
    type Response = String;
    fn name(&self) -> &str {
        "test.validate_rows"
    }
    fn process(&self, row: &Row, _: &Context) -> Result<(String, u64)> {
        if row.species.is_empty() {
            return Err(Error::validation("row.species", "the species is blank"));
        }
        let cost = u64::try_from(row.cost)
            .map_err(|_| Error::validation("row.cost", format!("cost {} is negative", row.cost)))?;
        Ok((row.species.clone(), cost))
    }
    fn build(&self, (species, cost): (String, u64), _: Uuid) -> String {
        format!("{species}:{cost}")
    }
}

fn row(species: &str, cost: i64) -> Row {
    Row {
        species: species.into(),
        cost,
    }
}

#[test]
fn a_batch_keeps_each_result_with_its_input_index_and_reports_progress() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let progress = seen.clone();
    let options = BatchOptions::default().on_progress(move |p| progress.lock().unwrap().push(p));
    let report = Validate.run_batch(
        vec![row("hawk", 10), row("", 1), row("gull", -5), row("owl", 0)],
        &options,
    );
    assert_eq!(
        report.succeeded,
        vec![(0, "hawk:10".to_owned()), (3, "owl:0".to_owned())]
    );
    let failed: Vec<(usize, &str)> = report.failed.iter().map(|(i, e)| (*i, e.code())).collect();
    assert_eq!(failed, [(1, "row.species"), (2, "row.cost")]);
    assert!(!report.cancelled);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 4);
    assert_eq!(
        (seen[3].done, seen[3].failed, seen[3].total),
        (4, 2, Some(4))
    );
    let groups = report.failures_by_code(5);
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].code, "row.cost", "equal counts: by code");
    assert_eq!(groups[0].examples, [(2, "cost -5 is negative".to_owned())]);
}

/// Rejects a row for every rule it breaks at once, as `#[business_rules]` does.
struct ValidateAll;

impl ServiceProcessor for ValidateAll {
    type Request = Row;
    type Domain = Row;
    type Response = String;
    fn name(&self) -> &str {
        "test.validate_rows_all_rules"
    }
    fn process(&self, row: &Row, _: &Context) -> Result<Row> {
        let mut broken = Vec::new();
        if row.species.is_empty() {
            broken.push(RuleViolation::new("the species is blank").with_code("row.species"));
        }
        if row.cost < 0 {
            broken.push(
                RuleViolation::new(format!("cost {} is negative", row.cost)).with_code("row.cost"),
            );
        }
        if broken.is_empty() {
            Ok(Row {
                species: row.species.clone(),
                cost: row.cost,
            })
        } else {
            Err(Error::rule_violations(broken))
        }
    }
    fn build(&self, row: Row, _: Uuid) -> String {
        row.species
    }
}

#[test]
fn failures_by_code_counts_each_violated_rule_of_a_row() {
    let report = ValidateAll.run_batch(
        vec![row("", -1), row("gull", -5), row("owl", 0)],
        &BatchOptions::default(),
    );
    assert_eq!(report.failed.len(), 2, "two rows failed");
    let groups: Vec<(String, usize)> = report
        .failures_by_code(5)
        .into_iter()
        .map(|g| (g.code, g.count))
        .collect();
    // The first row broke both rules: it counts under each.
    assert_eq!(
        groups,
        [("row.cost".to_owned(), 2), ("row.species".to_owned(), 1)]
    );
}

#[test]
fn a_cancelled_batch_stops_starting_requests_and_counts_the_rest() {
    let token = CancellationToken::new();
    let cancel = token.clone();
    let options = BatchOptions::default()
        .cancel_with(token)
        .on_progress(move |p| {
            if p.done == 3 {
                cancel.cancel();
            }
        });
    let report = Validate.run_batch((0..10).map(|n| row("hawk", n)), &options);
    assert_eq!(report.succeeded.len(), 3);
    assert!(report.cancelled);
    assert_eq!(report.not_run, 7);
}

#[test]
fn bad_json_names_the_field_and_echoes_it_bounded() {
    let ctx = Context::new();
    let e = Validate
        .process_json(r#"{"species": "hawk", "cost": "a lot"}"#, &ctx)
        .unwrap_err();
    assert_eq!(e.code(), flext::codes::INPUT_INVALID_FIELD);
    assert!(e.message().contains("field `cost`"), "{e}");
    let long = format!(
        r#"{{"species": "hawk", "cost": "{}"}}"#,
        "9".repeat(100_000)
    );
    let e = Validate.process_json(&long, &ctx).unwrap_err();
    assert!(
        e.message().len() < 2_000,
        "bounded: {} bytes",
        e.message().len()
    );
    let e = Validate
        .process_json(r#"{"species": "hawk", "cost": 1, "extra": true}"#, &ctx)
        .unwrap_err();
    assert_eq!(e.code(), flext::codes::INPUT_UNKNOWN_FIELD);
    assert_eq!(
        Validate
            .process_json(r#"{"species": "hawk", "cost": 3}"#, &ctx)
            .unwrap(),
        "hawk:3"
    );
}

#[test]
fn runs_and_failures_are_in_the_metrics_report() {
    struct Counted;
    impl ServiceProcessor for Counted {
        type Request = i64;
        type Domain = i64;
        type Response = i64;
        fn name(&self) -> &str {
            "test.counted"
        }
        fn process(&self, n: &i64, _: &Context) -> Result<i64> {
            if *n < 0 {
                Err(Error::validation("n.negative", "negative"))
            } else {
                Ok(*n)
            }
        }
        fn build(&self, n: i64, _: Uuid) -> i64 {
            n
        }
    }
    let _ = Counted.run_batch(vec![1, -1, 2, 3], &BatchOptions::default());
    let report = MetricsReport::collect();
    let line = report.service("test.counted").unwrap();
    assert_eq!((line.count, line.failures), (4, 1));
    assert_eq!(line.success_rate, 0.75);
    assert!(line.p50_ms <= line.p95_ms && line.p95_ms <= line.p99_ms);
    assert!(report.to_string().contains("test.counted"));
}

/// An async processor whose requests wait on a channel until released: how many run at
/// once is observed, not timed.
struct Gate {
    in_flight: AtomicUsize,
    most: AtomicUsize,
    release: tokio::sync::Semaphore,
}

impl AsyncServiceProcessor for Gate {
    type Request = u32;
    type Domain = u32;
    type Response = u32;
    fn name(&self) -> &str {
        "test.gate"
    }
    fn process<'a>(&'a self, n: &'a u32, _: &'a Context) -> BoxFuture<'a, Result<u32>> {
        Box::pin(async move {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            self.release.acquire().await.unwrap().forget();
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if *n == 5 {
                Err(Error::validation("gate.five", "five is refused"))
            } else {
                Ok(n * 10)
            }
        })
    }
    fn build(&self, n: u32, _: Uuid) -> u32 {
        n
    }
}

#[tokio::test]
async fn an_async_batch_runs_at_most_its_concurrency_at_once() {
    let gate = Arc::new(Gate {
        in_flight: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
        release: tokio::sync::Semaphore::new(0),
    });
    let options = BatchOptions::default().concurrency(3);
    let batch = {
        let gate = gate.clone();
        tokio::spawn(async move { gate.run_batch((0..12).collect(), &options).await })
    };
    // Release one request at a time once three are waiting.
    for _ in 0..12 {
        while gate.in_flight.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        gate.release.add_permits(1);
    }
    let report = batch.await.unwrap();
    assert_eq!(
        gate.most.load(Ordering::SeqCst),
        3,
        "three at once, never more"
    );
    assert_eq!(report.succeeded.len(), 11);
    assert_eq!(report.failed[0].0, 5);
    let indexes: Vec<usize> = report.succeeded.iter().map(|(i, _)| *i).collect();
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "in input order");
}

// ---- circuit breaker ------------------------------------------------------------------

fn down() -> Result<()> {
    Err(Error::infrastructure("dep.down", "connection refused"))
}

#[tokio::test(start_paused = true)]
async fn closed_opens_after_the_threshold_then_half_opens_and_closes_on_probes() {
    let breaker = CircuitBreaker::builder("test.payments")
        .consecutive_failures(3)
        .cool_down(Duration::from_secs(10))
        .probes(2)
        .build();
    for _ in 0..2 {
        breaker.call(async { down() }).await.unwrap_err();
    }
    breaker.call(async { Ok(()) }).await.unwrap();
    for _ in 0..2 {
        breaker.call(async { down() }).await.unwrap_err();
    }
    assert_eq!(
        breaker.state(),
        BreakerState::Closed,
        "a success resets the count"
    );
    breaker.call(async { down() }).await.unwrap_err();
    assert_eq!(breaker.state(), BreakerState::Open);

    // Open: refused without calling.
    let called = AtomicUsize::new(0);
    let refused = breaker
        .call(async {
            called.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), flext::codes::SERVICE_CIRCUIT_OPEN);
    assert_eq!(called.load(Ordering::SeqCst), 0);

    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(breaker.state(), BreakerState::Open, "still cooling down");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    breaker.call(async { Ok(()) }).await.unwrap();
    assert_eq!(breaker.state(), BreakerState::HalfOpen, "one probe of two");
    breaker.call(async { Ok(()) }).await.unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed);

    let path: Vec<(BreakerState, BreakerState, u64)> = breaker
        .transitions()
        .iter()
        .map(|t| (t.from, t.to, t.at_ms))
        .collect();
    use BreakerState::*;
    assert_eq!(
        path,
        [
            (Closed, Open, 0),
            (Open, HalfOpen, 10_000),
            (HalfOpen, Closed, 10_000)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_opens_it_again_for_a_whole_cool_down() {
    let breaker = CircuitBreaker::builder("test.reopen")
        .consecutive_failures(1)
        .cool_down(Duration::from_secs(5))
        .build();
    breaker.call(async { down() }).await.unwrap_err();
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    breaker.call(async { down() }).await.unwrap_err();
    assert_eq!(breaker.state(), BreakerState::Open);
    tokio::time::advance(Duration::from_secs(4)).await;
    assert_eq!(
        breaker.state(),
        BreakerState::Open,
        "the cool-down starts again"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn half_open_lets_only_its_probes_through() {
    let breaker = CircuitBreaker::builder("test.probes")
        .consecutive_failures(1)
        .cool_down(Duration::from_secs(1))
        .probes(1)
        .build();
    breaker.call(async { down() }).await.unwrap_err();
    tokio::time::advance(Duration::from_secs(1)).await;
    let (release, held) = tokio::sync::oneshot::channel::<()>();
    let probe = {
        let breaker = breaker.clone();
        tokio::spawn(async move {
            breaker
                .call(async {
                    held.await.unwrap();
                    Ok(())
                })
                .await
        })
    };
    tokio::task::yield_now().await;
    let second = breaker.call(async { Ok(()) }).await.unwrap_err();
    assert_eq!(second.code(), flext::codes::SERVICE_CIRCUIT_OPEN);
    assert!(second.message().contains("half-open"), "{second}");
    release.send(()).unwrap();
    probe.await.unwrap().unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_failure_rate_counts_only_the_window() {
    let breaker = CircuitBreaker::builder("test.rate")
        .failure_rate(0.5, Duration::from_secs(10), 4)
        .build();
    breaker.call(async { down() }).await.unwrap_err();
    breaker.call(async { down() }).await.unwrap_err();
    breaker.call(async { Ok(()) }).await.unwrap();
    assert_eq!(
        breaker.state(),
        BreakerState::Closed,
        "three calls: under the minimum"
    );
    tokio::time::advance(Duration::from_secs(11)).await;
    // The two failures left the window: 1 failure in 4 calls.
    breaker.call(async { Ok(()) }).await.unwrap();
    breaker.call(async { Ok(()) }).await.unwrap();
    breaker.call(async { down() }).await.unwrap_err();
    breaker.call(async { Ok(()) }).await.unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed);
    breaker.call(async { down() }).await.unwrap_err();
    breaker.call(async { down() }).await.unwrap_err();
    assert_eq!(breaker.state(), BreakerState::Open, "3 failures in 6 calls");
}

#[tokio::test(start_paused = true)]
async fn call_counts_only_infrastructure_failures_as_the_middleware_does() {
    let breaker = CircuitBreaker::builder("test.refusals")
        .consecutive_failures(1)
        .build();
    // The dependency answered "no": not a failure of the dependency.
    for refusal in [
        Error::validation("charge.zero", "nothing to charge"),
        Error::conflict("charge.twice", "charged already"),
        Error::not_found("charge.none", "no such charge"),
    ] {
        breaker
            .call(async { Err::<(), _>(refusal) })
            .await
            .unwrap_err();
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    breaker.call(async { down() }).await.unwrap_err();
    assert_eq!(breaker.state(), BreakerState::Open, "infrastructure counts");
}

#[tokio::test(start_paused = true)]
async fn a_failure_rate_window_slides_bucket_by_bucket_at_any_call_rate() {
    let breaker = CircuitBreaker::builder("test.many")
        .failure_rate(0.5, Duration::from_secs(60), 10)
        .build();
    // 100,000 successes in the first second, then failures a minute later: the
    // successes have left the window, the failures alone count.
    for _ in 0..100_000 {
        breaker.call(async { Ok(()) }).await.unwrap();
    }
    tokio::time::advance(Duration::from_secs(64)).await;
    for _ in 0..9 {
        breaker.call(async { down() }).await.unwrap_err();
    }
    assert_eq!(
        breaker.state(),
        BreakerState::Closed,
        "9 calls: under the minimum"
    );
    breaker.call(async { down() }).await.unwrap_err();
    assert_eq!(
        breaker.state(),
        BreakerState::Open,
        "10 failures in 10 calls"
    );
}

#[command(output = u32)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Charge {
    cents: u32,
}

#[command_handler]
fn charge(c: Charge) -> Result<u32> {
    match c.cents {
        0 => Err(Error::validation("charge.zero", "nothing to charge")),
        1 => Err(Error::infrastructure("charge.gateway", "gateway down")),
        n => Ok(n),
    }
}

#[tokio::test(start_paused = true)]
async fn on_the_bus_it_counts_dependency_failures_not_refusals() {
    let breaker = CircuitBreaker::builder("test.bus_breaker")
        .consecutive_failures(2)
        .cool_down(Duration::from_secs(60))
        .build();
    let bus = Bus::builder()
        .middleware(breaker.clone())
        .report(breaker.clone())
        .build()
        .unwrap();
    let ctx = Context::new();
    for _ in 0..3 {
        bus.send(Charge { cents: 0 }, &ctx).await.unwrap_err();
    }
    assert_eq!(
        breaker.state(),
        BreakerState::Closed,
        "refused commands do not count"
    );
    bus.send(Charge { cents: 1 }, &ctx).await.unwrap_err();
    bus.send(Charge { cents: 1 }, &ctx).await.unwrap_err();
    let e = bus.send(Charge { cents: 7 }, &ctx).await.unwrap_err();
    assert_eq!(e.code(), flext::codes::SERVICE_CIRCUIT_OPEN);
    let report = bus.report();
    let component = report
        .components
        .iter()
        .find(|c| c.name == "test.bus_breaker")
        .unwrap();
    assert!(!component.healthy);
    assert_eq!(component.status["state"], "open");
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(bus.send(Charge { cents: 7 }, &ctx).await.unwrap(), 7);
    assert_eq!(breaker.state(), BreakerState::Closed);
}

// ---- service registry -----------------------------------------------------------------

/// An instance whose health the test sets, and whose probe takes `delay` (tokio's clock).
#[derive(Debug)]
struct Replica {
    id: &'static str,
    up: std::sync::atomic::AtomicBool,
    delay: Duration,
}

fn replicas() -> ServiceRegistry<Replica> {
    ServiceRegistry::new("test.search", |r: Arc<Replica>| {
        Box::pin(async move {
            tokio::time::sleep(r.delay).await;
            if r.up.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err(Error::infrastructure(
                    "search.down",
                    format!("{} does not answer", r.id),
                ))
            }
        })
    })
    .probe_timeout(Duration::from_secs(1))
}

fn replica(id: &'static str, delay_ms: u64) -> Replica {
    Replica {
        id,
        up: std::sync::atomic::AtomicBool::new(true),
        delay: Duration::from_millis(delay_ms),
    }
}

#[tokio::test(start_paused = true)]
async fn the_registry_skips_an_unhealthy_instance_and_takes_it_back_when_it_recovers() {
    let registry = replicas();
    registry.add("a", replica("a", 5));
    registry.add("b", replica("b", 5));
    registry.check_now().await;
    let turns: Vec<&str> = (0..4)
        .map(|_| registry.select(Selection::RoundRobin).unwrap().id)
        .collect();
    assert_eq!(turns, ["a", "b", "a", "b"], "round robin");

    let a = registry.select(Selection::RoundRobin).unwrap();
    assert_eq!(a.id, "a");
    a.up.store(false, Ordering::SeqCst);
    registry.check_now().await;
    for _ in 0..3 {
        assert_eq!(registry.select(Selection::RoundRobin).unwrap().id, "b");
    }
    let health = registry.health();
    assert!(!health[0].healthy);
    assert_eq!(health[0].uptime_ms, 0);
    assert!(
        health[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("a does not answer")
    );

    // Both down: a clear error.
    registry
        .select(Selection::RoundRobin)
        .unwrap()
        .up
        .store(false, Ordering::SeqCst);
    registry.check_now().await;
    let e = registry.select(Selection::RoundRobin).unwrap_err();
    assert_eq!(e.code(), flext::codes::SERVICE_NO_HEALTHY_INSTANCE);

    // a recovers: back in rotation, with its uptime counted from then.
    a.up.store(true, Ordering::SeqCst);
    let checks = registry.spawn_health_checks(Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(registry.select(Selection::RoundRobin).unwrap().id, "a");
    tokio::time::sleep(Duration::from_secs(30)).await;
    let health = registry.health();
    assert!(health[0].healthy);
    assert!(health[0].uptime_ms >= 30_000);
    assert!(
        health[0].last_check_ms_ago.unwrap() <= 10_000,
        "checked every 10 s"
    );
    checks.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn least_latency_picks_the_fastest_healthy_instance_and_a_slow_probe_fails() {
    let registry = replicas();
    registry.add("slow", replica("slow", 40));
    registry.add("fast", replica("fast", 10));
    registry.add("stuck", replica("stuck", 5_000));
    registry.check_now().await;
    assert_eq!(registry.select(Selection::LeastLatency).unwrap().id, "fast");
    let health = registry.health();
    assert_eq!(health[0].latency_ms, Some(40.0));
    assert!(!health[2].healthy, "a probe over its timeout fails");
    let report = flext::registry::ReportSource::report(&registry);
    assert!(report.healthy);
    assert_eq!(report.status["instances"][1]["id"], "fast");
}

// ---- business rules on processors -------------------------------------------------------

struct Enrol {
    processed: AtomicUsize,
}

#[derive(Clone)]
struct Student {
    name: String,
    age: u32,
}

#[business_rules]
impl ServiceProcessor for Enrol {
    type Request = Student;
    type Domain = String;
    type Response = String;

    fn name(&self) -> &str {
        "test.enrol"
    }

    #[business_rule(code = "enrol.name", order = 1)]
    fn named(&self, s: &Student) -> RuleResult {
        ensure!(!s.name.trim().is_empty(), "a student needs a name")
    }

    #[business_rule(code = "enrol.age", order = 2)]
    fn old_enough(&self, s: &Student, ctx: &Context) -> RuleResult {
        let _ = ctx.correlation_id();
        ensure!(s.age >= 16, "students start at 16, not {}", s.age)
    }

    fn process(&self, s: &Student, _: &Context) -> Result<String> {
        self.processed.fetch_add(1, Ordering::SeqCst);
        Ok(s.name.to_uppercase())
    }

    fn build(&self, name: String, _: Uuid) -> String {
        name
    }
}

#[test]
fn a_processors_business_rules_run_in_order_before_process_and_report_every_violation() {
    let enrol = Enrol {
        processed: AtomicUsize::new(0),
    };
    let ctx = Context::new();
    let err = enrol
        .run(
            &Student {
                name: " ".into(),
                age: 9,
            },
            &ctx,
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RuleViolation);
    let codes: Vec<&str> = err.violations().iter().map(|v| v.code.as_ref()).collect();
    assert_eq!(codes, ["enrol.name", "enrol.age"]);
    assert_eq!(
        enrol.processed.load(Ordering::SeqCst),
        0,
        "process never ran"
    );

    let students = vec![
        Student {
            name: "ada".into(),
            age: 36,
        },
        Student {
            name: "tim".into(),
            age: 12,
        },
        Student {
            name: "bo".into(),
            age: 16,
        },
    ];
    let report = enrol.run_batch(students, &BatchOptions::default());
    assert_eq!(
        report.succeeded,
        [(0, "ADA".to_owned()), (2, "BO".to_owned())]
    );
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, 1);
    assert_eq!(
        report.failed[0].1.violations()[0].message,
        "students start at 16, not 12"
    );
    assert_eq!(enrol.processed.load(Ordering::SeqCst), 2);
    // The rule methods stay callable on the processor.
    assert!(
        enrol
            .named(&Student {
                name: "x".into(),
                age: 1
            })
            .is_ok()
    );
}
