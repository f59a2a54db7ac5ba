//! HTTP routes as data: what `#[command(http = "POST /accounts/{account_id}/deposits")]`
//! and `#[query(http = "GET /accounts/{account_id}")]` declare, collected at link time
//! like handlers. The runtime knows nothing of HTTP; `flext-http` (`flext::http`, the
//! `http` feature) serves these.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::message::MessageKind;

/// One route: a method and a path template whose `{name}` segments are fields of the
/// message. Registered by the message attributes; read with [`routes`].
#[derive(Debug)]
pub struct RouteRegistration {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: &'static str,
    /// The path template, `{field}` for each path parameter (axum's syntax).
    pub path: &'static str,
    /// The message's name (`Message::NAME`), as `Bus::send_json` takes it.
    pub message: &'static str,
    /// Command or query.
    pub kind: MessageKind,
    /// The message type, `module::Type`, to name both when two routes collide.
    pub type_path: &'static str,
    /// The JSON value of field `name` from its text in a path or a query string, parsed
    /// as the field's type; `None` for a name that is no field of the message.
    pub field: fn(name: &str, text: &str) -> Option<Result<serde_json::Value>>,
    /// Each field's name and its key in the message's JSON (serde's `rename` and
    /// `rename_all` applied).
    pub keys: &'static [(&'static str, &'static str)],
    /// `created = "/accounts/{account}"`: a command answered 201 with this path, its
    /// `{field}`s filled from the command, as its `Location`.
    pub created: Option<&'static str>,
    /// `accepted`: a command answered 202, for work that goes on after the answer.
    pub accepted: bool,
    /// `idempotency_key`: the route answers 400 without an `Idempotency-Key` header
    /// (when the router keeps keys).
    pub idempotency_key: bool,
    /// The JSON Schemas of the message (inline, from `inputs`, serde's deserialize
    /// contract) and of its output (a reference into `outputs`, the serialize contract),
    /// for the OpenAPI document.
    pub schema: fn(
        inputs: &mut schemars::SchemaGenerator,
        outputs: &mut schemars::SchemaGenerator,
    ) -> [schemars::Schema; 2],
}

inventory::collect!(RouteRegistration);

impl RouteRegistration {
    /// Field `name`'s key in the message's JSON; the name itself when it has no other.
    pub fn key<'a>(&'a self, name: &'a str) -> &'a str {
        self.keys
            .iter()
            .find(|(field, _)| *field == name)
            .map_or(name, |(_, key)| key)
    }
}

/// Every route linked into the program, in no particular order.
pub fn routes() -> impl Iterator<Item = &'static RouteRegistration> {
    inventory::iter::<RouteRegistration>.into_iter()
}

/// Field `name`'s text from a path or a query string as a JSON value of type `T`: the
/// text as JSON when it reads as a `T` that way (`5`, `true`), else as a JSON string
/// (`a-1`, a UUID). Used by generated code.
///
/// # Errors
///
/// [`ErrorKind::Validation`](crate::ErrorKind::Validation), `flext.input.invalid_field`,
/// naming the field, when the text is no `T` either way.
#[doc(hidden)]
pub fn field_value<T: DeserializeOwned + Serialize>(
    name: &str,
    text: &str,
) -> Result<serde_json::Value> {
    let parsed = serde_json::from_str::<T>(text)
        .or_else(|_| serde_json::from_value::<T>(serde_json::Value::String(text.to_owned())));
    match parsed {
        Ok(value) => serde_json::to_value(value).map_err(|e| {
            Error::internal(
                crate::codes::INPUT_INVALID_FIELD,
                format!("field `{name}`: {e}"),
            )
        }),
        Err(e) => Err(Error::validation(
            crate::codes::INPUT_INVALID_FIELD,
            format!(
                "field `{name}`: {} is not a {}: {e}",
                crate::input::echo(text),
                std::any::type_name::<T>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("value")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::field_value;

    #[test]
    fn text_becomes_the_fields_type() {
        assert_eq!(
            field_value::<u64>("n", "5").ok(),
            Some(serde_json::json!(5))
        );
        assert_eq!(
            field_value::<String>("s", "5").ok(),
            Some(serde_json::json!("5"))
        );
        assert_eq!(
            field_value::<String>("s", "a-1").ok(),
            Some(serde_json::json!("a-1"))
        );
        assert_eq!(
            field_value::<Option<u32>>("o", "7").ok(),
            Some(serde_json::json!(7))
        );
        let e = field_value::<u64>("cents", "ten").unwrap_err();
        assert_eq!(e.code(), crate::codes::INPUT_INVALID_FIELD);
        assert!(
            e.message().starts_with("field `cents`: "),
            "{}",
            e.message()
        );
    }
}
