//! One request: its context (correlation id, trace context, principal, deadline), the
//! message's JSON, the bus, and the answer with its status.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flext_runtime::route::RouteRegistration;
use flext_runtime::{Bus, Context, Error, MessageKind, Principal, codes};
use uuid::Uuid;

use crate::body::{integral_numbers, scan};
use crate::idempotency::{Keyed, keyed, replay, settle};
use crate::message::{message_json, message_text};
use crate::{
    CORRELATION_ID, Config, Limits, NOT_FOUND, Problem, TIMEOUT, TOO_DEEP, TRACEPARENT, TRACESTATE,
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
    config: &Config,
) -> Response {
    let limits = config.limits;
    // The principal the application's authentication layer put on the request.
    let principal = extensions.get::<Principal>().cloned();
    let authenticated = principal.is_some();
    let mut ctx = context_of(headers);
    // The request's own span: what the handler's events name as their parent.
    #[cfg(feature = "otel")]
    if let Some(traceparent) = crate::otel::traceparent_of(&tracing::Span::current()) {
        ctx = ctx.with_metadata(TRACEPARENT, traceparent);
    }
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
        Ok(body) => match scan(&body) {
            (d, _) if d > limits.json_depth => Err(Error::validation(
                TOO_DEEP,
                format!(
                    "the body nests {d} levels deep, over the limit of {}",
                    limits.json_depth
                ),
            )),
            (_, floats) => {
                // `116100.0` is an integer to JSON Schema (and to the OpenAPI document): written
                // as `116100` so that an integer field takes it. Rare: only then is the body copied.
                let body = match floats.then(|| integral_numbers(&body)).flatten() {
                    Some(text) => Bytes::from(text),
                    None => body,
                };
                match target {
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
                    } => message_text(route, params, query.as_deref(), &body)
                        .map(|text| (text, None)),
                    // By name: the body is the message, decoded by the bus.
                    Target::ByName { .. } => {
                        Ok((String::from_utf8_lossy(&body).into_owned(), None))
                    }
                }
            }
        },
    };
    let mut response = match json {
        Err(e) => Problem::from_error(&e, correlation_id, authenticated).into_response(),
        Ok((text, message)) => {
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
            match keyed(
                config,
                declared,
                headers,
                &ctx,
                &text,
                status,
                location.as_deref(),
            )
            .await
            {
                Err(e) => Problem::from_error(&e, correlation_id, authenticated).into_response(),
                Ok(Keyed::Replay(stored)) => replay(stored),
                Ok(Keyed::Run(claim)) => {
                    let ctx = match &claim {
                        Some(c) => ctx.clone().with_idempotency_claim(c.clone()),
                        None => ctx.clone(),
                    };
                    let answer = dispatch(bus, kind, &name, &text, &ctx, limits).await;
                    let response = answer_with(
                        answer,
                        kind,
                        &name,
                        status,
                        location,
                        correlation_id,
                        authenticated,
                    );
                    if let (Some(claim), Some(store)) =
                        (claim, config.idempotency.as_ref().map(|i| &i.store))
                    {
                        settle(store.as_ref(), &claim, &response).await;
                    }
                    response.into_response()
                }
            }
        }
    };
    if let Ok(value) = HeaderValue::from_str(&correlation_id.to_string()) {
        response.headers_mut().insert(CORRELATION_ID, value);
    }
    response
}

/// The bus's answer to the message, within the request's deadline.
async fn dispatch(
    bus: &Bus,
    kind: MessageKind,
    name: &str,
    text: &str,
    ctx: &Context,
    limits: Limits,
) -> Result<serde_json::Value, Error> {
    let ctx = match limits.timeout {
        Some(t) => ctx.clone().with_timeout(t),
        None => ctx.clone(),
    };
    let dispatch = async {
        match kind {
            MessageKind::Query => bus.query_json(name, text, &ctx).await,
            _ => bus.send_json(name, text, &ctx).await,
        }
    };
    match limits.timeout {
        Some(t) => tokio::time::timeout(t, dispatch).await.unwrap_or_else(|_| {
            Err(Error::timeout(
                TIMEOUT,
                format!(
                    "`{}` did not answer within {} ms",
                    flext_runtime::input::echo(name),
                    t.as_millis()
                ),
            ))
        }),
        None => dispatch.await,
    }
}

/// A response as the router sends it, before it becomes axum's: kept whole so that an
/// idempotency key's store can keep it.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Vec<u8>,
    pub(crate) problem: bool,
    pub(crate) location: Option<String>,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let content_type = if self.problem {
            "application/problem+json"
        } else {
            "application/json"
        };
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
            self.body,
        )
            .into_response();
        if let Some(value) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        response
    }
}

/// The answer: the output with `status` (a query's `None` is 404), or the problem.
fn answer_with(
    answer: Result<serde_json::Value, Error>,
    kind: MessageKind,
    name: &str,
    status: StatusCode,
    location: Option<String>,
    correlation_id: Uuid,
    authenticated: bool,
) -> Answer {
    let problem = |e: &Error| {
        let p = Problem::from_error(e, correlation_id, authenticated);
        Answer {
            status: StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: serde_json::to_vec(&p).unwrap_or_default(),
            problem: true,
            location: None,
        }
    };
    match answer {
        Ok(serde_json::Value::Null) if kind == MessageKind::Query => problem(&Error::not_found(
            NOT_FOUND,
            format!("`{}` found nothing", flext_runtime::input::echo(name)),
        )),
        Ok(output) => Answer {
            status,
            body: output.to_string().into_bytes(),
            problem: false,
            location,
        },
        Err(e) => problem(&e),
    }
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

#[cfg(test)]
mod tests {
    use super::trace_id;

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
