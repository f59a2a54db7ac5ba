//! Building a bus: state, middleware, statistics, the JSON limit, and the checks that
//! every registered handler's message has one handler and its state.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::json::{JsonEntry, MessageRegistration};
use super::{Bus, DEFAULT_MAX_JSON_BYTES, Inner, Slot};
use crate::error::{Error, ErrorKind, Result};
use crate::message::MessageKind;
use crate::middleware::{Installed, Interceptor, Layer, Middleware};
use crate::registry::{HandlerRegistration, HandlerStats};
use crate::state::StateMap;

/// Which registered handlers a bus takes; see [`BusBuilder::filter`].
type Filter = dyn Fn(&HandlerRegistration) -> bool + Send + Sync;

/// Configures and builds a [`Bus`].
pub struct BusBuilder {
    filter: Option<Box<Filter>>,
    state: StateMap,
    middleware: Vec<Arc<dyn Middleware>>,
    interceptors: Vec<Arc<dyn Interceptor>>,
    stats: bool,
    max_json_bytes: usize,
    sources: Vec<Arc<dyn crate::registry::ReportSource>>,
}

impl Default for BusBuilder {
    fn default() -> Self {
        BusBuilder {
            filter: None,
            state: StateMap::default(),
            middleware: Vec::new(),
            interceptors: Vec::new(),
            stats: true,
            max_json_bytes: DEFAULT_MAX_JSON_BYTES,
            sources: Vec::new(),
        }
    }
}

impl BusBuilder {
    /// Registers a value handlers receive as `State<T>`. A later value of the same type
    /// replaces an earlier one.
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// Keeps only the linked handlers for which `keep` is true, for example those of one
    /// module (`|h| h.module.starts_with("billing")`): for several buses in one program,
    /// or a test that builds a bus for part of it. By default every linked handler is
    /// kept.
    pub fn filter(
        mut self,
        keep: impl Fn(&HandlerRegistration) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.filter = Some(Box::new(keep));
        self
    }

    /// Registers shared state the caller keeps a handle to, as [`state`](Self::state)
    /// does for an owned value: handlers see the same `Arc`.
    pub fn shared_state<T: Send + Sync + 'static>(mut self, value: Arc<T>) -> Self {
        self.state.insert_arc(value);
        self
    }

    /// Adds a middleware. The first added is the outermost: it sees the dispatch first
    /// and the result last. The built-in [`Tracing`](crate::middleware::Tracing),
    /// [`Metrics`](crate::middleware::Metrics), [`Authorize`](crate::middleware::Authorize)
    /// and [`Validation`](crate::middleware::Validation) are [`Interceptor`]s: they are
    /// added as by [`interceptor`](Self::interceptor), and run outside every wrapping
    /// middleware, in the order added among themselves.
    pub fn middleware(mut self, layer: impl Layer) -> Self {
        match layer.into_layer() {
            Installed::Wrap(middleware) => self.middleware.push(middleware),
            Installed::Intercept(interceptor) => self.interceptors.push(interceptor),
        }
        self
    }

    /// Adds an [`Interceptor`]: it runs before and after every dispatch, with no future
    /// of its own. Interceptors run outside the wrapping middleware: every `before` in
    /// the order added, then the middleware and the handler, then every `after` in
    /// reverse order.
    pub fn interceptor(mut self, interceptor: impl Interceptor) -> Self {
        self.interceptors.push(Arc::new(interceptor));
        self
    }

    /// Adds a component to [`Bus::report`](crate::Bus::report) beside the handlers: a
    /// `SqliteProjectionRunner` (its checkpoint, how many events and milliseconds it is behind,
    /// where it stopped) or an `SqliteOutboxRelay` (what it has not delivered).
    pub fn report(mut self, source: impl crate::registry::ReportSource) -> Self {
        self.sources.push(Arc::new(source));
        self
    }

    /// Whether to keep per-handler counts, failures, last error and latency percentiles
    /// for [`Bus::report`]. On by default. Each dispatch costs one relaxed atomic add;
    /// one in 16 is timed (two clock reads and an uncontended lock), and a failure takes
    /// the lock to keep its code and message. The latency histogram grows, allocating,
    /// when a timed dispatch is slower than any before it, so a handler's first slow
    /// dispatches allocate a few times and later ones do not.
    pub fn record_stats(mut self, on: bool) -> Self {
        self.stats = on;
        self
    }

    /// The largest JSON payload [`Bus::send_json`], [`Bus::query_json`] and
    /// [`Bus::publish_json`] accept, in bytes. Default [`DEFAULT_MAX_JSON_BYTES`].
    pub fn max_json_bytes(mut self, bytes: usize) -> Self {
        self.max_json_bytes = bytes;
        self
    }

    /// Collects every linked handler and builds the bus.
    ///
    /// # Errors
    ///
    /// Every problem found: one problem as it is; several as one
    /// `flext.bus.build_failed` error that lists each, with its own kind, code and
    /// location, in [`Error::related`] (its kind is theirs when they share one, otherwise
    /// [`ErrorKind::Internal`]). The problems:
    /// - [`ErrorKind::Conflict`], `flext.bus.duplicate_handler`: a command or query has
    ///   two handlers; the message names both with their source locations.
    /// - [`ErrorKind::Conflict`], `flext.bus.duplicate_message_name`: two message types
    ///   share a name, so JSON dispatch could not tell them apart.
    /// - [`ErrorKind::NotFound`], `flext.bus.missing_state`: a handler takes `State<T>`
    ///   and no value of `T` was registered with [`state`](Self::state); the message
    ///   names the handler and its location.
    pub fn build(self) -> Result<Bus> {
        let mut registrations: Vec<&'static HandlerRegistration> =
            inventory::iter::<HandlerRegistration>
                .into_iter()
                .filter(|r| self.filter.as_ref().is_none_or(|keep| keep(r)))
                .collect();
        registrations.sort_by_key(|r| (r.file, r.line, r.handler));

        let mut problems: Vec<Error> = Vec::new();
        let mut handlers: FxHashMap<TypeId, Slot> = FxHashMap::default();
        let mut subscribers: FxHashMap<TypeId, Vec<Slot>> = FxHashMap::default();
        for (index, registration) in registrations.iter().enumerate() {
            let type_id = (registration.message_type)();
            let erased = match (registration.build)(&self.state) {
                Ok(erased) => erased,
                Err(e) => {
                    let message = format!("{} ({})", e.message(), registration.location());
                    problems.push(e.with_message(message));
                    continue;
                }
            };
            let slot = Slot {
                handler: erased.handler,
                index,
            };
            match erased.kind {
                MessageKind::Event => subscribers.entry(type_id).or_default().push(slot),
                kind => {
                    if let Some(first) = handlers.get(&type_id) {
                        let first = registrations[first.index];
                        problems.push(Error::conflict(
                            crate::codes::BUS_DUPLICATE_HANDLER,
                            format!(
                                "{} `{}` has two handlers, `{}` ({}) and `{}` ({}): a {} has exactly one handler, remove one",
                                kind.as_str(),
                                registration.message,
                                first.handler,
                                first.location(),
                                registration.handler,
                                registration.location(),
                                kind.as_str(),
                            ),
                        ));
                    } else {
                        handlers.insert(type_id, slot);
                    }
                }
            }
        }

        let mut by_name: HashMap<&'static str, JsonEntry> = HashMap::new();
        let mut modules: HashMap<&'static str, &'static str> = HashMap::new();
        for message in inventory::iter::<MessageRegistration> {
            if let Some(other) = modules.insert(message.name, message.module) {
                problems.push(Error::conflict(
                    crate::codes::BUS_DUPLICATE_MESSAGE_NAME,
                    format!(
                        "two message types are named `{}` (in `{other}` and `{}`): give one a `name = \"...\"`",
                        message.name, message.module
                    ),
                ));
            }
            by_name.insert(message.name, message.entry);
        }

        if let Some(error) = combine(problems) {
            return Err(error);
        }
        tracing::debug!(
            handlers = registrations.len(),
            state = ?crate::state::state_names(&self.state),
            "bus built"
        );
        let stats = self.stats.then(|| {
            registrations
                .iter()
                .map(|_| HandlerStats::default())
                .collect()
        });
        Ok(Bus {
            inner: Arc::new(Inner {
                handlers: super::TypeTable::new(handlers),
                subscribers: super::TypeTable::new(subscribers),
                by_name,
                middleware: self.middleware,
                clock: self.interceptors.iter().any(|i| i.timed()),
                memos: (0..registrations.len() * self.interceptors.len())
                    .map(|_| std::sync::OnceLock::new())
                    .collect(),
                interceptors: self.interceptors,
                registrations,
                stats,
                max_json_bytes: self.max_json_bytes,
                state: self.state,
                sources: self.sources,
            }),
        })
    }
}

