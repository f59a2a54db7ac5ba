//! Workflows: independent steps run concurrently (shown with channels: each waits for
//! the other, which only concurrent steps can do), dependants wait, an optional step's
//! failure is recorded and its dependants run or are skipped, a required step's failure
//! compensates the completed steps in reverse order with retries, timeouts and panics are
//! failures, a circuit breaker guards a step, state comes from the saga runner, and each
//! step is in the metrics report.
//!
//! Clocks are tokio's paused clock: a run that could only finish by waiting forever
//! fails at once on its guard instead of hanging.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flext::codes;
use flext::middleware::{BreakerState, CircuitBreaker};
use flext::prelude::*;
use flext::saga::{MemoryLog, SagaRunner};
use flext::service::MetricsReport;
use flext::workflow::{StepStatus, Workflow, WorkflowRun};
use tokio::sync::{Mutex as AsyncMutex, mpsc, oneshot};

/// Fails the test instead of hanging when the run cannot finish (on the paused clock the
/// guard fires as soon as every task is waiting).
async fn guarded<W: Workflow>(workflow: &W) -> WorkflowRun {
    tokio::time::timeout(Duration::from_secs(3600), workflow.run(&Context::new()))
        .await
        .expect("the workflow deadlocked: its independent steps did not run concurrently")
}

fn status(run: &WorkflowRun, step: &str) -> String {
    match &run.step(step).unwrap().status {
        StepStatus::Completed => "completed".into(),
        StepStatus::Failed(e) => format!("failed: {}", e.code()),
        StepStatus::Skipped { missing } => format!("skipped: no output of {missing}"),
        StepStatus::NotRun => "not run".into(),
        StepStatus::Compensated => "compensated".into(),
        StepStatus::CompensationFailed(e) => format!("compensation failed: {}", e.code()),
        other => format!("{other:?}"),
    }
}

// ---- concurrency -----------------------------------------------------------------------

/// `left` and `right` each send to the other and wait for the other's message: only
/// steps that run at the same time can both finish. `join` waits for both and takes both
/// outputs.
struct Handshake {
    to_right: Mutex<Option<oneshot::Sender<u32>>>,
    from_left: AsyncMutex<Option<oneshot::Receiver<u32>>>,
    to_left: Mutex<Option<oneshot::Sender<u32>>>,
    from_right: AsyncMutex<Option<oneshot::Receiver<u32>>>,
    order: Mutex<Vec<&'static str>>,
}

impl Handshake {
    fn new() -> Self {
        let (to_right, from_left) = oneshot::channel();
        let (to_left, from_right) = oneshot::channel();
        Handshake {
            to_right: Mutex::new(Some(to_right)),
            from_left: AsyncMutex::new(Some(from_left)),
            to_left: Mutex::new(Some(to_left)),
            from_right: AsyncMutex::new(Some(from_right)),
            order: Mutex::new(Vec::new()),
        }
    }
}

#[workflow]
impl Handshake {
    #[workflow_step]
    async fn left(&self) -> Result<u32> {
        self.order.lock().unwrap().push("left starts");
        let _ = self.to_right.lock().unwrap().take().unwrap().send(1);
        let got = self.from_right.lock().await.take().unwrap().await.unwrap();
        self.order.lock().unwrap().push("left ends");
        Ok(got * 10)
    }

    #[workflow_step]
    async fn right(&self) -> Result<String> {
        self.order.lock().unwrap().push("right starts");
        let _ = self.to_left.lock().unwrap().take().unwrap().send(2);
        let got = self.from_left.lock().await.take().unwrap().await.unwrap();
        self.order.lock().unwrap().push("right ends");
        Ok(format!("right got {got}"))
    }

    #[workflow_step(depends_on = [left, right])]
    async fn join(&self, left: &u32, right: &str) -> Result<String> {
        self.order.lock().unwrap().push("join");
        Ok(format!("{left} / {right}"))
    }
}

#[tokio::test(start_paused = true)]
async fn independent_steps_run_at_the_same_time_and_a_dependant_waits_for_both() {
    let workflow = Handshake::new();
    let run = guarded(&workflow).await;
    assert!(run.is_success(), "{run:?}");
    assert_eq!(run.output::<String>("join").unwrap(), "20 / right got 1");
    assert_eq!(run.output::<u32>("left"), Some(&20));
    let order = workflow.order.lock().unwrap().clone();
    assert_eq!(&order[..2], ["left starts", "right starts"]);
    assert_eq!(order.last(), Some(&"join"));
    assert_eq!(order.len(), 5);
}

// ---- optional steps --------------------------------------------------------------------

/// `chart` is optional and fails; `publish` depends on it without taking its output and
/// runs; `caption` (optional) takes its output and is skipped; `archive` takes
/// `caption`'s and is skipped in turn.
struct Report {
    chart_fails: bool,
}

