//! Decoding untrusted JSON input into typed values, with errors that name the record and
//! the field.
//!
//! Front ends (a batch file, an HTTP body, a CLI argument) hand flext text; these
//! functions turn it into a typed message or return an [`ErrorKind::Validation`](crate::ErrorKind::Validation) error
//! that says which record and which field is wrong, never a panic. The field path comes
//! from [`serde_path_to_error`].

use serde::de::DeserializeOwned;

mod echo;
mod missing;

pub use self::echo::{ECHO_BYTES, echo, echo_display, redact_url};

use crate::error::{Error, Result, RuleViolation};

/// The limit [`from_json`] and [`json_lines`] apply to one document: 1 MiB, the same as
/// the bus's default for `send_json`.
pub const DEFAULT_MAX_BYTES: usize = 1 << 20;

/// Decodes one JSON document into `T`. `record` names the input in messages (for example
/// `"line 17"` or `"request body"`).
///
/// # Errors
///
/// [`ErrorKind::Validation`](crate::ErrorKind::Validation), always with at least one
/// [`RuleViolation`] carrying the same code, whose `subject` is the field path
/// (`profile.date_of_birth`, `items[2].sku`; none for the whole document):
///
/// - `flext.input.too_large`: the text is longer than [`DEFAULT_MAX_BYTES`] (checked
///   before parsing);
/// - `flext.input.malformed_json`: the text is not JSON, is truncated, or has text after
///   the document;
/// - `flext.input.unknown_field`: a field `T` does not have (when `T` uses
///   `#[serde(deny_unknown_fields)]`);
/// - `flext.input.missing_field`: required fields are absent: one violation for each,
///   its path the subject (a missing object is reported once, not with its fields);
/// - `flext.input.invalid_field`: a field has the wrong type or value (an integer too
///   large for its type is reported as out of range).
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
    from_json_limited(record, json, DEFAULT_MAX_BYTES)
}

/// [`from_json`] with a limit of `max_bytes` bytes instead of [`DEFAULT_MAX_BYTES`].
///
/// # Errors
///
/// As [`from_json`]; and `flext.input.too_large` when `json` is longer than
/// `max_bytes`, before anything is parsed.
pub fn from_json_limited<T: DeserializeOwned>(
    record: &str,
    json: &str,
    max_bytes: usize,
) -> Result<T> {
    check_size(record, json, max_bytes)?;
    decode_reporting_missing(record, json, |de| serde_path_to_error::deserialize(de))
}

/// What reads one `T` from a JSON text, with the path of a field that fails.
type PathResult<T> = std::result::Result<T, serde_path_to_error::Error<serde_json::Error>>;

/// [`decode`], and on a missing field the error naming every missing field. The second
/// pass re-reads the document as text through the same `read`, so the only code
/// generated per type is the one decode path (no second instantiation of `T`'s
/// `Deserialize` over `serde_json::Value`, whose cost `benches/compile_cost.sh` showed).
fn decode_reporting_missing<T>(
    record: &str,
    json: &str,
    read: impl for<'a, 'b> Fn(
        &'b mut serde_json::Deserializer<serde_json::de::StrRead<'a>>,
    ) -> PathResult<T>,
) -> Result<T> {
    decode(record, json, &read).map_err(|e| {
        every_missing_field(record, json, e, &|text: &str| {
            read(&mut serde_json::Deserializer::from_str(text)).map(drop)
        })
    })
}

/// `e` when it is not a missing field; otherwise the error naming every missing field,
/// each a violation with its path as subject.
fn every_missing_field(
    record: &str,
    json: &str,
    e: Error,
    decode: &dyn Fn(&str) -> PathResult<()>,
) -> Error {
    if e.code() != crate::codes::INPUT_MISSING_FIELD {
        return e;
    }
    let fields = missing::every_missing(json, decode);
    if fields.len() < 2 {
        return e;
    }
    let violations = fields
        .iter()
        .map(|f| {
            let name = f.rsplit('.').next().unwrap_or(f);
            RuleViolation::new(format!("missing field `{}`", echo(name)))
                .with_code(crate::codes::INPUT_MISSING_FIELD)
                .on(echo(f).into_owned())
        })
        .collect();
    let list: Vec<String> = fields.iter().map(|f| format!("`{}`", echo(f))).collect();
    Error::validation(
        crate::codes::INPUT_MISSING_FIELD,
        format!("{}: missing fields {}", echo(record), list.join(", ")),
    )
    .with_violations(violations)
}

