//! One request: its context (correlation id, trace context, principal, deadline), the
//! message's JSON, the bus, and the answer with its status.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flext_runtime::route::RouteRegistration;
use flext_runtime::{Bus, Context, Error, MessageKind, Principal, codes};
use uuid::Uuid;

use crate::message::{message_json, message_text};
use crate::{
    CORRELATION_ID, Limits, NOT_FOUND, Problem, TIMEOUT, TOO_DEEP, TRACEPARENT, TRACESTATE,
};

/// What a request asks for: a declared route, or a message by name.
pub(crate) enum Target {
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
pub(crate) async fn serve(
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

#[cfg(test)]
mod tests {
    use super::{depth, trace_id};

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
