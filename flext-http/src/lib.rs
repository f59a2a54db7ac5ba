//! The HTTP front door of flext (`flext::http`, the `http` feature): commands and queries
//! served by [axum] from their attributes.
//!
//! A message names its route where it is defined, and [`router`] serves every route
//! linked into the program (collected like handlers; nothing is listed by hand):
//!
//! ```
//! use flext::prelude::*;
//!
//! #[command(output = u64, http = "POST /accounts/{account_id}/deposits")]
//! #[derive(Clone, serde::Serialize, serde::Deserialize)]
//! struct Deposit { account_id: String, cents: u64 }
//!
//! #[command_handler]
//! fn deposit(command: Deposit) -> Result<u64> {
//!     Ok(command.cents)
//! }
//!
//! let bus = Bus::builder().build().unwrap();
//! let app: flext::http::Router = flext::http::router(bus).unwrap();
//! # let _ = app;
//! ```
//!
//! `POST /accounts/a-1/deposits` with the body `{"cents": 250}` sends
//! `Deposit { account_id: "a-1", cents: 250 }`: a path parameter binds to the field of its
//! name (a name no field has is a compile error on the route), the rest comes from the
//! JSON body for a command and from the query string for a query. The output is the
//! response body, with 200; 201 and a `Location` for a command declared
//! `created = "/accounts/{account_id}"` (filled from its fields); 202 for one declared
//! `accepted`. An error is an RFC 9457 `application/problem+json` body whose status comes
//! from one table ([`status_of`]). The principal is the [`Principal`](flext_runtime::Principal) the application's
//! own authentication layer put in the request's extensions: a refusal is 401 without
//! one, 403 with one. Every response carries the request's
//! correlation id in `x-correlation-id` (taken from the request's header when it is a
//! UUID, else new).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod body;
mod idempotency;
mod message;
mod openapi;
#[cfg(feature = "otel")]
pub mod otel;
mod plan;
mod problem;
mod serve;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{Extensions, HeaderMap};
use axum::routing::{MethodFilter, on};
use std::sync::Arc;
use std::time::Duration;

use flext_runtime::idempotency::IdempotencyStore;
use flext_runtime::route::routes;
use flext_runtime::{Bus, Error, MessageKind};

pub use problem::{Problem, status_of};

use plan::plan;
use serve::{Target, serve};

/// The axum router [`router`] returns (serve it with `axum::serve`, of axum 0.8).
///
/// Only the router is re-exported: all of axum under `flext::http` would make rustc
/// print flext's own types with their full paths in every error.
pub use axum::Router;

/// The header carrying the correlation id, in and out.
pub const CORRELATION_ID: &str = "x-correlation-id";

/// An axum [`Router`] serving every route declared with `#[command(http = "..")]` or
/// `#[query(http = "..")]` in the program, dispatching to `bus`, with the defaults of
/// [`RouterBuilder`].
///
/// # Errors
///
/// As [`RouterBuilder::build`].
pub fn router(bus: Bus) -> Result<Router, Error> {
    RouterBuilder::new(bus).build()
}

/// How [`router`] serves: limits on what a request may carry, and whether messages are
/// also reachable by name.
#[derive(Clone)]
pub struct RouterBuilder {
    bus: Bus,
    limits: Limits,
    by_name: bool,
    idempotency: Option<Idempotency>,
    openapi: Option<(String, String)>,
}

impl std::fmt::Debug for RouterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterBuilder")
            .field("limits", &self.limits)
            .field("by_name", &self.by_name)
            .field(
                "idempotency",
                &self.idempotency.as_ref().map(|i| (i.in_flight, i.keep)),
            )
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug)]
struct Limits {
    body_bytes: usize,
    json_depth: usize,
    timeout: Option<std::time::Duration>,
}

/// Where and how long idempotency keys are kept.
#[derive(Clone)]
pub(crate) struct Idempotency {
    pub(crate) store: Arc<dyn IdempotencyStore>,
    pub(crate) in_flight: Duration,
    pub(crate) keep: Duration,
}

/// What every request of a router shares.
pub(crate) struct Config {
    pub(crate) limits: Limits,
    pub(crate) idempotency: Option<Idempotency>,
}