/// `flext.input.too_large` when `json` is longer than `max_bytes`.
pub(crate) fn check_size(record: &str, json: &str, max_bytes: usize) -> Result<()> {
    if json.len() > max_bytes {
        let detail = format!(
            "the document is {} bytes, over the limit of {max_bytes} bytes",
            json.len()
        );
        let violation = RuleViolation::new(detail.clone()).with_code(crate::codes::INPUT_TOO_LARGE);
        return Err(Error::validation(
            crate::codes::INPUT_TOO_LARGE,
            format!("{}: {detail}", echo(record)),
        )
        .with_violations(vec![violation]));
    }
    Ok(())
}

/// `flext.input.positional` when `json` is an array and the message `name` does not
/// accept one (`positional`).
pub(crate) fn refuse_positional(name: &str, positional: bool, json: &str) -> Result<()> {
    if positional || !json.trim_start().starts_with('[') {
        return Ok(());
    }
    let detail = "given as a positional array: give its fields by name in an object, or accept arrays with `#[command(positional)]`";
    Err(Error::validation(
        crate::codes::INPUT_POSITIONAL,
        format!("`{}` {detail}", echo(name)),
    )
    .with_violations(vec![
        RuleViolation::new(detail).with_code(crate::codes::INPUT_POSITIONAL),
    ]))
}

/// [`from_json`] for a message, through its [`Wire`](crate::Wire) form.
pub(crate) fn message_from_json<M: crate::Wire>(record: &str, json: &str) -> Result<M> {
    decode_reporting_missing(record, json, |de| M::from_deserializer(de))
}

fn decode<T>(
    record: &str,
    json: &str,
    read: impl for<'a, 'b> FnOnce(
        &'b mut serde_json::Deserializer<serde_json::de::StrRead<'a>>,
    ) -> PathResult<T>,
) -> Result<T> {
    let mut de = serde_json::Deserializer::from_str(json);
    let value = read(&mut de)
        .map_err(|e| input_error(record, json, e.path().to_string(), e.into_inner()))?;
    de.end()
        .map_err(|e| input_error(record, json, String::new(), e))?;
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
    json_lines_limited(text, DEFAULT_MAX_BYTES)
}

/// [`json_lines`] with a limit of `max_bytes` bytes per line instead of
/// [`DEFAULT_MAX_BYTES`]; a longer line yields `flext.input.too_large` and the iteration
/// goes on.
pub fn json_lines_limited<T: DeserializeOwned>(
    text: &str,
    max_bytes: usize,
) -> impl Iterator<Item = (usize, Result<T>)> + '_ {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(move |(i, line)| {
            (
                i + 1,
                from_json_limited(&format!("line {}", i + 1), line, max_bytes),
            )
        })
}

fn input_error(record: &str, json: &str, path: String, inner: serde_json::Error) -> Error {
    use serde_json::error::Category;
    // serde_path_to_error writes `.` for the root and `?` for a position it could not
    // name (inside a truncated document, say); neither helps a reader.
    // Both quote the input (a field name, a wrong value): bounded and escaped.
    let path = path.trim_end_matches('?').trim_end_matches('.').to_owned();
    let mut detail = echo_display(&inner);
    // A missing field is reported at its parent (the message says "field `parent`:
    // missing field `x`"); its violation's subject is the field itself.
    let subject = match missing::field_of(&detail) {
        Some(field) if path.is_empty() => field.to_owned(),
        Some(field) => format!("{path}.{field}"),
        None => path.clone(),
    };
    let subject = echo(&subject).into_owned();
    if let Some(overflow) = integer_overflow(json, &inner, &detail) {
        detail = overflow;
    }
    let path = echo(&path).into_owned();
    let code = match inner.classify() {
        Category::Syntax | Category::Eof | Category::Io => crate::codes::INPUT_MALFORMED_JSON,
        Category::Data if detail.starts_with("unknown field") => crate::codes::INPUT_UNKNOWN_FIELD,
        Category::Data if detail.starts_with("missing field") => crate::codes::INPUT_MISSING_FIELD,
        Category::Data => crate::codes::INPUT_INVALID_FIELD,
    };
    let record = echo(record);
    let message = match (code, path.is_empty()) {
        (crate::codes::INPUT_MALFORMED_JSON, _) => format!("{record}: malformed JSON: {detail}"),
        (_, true) => format!("{record}: {detail}"),
        (_, false) => format!("{record}: field `{path}`: {detail}"),
    };
    let mut violation = RuleViolation::new(detail).with_code(code);
    if !subject.is_empty() {
        violation = violation.on(subject);
    }
    // serde's error is not kept as the source: its message quotes the input unbounded.
    drop(inner);
    Error::validation(code, message).with_violations(vec![violation])
}

