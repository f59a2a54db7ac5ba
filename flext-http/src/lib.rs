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
//! let app: flext::http::axum::Router = flext::http::router(bus).unwrap();
//! # let _ = app;
//! ```
//!
//! `POST /accounts/a-1/deposits` with the body `{"cents": 250}` sends
//! `Deposit { account_id: "a-1", cents: 250 }`: a path parameter binds to the field of its
//! name (a name no field has is a compile error on the route), the rest comes from the
//! JSON body for a command and from the query string for a query. The output is the
//! response body; an error is an RFC 9457 `application/problem+json` body whose status
//! comes from one table ([`status_of`]). Every response carries the request's
//! correlation id in `x-correlation-id` (taken from the request's header when it is a
//! UUID, else new).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod problem;

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use flext_runtime::route::{RouteRegistration, routes};
use flext_runtime::{Bus, Context, Error, MessageKind, codes};
use uuid::Uuid;

pub use problem::{Problem, status_of};

/// The axum this crate serves with, so that an application names the same version.
pub use axum;

/// The header carrying the correlation id, in and out.
pub const CORRELATION_ID: &str = "x-correlation-id";

/// An axum [`Router`] serving every route declared with `#[command(http = "..")]` or
/// `#[query(http = "..")]` in the program, dispatching to `bus`.
///
/// # Errors
///
/// [`ErrorKind::Internal`](flext_runtime::ErrorKind::Internal), `flext.http.route_conflict`,
/// when two messages declare one method and path, naming both types.
pub fn router(bus: Bus) -> Result<Router, Error> {
    let mut seen: HashMap<(&str, &str), &RouteRegistration> = HashMap::new();
    let mut by_path: Vec<(&str, Vec<&'static RouteRegistration>)> = Vec::new();
    let mut all: Vec<&'static RouteRegistration> = routes().collect();
    all.sort_by_key(|r| (r.path, r.method));
    for route in all {
        if let Some(first) = seen.insert((route.method, route.path), route) {
            return Err(Error::internal(
                ROUTE_CONFLICT,
                format!(
                    "`{} {}` is declared by both `{}` and `{}`: give one of them another path",
                    route.method, route.path, first.type_path, route.type_path
                ),
            ));
        }
        match by_path.last_mut() {
            Some((path, list)) if *path == route.path => list.push(route),
            _ => by_path.push((route.path, vec![route])),
        }
    }
    let mut app = Router::new();
    for (path, list) in by_path {
        let mut method_router: Option<axum::routing::MethodRouter<Bus>> = None;
        for route in list {
            let filter = method_filter(route.method);
            let handler = move |State(bus): State<Bus>,
                                params: Option<Path<Vec<(String, String)>>>,
                                RawQuery(query): RawQuery,
                                headers: HeaderMap,
                                body: Bytes| async move {
                let params = params.map(|Path(p)| p).unwrap_or_default();
                serve(&bus, route, params, query, &headers, body).await
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
    Ok(app.with_state(bus))
}

/// The code of two messages declaring one method and path.
pub const ROUTE_CONFLICT: &str = "flext.http.route_conflict";
/// The code of a query that answered nothing: 404.
pub const NOT_FOUND: &str = "flext.http.not_found";
/// The code of a body that is not a JSON object.
pub const NOT_AN_OBJECT: &str = "flext.input.not_an_object";

fn method_filter(method: &str) -> MethodFilter {
    match method {
        "GET" => MethodFilter::GET,
        "PUT" => MethodFilter::PUT,
        "PATCH" => MethodFilter::PATCH,
        "DELETE" => MethodFilter::DELETE,
        _ => MethodFilter::POST,
    }
}

/// The message's JSON from the path, the query string and the body, sent on the bus.
async fn serve(
    bus: &Bus,
    route: &'static RouteRegistration,
    params: Vec<(String, String)>,
    query: Option<String>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let correlation_id = headers
        .get(CORRELATION_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v).ok())
        .unwrap_or_else(Uuid::new_v4);
    let ctx = Context::new().with_correlation_id(correlation_id);
    let answer = match message_json(route, params, query.as_deref(), &body) {
        Ok(json) => {
            let text = json.to_string();
            match route.kind {
                MessageKind::Query => bus.query_json(route.message, &text, &ctx).await,
                _ => bus.send_json(route.message, &text, &ctx).await,
            }
        }
        Err(e) => Err(e),
    };
    let mut response = match answer {
        Ok(serde_json::Value::Null) if route.kind == MessageKind::Query => Problem::from_error(
            &Error::not_found(NOT_FOUND, format!("`{}` found nothing", route.message)),
            correlation_id,
            false,
        )
        .into_response(),
        Ok(output) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            output.to_string(),
        )
            .into_response(),
        Err(e) => Problem::from_error(&e, correlation_id, false).into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(&correlation_id.to_string()) {
        response.headers_mut().insert(CORRELATION_ID, value);
    }
    response
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
            Ok(_) => {
                return Err(Error::validation(
                    NOT_AN_OBJECT,
                    format!(
                        "the body of `{} {}` is a JSON object of the command's fields",
                        route.method, route.path
                    ),
                ));
            }
            Err(e) => {
                return Err(Error::validation(
                    codes::INPUT_MALFORMED_JSON,
                    format!("the body is not JSON: {e}"),
                ));
            }
        }
    };
    let from_query: Vec<(String, String)> = match query {
        Some(q) if route.kind == MessageKind::Query => {
            serde_urlencoded::from_str(q).map_err(|e| {
                Error::validation(
                    codes::INPUT_MALFORMED_JSON,
                    format!("the query string does not parse: {e}"),
                )
            })?
        }
        _ => Vec::new(),
    };
    for (name, text) in params.into_iter().chain(from_query) {
        match (route.field)(&name, &text) {
            Some(value) => {
                object.insert(name, value?);
            }
            None => {
                return Err(Error::validation(
                    codes::INPUT_UNKNOWN_FIELD,
                    format!(
                        "`{}` is no field of `{}`",
                        flext_runtime::input::echo(&name),
                        route.message
                    ),
                ));
            }
        }
    }
    Ok(serde_json::Value::Object(object))
}
