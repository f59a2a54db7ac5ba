//! Every missing field of a document, not only the first: serde stops at the first
//! required field it misses, so the document is decoded again with a stand-in at each
//! missing field until it decodes or something else is wrong. A stand-in is the first
//! of `null`, `0`, `""`, `false`, `[]`, `{}` the field's type takes; fields missing
//! inside a stand-in are not reported (their parent is). At most [`ROUNDS`] decodes, on
//! the error path only.

use serde_json::Value;
use serde_path_to_error::Segment;

/// The most decodes one document gets.
const ROUNDS: usize = 64;

fn stand_ins() -> [Value; 6] {
    [
        Value::Null,
        Value::from(0),
        Value::from(""),
        Value::Bool(false),
        Value::Array(Vec::new()),
        Value::Object(serde_json::Map::new()),
    ]
}

/// The object at `path` in `doc`, when every segment is a key or an index.
fn object_at<'a>(
    doc: &'a mut Value,
    path: &serde_path_to_error::Path,
) -> Option<&'a mut serde_json::Map<String, Value>> {
    let mut at = doc;
    for segment in path.iter() {
        at = match segment {
            Segment::Map { key } => at.get_mut(key.as_str())?,
            Segment::Seq { index } => at.get_mut(*index)?,
            Segment::Enum { .. } | Segment::Unknown => return None,
        };
    }
    at.as_object_mut()
}

/// The field named in serde's "missing field `x`" message.
pub(super) fn field_of(detail: &str) -> Option<&str> {
    detail
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// The paths of every required field missing from `json` as `decode` reads it, in the
/// order serde meets them; empty when the document is not an object tree this can
/// walk.
pub(super) fn every_missing(
    json: &str,
    decode: &dyn Fn(&str) -> Result<(), serde_path_to_error::Error<serde_json::Error>>,
) -> Vec<String> {
    let Ok(mut doc) = serde_json::from_str::<Value>(json) else {
        return Vec::new();
    };
    let mut missing: Vec<String> = Vec::new();
    // Fabricated fields: their path, where they are, their name, the stand-in tried.
    let mut fabricated: Vec<(String, serde_path_to_error::Path, String, usize)> = Vec::new();
    for _ in 0..ROUNDS {
        // Decoded as text, through the caller's one decode path (see `decode_reporting_missing`).
        let Err(e) = decode(&doc.to_string()) else {
            break;
        };
        let at = e.path().to_string();
        let at = at.trim_end_matches('?').trim_end_matches('.').to_owned();
        let detail = e.inner().to_string();
        if let Some(field) = field_of(&detail) {
            let full = join(&at, field);
            if fabricated
                .iter()
                .any(|(f, ..)| full.starts_with(&format!("{f}.")))
            {
                // Inside a stand-in: not the user's omission.
            } else if !missing.contains(&full) {
                missing.push(full.clone());
            }
            let Some(object) = object_at(&mut doc, e.path()) else {
                break;
            };
            object.insert(field.to_owned(), Value::Null);
            fabricated.push((full, e.path().clone(), field.to_owned(), 0));
            continue;
        }
        // A stand-in the field's type does not take: the next one.
        let Some(slot) = fabricated.iter_mut().find(|(f, ..)| *f == at) else {
            break;
        };
        slot.3 += 1;
        let Some(next) = stand_ins().into_iter().nth(slot.3) else {
            break;
        };
        let Some(object) = object_at(&mut doc, &slot.1) else {
            break;
        };
        object.insert(slot.2.clone(), next);
    }
    missing
}
