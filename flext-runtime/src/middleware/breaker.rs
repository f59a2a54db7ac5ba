//! [`CircuitBreaker`]: stops calling a dependency that keeps failing, and tries it again
//! after a cool-down (Michael Nygard, "Release It!", 2007).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::{Dispatch, Middleware, Next, Output};
use crate::context::Context;
use crate::error::{Error, ErrorKind, Result};
use crate::future::BoxFuture;

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through; failures are counted.
    Closed,
    /// Calls are refused (`flext.service.circuit_open`) until the cool-down has passed.
    Open,
    /// A few probe calls go through; enough successes close the breaker, one failure
    /// opens it again.
    HalfOpen,
}

impl BreakerState {
    /// The value of the `flext_circuit_state` gauge: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }
}

/// When a closed breaker opens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trip {
    /// After this many failures in a row.
    ConsecutiveFailures(u32),
    /// When, over the last `window`, at least `min_calls` calls were made and at least
    /// `rate` (0.0–1.0) of them failed.
    FailureRate {
        /// The failure rate that opens the breaker.
        rate: f64,
        /// How far back calls count.
        window: Duration,
        /// Fewer calls than this in the window never open it.
        min_calls: u32,
    },
}

/// One change of state, with when it happened (tokio's clock, milliseconds since the
/// breaker was made).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BreakerTransition {
    /// The state before.
    pub from: BreakerState,
    /// The state after.
    pub to: BreakerState,
    /// Milliseconds since the breaker was made.
    pub at_ms: u64,
}

struct Inner {
    name: String,
    trip: Trip,
    cool_down: Duration,
    probes: u32,
    born: Instant,
    state: Mutex<Machine>,
    gauge: metrics::Gauge,
}

struct Machine {
    state: BreakerState,
    /// Failures in a row (closed).
    consecutive: u32,
    /// Outcomes in the window (closed, failure rate), counted per time bucket.
    window: Buckets,
    opened_at: Instant,
    /// Probes let through and probes succeeded (half-open).
    probing: u32,
    probed_ok: u32,
    transitions: VecDeque<BreakerTransition>,
}

/// The most recent transitions a breaker keeps for its report.
const KEPT_TRANSITIONS: usize = 32;

/// A circuit breaker: closed, open, half-open. Use it around any call with
/// [`call`](Self::call), or on a bus as middleware (`Bus::builder().middleware(breaker)`),
/// where it counts a dispatch as failed when its error is an infrastructure, timeout or
/// internal error (a refused command is not the dependency failing). Its state and
/// transitions are in [`report`](crate::registry::ReportSource::report) and in the
/// `flext_circuit_state{breaker}` gauge (0 closed, 1 half-open, 2 open). Time is tokio's
/// clock, so tests can pause it. Cheap to clone: clones share the state.
///
/// ```
/// use std::time::Duration;
/// use flext::middleware::{BreakerState, CircuitBreaker};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let breaker = CircuitBreaker::builder("payments")
///     .consecutive_failures(2)
///     .cool_down(Duration::from_secs(30))
///     .build();
/// let down = || async { Err::<(), _>(flext::Error::infrastructure("pay.down", "connection refused")) };
/// let _ = breaker.call(down()).await;
/// let _ = breaker.call(down()).await;
/// assert_eq!(breaker.state(), BreakerState::Open);
/// let refused = breaker.call(async { Ok(()) }).await.unwrap_err();
/// assert_eq!(refused.code(), flext::codes::SERVICE_CIRCUIT_OPEN);
/// # }
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

/// Builds a [`CircuitBreaker`]; see [`CircuitBreaker::builder`].
pub struct CircuitBreakerBuilder {
    name: String,
    trip: Trip,
    cool_down: Duration,
    probes: u32,
}

