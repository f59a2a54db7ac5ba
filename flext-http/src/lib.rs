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
//! from one table ([`status_of`]). The principal is the [`Principal`] the application's
//! own authentication layer put in the request's extensions: a refusal is 401 without
//! one, 403 with one. Every response carries the request's
//! correlation id in `x-correlation-id` (taken from the request's header when it is a
//! UUID, else new).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod problem;

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use flext_runtime::route::{RouteRegistration, routes};
use flext_runtime::{Bus, Context, Error, MessageKind, Principal, codes};
use uuid::Uuid;

pub use problem::{Problem, status_of};

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
#[derive(Clone, Debug)]
pub struct RouterBuilder {
    bus: Bus,
    limits: Limits,
    by_name: bool,
}

#[derive(Clone, Copy, Debug)]
struct Limits {
    body_bytes: usize,
    json_depth: usize,
    timeout: Option<std::time::Duration>,
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
        }
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
    pub fn build(self) -> Result<Router, Error> {
        let limits = self.limits;
        let by_path = plan(routes().collect())?;
        let mut app = Router::new();
        for (path, list) in by_path {
            let mut method_router: Option<axum::routing::MethodRouter<Bus>> = None;
            for route in list {
                let filter = method_filter(route.method);
                let handler =
                    move |State(bus): State<Bus>,
                          params: Option<Path<Vec<(String, String)>>>,
                          RawQuery(query): RawQuery,
                          headers: HeaderMap,
                          extensions: Extensions,
                          body: Result<Bytes, BytesRejection>| async move {
                        let params = params.map(|Path(p)| p).unwrap_or_default();
                        let target = Target::Route {
                            route,
                            params,
                            query,
                        };
                        serve(&bus, target, &headers, &extensions, body, limits).await
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
                let handler =
                    move |State(bus): State<Bus>,
                          Path(name): Path<String>,
                          headers: HeaderMap,
                          extensions: Extensions,
                          body: Result<Bytes, BytesRejection>| async move {
                        serve(
                            &bus,
                            Target::ByName { name, kind },
                            &headers,
                            &extensions,
                            body,
                            limits,
                        )
                        .await
                    };
                app = app.route(prefix, axum::routing::post(handler));
            }
        }
        Ok(app
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

/// The routes grouped by path, in a stable order; an error for two on one method and
/// path, or on two paths axum cannot tell apart (`/a/{x}` and `/a/{y}`), naming both.
fn plan(
    mut all: Vec<&'static RouteRegistration>,
) -> Result<Vec<(&'static str, Vec<&'static RouteRegistration>)>, Error> {
    // `/accounts/{account}` and `/accounts/{id}` are one path to the router.
    let shape = |path: &str| {
        path.split('/')
            .map(|s| if s.starts_with('{') { "{}" } else { s })
            .collect::<Vec<_>>()
            .join("/")
    };
    all.sort_by_key(|r| (shape(r.path), r.path, r.method));
    let mut seen: HashMap<(&str, String), &RouteRegistration> = HashMap::new();
    let mut paths: HashMap<String, &RouteRegistration> = HashMap::new();
    let mut by_path: Vec<(&'static str, Vec<&'static RouteRegistration>)> = Vec::new();
    for route in all {
        let conflict = |first: &RouteRegistration, what: &str| {
            Error::internal(
                ROUTE_CONFLICT,
                format!(
                    "{what}: `{} {}` of `{}` and `{} {}` of `{}`; give one of them another path",
                    first.method,
                    first.path,
                    first.type_path,
                    route.method,
                    route.path,
                    route.type_path
                ),
            )
        };
        if let Some(first) = seen.insert((route.method, shape(route.path)), route) {
            return Err(conflict(
                first,
                "two messages are served on one method and path",
            ));
        }
        match paths.get(&shape(route.path)) {
            Some(first) if first.path != route.path => {
                return Err(conflict(
                    first,
                    "two paths differ only in their parameters' names",
                ));
            }
            _ => {
                paths.insert(shape(route.path), route);
            }
        }
        match by_path.last_mut() {
            Some((path, list)) if *path == route.path => list.push(route),
            _ => by_path.push((route.path, vec![route])),
        }
    }
    Ok(by_path)
}

/// What a request asks for: a declared route, or a message by name.
enum Target {
    Route {
        route: &'static RouteRegistration,
        params: Vec<(String, String)>,
        query: Option<String>,
    },
    ByName {
        name: String,
        kind: MessageKind,
    },
}

/// The request's context: the correlation id from `x-correlation-id` when it is a UUID,
/// else from the W3C `traceparent`'s trace id, else new; `traceparent` and `tracestate`
/// kept as the context's metadata, for the handler's spans and what it publishes.
fn context_of(headers: &HeaderMap) -> Context {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let traceparent = header(TRACEPARENT).filter(|t| trace_id(t).is_some());
    let correlation_id = header(CORRELATION_ID)
        .and_then(|v| Uuid::parse_str(v).ok())
        .or_else(|| traceparent.and_then(trace_id))
        .unwrap_or_else(Uuid::new_v4);
    let mut ctx = Context::new().with_correlation_id(correlation_id);
    if let Some(t) = traceparent {
        ctx = ctx.with_metadata(TRACEPARENT, t);
        if let Some(state) = header(TRACESTATE).filter(|s| s.len() <= 512) {
            ctx = ctx.with_metadata(TRACESTATE, state);
        }
    }
    ctx
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), as a UUID;
/// `None` for a malformed one or the all-zero id the spec forbids.
fn trace_id(traceparent: &str) -> Option<Uuid> {
    let mut parts = traceparent.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if parts.next().is_some()
        || !hex(version, 2)
        || version == "ff"
        || !hex(trace, 32)
        || !hex(parent, 16)
        || !hex(flags, 2)
    {
        return None;
    }
    let id = u128::from_str_radix(trace, 16).ok()?;
    (id != 0).then(|| Uuid::from_u128(id))
}

/// The message's JSON from the path, the query string and the body, sent on the bus;
/// its output or its problem.
async fn serve(
    bus: &Bus,
    target: Target,
    headers: &HeaderMap,
    extensions: &Extensions,
    body: Result<Bytes, BytesRejection>,
    limits: Limits,
) -> Response {
    // The principal the application's authentication layer put on the request.
    let principal = extensions.get::<Principal>().cloned();
    let authenticated = principal.is_some();
    let mut ctx = context_of(headers);
    if let Some(p) = principal {
        ctx = ctx.with_principal(p);
    }
    let correlation_id = ctx.correlation_id();
    let (kind, name, declared) = match &target {
        Target::Route { route, .. } => (route.kind, route.message.to_owned(), Some(*route)),
        Target::ByName { name, kind } => (*kind, name.clone(), None),
    };
    let json = match body {
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(Error::validation(
                codes::INPUT_TOO_LARGE,
                format!(
                    "the body is over the route's limit of {} bytes",
                    limits.body_bytes
                ),
            ))
        }
        Err(rejection) => Err(Error::validation(
            codes::INPUT_MALFORMED_JSON,
            format!("the body could not be read: {}", rejection.body_text()),
        )),
        Ok(body) => match depth(&body) {
            d if d > limits.json_depth => Err(Error::validation(
                TOO_DEEP,
                format!(
                    "the body nests {d} levels deep, over the limit of {}",
                    limits.json_depth
                ),
            )),
            _ => match target {
                Target::Route {
                    route,
                    params,
                    query,
                } if route.created.is_some() => {
                    // The `Location` is filled from the message's fields: decoded once here.
                    message_json(route, params, query.as_deref(), &body)
                        .map(|json| (json.to_string(), Some(json)))
                }
                Target::Route {
                    route,
                    params,
                    query,
                } => message_text(route, params, query.as_deref(), &body).map(|text| (text, None)),
                // By name: the body is the message, decoded by the bus.
                Target::ByName { .. } => Ok((String::from_utf8_lossy(&body).into_owned(), None)),
            },
        },
    };
    let (answer, message) = match json {
        Ok((text, message)) => {
            let ctx = match limits.timeout {
                Some(t) => ctx.clone().with_timeout(t),
                None => ctx.clone(),
            };
            let dispatch = async {
                match kind {
                    MessageKind::Query => bus.query_json(&name, &text, &ctx).await,
                    _ => bus.send_json(&name, &text, &ctx).await,
                }
            };
            let answer = match limits.timeout {
                Some(t) => tokio::time::timeout(t, dispatch).await.unwrap_or_else(|_| {
                    Err(Error::timeout(
                        TIMEOUT,
                        format!(
                            "`{}` did not answer within {} ms",
                            flext_runtime::input::echo(&name),
                            t.as_millis()
                        ),
                    ))
                }),
                None => dispatch.await,
            };
            (answer, message)
        }
        Err(e) => (Err(e), None),
    };
    // 201 with the new resource's `Location`, or 202, as the route declares.
    let (status, location) = match (declared, &message) {
        (
            Some(RouteRegistration {
                created: Some(template),
                ..
            }),
            Some(message),
        ) => (StatusCode::CREATED, Some(fill(template, message, declared))),
        (Some(RouteRegistration { accepted: true, .. }), _) => (StatusCode::ACCEPTED, None),
        _ => (StatusCode::OK, None),
    };
    let mut response = match answer {
        Ok(serde_json::Value::Null) if kind == MessageKind::Query => Problem::from_error(
            &Error::not_found(
                NOT_FOUND,
                format!("`{}` found nothing", flext_runtime::input::echo(&name)),
            ),
            correlation_id,
            authenticated,
        )
        .into_response(),
        Ok(output) => {
            let mut response = (
                status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                output.to_string(),
            )
                .into_response();
            if let Some(value) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Err(e) => Problem::from_error(&e, correlation_id, authenticated).into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(&correlation_id.to_string()) {
        response.headers_mut().insert(CORRELATION_ID, value);
    }
    response
}

/// `template` with each `{field}` segment replaced by that field of `message`, a string
/// as it is, anything else as its JSON; percent-encoded as a path segment.
fn fill(template: &str, message: &serde_json::Value, route: Option<&RouteRegistration>) -> String {
    template
        .split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(field) => {
                    let key = route.map_or(field, |r| r.key(field));
                    let value = match message.get(key) {
                        Some(serde_json::Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                        None => String::new(),
                    };
                    encode_segment(&value)
                }
                None => segment.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// A path segment with everything but unreserved characters (RFC 3986) percent-encoded.
fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How deep `body`'s arrays and objects nest, outside strings, without decoding it.
fn depth(body: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The message's JSON text without decoding the body: the path's and the query string's
/// fields written in front of the body's own, so that the bus decodes the message once.
/// A body naming a path field as well is refused by the message's decoder (a duplicate
/// field), not silently overridden.
fn message_text(
    route: &RouteRegistration,
    params: Vec<(String, String)>,
    query: Option<&str>,
    body: &[u8],
) -> Result<String, Error> {
    let mut fields = Vec::new();
    for (name, text) in params.into_iter().chain(query_fields(route, query)?) {
        let Some(value) = (route.field)(&name, &text) else {
            return Err(unknown_field(route, &name));
        };
        let key = serde_json::Value::String(route.key(&name).to_owned());
        fields.push(format!("{key}:{}", value?));
    }
    let body = std::str::from_utf8(body).map_err(|e| {
        Error::validation(
            codes::INPUT_MALFORMED_JSON,
            format!("the body is not UTF-8: {e}"),
        )
    })?;
    let body = body.trim_start();
    if route.kind == MessageKind::Query || body.is_empty() {
        return Ok(format!("{{{}}}", fields.join(",")));
    }
    let Some(rest) = body.strip_prefix('{') else {
        return Err(not_an_object(route));
    };
    if fields.is_empty() {
        return Ok(body.to_owned());
    }
    let separator = if rest.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    Ok(format!("{{{}{separator}{rest}", fields.join(",")))
}

/// The query string's pairs, for a query.
fn query_fields(
    route: &RouteRegistration,
    query: Option<&str>,
) -> Result<Vec<(String, String)>, Error> {
    match query {
        Some(q) if route.kind == MessageKind::Query => serde_urlencoded::from_str(q).map_err(|e| {
            Error::validation(
                codes::INPUT_MALFORMED_JSON,
                format!("the query string does not parse: {e}"),
            )
        }),
        _ => Ok(Vec::new()),
    }
}

fn unknown_field(route: &RouteRegistration, name: &str) -> Error {
    Error::validation(
        codes::INPUT_UNKNOWN_FIELD,
        format!(
            "`{}` is no field of `{}`",
            flext_runtime::input::echo(name),
            route.message
        ),
    )
}

fn not_an_object(route: &RouteRegistration) -> Error {
    Error::validation(
        NOT_AN_OBJECT,
        format!(
            "the body of `{} {}` is a JSON object of the command's fields",
            route.method, route.path
        ),
    )
}

fn message_json(
    route: &RouteRegistration,
    params: Vec<(String, String)>,
    query: Option<&str>,
    body: &[u8],
) -> Result<serde_json::Value, Error> {
    let mut object = if route.kind == MessageKind::Query || body.iter().all(u8::is_ascii_whitespace)
    {
        serde_json::Map::new()
    } else {
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(_) => return Err(not_an_object(route)),
            Err(e) => {
                return Err(Error::validation(
                    codes::INPUT_MALFORMED_JSON,
                    format!("the body is not JSON: {e}"),
                ));
            }
        }
    };
    for (name, text) in params.into_iter().chain(query_fields(route, query)?) {
        let Some(value) = (route.field)(&name, &text) else {
            return Err(unknown_field(route, &name));
        };
        object.insert(route.key(&name).to_owned(), value?);
    }
    Ok(serde_json::Value::Object(object))
}

#[cfg(test)]
mod tests {
    use super::{depth, plan, trace_id};
    use flext_runtime::MessageKind;
    use flext_runtime::route::RouteRegistration;

    fn route(
        method: &'static str,
        path: &'static str,
        type_path: &'static str,
    ) -> &'static RouteRegistration {
        Box::leak(Box::new(RouteRegistration {
            method,
            path,
            message: "M",
            kind: MessageKind::Command,
            type_path,
            field: |_, _| None,
            keys: &[],
            created: None,
            accepted: false,
        }))
    }

    #[test]
    fn two_messages_on_one_route_or_one_shape_are_an_error_naming_both() {
        let ok = plan(vec![
            route("POST", "/a/{x}", "m::A"),
            route("GET", "/a/{x}", "m::B"),
            route("POST", "/b", "m::C"),
        ]);
        assert_eq!(ok.map(|p| p.len()).ok(), Some(2));
        let same = plan(vec![
            route("POST", "/a/{x}", "m::A"),
            route("POST", "/a/{x}", "m::B"),
        ])
        .unwrap_err();
        assert_eq!(same.code(), super::ROUTE_CONFLICT);
        assert!(
            same.message().contains("m::A") && same.message().contains("m::B"),
            "{}",
            same.message()
        );
        let shape = plan(vec![
            route("POST", "/a/{x}", "m::A"),
            route("GET", "/a/{y}", "m::B"),
        ])
        .unwrap_err();
        assert!(
            shape.message().contains("parameters' names"),
            "{}",
            shape.message()
        );
    }

    #[test]
    fn depth_counts_nesting_outside_strings() {
        assert_eq!(depth(br#"{"a": 1}"#), 1);
        assert_eq!(depth(br#"{"a": [[1], {"b": []}]}"#), 4);
        assert_eq!(depth(br#"{"a": "[[[[\"]]]]"}"#), 1);
        assert_eq!(depth(b""), 0);
    }

    #[test]
    fn a_trace_id_is_read_from_a_well_formed_traceparent_only() {
        let id = trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(
            id.map(|u| u.to_string()).as_deref(),
            Some("4bf92f35-77b3-4da6-a3ce-929d0e0e4736")
        );
        assert_eq!(
            trace_id("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            trace_id("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id("00-4bf92f35-00f067aa0ba902b7-01"), None);
        assert_eq!(
            trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"),
            None
        );
    }
}