#[workflow]
impl Report {
    #[workflow_step]
    async fn rows(&self) -> Result<Vec<u32>> {
        Ok(vec![1, 2, 3])
    }

    #[workflow_step(depends_on = [rows], optional)]
    async fn chart(&self, rows: &[u32]) -> Result<String> {
        if self.chart_fails {
            return Err(Error::infrastructure(
                "chart.down",
                format!("cannot chart {} rows", rows.len()),
            ));
        }
        Ok("chart".into())
    }

    #[workflow_step(depends_on = [chart], optional)]
    async fn caption(&self, chart: &str) -> Result<Vec<String>> {
        Ok(vec![format!("{chart} caption")])
    }

    #[workflow_step(depends_on = [caption], optional)]
    async fn archive(&self, caption: &[String]) -> Result<usize> {
        Ok(caption.len())
    }

    #[workflow_step(depends_on = [chart])]
    async fn publish(&self, rows: &[u32]) -> Result<u32> {
        Ok(rows.iter().sum())
    }
}

#[tokio::test]
async fn an_optional_failure_is_recorded_and_only_the_steps_needing_its_output_are_skipped() {
    let run = Report { chart_fails: true }.run(&Context::new()).await;
    assert!(run.is_success());
    assert!(run.failed_step().is_none());
    assert_eq!(status(&run, "chart"), "failed: chart.down");
    assert_eq!(status(&run, "caption"), "skipped: no output of chart");
    assert_eq!(status(&run, "archive"), "skipped: no output of caption");
    assert_eq!(status(&run, "publish"), "completed");
    assert_eq!(run.output::<u32>("publish"), Some(&6));
    assert_eq!(run.output::<String>("chart"), None);
    assert!(run.into_result().is_ok());

    let run = Report { chart_fails: false }.run(&Context::new()).await;
    assert_eq!(run.output::<usize>("archive"), Some(&1));
}

// ---- required failure and compensation -------------------------------------------------

/// `reserve` and `charge` run together and both have compensations; `ship` waits for
/// both and fails; `email` waits for `ship` and never starts. The compensations run in
/// the reverse order of completion; `refund` fails twice before it succeeds.
struct Order {
    effects: Arc<Mutex<Vec<String>>>,
    refund_failures: AtomicU32,
    charge_first: mpsc::Sender<()>,
    reserve_waits: AsyncMutex<mpsc::Receiver<()>>,
}

impl Order {
    fn new(refund_failures: u32) -> Self {
        let (tx, rx) = mpsc::channel(1);
        Order {
            effects: Arc::default(),
            refund_failures: AtomicU32::new(refund_failures),
            charge_first: tx,
            reserve_waits: AsyncMutex::new(rx),
        }
    }
    fn effect(&self, e: impl Into<String>) {
        self.effects.lock().unwrap().push(e.into());
    }
}

#[workflow]
impl Order {
    /// Completes after `charge`: it waits for `charge`'s signal.
    #[workflow_step(compensate = release)]
    async fn reserve(&self) -> Result<u32> {
        self.reserve_waits.lock().await.recv().await;
        self.effect("reserved 3");
        Ok(3)
    }
    async fn release(&self, units: &u32) -> Result<()> {
        self.effect(format!("released {units}"));
        Ok(())
    }