impl CircuitBreakerBuilder {
    /// Opens after `n` failures in a row (at least 1).
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.trip = Trip::ConsecutiveFailures(n.max(1));
        self
    }

    /// Opens when at least `rate` (clamped to 0.0–1.0) of the calls over the last
    /// `window` failed, once there were at least `min_calls` of them.
    pub fn failure_rate(mut self, rate: f64, window: Duration, min_calls: u32) -> Self {
        self.trip = Trip::FailureRate {
            rate: rate.clamp(0.0, 1.0),
            window,
            min_calls: min_calls.max(1),
        };
        self
    }

    /// How long it stays open before letting probes through.
    pub fn cool_down(mut self, cool_down: Duration) -> Self {
        self.cool_down = cool_down;
        self
    }

    /// How many probe calls go through when half-open, and must all succeed to close it
    /// (at least 1).
    pub fn probes(mut self, probes: u32) -> Self {
        self.probes = probes.max(1);
        self
    }

    /// The breaker, closed.
    pub fn build(self) -> CircuitBreaker {
        let now = Instant::now();
        let gauge = metrics::gauge!("flext_circuit_state", "breaker" => self.name.clone());
        gauge.set(BreakerState::Closed.gauge());
        CircuitBreaker {
            inner: Arc::new(Inner {
                name: self.name,
                trip: self.trip,
                cool_down: self.cool_down,
                probes: self.probes,
                born: now,
                gauge,
                state: Mutex::new(Machine {
                    state: BreakerState::Closed,
                    consecutive: 0,
                    window: Buckets::default(),
                    opened_at: now,
                    probing: 0,
                    probed_ok: 0,
                    transitions: VecDeque::new(),
                }),
            }),
        }
    }
}

/// What [`CircuitBreaker::admit`] decided for one call.
enum Admission {
    Closed,
    Probe,
}

