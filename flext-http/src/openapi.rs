//! The OpenAPI 3.1 document of a router, built from the same registrations it serves:
//! each route's parameters and body from its message's JSON Schema (schemars, serde's
//! attributes applied), its success from the output's, and every status the status
//! table can answer, with the problem's schema.

use flext_runtime::MessageKind;
use flext_runtime::route::RouteRegistration;
use schemars::generate::{Contract, SchemaSettings};
use serde_json::{Map, Value, json};

use crate::Problem;

/// Where the schemas live in the document.
const COMPONENTS: &str = "/components/schemas";

/// The errors any route can answer, with what each means there.
const ERRORS: &[(u16, &str)] = &[
    (
        400,
        "Malformed input: a body that is not JSON or not an object, a field of the wrong type, a missing or unknown field, or a malformed `Idempotency-Key`.",
    ),
    (401, "Refused: no principal on the request."),
    (403, "Refused: the principal may not do this."),
    (
        404,
        "Not found: a query that found nothing, or a missing aggregate.",
    ),
    (
        409,
        "Conflict: an expected-version conflict, a saga id reused or in flight, or a repeat of an `Idempotency-Key` still running.",
    ),
    (
        422,
        "A business rule is violated (every violation listed), or an `Idempotency-Key` reused for a different request.",
    ),
    (
        500,
        "An internal error: the detail is logged with the correlation id, not sent.",
    ),
    (
        503,
        "A dependency is down or a circuit is open: retry later.",
    ),
    (504, "The request's deadline passed."),
];

/// The document, as JSON.
pub(crate) fn document(
    routes: &[&'static RouteRegistration],
    title: &str,
    version: &str,
    body_limit: usize,
) -> Value {
    let settings = |contract| {
        SchemaSettings::draft2020_12().with(|s| {
            s.definitions_path = COMPONENTS.into();
            s.meta_schema = None;
            s.contract = contract;
        })
    };
    let mut inputs = settings(Contract::Deserialize).into_generator();
    let mut outputs = settings(Contract::Serialize).into_generator();
    let problem = outputs.subschema_for::<Problem>();
    let mut paths = Map::new();
    let mut sorted = routes.to_vec();
    sorted.sort_by_key(|r| (r.path, r.method));
    for route in sorted {
        let [message, output] = (route.schema)(&mut inputs, &mut outputs);
        let operation = operation(
            route,
            message.to_value(),
            output.to_value(),
            &problem.clone().to_value(),
            body_limit,
        );
        let path = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        path[route.method.to_ascii_lowercase()] = operation;
    }
    let mut schemas = outputs.take_definitions(true);
    for (name, schema) in inputs.take_definitions(true) {
        schemas.entry(name).or_insert(schema);
    }
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": { "title": title, "version": version },
        "paths": paths,
        "components": { "schemas": schemas },
    })
}

/// One operation: parameters, body, and every answer.
fn operation(
    route: &RouteRegistration,
    message: Value,
    output: Value,
    problem: &Value,
    body_limit: usize,
) -> Value {
    let path_fields: Vec<&str> = route
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect();
    let properties = message
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let required: Vec<&str> = message
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut parameters = Vec::new();
    for field in &path_fields {
        let key = route.key(field);
        let mut schema = properties.get(key).cloned().unwrap_or(json!({}));
        // A path segment is never empty.
        if schema.get("type") == Some(&json!("string")) && schema.get("minLength").is_none() {
            schema["minLength"] = json!(1);
        }
        parameters.push(json!({ "name": field, "in": "path", "required": true, "schema": schema }));
    }
    let correlation = json!({
        "x-correlation-id": {
            "description": "The request's correlation id: the request's own when it sent a UUID, else new.",
            "required": true,
            "schema": { "type": "string", "format": "uuid" }
        }
    });
    let mut operation = json!({
        "operationId": route.message,
        "summary": format!("{} `{}`", kind_word(route.kind), route.message),
    });
    if route.kind == MessageKind::Query {
        // The query string's fields, by their Rust names.
        for (key, schema) in &properties {
            let name = route
                .keys
                .iter()
                .find(|(_, k)| k == key)
                .map_or(key.as_str(), |(f, _)| f);
            if path_fields.contains(&name) {
                continue;
            }
            parameters.push(json!({
                "name": name,
                "in": "query",
                "required": required.contains(&key.as_str()),
                "schema": schema,
            }));
        }
    } else {
        // The body: the message without its path fields, which it may not name again.
        let mut body = message.clone();
        if let Some(object) = body.as_object_mut() {
            if let Some(Value::Object(props)) = object.get_mut("properties") {
                for field in &path_fields {
                    props.insert(route.key(field).to_owned(), Value::Bool(false));
                }
            }
            if let Some(Value::Array(req)) = object.get_mut("required") {
                req.retain(|r| !path_fields.iter().any(|f| Some(route.key(f)) == r.as_str()));
            }
            object.remove("title");
        }
        operation["requestBody"] = json!({
            "required": true,
            "content": { "application/json": { "schema": body } },
        });
        if route.idempotency_key {
            parameters.push(idempotency_key(true));
        } else {
            parameters.push(idempotency_key(false));
        }
    }
    operation["parameters"] = Value::Array(parameters);
    let mut responses = Map::new();
    let (status, what) = match (route.created, route.accepted) {
        (Some(_), _) => (
            201,
            "Created: the output, and the new resource's `Location`.",
        ),
        (None, true) => (202, "Accepted: the work goes on after the answer."),
        (None, false) => (200, "The output."),
    };
    let mut headers = correlation.clone();
    if route.created.is_some() {
        headers["Location"] = json!({
            "description": "The new resource's path.",
            "required": true,
            "schema": { "type": "string" }
        });
    }
    responses.insert(
        status.to_string(),
        json!({
            "description": what,
            "headers": headers,
            "content": { "application/json": { "schema": output } },
        }),
    );
    for (code, what) in ERRORS {
        responses.insert(
            code.to_string(),
            json!({
                "description": what,
                "headers": correlation,
                "content": { "application/problem+json": { "schema": problem } },
            }),
        );
    }
    if route.kind != MessageKind::Query {
        responses.insert(
            "413".into(),
            json!({
                "description": format!("The body is over the limit of {body_limit} bytes."),
                "headers": correlation,
                "content": { "application/problem+json": { "schema": problem } },
            }),
        );
    }
    operation["responses"] = Value::Object(responses);
    operation
}

fn idempotency_key(required: bool) -> Value {
    json!({
        "name": "Idempotency-Key",
        "in": "header",
        "required": required,
        "description": "A key unique to this request (IETF draft-ietf-httpapi-idempotency-key-header): a repeat with the same key and request is answered with the first response.",
        "schema": { "type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!#-~]+$" }
    })
}

fn kind_word(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Query => "Query",
        _ => "Command",
    }
}
