//! The handler registry: every handler linked into the program, and per-handler health
//! for a running [`Bus`](crate::Bus) (the source documents' `HandlerRegistry` health
//! report, as a typed value that serialises to JSON).

mod instances;

pub use self::instances::{HealthLoop, InstanceHealth, Selection, ServiceRegistry};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

use std::any::{Any, TypeId};

use crate::error::{Error, Result};
use crate::message::MessageKind;
use crate::state::StateMap;

/// A handler registered at link time by `#[command_handler]`, `#[query_handler]` or
/// `#[event_handler]`. [`Bus::builder`](crate::Bus::builder) collects all of them; the
/// [`handlers`] function lists them.
///
/// Its fields are private so that its layout may change; generated code builds one with
/// a hidden constructor, and everyone reads it through the methods.
#[derive(Debug)]
pub struct HandlerRegistration {
    pub(crate) kind: MessageKind,
    pub(crate) message: &'static str,
    pub(crate) message_type: fn() -> TypeId,
    pub(crate) handler: &'static str,
    pub(crate) module: &'static str,
    pub(crate) file: &'static str,
    pub(crate) line: u32,
    pub(crate) build: fn(&StateMap) -> Result<ErasedHandler>,
}

impl HandlerRegistration {
    /// A registration; used by generated code.
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    pub const fn __new(
        kind: MessageKind,
        message: &'static str,
        message_type: fn() -> TypeId,
        handler: &'static str,
        module: &'static str,
        file: &'static str,
        line: u32,
        build: fn(&StateMap) -> Result<ErasedHandler>,
    ) -> Self {
        HandlerRegistration {
            kind,
            message,
            message_type,
            handler,
            module,
            file,
            line,
            build,
        }
    }

    /// Command, query or event.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// The message's stable name.
    pub fn message(&self) -> &'static str {
        self.message
    }

    /// The handler as written: `create_user` or `UserHandlers::create`.
    pub fn handler(&self) -> &'static str {
        self.handler
    }

    /// The module the handler is defined in.
    pub fn module(&self) -> &'static str {
        self.module
    }

    /// The source file of the handler.
    pub fn file(&self) -> &'static str {
        self.file
    }

    /// The line of the handler in [`file`](Self::file).
    pub fn line(&self) -> u32 {
        self.line
    }

    /// `file:line` of the handler.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

inventory::collect!(HandlerRegistration);

/// A handler with its message type erased, as a registration's `build` returns it.
#[doc(hidden)]
pub struct ErasedHandler {
    pub(crate) kind: MessageKind,
    /// A `Handler<M, O>`.
    pub(crate) handler: Box<dyn Any + Send + Sync>,
}

impl ErasedHandler {
    /// Wraps `handler` (the bus's `Arc<Handler<M, O>>`) with its message kind.
    pub(crate) fn new(kind: MessageKind, handler: Box<dyn Any + Send + Sync>) -> Self {
        ErasedHandler { kind, handler }
    }
}

/// Every handler registered at link time by the handler attributes, in no particular
/// order.
///
/// ```
/// for h in flext::registry::handlers() {
///     println!("{} {} -> {} ({})", h.kind().as_str(), h.message(), h.handler(), h.location());
/// }
/// ```
pub fn handlers() -> impl Iterator<Item = &'static HandlerRegistration> {
    inventory::iter::<HandlerRegistration>.into_iter()
}

/// Health of every handler of a bus; see [`Bus::report`](crate::Bus::report).
#[derive(Debug, Clone, Serialize)]
pub struct RegistryReport {
    /// Whether the bus records statistics; when not, counts are zero and percentiles
    /// absent.
    pub stats_enabled: bool,
    /// One entry per handler, sorted by source location.
    pub handlers: Vec<HandlerReport>,
    /// The other parts registered with [`BusBuilder::report`](crate::BusBuilder::report)
    /// (projections with their lag, the outbox with what it has not delivered), in
    /// registration order.
    pub components: Vec<ComponentReport>,
}

/// A part of the application that is not a handler but belongs in the registry report:
/// a projection, an outbox relay. Register it with
/// [`BusBuilder::report`](crate::BusBuilder::report).
pub trait ReportSource: Send + Sync + 'static {
    /// Where the part stands now.
    fn report(&self) -> ComponentReport;
}

/// One component's entry in the [`RegistryReport`].
#[derive(Debug, Clone, Serialize)]
pub struct ComponentReport {
    /// What it is: `projection`, `outbox`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// Whether it is working: `false` for a projection stopped at an event, or when its
    /// state could not be read.
    pub healthy: bool,
    /// Its details, as JSON (a projection's checkpoint and lag, an outbox's backlog).
    pub status: serde_json::Value,
}