    #[workflow_step(compensate = refund)]
    async fn charge(&self) -> Result<u64> {
        self.effect("charged 500");
        let _ = self.charge_first.send(()).await;
        Ok(500)
    }
    async fn refund(&self, cents: &u64) -> Result<()> {
        if self.refund_failures.load(Ordering::SeqCst) > 0 {
            self.refund_failures.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::infrastructure("bank.busy", "try again"));
        }
        self.effect(format!("refunded {cents}"));
        Ok(())
    }

    #[workflow_step(depends_on = [reserve, charge])]
    async fn ship(&self, units: &u32, cents: &u64) -> Result<String> {
        Err(Error::conflict(
            "ship.no_courier",
            format!("no courier for {units} units paid {cents}"),
        ))
    }

    #[workflow_step(depends_on = [ship])]
    async fn email(&self, label: &str) -> Result<()> {
        self.effect(format!("emailed {label}"));
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_required_failure_compensates_completed_steps_in_reverse_completion_order() {
    let order = Order::new(2);
    let started = tokio::time::Instant::now();
    let run = guarded(&order).await;
    assert!(!run.is_success());
    assert!(!run.is_stuck());
    assert_eq!(run.failed_step().unwrap().name, "ship");
    assert_eq!(run.error().unwrap().code(), "ship.no_courier");
    assert_eq!(run.compensated(), ["reserve", "charge"]);
    assert_eq!(status(&run, "email"), "not run");
    assert_eq!(status(&run, "reserve"), "compensated");
    assert_eq!(
        run.output::<u32>("reserve"),
        None,
        "compensated outputs are gone"
    );
    assert_eq!(
        *order.effects.lock().unwrap(),
        ["charged 500", "reserved 3", "released 3", "refunded 500"]
    );
    // Two failed refunds: waits of 100 ms then 200 ms (the saga runner's backoff).
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    let err = run.into_result().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
}

#[tokio::test(start_paused = true)]
async fn a_compensation_failing_every_attempt_leaves_the_run_stuck_and_the_others_undone() {
    let order = Order::new(u32::MAX);
    let run = guarded(&order).await;
    assert!(run.is_stuck());
    assert_eq!(status(&run, "charge"), "compensation failed: bank.busy");
    assert_eq!(run.compensated(), ["reserve"]);
    assert_eq!(
        order.refund_failures.load(Ordering::SeqCst),
        u32::MAX - 5,
        "five attempts by default"
    );
}

#[tokio::test(start_paused = true)]
async fn the_saga_runner_supplies_state_and_its_compensation_attempts() {
    struct Import;

    #[workflow]
    impl Import {
        #[workflow_step(compensate = unload)]
        async fn load(&self, table: State<Arc<Mutex<Vec<u32>>>>) -> Result<usize> {
            table.lock().unwrap().extend([7, 8]);
            Ok(2)
        }
        async fn unload(&self, rows: &usize, attempts: State<Arc<AtomicU32>>) -> Result<()> {
            attempts.fetch_add(1, Ordering::SeqCst);
            Err(Error::infrastructure(
                "table.locked",
                format!("cannot unload {rows}"),
            ))
        }

        #[workflow_step(depends_on = [load])]
        async fn index(&self, rows: &usize, ctx: &Context) -> Result<()> {
            let _ = ctx.correlation_id();
            Err(Error::infrastructure("index.full", format!("{rows} rows")))
        }
    }

    let table = Arc::new(Mutex::new(Vec::<u32>::new()));
    let attempts = Arc::new(AtomicU32::new(0));
    let runner = SagaRunner::builder(MemoryLog::new())
        .state(table.clone())
        .state(attempts.clone())
        .compensation_attempts(2)
        .build();
    let run = runner.run_workflow(&Import, &Context::new()).await;
    assert_eq!(run.failed_step().unwrap().name, "index");
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert!(run.is_stuck());
    assert_eq!(*table.lock().unwrap(), [7, 8]);

    // Without the runner there is no state: the step fails, naming what is missing.
    let run = Import.run(&Context::new()).await;
    assert_eq!(run.failed_step().unwrap().name, "load");
    assert_eq!(run.error().unwrap().kind(), ErrorKind::NotFound);
}

// ---- timeouts, panics, breakers, metrics -----------------------------------------------

struct Fragile {
    calls: AtomicU32,
    breaker: CircuitBreaker,
}

#[workflow(name = "fragile")]
impl Fragile {
    #[workflow_step(timeout_ms = 250, optional)]
    async fn slow(&self) -> Result<()> {
        std::future::pending::<()>().await;
        Ok(())
    }

    #[workflow_step(optional)]
    async fn boom(&self) -> Result<u8> {
        panic!("a bug in the step")
    }

    #[workflow_step(breaker = breaker, optional)]
    async fn remote(&self) -> Result<u32> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(Error::infrastructure("remote.down", "connection refused"))
    }
}

#[tokio::test(start_paused = true)]
async fn timeouts_and_panics_are_step_failures_and_a_breaker_stops_calling_a_dead_step() {
    let workflow = Fragile {
        calls: AtomicU32::new(0),
        breaker: CircuitBreaker::builder("remote")
            .consecutive_failures(2)
            .cool_down(Duration::from_secs(30))
            .build(),
    };
    let started = tokio::time::Instant::now();
    let run = guarded(&workflow).await;
    assert_eq!(started.elapsed(), Duration::from_millis(250));
    assert_eq!(
        status(&run, "slow"),
        format!("failed: {}", codes::SERVICE_STEP_TIMED_OUT)
    );
    assert_eq!(
        status(&run, "boom"),
        format!("failed: {}", codes::SERVICE_STEP_PANICKED)
    );
    assert_eq!(status(&run, "remote"), "failed: remote.down");
    assert!(run.is_success(), "every failure was optional");

    let run = guarded(&workflow).await;
    assert_eq!(status(&run, "remote"), "failed: remote.down");
    assert_eq!(workflow.breaker.state(), BreakerState::Open);
    let run = guarded(&workflow).await;
    assert_eq!(
        status(&run, "remote"),
        format!("failed: {}", codes::SERVICE_CIRCUIT_OPEN)
    );
    assert_eq!(
        workflow.calls.load(Ordering::SeqCst),
        2,
        "not called while open"
    );

    let report = MetricsReport::collect();
    let remote = report
        .service("fragile.remote")
        .expect("each step is in the report");
    assert_eq!((remote.count, remote.failures), (3, 3));
    assert_eq!(report.service("fragile.slow").unwrap().count, 3);
}
