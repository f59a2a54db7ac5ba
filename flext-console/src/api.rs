//! The JSON API: each handler reads or acts through [`Operations`], and answers JSON or
//! problem details.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, HeaderMap};
use axum::response::{IntoResponse, Response};
use flext_http::Problem;
use flext_runtime::input::echo;
use flext_runtime::operator::Operations;
use flext_runtime::saga::{Intervention, OperatorAction, SagaFilter, SagaState};
use flext_runtime::{Error, codes};
use serde::Deserialize;
use serde_json::json;

use crate::guard;

/// The longest saga type name a filter takes, in bytes.
const MAX_NAME_BYTES: usize = 256;

fn problem(error: &Error, extensions: &Extensions) -> Response {
    let authenticated =
        error.code() == codes::OPERATOR_FORBIDDEN_ORIGIN || guard::principal(extensions).is_some();
    Problem::from_error(error, uuid::Uuid::new_v4(), authenticated).into_response()
}

fn answer<T: serde::Serialize>(result: Result<T, Error>, extensions: &Extensions) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(e) => problem(&e, extensions),
    }
}

/// The principal's id for an audit record, `-` without one.
fn who(extensions: &Extensions) -> String {
    guard::principal(extensions).map_or_else(|| "-".to_owned(), |p| p.id)
}

pub(crate) async fn whoami(State(ops): State<Operations>, extensions: Extensions) -> Response {
    let principal = guard::principal(&extensions);
    Json(json!({
        "principal": principal.as_ref().map(|p| &p.id),
        "read_only": principal.is_none(),
        "payloads_shown": ops.payloads_shown(),
    }))
    .into_response()
}

#[derive(Deserialize)]
pub(crate) struct SagaQuery {
    state: Option<String>,
    name: Option<String>,
    id: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
}

fn filter(q: SagaQuery) -> Result<SagaFilter, Error> {
    let mut filter = SagaFilter::default().stuck_first();
    if let Some(state) = q.state.filter(|s| !s.is_empty()) {
        let Some(known) = SagaState::ALL.into_iter().find(|s| s.as_str() == state) else {
            return Err(Error::validation(
                codes::INPUT_INVALID_FIELD,
                format!(
                    "`{}` is not a saga state: use one of {}",
                    echo(&state),
                    SagaState::ALL.map(SagaState::as_str).join(", ")
                ),
            ));
        };
        filter = filter.state(known);
    }
    if let Some(name) = q.name.filter(|n| !n.is_empty()) {
        if name.len() > MAX_NAME_BYTES {
            return Err(Error::validation(
                codes::INPUT_INVALID_FIELD,
                format!(
                    "a saga type name is at most {MAX_NAME_BYTES} bytes: {}",
                    echo(&name)
                ),
            ));
        }
        filter = filter.name(name);
    }
    if let Some(prefix) =
        q.id.map(|p| p.trim().to_ascii_lowercase())
            .filter(|p| !p.is_empty())
    {
        if prefix.len() > 36 || !prefix.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(Error::validation(
                codes::INPUT_INVALID_FIELD,
                format!(
                    "`{}` is not the start of a saga id: give hex digits and dashes, at most 36",
                    echo(&prefix)
                ),
            ));
        }
        filter = filter.id_prefix(prefix);
    }
    filter = filter.offset(q.offset.unwrap_or(0));
    if let Some(limit) = q.limit {
        filter = filter.limit(limit);
    }
    Ok(filter)
}

pub(crate) async fn sagas(
    State(ops): State<Operations>,
    extensions: Extensions,
    query: Result<Query<SagaQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        let Query(q) = query.map_err(|e| {
            Error::validation(
                codes::INPUT_INVALID_FIELD,
                format!("bad query: {}", echo(&e.body_text())),
            )
        })?;
        ops.sagas(&filter(q)?).await
    }
    .await;
    answer(result, &extensions)
}

pub(crate) async fn saga(
    State(ops): State<Operations>,
    extensions: Extensions,
    Path(id): Path<String>,
) -> Response {
    answer(ops.saga(&id).await, &extensions)
}

/// What an action needs before it reaches the operator views: a principal that may
/// act (see [`guard::may_act`]), then what `check` reads from the request. A refusal
/// here is audited as `action` on `target`, so that every attempt leaves a record.
fn checked<T>(
    ops: &Operations,
    extensions: &Extensions,
    headers: &HeaderMap,
    action: &str,
    target: &str,
    check: impl FnOnce(flext_runtime::Principal) -> Result<T, Error>,
) -> Result<T, Error> {
    guard::may_act(guard::principal(extensions), headers)
        .and_then(check)
        .inspect_err(|e| ops.audit_refused(action, target, &who(extensions), "", e))
}

