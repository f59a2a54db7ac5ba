//! One request: its context (correlation id, trace context, principal, deadline), the
//! message's JSON, the bus, and the answer with its status.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use flext_runtime::idempotency::{
    Claim, IdempotencyClaim, IdempotencyStore, Response as StoredResponse,
};
use flext_runtime::route::RouteRegistration;
use flext_runtime::{Bus, Context, Error, MessageKind, Principal, codes};
use uuid::Uuid;

use crate::message::{message_json, message_text};
use crate::{
    CORRELATION_ID, Config, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, Limits, NOT_FOUND, Problem,
    TIMEOUT, TOO_DEEP, TRACEPARENT, TRACESTATE,
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
    status: StatusCode,
    body: Vec<u8>,
    problem: bool,
    location: Option<String>,
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

/// What a request's idempotency key says to do.
enum Keyed {
    /// Run the command (under this claim, when it has a key).
    Run(Option<Arc<IdempotencyClaim>>),
    /// Answer with the first request's response.
    Replay(StoredResponse),
}

/// The request's idempotency key claimed, when the router keeps keys and the route is a
/// command's: `Run` without a claim when it has none (or is no command route).
async fn keyed(
    config: &Config,
    route: Option<&'static RouteRegistration>,
    headers: &HeaderMap,
    ctx: &Context,
    text: &str,
    status: StatusCode,
    location: Option<&str>,
) -> Result<Keyed, Error> {
    let (Some(idempotency), Some(route)) = (&config.idempotency, route) else {
        return Ok(Keyed::Run(None));
    };
    if route.kind != MessageKind::Command {
        return Ok(Keyed::Run(None));
    }
    let Some(key) = idempotency_key(headers)? else {
        if route.idempotency_key {
            return Err(Error::validation(
                codes::INPUT_IDEMPOTENCY_KEY_MISSING,
                format!(
                    "`{} {}` needs an `Idempotency-Key` header: send a fresh unique key (a UUID) with each new request, and the same key when repeating one",
                    route.method, route.path
                ),
            ));
        }
        return Ok(Keyed::Run(None));
    };
    let scope = format!(
        "{} {} {}",
        ctx.principal().map_or("-", |p| p.id.as_str()),
        route.method,
        route.path
    );
    let fingerprint = fingerprint(route.message, text);
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let claim = idempotency
        .store
        .claim(
            &scope,
            &key,
            &fingerprint,
            ms(idempotency.in_flight),
            ms(idempotency.keep),
        )
        .await?;
    match claim {
        Claim::Claimed(claim) => Ok(Keyed::Run(Some(Arc::new(claim.answering(
            status.as_u16(),
            location.map(str::to_owned),
            route.message,
        ))))),
        Claim::Replay(stored) => Ok(Keyed::Replay(stored)),
        Claim::InFlight => Err(Error::conflict(
            codes::IDEMPOTENCY_IN_FLIGHT,
            format!(
                "the first request with idempotency key {} is still running: repeat it after it answers",
                flext_runtime::input::echo(&key)
            ),
        )),
        Claim::Mismatch => Err(Error::validation(
            codes::IDEMPOTENCY_KEY_REUSED,
            format!(
                "idempotency key {} was used for a different request to this route: use a new key for a new request",
                flext_runtime::input::echo(&key)
            ),
        )),
    }
}

/// The `Idempotency-Key` header's key: an RFC 8941 string (`"..."`) or a bare token, of
/// 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Error> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("");
    let key = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic() && b != b'"')
    {
        return Err(Error::validation(
            codes::INPUT_IDEMPOTENCY_KEY_INVALID,
            format!(
                "the `Idempotency-Key` header must be 1 to 255 visible ASCII characters, optionally in quotes: {} is not",
                flext_runtime::input::echo(&String::from_utf8_lossy(value.as_bytes()))
            ),
        ));
    }
    Ok(Some(key.to_owned()))
}

/// The request's fingerprint: SHA-256 of the message's name and its JSON as assembled
/// from the path, the query string and the body.
fn fingerprint(message: &str, text: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(message.as_bytes())
        .chain_update([0u8])
        .chain_update(text.as_bytes())
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Stores a success under its claim (a no-op when the command's append stored it), or
/// releases the claim of a failure so that the client may try again.
async fn settle(store: &dyn IdempotencyStore, claim: &IdempotencyClaim, answer: &Answer) {
    let result = if answer.status.is_success() {
        let stored = StoredResponse::new(
            answer.status.as_u16(),
            String::from_utf8_lossy(&answer.body).into_owned(),
            answer.location.clone(),
        );
        store.complete(claim, &stored).await.map(drop)
    } else {
        store.release(claim).await
    };
    if let Err(error) = result {
        // The command's own effects stand; a repeat may run it again (after the claim's
        // in-flight time) or be refused as in flight until then.
        tracing::warn!(%error, "storing the idempotency key's outcome failed");
    }
}

/// The stored response of an earlier request with the same key.
fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = Answer {
        status,
        body: stored.body.into_bytes(),
        problem: false,
        location: stored.location,
    }
    .into_response();
    response
        .headers_mut()
        .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
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
#[cfg(test)]
fn depth(body: &[u8]) -> usize {
    scan(body).0
}

/// How deep `body`'s arrays and objects nest, outside strings, and whether a number has
/// a fraction or an exponent; without decoding it.
fn scan(body: &[u8]) -> (usize, bool) {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    let mut floats = false;
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
            b'.' | b'e' | b'E' => floats = true,
            _ => {}
        }
    }
    (deepest, floats)
}

/// `body` with every number outside strings that has a fraction or an exponent but an
/// integral value exactly representable (below 2^53) written as an integer (`2.0` and
/// `2e3` as `2` and `2000`): JSON Schema counts them as integers, and so does a field of
/// an integer type here. `None` when nothing changes or the body is not UTF-8.
fn integral_numbers(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut i, mut last, mut changed) = (0, 0, false);
    let (mut in_string, mut escaped) = (false, false);
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if b == b'-' || b.is_ascii_digit() {
            let start = i;
            while i < bytes.len()
                && matches!(bytes[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
            {
                i += 1;
            }
            let token = &text[start..i];
            if token.contains(['.', 'e', 'E'])
                && let Ok(value) = token.parse::<f64>()
                && value.fract() == 0.0
                && value.abs() < 9_007_199_254_740_992.0
                // `-0.0` keeps its sign for a float field.
                && !(value == 0.0 && token.starts_with('-'))
            {
                out.push_str(&text[last..start]);
                // Exact: an integral f64 below 2^53 converts to i64 without loss.
                #[allow(clippy::cast_possible_truncation)]
                out.push_str(&(value as i64).to_string());
                last = i;
                changed = true;
            }
            continue;
        }
        i += 1;
    }
    changed.then(|| {
        out.push_str(&text[last..]);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::{depth, trace_id};

    #[test]
    fn integral_numbers_become_integers_and_nothing_else_changes() {
        use super::integral_numbers;
        assert_eq!(
            integral_numbers(br#"{"a": 116100.0, "b": 2e3, "c": -1.0E0, "d": 2.5, "e": "3.0"}"#)
                .as_deref(),
            Some(r#"{"a": 116100, "b": 2000, "c": -1, "d": 2.5, "e": "3.0"}"#)
        );
        assert_eq!(integral_numbers(br#"{"d": 2.5, "s": "1.0\"2.0"}"#), None);
        assert_eq!(integral_numbers(br#"{"big": 1e300}"#), None);
        assert_eq!(integral_numbers(br#"{"x": -0.0}"#), None);
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
