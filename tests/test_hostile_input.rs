//! Untrusted input quoted back in errors is bounded and escaped: a huge value, a huge or
//! hostile message name, a huge field name. Each gets a clear `flext::Error` whose
//! message stays small, and nothing panics.
//!
//! Peak memory of the 100 MB case is measured by hand (see the closing note of issue 9):
//! `/usr/bin/time -v target/debug/deps/test_hostile_input-* a_100_mb_wrong_typed_value`.

use flext::codes;
use flext::input;
use flext::prelude::*;

/// Far below the sizes involved, far above any useful message.
const BOUND: usize = 600;

#[command(output = u32, name = "signup.create")]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Signup {
    age: u32,
}

#[command_handler]
fn create(cmd: Signup) -> Result<u32> {
    Ok(cmd.age)
}

fn assert_clean(message: &str) {
    assert!(
        message.len() < BOUND,
        "{} bytes: {}",
        message.len(),
        &message[..BOUND]
    );
    assert!(
        !message
            .chars()
            .any(|c| c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c)),
        "raw control or bidi characters in {message:?}"
    );
}

#[test]
fn a_100_mb_wrong_typed_value_gives_a_small_error_that_keeps_what_was_expected() {
    let n = 100 * 1024 * 1024;
    let json = format!("{{\"age\": \"{}\"}}", "7".repeat(n));
    let err = input::from_json_limited::<Signup>("request body", &json, usize::MAX).unwrap_err();
    drop(json);
    assert_eq!(err.kind(), ErrorKind::Validation);
    assert_eq!(err.code(), codes::INPUT_INVALID_FIELD);
    assert_eq!(err.violations()[0].subject.as_deref(), Some("age"));
    let message = err.to_string();
    assert_clean(&message);
    let start = format!(
        "[{}] request body: field `age`: invalid type: string \"7777",
        codes::INPUT_INVALID_FIELD
    );
    assert!(message.starts_with(&start), "{message}");
    assert!(message.contains(" bytes) …"), "{message}");
    assert!(
        message.ends_with("expected u32 at line 1 column 104857610"),
        "{message}"
    );
    assert_clean(&err.violations()[0].message);
    assert!(
        std::error::Error::source(&err).is_none(),
        "serde's unbounded message is not kept"
    );
}

#[test]
fn a_document_over_the_default_limit_is_refused_before_parsing() {
    let json = format!("{{\"age\": {}}}", "1".repeat(input::DEFAULT_MAX_BYTES));
    let err = input::from_json::<Signup>("upload", &json).unwrap_err();
    assert_eq!(err.code(), codes::INPUT_TOO_LARGE);
    assert_clean(&err.to_string());
    let lines = format!("{{\"age\": 1}}\n{json}\n{{\"age\": 2}}\n");
    let results: Vec<_> = input::json_lines::<Signup>(&lines).collect();
    assert_eq!(results.len(), 3);
    assert_eq!(
        results[1].1.as_ref().unwrap_err().code(),
        codes::INPUT_TOO_LARGE
    );
    assert_eq!(
        results[2].1.as_ref().unwrap().age,
        2,
        "the next line is still read"
    );
}

#[test]
fn a_huge_unknown_field_name_is_bounded_in_the_path_and_the_message() {
    let json = format!("{{\"age\": 3, \"{}\": 1}}", "k".repeat(1024 * 1024));
    let err = input::from_json_limited::<Signup>("body", &json, usize::MAX).unwrap_err();
    assert_eq!(err.code(), codes::INPUT_UNKNOWN_FIELD);
    assert_clean(&err.to_string());
    assert!(
        err.violations()[0]
            .subject
            .as_deref()
            .is_none_or(|s| s.len() < BOUND)
    );
}

#[tokio::test]
async fn message_names_of_1_mb_and_50_mb_are_refused_before_lookup() {
    let bus = Bus::builder().build().unwrap();
    let ctx = Context::new();
    for n in [1024 * 1024, 50 * 1024 * 1024] {
        let name = "n".repeat(n);
        let err = bus
            .send_json(&name, "{\"age\": 1}", &ctx)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Validation);
        assert_eq!(err.code(), codes::INPUT_NAME_TOO_LONG);
        let message = err.to_string();
        assert_clean(&message);
        assert!(message.contains(&format!("({n} bytes)")), "{message}");
    }
    // A name at the limit is looked up as usual.
    let at_limit = "n".repeat(flext::bus::MAX_MESSAGE_NAME_BYTES);
    let err = bus.send_json(&at_limit, "{}", &ctx).await.unwrap_err();
    assert_eq!(err.code(), codes::BUS_UNKNOWN_MESSAGE);
    assert_clean(&err.to_string());
}

#[tokio::test]
async fn control_and_bidi_characters_in_a_name_are_escaped() {
    let bus = Bus::builder().build().unwrap();
    let name = "signup\0.cre\u{1b}[31mate\u{202e}";
    let err = bus
        .send_json(name, "{\"age\": 1}", &Context::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), codes::BUS_UNKNOWN_MESSAGE);
    let message = err.to_string();
    assert_clean(&message);
    assert!(
        message.contains("signup\\u{0}.cre\\u{1b}[31mate\\u{202e}"),
        "{message}"
    );
    // The real name still works.
    let out = bus
        .send_json("signup.create", "{\"age\": 41}", &Context::new())
        .await
        .unwrap();
    assert_eq!(out, 41);
}