/// One handler's registration and health.
#[derive(Debug, Clone, Serialize)]
pub struct HandlerReport {
    /// The handler as written.
    pub handler: &'static str,
    /// The message it handles.
    pub message: &'static str,
    /// Command, query or event.
    pub kind: MessageKind,
    /// `file:line` of the handler.
    pub location: String,
    /// Dispatches that reached the handler (through the middleware).
    pub count: u64,
    /// Dispatches that failed.
    pub failures: u64,
    /// The last failure, as `[code] message`.
    pub last_error: Option<String>,
    /// Failures by error code, most first; a rule violation counts under each violated
    /// rule's own code. At most [`MAX_FAILURE_CODES`] codes are told apart; the rest
    /// count under `other`.
    pub failures_by_code: Vec<(String, u64)>,
    /// Latency percentiles in microseconds, once a dispatch has been timed (one in 16 is,
    /// the first one included).
    pub latency_us: Option<Percentiles>,
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// Per-handler statistics: exact counts in atomics, the last error and a latency
/// histogram behind a lock taken only for a failure or a timed sample.
///
/// Latency is sampled: one dispatch in [`SAMPLE_EVERY`] is timed (two clock reads cost
/// more than a fast handler). Counts and failures are exact.
#[derive(Default)]
pub(crate) struct HandlerStats {
    count: AtomicU64,
    failures: AtomicU64,
    detail: Mutex<Detail>,
}

/// How many distinct error codes one handler's report tells apart.
pub const MAX_FAILURE_CODES: usize = 32;

#[derive(Default)]
struct Detail {
    last_error: Option<String>,
    by_code: Vec<(String, u64)>,
    latency_ns: Option<Histogram<u64>>,
}

/// One dispatch in this many is timed for the latency percentiles.
pub(crate) const SAMPLE_EVERY: u64 = 16;

impl Detail {
    fn count_code(&mut self, code: &str) {
        if let Some(entry) = self.by_code.iter_mut().find(|(c, _)| c == code) {
            entry.1 += 1;
        } else if self.by_code.len() < MAX_FAILURE_CODES {
            self.by_code.push((code.to_owned(), 1));
        } else if let Some(other) = self.by_code.iter_mut().find(|(c, _)| c == "other") {
            other.1 += 1;
        } else if let Some(last) = self.by_code.last_mut() {
            // The table is full: its last entry becomes `other`.
            *last = ("other".to_owned(), last.1 + 1);
        }
    }
}

impl HandlerStats {
    /// Counts a dispatch; returns the start time when this one is sampled.
    #[inline]
    pub(crate) fn start(&self) -> Option<Instant> {
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        n.is_multiple_of(SAMPLE_EVERY).then(Instant::now)
    }

    /// Records how the dispatch `start` counted ended.
    #[inline]
    pub(crate) fn record(&self, started: Option<Instant>, error: Option<&Error>) {
        if started.is_none() && error.is_none() {
            return;
        }
        self.record_detail(started, error);
    }

    #[cold]
    fn record_detail(&self, started: Option<Instant>, error: Option<&Error>) {
        if error.is_some() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        let mut d = self.detail.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = error {
            d.last_error = Some(e.to_string());
            let violations = e.violations();
            if violations.is_empty() {
                d.count_code(e.code());
            } else {
                // Each violated rule counts under its own code.
                for v in violations {
                    d.count_code(if v.code.is_empty() { e.code() } else { &v.code });
                }
            }
        }
        let Some(started) = started else { return };
        // Two significant figures (1 % error), growing with the largest latency seen, so
        // that an idle handler costs a few hundred bytes.
        if d.latency_ns.is_none() {
            d.latency_ns = Histogram::new(2).ok();
        }
        if let Some(h) = d.latency_ns.as_mut() {
            let ns = u64::try_from(started.elapsed().as_nanos())
                .unwrap_or(u64::MAX)
                .max(1);
            if h.record(ns).is_err() {
                h.saturating_record(ns);
            }
        }
    }
}

pub(crate) fn report(
    registrations: &[&'static HandlerRegistration],
    stats: Option<&[HandlerStats]>,
    sources: &[std::sync::Arc<dyn ReportSource>],
) -> RegistryReport {
    let handlers = registrations
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut report = HandlerReport {
                handler: r.handler,
                message: r.message,
                kind: r.kind,
                location: r.location(),
                count: 0,
                failures: 0,
                last_error: None,
                failures_by_code: Vec::new(),
                latency_us: None,
            };
            if let Some(s) = stats.and_then(|s| s.get(i)) {
                report.count = s.count.load(Ordering::Relaxed);
                report.failures = s.failures.load(Ordering::Relaxed);
                let d = s.detail.lock().unwrap_or_else(PoisonError::into_inner);
                report.last_error = d.last_error.clone();
                report.failures_by_code = d.by_code.clone();
                report
                    .failures_by_code
                    .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                report.latency_us =
                    d.latency_ns
                        .as_ref()
                        .filter(|h| !h.is_empty())
                        .map(|h| Percentiles {
                            p50: h.value_at_quantile(0.50) as f64 / 1000.0,
                            p95: h.value_at_quantile(0.95) as f64 / 1000.0,
                            p99: h.value_at_quantile(0.99) as f64 / 1000.0,
                        });
            }
            report
        })
        .collect();
    RegistryReport {
        stats_enabled: stats.is_some(),
        handlers,
        components: sources.iter().map(|s| s.report()).collect(),
    }
}
