//! Idempotency keys on command routes: the key read and claimed before the command runs,
//! the outcome stored or the claim released after, a repeat replayed.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use flext_runtime::idempotency::{
    Claim, IdempotencyClaim, IdempotencyStore, Response as StoredResponse,
};
use flext_runtime::route::RouteRegistration;
use flext_runtime::{Context, Error, MessageKind, codes};

use crate::serve::Answer;
use crate::{Config, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED};

/// What a request's idempotency key says to do.
pub(crate) enum Keyed {
    /// Run the command (under this claim, when it has a key).
    Run(Option<Arc<IdempotencyClaim>>),
    /// Answer with the first request's response.
    Replay(StoredResponse),
}

/// The request's idempotency key claimed, when the router keeps keys and the route is a
/// command's: `Run` without a claim when it has none (or is no command route).
pub(crate) async fn keyed(
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
pub(crate) async fn settle(
    store: &dyn IdempotencyStore,
    claim: &IdempotencyClaim,
    answer: &Answer,
) {
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
pub(crate) fn replay(stored: StoredResponse) -> Response {
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
