//! [`Metrics`]: counters and a latency histogram per message.

use std::time::Instant;

use super::{Dispatch, Middleware, Next, Output};
use crate::context::Context;
use crate::error::Result;
use crate::future::BoxFuture;

/// Reports each dispatch through the [`metrics`] facade, labelled with `message` and
/// `kind`:
///
/// - `flext_dispatch_total`: counter of dispatches;
/// - `flext_dispatch_failures_total`: counter of failed dispatches, also labelled with
///   the error `code`;
/// - `flext_dispatch_duration_seconds`: histogram of the time the rest of the chain and
///   the handler took, in seconds.
///
/// Install any `metrics` recorder (Prometheus exporter, StatsD, ...) to collect them;
/// without one the calls cost a few nanoseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Metrics;

impl Middleware for Metrics {
    fn handle<'a>(
        &'a self,
        dispatch: &'a Dispatch<'a>,
        ctx: Context,
        next: Next<'a>,
    ) -> BoxFuture<'a, Result<Output>> {
        Box::pin(async move {
            let labels = [
                ("message", dispatch.name()),
                ("kind", dispatch.kind().as_str()),
            ];
            metrics::counter!("flext_dispatch_total", &labels).increment(1);
            let started = Instant::now();
            let result = next.run(ctx).await;
            metrics::histogram!("flext_dispatch_duration_seconds", &labels)
                .record(started.elapsed().as_secs_f64());
            if let Err(e) = &result {
                metrics::counter!(
                    "flext_dispatch_failures_total",
                    "message" => dispatch.name(),
                    "kind" => dispatch.kind().as_str(),
                    "code" => e.code().to_owned(),
                )
                .increment(1);
            }
            result
        })
    }
}