/// The body of an action.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActionBody {
    reason: String,
    #[serde(default)]
    past_pivot: bool,
}

fn body(
    body: Result<Json<ActionBody>, axum::extract::rejection::JsonRejection>,
) -> Result<ActionBody, Error> {
    body.map(|Json(b)| b).map_err(|e| {
        Error::validation(
            codes::INPUT_MALFORMED_JSON,
            format!(
                "an action's body is JSON: {{\"reason\": \"why\", \"past_pivot\": false}} ({})",
                echo(&e.body_text())
            ),
        )
    })
}

pub(crate) async fn intervene(
    State(ops): State<Operations>,
    extensions: Extensions,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    payload: Result<Json<ActionBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let result = async {
        let target = format!("saga {id}");
        let intervention = checked(&ops, &extensions, &headers, &action, &target, |principal| {
            let kind = match action.as_str() {
                "resume" => OperatorAction::Resume,
                "abort" => OperatorAction::Abort,
                "resolve" => OperatorAction::Resolve,
                other => {
                    return Err(Error::not_found(
                        codes::OPERATOR_UNKNOWN_TARGET,
                        format!(
                            "`{}` is not an action: resume, abort or resolve",
                            echo(other)
                        ),
                    ));
                }
            };
            let b = body(payload)?;
            let intervention = Intervention::new(kind, principal.id, b.reason)?;
            Ok(if b.past_pivot {
                intervention.past_pivot()
            } else {
                intervention
            })
        })?;
        ops.intervene(&id, &intervention).await
    }
    .await;
    answer(result, &extensions)
}

pub(crate) async fn projections(State(ops): State<Operations>) -> Response {
    let list: Vec<serde_json::Value> = ops
        .projections()
        .await
        .into_iter()
        .map(|p| match p {
            Ok(status) => json!({ "status": status }),
            Err((name, e)) => {
                json!({ "name": name, "error": { "code": e.code(), "message": e.message() } })
            }
        })
        .collect();
    Json(list).into_response()
}

pub(crate) async fn rebuild(
    State(ops): State<Operations>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(name): Path<String>,
    payload: Result<Json<ActionBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let result = async {
        let target = format!("projection {name}");
        let (principal, b) = checked(&ops, &extensions, &headers, "rebuild", &target, |p| {
            Ok((p, body(payload)?))
        })?;
        let applied = ops.rebuild(&name, &principal.id, &b.reason).await?;
        Ok(json!({ "projection": name, "applied": applied }))
    }
    .await;
    answer(result, &extensions)
}

pub(crate) async fn outbox(State(ops): State<Operations>) -> Response {
    let list: Vec<serde_json::Value> = ops
        .outboxes()
        .await
        .into_iter()
        .map(|(name, status)| match status {
            Ok(status) => json!({ "name": name, "status": status }),
            Err(e) => {
                json!({ "name": name, "error": { "code": e.code(), "message": e.message() } })
            }
        })
        .collect();
    Json(list).into_response()
}

pub(crate) async fn queues(State(ops): State<Operations>, extensions: Extensions) -> Response {
    answer(ops.queues().await, &extensions)
}

pub(crate) async fn dead_letters(State(ops): State<Operations>) -> Response {
    let list: Vec<serde_json::Value> = ops
        .dead_letter_lists(50)
        .await
        .into_iter()
        .map(|(consumer, letters)| match letters {
            Ok(letters) => json!({ "consumer": consumer, "letters": letters }),
            Err(e) => json!({ "consumer": consumer, "error": { "code": e.code(), "message": e.message() } }),
        })
        .collect();
    Json(list).into_response()
}

pub(crate) async fn replay(
    State(ops): State<Operations>,
    extensions: Extensions,
    headers: HeaderMap,
    Path((consumer, id)): Path<(String, String)>,
    payload: Result<Json<ActionBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let result = async {
        let target = format!("dead letter {id} of {consumer}");
        let (principal, seq, b) = checked(&ops, &extensions, &headers, "replay", &target, |p| {
            let seq: u64 = id.parse().map_err(|_| {
                Error::not_found(
                    codes::OPERATOR_UNKNOWN_TARGET,
                    format!(
                        "`{}` is not a dead letter's id: give the number the list shows",
                        echo(&id)
                    ),
                )
            })?;
            Ok((p, seq, body(payload)?))
        })?;
        ops.replay(&consumer, seq, &principal.id, &b.reason).await?;
        Ok(json!({ "consumer": consumer, "replayed": seq }))
    }
    .await;
    answer(result, &extensions)
}

pub(crate) async fn health(State(ops): State<Operations>) -> Response {
    Json(ops.health()).into_response()
}

pub(crate) async fn audit(State(ops): State<Operations>) -> Response {
    Json(ops.audit()).into_response()
}