impl CircuitBreaker {
    /// A breaker named `name` (its report's and gauge's label): by default it opens after
    /// 5 failures in a row, cools down for 30 s, and closes after 1 successful probe.
    pub fn builder(name: impl Into<String>) -> CircuitBreakerBuilder {
        CircuitBreakerBuilder {
            name: name.into(),
            trip: Trip::ConsecutiveFailures(5),
            cool_down: Duration::from_secs(30),
            probes: 1,
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The state now (an open breaker whose cool-down has passed reports half-open).
    pub fn state(&self) -> BreakerState {
        let mut m = self.machine();
        self.cool(&mut m);
        m.state
    }

    /// Every transition kept (the last 32), oldest first.
    pub fn transitions(&self) -> Vec<BreakerTransition> {
        self.machine().transitions.iter().copied().collect()
    }

    /// Runs `call` when the breaker lets it through, and counts its outcome. An error
    /// counts as a failure as it does when the breaker is bus middleware: an
    /// infrastructure, timeout or internal error does; a validation error, a broken
    /// rule, not found, a conflict or unauthorized does not (the dependency answered).
    /// Use [`call_counting`](Self::call_counting) to choose.
    ///
    /// # Errors
    ///
    /// `flext.service.circuit_open` (infrastructure) without running `call` when the
    /// breaker is open, or half-open with its probes taken; otherwise `call`'s error.
    pub async fn call<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        self.call_counting(call, counts_by_default).await
    }

    /// As [`call`](Self::call), counting an error as a failure only when `counts` says
    /// so (the others count as successes: the dependency answered).
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub async fn call_counting<T>(
        &self,
        call: impl Future<Output = Result<T>>,
        counts: impl Fn(&Error) -> bool,
    ) -> Result<T> {
        let admission = self.admit()?;
        let result = call.await;
        let failed = result.as_ref().err().is_some_and(&counts);
        self.settle(admission, failed);
        result
    }

    fn machine(&self) -> std::sync::MutexGuard<'_, Machine> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn move_to(&self, m: &mut Machine, to: BreakerState) {
        if m.state == to {
            return;
        }
        let at_ms = u64::try_from(self.inner.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(breaker = %self.inner.name, from = ?m.state, to = ?to, "circuit breaker changed state");
        if m.transitions.len() == KEPT_TRANSITIONS {
            m.transitions.pop_front();
        }
        m.transitions.push_back(BreakerTransition {
            from: m.state,
            to,
            at_ms,
        });
        m.state = to;
        self.inner.gauge.set(to.gauge());
        match to {
            BreakerState::Open => m.opened_at = Instant::now(),
            BreakerState::HalfOpen => {
                m.probing = 0;
                m.probed_ok = 0;
            }
            BreakerState::Closed => {
                m.consecutive = 0;
                m.window = Buckets::default();
            }
        }
    }

    /// An open breaker whose cool-down has passed goes half-open.
    fn cool(&self, m: &mut Machine) {
        if m.state == BreakerState::Open && m.opened_at.elapsed() >= self.inner.cool_down {
            self.move_to(m, BreakerState::HalfOpen);
        }
    }

    fn admit(&self) -> Result<Admission> {
        let mut m = self.machine();
        self.cool(&mut m);
        match m.state {
            BreakerState::Closed => Ok(Admission::Closed),
            BreakerState::HalfOpen if m.probing < self.inner.probes => {
                m.probing += 1;
                Ok(Admission::Probe)
            }
            state => {
                let wait = self
                    .inner
                    .cool_down
                    .saturating_sub(m.opened_at.elapsed())
                    .as_millis();
                Err(Error::infrastructure(
                    crate::codes::SERVICE_CIRCUIT_OPEN,
                    match state {
                        BreakerState::Open => format!(
                            "circuit `{}` is open after repeated failures: not called; retry in {wait} ms",
                            self.inner.name
                        ),
                        _ => format!(
                            "circuit `{}` is half-open and its probes are in flight: not called; retry shortly",
                            self.inner.name
                        ),
                    },
                ))
            }
        }
    }

    fn settle(&self, admission: Admission, failed: bool) {
        let mut m = self.machine();
        match admission {
            Admission::Probe => {
                if m.state != BreakerState::HalfOpen {
                    return; // another probe already decided
                }
                if failed {
                    self.move_to(&mut m, BreakerState::Open);
                } else {
                    m.probed_ok += 1;
                    if m.probed_ok >= self.inner.probes {
                        self.move_to(&mut m, BreakerState::Closed);
                    }
                }
            }
            Admission::Closed => {
                if m.state != BreakerState::Closed {
                    return;
                }
                let trips = match self.inner.trip {
                    Trip::ConsecutiveFailures(n) => {
                        m.consecutive = if failed { m.consecutive + 1 } else { 0 };
                        m.consecutive >= n
                    }
                    Trip::FailureRate {
                        rate,
                        window,
                        min_calls,
                    } => {
                        let (calls, failures) =
                            m.window.record(self.inner.born.elapsed(), window, failed);
                        calls >= u64::from(min_calls) && failures as f64 >= rate * calls as f64
                    }
                };
                if trips {
                    self.move_to(&mut m, BreakerState::Open);
                }
            }
        }
    }
}

/// How many buckets a failure-rate window is counted in: the window slides a
/// twentieth of its length at a time.
const BUCKETS: usize = 20;

/// A failure-rate window as [`BUCKETS`] time buckets of calls and failures: recording
/// and counting cost the same whatever the call rate (a ring of counters, as
/// resilience4j's time-based sliding window keeps), instead of one entry per call.
#[derive(Default)]
struct Buckets {
    /// (bucket number since the breaker was made, calls, failures).
    slots: [(u64, u64, u64); BUCKETS],
}

impl Buckets {
    /// Records one call `elapsed` after the breaker was made; returns the calls and
    /// failures over the last `window` (to a bucket's precision).
    fn record(&mut self, elapsed: Duration, window: Duration, failed: bool) -> (u64, u64) {
        let width = (window.as_nanos() / BUCKETS as u128).max(1);
        // Bucket numbers start at 1, so an unused slot (number 0) never counts.
        let now = u64::try_from(elapsed.as_nanos() / width).unwrap_or(u64::MAX - 1) + 1;
        let slot = &mut self.slots[(now % BUCKETS as u64) as usize];
        if slot.0 != now {
            *slot = (now, 0, 0);
        }
        slot.1 += 1;
        slot.2 += u64::from(failed);
        self.slots
            .iter()
            .filter(|(n, _, _)| *n != 0 && now - *n < BUCKETS as u64)
            .fold((0, 0), |(c, f), (_, calls, fails)| (c + calls, f + fails))
    }
}

/// Whether an error counts as the dependency failing, by default: an infrastructure,
/// timeout or internal error. A refused command (validation, a broken rule, not found,
/// a conflict, unauthorized) is the dependency answering.
fn counts_by_default(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Infrastructure | ErrorKind::Timeout | ErrorKind::Internal
    )
}

impl Middleware for CircuitBreaker {
    fn handle<'a>(
        &'a self,
        _dispatch: &'a Dispatch<'a>,
        ctx: Context,
        next: Next<'a>,
    ) -> BoxFuture<'a, Result<Output>> {
        Box::pin(self.call_counting(next.run(ctx), counts_by_default))
    }
}

impl crate::registry::ReportSource for CircuitBreaker {
    /// The state and the kept transitions; healthy unless open.
    fn report(&self) -> crate::registry::ComponentReport {
        let state = self.state();
        crate::registry::ComponentReport {
            kind: "circuit_breaker",
            name: self.inner.name.clone(),
            healthy: state != BreakerState::Open,
            status: serde_json::json!({
                "state": state,
                "transitions": self.transitions(),
            }),
        }
    }
}
