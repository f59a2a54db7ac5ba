//! The message's JSON from a request's path, query string and body.

use flext_runtime::route::RouteRegistration;
use flext_runtime::{Error, MessageKind, codes};

use crate::NOT_AN_OBJECT;

/// The message's JSON text without decoding the body: the path's and the query string's
/// fields written in front of the body's own, so that the bus decodes the message once.
/// A body naming a path field as well is refused by the message's decoder (a duplicate
/// field), not silently overridden.
pub(crate) fn message_text(
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

pub(crate) fn message_json(
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