/// One problem as it is; several as one error that lists each under
/// [`Error::related`], with its own kind and code. The combined error's kind is theirs
/// when they share one, otherwise [`ErrorKind::Internal`].
fn combine(mut problems: Vec<Error>) -> Option<Error> {
    match problems.len() {
        0 => None,
        1 => problems.pop(),
        n => {
            let first = problems[0].kind();
            let kind = if problems.iter().all(|p| p.kind() == first) {
                first
            } else {
                ErrorKind::Internal
            };
            Some(
                Error::new(
                    kind,
                    crate::codes::BUS_BUILD_FAILED,
                    format!("the bus cannot be built: {n} problems"),
                )
                .with_related(problems),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes;

    #[test]
    fn several_problems_are_listed_each_with_its_own_kind() {
        let err = combine(vec![
            Error::conflict(
                codes::BUS_DUPLICATE_HANDLER,
                "two handlers (a.rs:1, b.rs:2)",
            ),
            Error::not_found(codes::BUS_MISSING_STATE, "no state (c.rs:3)"),
        ])
        .unwrap();
        assert_eq!(err.code(), codes::BUS_BUILD_FAILED);
        assert_eq!(err.kind(), ErrorKind::Internal, "the kinds differ");
        let kinds: Vec<ErrorKind> = err.related().iter().map(Error::kind).collect();
        assert_eq!(kinds, [ErrorKind::Conflict, ErrorKind::NotFound]);
        assert_eq!(
            err.to_string(),
            "[flext.bus.build_failed] the bus cannot be built: 2 problems: \
             (conflict) [flext.bus.duplicate_handler] two handlers (a.rs:1, b.rs:2); \
             (not_found) [flext.bus.missing_state] no state (c.rs:3)"
        );
        let json = serde_json::to_value(&err).unwrap();
        assert_eq!(json["related"][1]["kind"], "not_found");
    }

    #[test]
    fn one_problem_is_returned_as_it_is() {
        let err = combine(vec![Error::not_found(codes::BUS_MISSING_STATE, "x")]).unwrap();
        assert_eq!(err.code(), codes::BUS_MISSING_STATE);
        assert!(err.related().is_empty());
        assert!(combine(Vec::new()).is_none());
    }
}
