//! Who is asking, and whether a state-changing request may act: a principal, JSON, and
//! the console's own origin.

use axum::http::{HeaderMap, header};
use flext_runtime::input::echo;
use flext_runtime::{Error, Principal, codes};

/// The principal the application's middleware put on the request, if any.
pub(crate) fn principal(extensions: &axum::http::Extensions) -> Option<Principal> {
    extensions
        .get::<Principal>()
        .filter(|p| !p.id.trim().is_empty())
        .cloned()
}

/// Refuses an action that comes without a principal, from another origin, or not as
/// JSON; returns the principal that acts.
pub(crate) fn may_act(
    principal: Option<Principal>,
    headers: &HeaderMap,
) -> Result<Principal, Error> {
    same_origin(headers)?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(Error::unauthorized(
            codes::OPERATOR_FORBIDDEN_ORIGIN,
            "an operator action is a POST with `Content-Type: application/json` (a form from another site cannot send one)",
        ));
    }
    principal.ok_or_else(|| {
        Error::unauthorized(
            codes::OPERATOR_NO_PRINCIPAL,
            "the console is read-only without a principal: sign in through the application's authentication to act",
        )
    })
}

/// A request whose `Origin` is not this host, or which the browser marks
/// `Sec-Fetch-Site: cross-site`, is refused.
fn same_origin(headers: &HeaderMap) -> Result<(), Error> {
    let forbidden = |why: String| Err(Error::unauthorized(codes::OPERATOR_FORBIDDEN_ORIGIN, why));
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"))
    {
        return forbidden(
            "a page of another site cannot act through the console: open the console itself"
                .to_owned(),
        );
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        // Not a browser's cross-origin request (curl, a test client): the JSON rule
        // and the principal still hold.
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or_default();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .split_once("://")
        .map_or("", |(_, rest)| rest.trim_end_matches('/'));
    if host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
        return forbidden(format!(
            "a request from origin `{}` cannot act through the console served at `{}`: open the console itself",
            echo(origin),
            echo(host)
        ));
    }
    Ok(())
}