impl RouterBuilder {
    /// Every route in the program, on `bus`: bodies up to 1 MiB, JSON nested up to 32
    /// levels, no by-name entry.
    pub fn new(bus: Bus) -> RouterBuilder {
        RouterBuilder {
            bus,
            limits: Limits {
                body_bytes: 1024 * 1024,
                json_depth: 32,
                timeout: None,
            },
            by_name: false,
            idempotency: None,
            openapi: Some(("flext service".into(), "0.1.0".into())),
        }
    }

    /// The title and version of the OpenAPI 3.1 document served at `GET /openapi.json`
    /// (by default "flext service", "0.1.0"). The document is built from the routes the
    /// router serves: each operation's path, query and body schemas from its message
    /// (serde's attributes applied), its success from its output type, and every status
    /// of [`status_of`] with the problem's schema.
    pub fn openapi(
        mut self,
        title: impl Into<String>,
        version: impl Into<String>,
    ) -> RouterBuilder {
        self.openapi = Some((title.into(), version.into()));
        self
    }

    /// Serves no `/openapi.json`.
    pub fn without_openapi(mut self) -> RouterBuilder {
        self.openapi = None;
        self
    }

    /// Honours the `Idempotency-Key` header (IETF draft-ietf-httpapi-idempotency-key-header)
    /// on every command route, with keys kept in `store`, which must be the database the
    /// commands' events are appended to (a `SqliteDatabase` or a `PgDatabase`): a key,
    /// scoped by the principal and the route, is claimed before the command runs and its
    /// response stored in the transaction that appends the command's events
    /// ([`flext::idempotency`](flext_runtime::idempotency)). A repeat with the same key and
    /// request is answered with the stored response (and `idempotent-replayed: true`); the
    /// same key with another body is 422 (`flext.idempotency.key_reused`); a repeat while
    /// the first is running is 409 (`flext.idempotency.in_flight`); a failed command
    /// releases its key. A route declared with `idempotency_key` answers 400
    /// (`flext.input.idempotency_key_missing`) without one. Keys are kept 24 hours, and a
    /// request holds its key in flight for 60 seconds (or its [`timeout`](Self::timeout)),
    /// after which a repeat may take it over; see [`idempotency_times`](Self::idempotency_times).
    pub fn idempotency(mut self, store: impl IdempotencyStore) -> RouterBuilder {
        self.idempotency = Some(Idempotency {
            store: Arc::new(store),
            in_flight: Duration::from_secs(60),
            keep: Duration::from_secs(24 * 3600),
        });
        self
    }

    /// How long a request holds its idempotency key in flight before a repeat may take it
    /// over (fencing the first out: its append then fails with
    /// `flext.idempotency.claim_lost`), and how long a key and its response are kept.
    /// Without [`idempotency`](Self::idempotency) this does nothing.
    pub fn idempotency_times(mut self, in_flight: Duration, keep: Duration) -> RouterBuilder {
        if let Some(i) = &mut self.idempotency {
            i.in_flight = in_flight;
            i.keep = keep;
        }
        self
    }

    /// The largest body a route reads, in bytes; a larger one is answered 413
    /// (`flext.input.too_large`) without being read further.
    pub fn body_limit(mut self, bytes: usize) -> RouterBuilder {
        self.limits.body_bytes = bytes;
        self
    }

    /// How deep a body's JSON may nest (arrays and objects); deeper is 400
    /// (`flext.input.too_deep`) before it is decoded.
    pub fn json_depth(mut self, levels: usize) -> RouterBuilder {
        self.limits.json_depth = levels;
        self
    }

    /// A deadline for each request: the context's deadline (`Context::remaining`, which
    /// the `Timeout` middleware and the handler see), and past it the request is answered
    /// 504 (`flext.http.timeout`) and its handler's future dropped. None by default.
    pub fn timeout(mut self, timeout: std::time::Duration) -> RouterBuilder {
        self.limits.timeout = Some(timeout);
        self
    }

    /// Also serve every command and query by its name, declared route or not:
    /// `POST /commands/{name}` and `POST /queries/{name}` with the message's JSON as the
    /// body (the `Bus::send_json` path). Off by default: it exposes every message.
    pub fn by_name(mut self, enabled: bool) -> RouterBuilder {
        self.by_name = enabled;
        self
    }

