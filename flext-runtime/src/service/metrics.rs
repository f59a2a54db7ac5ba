//! Per-service run counts, failures and latency percentiles (an HDR histogram, Gil Tene's
//! HdrHistogram), kept in this process and sent to the `metrics` facade.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::error::Error;

/// One service's (or workflow step's) statistics. Obtained by name, shared process-wide.
#[doc(hidden)]
pub struct ServiceStats {
    name: String,
    count: AtomicU64,
    failures: AtomicU64,
    latency_us: Mutex<Option<Histogram<u64>>>,
    runs: metrics::Counter,
    failed: metrics::Counter,
    duration: metrics::Histogram,
}

fn all() -> &'static Mutex<BTreeMap<String, Arc<ServiceStats>>> {
    static ALL: OnceLock<Mutex<BTreeMap<String, Arc<ServiceStats>>>> = OnceLock::new();
    ALL.get_or_init(Mutex::default)
}

impl ServiceStats {
    /// The statistics of `name`, made on first use. The `metrics` handles are taken from
    /// the recorder installed at that moment: install yours before the first run.
    pub fn named(name: &str) -> Arc<ServiceStats> {
        let mut all = all().lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(stats) = all.get(name) {
            return stats.clone();
        }
        let label = [("service", name.to_owned())];
        let stats = Arc::new(ServiceStats {
            name: name.to_owned(),
            count: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            latency_us: Mutex::new(None),
            runs: metrics::counter!("flext_service_runs_total", &label),
            failed: metrics::counter!("flext_service_failures_total", &label),
            duration: metrics::histogram!("flext_service_duration_seconds", &label),
        });
        all.insert(name.to_owned(), stats.clone());
        stats
    }

    /// Counts a run and returns its start.
    #[inline]
    pub fn start(&self) -> Instant {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.runs.increment(1);
        Instant::now()
    }

    /// Records how the run `started` ended.
    pub fn record(&self, started: Instant, error: Option<&Error>) {
        self.record_duration(started.elapsed(), error.is_some());
    }

    /// Records how long a run counted by [`start`](Self::start) took, and whether it
    /// failed.
    pub fn record_duration(&self, elapsed: Duration, failed: bool) {
        if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
            self.failed.increment(1);
        }
        self.duration.record(elapsed.as_secs_f64());
        let us = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut h = self
            .latency_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let h = h.get_or_insert_with(new_histogram);
        // `record` grows the histogram; `saturating_record` alone would clamp every
        // value past the first bucket (about 2 ms) to the initial high of 2 µs.
        if h.record(us).is_err() {
            h.saturating_record(us);
        }
    }

    /// A recorder for one batch: it counts every item, times one item in
    /// [`BatchRecorder::SAMPLE`] (a clock read costs about as much as a
    /// small item's own work), and adds its counts and histogram to these statistics
    /// once, when dropped. Until then a report does not show the batch's items.
    pub fn batch(&self) -> BatchRecorder<'_> {
        BatchRecorder {
            stats: self,
            latency_us: new_histogram(),
            count: 0,
            failures: 0,
        }
    }

    fn report(&self) -> ServiceReport {
        let count = self.count.load(Ordering::Relaxed);
        let failures = self.failures.load(Ordering::Relaxed);
        let h = self
            .latency_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let at = |q: f64| {
            h.as_ref()
                .filter(|h| !h.is_empty())
                .map_or(0.0, |h| h.value_at_quantile(q) as f64 / 1000.0)
        };
        ServiceReport {
            name: self.name.clone(),
            count,
            failures,
            success_rate: if count == 0 {
                1.0
            } else {
                (count - failures.min(count)) as f64 / count as f64
            },
            p50_ms: at(0.50),
            p95_ms: at(0.95),
            p99_ms: at(0.99),
        }
    }
}

/// Three significant figures, auto-resizing: a few kilobytes per service.
fn new_histogram() -> Histogram<u64> {
    let mut h = Histogram::new(3).expect("3 significant figures is a valid precision");
    h.auto(true);
    h
}

