//! [`Metrics`]: counters and a latency histogram per message.

use std::any::Any;

use super::{Dispatch, Interceptor};
use crate::context::Context;
use crate::error::Error;

/// Reports each dispatch through the [`metrics`] facade, labelled with `message` and
/// `kind`:
///
/// - `flext_dispatch_total`: counter of dispatches;
/// - `flext_dispatch_failures_total`: counter of failed dispatches, also labelled with
///   the error `code`;
/// - `flext_dispatch_duration_seconds`: histogram of the time the rest of the chain and
///   the handler took, in seconds.
///
/// Install any `metrics` recorder (Prometheus exporter, StatsD, ...) to collect them,
/// before the first dispatch: the handles of a message are registered once per bus, on
/// its first dispatch, with the recorder current then, and kept (no key is built per
/// call). An interceptor: it runs before and after the handler, with no future of its
/// own; the bus reads the clock once per dispatch for it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Metrics;

/// The metric handles of one message, registered on its first dispatch.
struct Handles {
    total: metrics::Counter,
    duration: metrics::Histogram,
}

impl Handles {
    fn register(dispatch: &Dispatch<'_>) -> Self {
        let labels = [
            ("message", dispatch.name()),
            ("kind", dispatch.kind().as_str()),
        ];
        Handles {
            total: metrics::counter!("flext_dispatch_total", &labels),
            duration: metrics::histogram!("flext_dispatch_duration_seconds", &labels),
        }
    }
}

impl Interceptor for Metrics {
    fn after(
        &self,
        dispatch: &Dispatch<'_>,
        _: &Context,
        outcome: std::result::Result<&dyn Any, &Error>,
    ) {
        let made;
        let handles = match dispatch.memo(|| Handles::register(dispatch)) {
            Some(handles) => handles,
            None => {
                made = Handles::register(dispatch);
                &made
            }
        };
        handles.total.increment(1);
        if let Some(elapsed) = dispatch.elapsed() {
            handles.duration.record(elapsed.as_secs_f64());
        }
        if let Err(e) = outcome {
            metrics::counter!(
                "flext_dispatch_failures_total",
                "message" => dispatch.name(),
                "kind" => dispatch.kind().as_str(),
                "code" => e.code().to_owned(),
            )
            .increment(1);
        }
    }

    fn timed(&self) -> bool {
        true
    }
}