    /// The router.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Internal`](flext_runtime::ErrorKind::Internal),
    /// `flext.http.route_conflict`, when two messages declare one method and path, naming
    /// both types.
    pub fn build(mut self) -> Result<Router, Error> {
        let limits = self.limits;
        if let (Some(i), Some(t)) = (&mut self.idempotency, limits.timeout) {
            i.in_flight = i.in_flight.max(t);
        }
        let config = Arc::new(Config {
            limits,
            idempotency: self.idempotency.take(),
        });
        let all: Vec<_> = routes().collect();
        let by_path = plan(all.clone())?;
        let mut app = Router::new();
        for (path, list) in by_path {
            let mut method_router: Option<axum::routing::MethodRouter<Bus>> = None;
            for route in list {
                let filter = method_filter(route.method);
                let config = config.clone();
                let handler =
                    move |State(bus): State<Bus>,
                          params: Option<Path<Vec<(String, String)>>>,
                          RawQuery(query): RawQuery,
                          headers: HeaderMap,
                          extensions: Extensions,
                          body: Result<Bytes, BytesRejection>| {
                        let config = config.clone();
                        async move {
                            let params = params.map(|Path(p)| p).unwrap_or_default();
                            let target = Target::Route {
                                route,
                                params,
                                query,
                            };
                            #[cfg(feature = "otel")]
                            let span = otel::request_span(&headers, route.method, route.path);
                            let served = serve(&bus, target, &headers, &extensions, body, &config);
                            #[cfg(feature = "otel")]
                            let served = tracing::Instrument::instrument(served, span);
                            served.await
                        }
                    };
                method_router = Some(match method_router {
                    None => on(filter, handler),
                    Some(r) => r.on(filter, handler),
                });
            }
            if let Some(r) = method_router {
                app = app.route(path, r);
            }
        }
        if self.by_name {
            for (prefix, kind) in [
                ("/commands/{name}", MessageKind::Command),
                ("/queries/{name}", MessageKind::Query),
            ] {
                let config = config.clone();
                let handler =
                    move |State(bus): State<Bus>,
                          Path(name): Path<String>,
                          headers: HeaderMap,
                          extensions: Extensions,
                          body: Result<Bytes, BytesRejection>| {
                        let config = config.clone();
                        async move {
                            serve(
                                &bus,
                                Target::ByName { name, kind },
                                &headers,
                                &extensions,
                                body,
                                &config,
                            )
                            .await
                        }
                    };
                app = app.route(prefix, axum::routing::post(handler));
            }
        }
        if let Some((title, version)) = &self.openapi {
            let document: Arc<str> = openapi::document(&all, title, version, limits.body_bytes)
                .to_string()
                .into();
            app = app.route(
                OPENAPI_PATH,
                axum::routing::get(move || {
                    let document = document.clone();
                    async move {
                        (
                            [(axum::http::header::CONTENT_TYPE, "application/json")],
                            document.to_string(),
                        )
                    }
                }),
            );
        }
        Ok(app
            .fallback(no_route)
            .layer(DefaultBodyLimit::max(limits.body_bytes))
            .with_state(self.bus))
    }
}

/// The code of two messages declaring one method and path.
pub const ROUTE_CONFLICT: &str = "flext.http.route_conflict";
/// The code of a query that answered nothing: 404.
pub const NOT_FOUND: &str = "flext.http.not_found";
/// The code of a body that is not a JSON object.
pub const NOT_AN_OBJECT: &str = "flext.input.not_an_object";
/// The code of a request past its deadline: 504.
pub const TIMEOUT: &str = "flext.http.timeout";
/// The code of a body nested deeper than the limit.
pub const TOO_DEEP: &str = "flext.input.too_deep";
/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";
/// The code of a path no route serves: 404.
pub const NO_ROUTE: &str = "flext.http.no_route";

/// A path no route serves: 404 as a problem, like every other error.
async fn no_route(uri: axum::http::Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    Problem::from_error(
        &Error::not_found(
            NO_ROUTE,
            format!("no route serves {}", flext_runtime::input::echo(uri.path())),
        ),
        uuid::Uuid::new_v4(),
        false,
    )
    .into_response()
}

/// The header carrying a client's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The header on a response replayed for a repeated idempotency key.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
/// The W3C trace context headers.
pub const TRACEPARENT: &str = "traceparent";
/// See [`TRACEPARENT`].
pub const TRACESTATE: &str = "tracestate";

fn method_filter(method: &str) -> MethodFilter {
    match method {
        "GET" => MethodFilter::GET,
        "PUT" => MethodFilter::PUT,
        "PATCH" => MethodFilter::PATCH,
        "DELETE" => MethodFilter::DELETE,
        _ => MethodFilter::POST,
    }
}