/// An integer literal too large for the field's type reads as a float to serde_json
/// (`invalid type: floating point ...`) or as an invalid value: say it is out of range.
fn integer_overflow(json: &str, inner: &serde_json::Error, detail: &str) -> Option<String> {
    let expected = detail.rsplit_once(", expected ")?.1;
    let expected = expected.split(" at line ").next().unwrap_or(expected);
    let is_integer_type = [
        "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
    ]
    .iter()
    .any(|t| expected.starts_with(t) || expected.contains(&format!("{t} integer")));
    if !is_integer_type && !expected.contains("integer") {
        return None;
    }
    if !(detail.starts_with("invalid type: floating point")
        || detail.starts_with("invalid value: integer"))
    {
        return None;
    }
    // The literal ends just before the error's column on its line.
    let line = json.lines().nth(inner.line().checked_sub(1)?)?;
    let end = line
        .char_indices()
        .nth(inner.column())
        .map_or(line.len(), |(i, _)| i);
    let end = (0..=end.min(line.len()))
        .rev()
        .find(|&i| line.is_char_boundary(i))?;
    let literal: &str = line[..end]
        .rsplit(|c: char| !(c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E')))
        .next()?;
    if literal.is_empty() || literal == "-" || literal.contains(['.', 'e', 'E']) {
        return None;
    }
    Some(format!(
        "the integer {} is out of range for {expected}",
        echo(literal)
    ))
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
        assert_eq!(e.violations()[0].subject.as_deref(), Some("email"));
        let e = err(r#"{"email":"a","profile":{"first_name":"A"}}"#);
        assert_eq!(
            e.violations()[0].subject.as_deref(),
            Some("profile.date_of_birth")
        );
    }

    #[test]
    fn every_missing_field_is_reported_with_its_path() {
        let subjects = |e: &Error| -> Vec<String> {
            e.violations()
                .iter()
                .filter_map(|v| v.subject.clone())
                .collect()
        };
        let e = err(r#"{"profile":{}}"#);
        assert_eq!(e.code(), crate::codes::INPUT_MISSING_FIELD);
        assert_eq!(
            subjects(&e),
            ["profile.first_name", "profile.date_of_birth", "email"]
        );
        assert!(
            e.message()
                .contains("missing fields `profile.first_name`, `profile.date_of_birth`, `email`"),
            "{e}"
        );
        // A missing struct is reported once, not with each of its fields.
        assert_eq!(subjects(&err("{}")), ["email", "profile"]);
    }

    #[test]
    fn an_integer_too_large_is_out_of_range_not_a_float() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Count {
            n: u32,
        }
        for (json, literal) in [
            (r#"{"n": 18446744073709551616}"#, "18446744073709551616"),
            (r#"{"n": 4294967296}"#, "4294967296"),
            (r#"{"n": -1}"#, "-1"),
        ] {
            let e = from_json::<Count>("body", json).unwrap_err();
            assert_eq!(e.code(), crate::codes::INPUT_INVALID_FIELD);
            assert!(
                e.message()
                    .contains(&format!("the integer {literal} is out of range for u32")),
                "{e}"
            );
        }
        // A float stays a float.
        let e = from_json::<Count>("body", r#"{"n": 1.5}"#).unwrap_err();
        assert!(e.message().contains("floating point"), "{e}");
    }

    #[test]
    fn too_large_has_its_violation() {
        let e = from_json_limited::<Count2>("body", "[1,2,3]", 3).unwrap_err();
        assert_eq!(e.code(), crate::codes::INPUT_TOO_LARGE);
        assert_eq!(e.violations()[0].code, crate::codes::INPUT_TOO_LARGE);
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Count2(Vec<u8>);

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