/// Records one batch's items; see [`ServiceStats::batch`].
#[doc(hidden)]
pub struct BatchRecorder<'a> {
    stats: &'a ServiceStats,
    latency_us: Histogram<u64>,
    count: u64,
    failures: u64,
}

impl BatchRecorder<'_> {
    /// One item in this many is timed (the first of each batch included), as the bus
    /// samples one dispatch in 16.
    pub const SAMPLE: u64 = 8;

    /// The start of the next item, when it is one of the timed ones.
    #[inline]
    pub fn start(&self) -> Option<Instant> {
        self.count.is_multiple_of(Self::SAMPLE).then(Instant::now)
    }

    /// Counts an item, and records its latency when it was timed.
    #[inline]
    pub fn item(&mut self, started: Option<Instant>, failed: bool) {
        self.count += 1;
        self.failures += u64::from(failed);
        let Some(started) = started else { return };
        let elapsed = started.elapsed();
        self.stats.duration.record(elapsed.as_secs_f64());
        let us = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        if self.latency_us.record(us).is_err() {
            self.latency_us.saturating_record(us);
        }
    }
}

impl Drop for BatchRecorder<'_> {
    fn drop(&mut self) {
        let stats = self.stats;
        stats.count.fetch_add(self.count, Ordering::Relaxed);
        stats.failures.fetch_add(self.failures, Ordering::Relaxed);
        stats.runs.increment(self.count);
        stats.failed.increment(self.failures);
        let mut h = stats
            .latency_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let h = h.get_or_insert_with(new_histogram);
        // Both auto-resize, so adding cannot run out of range; should it fail anyway,
        // the counts above are kept and the latencies of this batch are lost.
        let _ = h.add(&self.latency_us);
    }
}

/// Every service processor's and workflow step's counts and latency percentiles in this
/// process, serialisable, and printed as a table by `Display`.
///
/// ```
/// use flext::service::MetricsReport;
/// let report = MetricsReport::collect();
/// println!("{report}");
/// # let _ = serde_json::to_string(&report).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsReport {
    /// One entry per name, sorted by name.
    pub services: Vec<ServiceReport>,
}

/// One service's line in a [`MetricsReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceReport {
    /// The processor's name, or `workflow/step` for a workflow step.
    pub name: String,
    /// Runs.
    pub count: u64,
    /// Runs that returned an error.
    pub failures: u64,
    /// (runs − failures) / runs; 1 before the first run.
    pub success_rate: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 95th percentile latency, milliseconds.
    pub p95_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
}

impl MetricsReport {
    /// The report as it stands now.
    pub fn collect() -> MetricsReport {
        let all = all().lock().unwrap_or_else(PoisonError::into_inner);
        MetricsReport {
            services: all.values().map(|s| s.report()).collect(),
        }
    }

    /// The line of `name`, if it ran.
    pub fn service(&self, name: &str) -> Option<&ServiceReport> {
        self.services.iter().find(|s| s.name == name)
    }
}

impl fmt::Display for MetricsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .services
            .iter()
            .map(|s| s.name.chars().count())
            .max()
            .unwrap_or(0)
            .max(7);
        writeln!(
            f,
            "{:<width$}  {:>8}  {:>8}  {:>8}  {:>9}  {:>9}  {:>9}",
            "service", "runs", "failures", "success", "p50 ms", "p95 ms", "p99 ms"
        )?;
        for s in &self.services {
            writeln!(
                f,
                "{:<width$}  {:>8}  {:>8}  {:>7.1}%  {:>9.3}  {:>9.3}  {:>9.3}",
                s.name,
                s.count,
                s.failures,
                s.success_rate * 100.0,
                s.p50_ms,
                s.p95_ms,
                s.p99_ms
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_runs_are_recorded_at_their_length() {
        let stats = ServiceStats::named("metrics.test.long_runs");
        for ms in [1, 40, 40, 40, 900] {
            let _ = stats.start();
            stats.record_duration(Duration::from_millis(ms), false);
        }
        let report = stats.report();
        assert_eq!(report.count, 5);
        assert!((39.9..=40.1).contains(&report.p50_ms), "{report:?}");
        assert!((899.0..=901.0).contains(&report.p99_ms), "{report:?}");
    }
}
