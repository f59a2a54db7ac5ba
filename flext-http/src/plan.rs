//! The routes of the program, grouped by path for axum, with the conflicts axum would
//! panic on reported as errors instead.

use std::collections::HashMap;

use flext_runtime::Error;
use flext_runtime::route::RouteRegistration;

use crate::ROUTE_CONFLICT;

/// The routes grouped by path, in a stable order; an error for two on one method and
/// path, or on two paths axum cannot tell apart (`/a/{x}` and `/a/{y}`), naming both.
pub(crate) fn plan(
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

#[cfg(test)]
mod tests {
    use super::plan;
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
            idempotency_key: false,
            schema: |i, o| [i.subschema_for::<()>(), o.subschema_for::<()>()],
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
}
