//! Decoding untrusted JSON input into typed values, with errors that name the record and
//! the field.
//!
//! Front ends (a batch file, an HTTP body, a CLI argument) hand flext text; these
//! functions turn it into a typed message or return an [`ErrorKind::Validation`] error
//! that says which record and which field is wrong, never a panic. The field path comes
//! from [`serde_path_to_error`].

use serde::de::DeserializeOwned;

use crate::error::{Error, Result, RuleViolation};

/// Decodes one JSON document into `T`. `record` names the input in messages (for example
/// `"line 17"` or `"request body"`).
///
/// # Errors
///
/// [`ErrorKind::Validation`] with one [`RuleViolation`] whose `subject` is the field path
/// (`profile.date_of_birth`, `items[2].sku`; empty for the whole document) and code:
///
/// - `flext.input.malformed_json`: the text is not JSON, or is truncated;
/// - `flext.input.unknown_field`: a field `T` does not have (when `T` uses
///   `#[serde(deny_unknown_fields)]`);
/// - `flext.input.missing_field`: a required field is absent;
/// - `flext.input.invalid_field`: a field has the wrong type or value.
///
/// # Example
///
/// ```
/// #[derive(serde::Deserialize, Debug)]
/// #[serde(deny_unknown_fields)]
/// struct Signup { email: String, age: u32 }
///
/// let ok: Signup = flext::input::from_json("line 1", r#"{"email":"a@b.io","age":30}"#).unwrap();
/// assert_eq!(ok.age, 30);
///
/// let e = flext::input::from_json::<Signup>("line 2", r#"{"email":"a@b.io","age":"x"}"#)
///     .unwrap_err();
/// assert_eq!(e.code(), flext::codes::INPUT_INVALID_FIELD);
/// assert_eq!(e.violations()[0].subject.as_deref(), Some("age"));
/// assert!(e.to_string().starts_with("[flext.input.invalid_field] line 2: field `age`: invalid type"));
///
/// let e = flext::input::from_json::<Signup>("line 3", r#"{"email":"a@b.io","#).unwrap_err();
/// assert_eq!(e.code(), flext::codes::INPUT_MALFORMED_JSON);
/// ```
pub fn from_json<T: DeserializeOwned>(record: &str, json: &str) -> Result<T> {
    decode(record, json, |de| serde_path_to_error::deserialize(de))
}

/// [`from_json`] for a message, through its [`Wire`](crate::Wire) form.
pub(crate) fn message_from_json<M: crate::Wire>(record: &str, json: &str) -> Result<M> {
    decode(record, json, |de| M::from_deserializer(de))
}

fn decode<T>(
    record: &str,
    json: &str,
    read: impl for<'a, 'b> FnOnce(
        &'b mut serde_json::Deserializer<serde_json::de::StrRead<'a>>,
    ) -> std::result::Result<
        T,
        serde_path_to_error::Error<serde_json::Error>,
    >,
) -> Result<T> {
    let mut de = serde_json::Deserializer::from_str(json);
    let value =
        read(&mut de).map_err(|e| input_error(record, e.path().to_string(), e.into_inner()))?;
    de.end()
        .map_err(|e| input_error(record, String::new(), e))?;
    Ok(value)
}

/// Decodes JSON Lines text (one JSON document per line; blank lines are skipped) into an
/// iterator of `(line number, result)`, line numbers starting at 1. A bad line yields its
/// error, as [`from_json`] describes, and the iteration goes on with the next line, so
/// one malformed record never hides the others.
///
/// ```
/// let text = "{\"n\": 1}\n\n{\"n\": \"two\"}\n{\"n\": 3}\n";
/// #[derive(serde::Deserialize)]
/// struct R { n: u8 }
/// let results: Vec<(usize, flext::Result<R>)> = flext::input::json_lines(text).collect();
/// assert_eq!(results.len(), 3);
/// assert_eq!(results[0].1.as_ref().unwrap().n, 1);
/// assert_eq!(results[1].0, 3);
/// assert!(results[1].1.is_err());
/// assert_eq!(results[2].1.as_ref().unwrap().n, 3);
/// ```
pub fn json_lines<T: DeserializeOwned>(
    text: &str,
) -> impl Iterator<Item = (usize, Result<T>)> + '_ {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| (i + 1, from_json(&format!("line {}", i + 1), line)))
}

fn input_error(record: &str, path: String, inner: serde_json::Error) -> Error {
    use serde_json::error::Category;
    // serde_path_to_error writes `.` for the root and `?` for a position it could not
    // name (inside a truncated document, say); neither helps a reader.
    let path = path.trim_end_matches('?').trim_end_matches('.').to_owned();
    let detail = inner.to_string();
    let code = match inner.classify() {
        Category::Syntax | Category::Eof | Category::Io => crate::codes::INPUT_MALFORMED_JSON,
        Category::Data if detail.starts_with("unknown field") => crate::codes::INPUT_UNKNOWN_FIELD,
        Category::Data if detail.starts_with("missing field") => crate::codes::INPUT_MISSING_FIELD,
        Category::Data => crate::codes::INPUT_INVALID_FIELD,
    };
    let message = match (code, path.is_empty()) {
        (crate::codes::INPUT_MALFORMED_JSON, _) => format!("{record}: malformed JSON: {detail}"),
        (_, true) => format!("{record}: {detail}"),
        (_, false) => format!("{record}: field `{path}`: {detail}"),
    };
    let mut violation = RuleViolation::new(detail).with_code(code);
    if !path.is_empty() {
        violation = violation.on(path);
    }
    Error::validation(code, message)
        .with_violations(vec![violation])
        .with_source(inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Rec {
        email: String,
        profile: Profile,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Profile {
        first_name: String,
        date_of_birth: String,
    }

    fn err(json: &str) -> Error {
        from_json::<Rec>("line 9", json).unwrap_err()
    }

    #[test]
    fn nested_wrong_type_names_the_path() {
        let e = err(r#"{"email":"a@b.io","profile":{"first_name":"A","date_of_birth":19900101}}"#);
        assert_eq!(e.kind(), ErrorKind::Validation);
        assert_eq!(e.code(), crate::codes::INPUT_INVALID_FIELD);
        assert_eq!(
            e.violations()[0].subject.as_deref(),
            Some("profile.date_of_birth")
        );
        assert!(
            e.message()
                .contains("line 9: field `profile.date_of_birth`"),
            "{e}"
        );
    }

    #[test]
    fn unknown_field_names_the_field() {
        let e = err(
            r#"{"email":"a@b.io","nickname":"x","profile":{"first_name":"A","date_of_birth":"1990-01-01"}}"#,
        );
        assert_eq!(e.code(), crate::codes::INPUT_UNKNOWN_FIELD);
        assert!(e.message().contains("unknown field `nickname`"), "{e}");
    }

    #[test]
    fn missing_field() {
        let e = err(r#"{"profile":{"first_name":"A","date_of_birth":"1990-01-01"}}"#);
        assert_eq!(e.code(), crate::codes::INPUT_MISSING_FIELD);
        assert!(e.message().contains("missing field `email`"), "{e}");
    }

    #[test]
    fn truncated_and_trailing_garbage() {
        assert_eq!(
            err(r#"{"email":"a@b"#).code(),
            crate::codes::INPUT_MALFORMED_JSON
        );
        assert_eq!(
            err(r#"{"email":"a@b.io","profile":{"first_name":"A","date_of_birth":"1"}} x"#).code(),
            crate::codes::INPUT_MALFORMED_JSON
        );
        assert_eq!(err("").code(), crate::codes::INPUT_MALFORMED_JSON);
    }
}
