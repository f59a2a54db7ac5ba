//! The example's registration service over the shipped batch file, with a fixed date so
//! that the expected report never drifts: every valid record is created, every invalid
//! one reports each of its violations with its code, malformed lines name the record and
//! the field, and a failure after account creation leaves no account behind.

#[path = "../examples/user_registration/registration.rs"]
#[allow(dead_code)]
mod registration;

use chrono::NaiveDate;
use flext::codes;
use flext::prelude::*;
use registration::{Mailer, RegisterUser, Registration, Registry, register_all};

const DATA: &str = include_str!("../examples/data/registrations.jsonl");
const EXPECTED: &str = include_str!("../examples/data/registrations.expected");

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
}

fn registry() -> Registry {
    Registry {
        mailer: Mailer {
            undeliverable: vec!["ghost@example.net".to_owned()],
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn the_shipped_batch_produces_the_expected_report() {
    let registry = registry();
    let report = register_all(DATA, today(), &registry).await;
    let expected: Vec<&str> = EXPECTED.lines().collect();
    for (got, want) in report.iter().zip(&expected) {
        assert_eq!(got, want);
    }
    assert_eq!(
        report.len(),
        expected.len(),
        "one line per non-blank record"
    );
    assert!(report.len() >= 30);

    // What is in the repository afterwards: the created users, and not the account whose
    // welcome mail bounced the first time (it was rolled back, then registered again
    // without mail).
    assert_eq!(registry.users.count(), 10);
    let ghost = registry
        .users
        .find_by_email("ghost@example.net")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ghost.id, "user-0009");
    assert!(ghost.active);
    let events = registry.events.events.lock().unwrap();
    assert_eq!(events.len(), 10, "one UserRegistered per created user");
    assert!(events.iter().all(|e| e.causation_id.is_some()));
    assert!(events.iter().all(|e| e.user_id.starts_with("user-")));
}

fn request(json: &str) -> Registration {
    flext::input::from_json("test", json).unwrap()
}

#[tokio::test]
async fn every_violation_is_reported_with_its_code_and_subject() {
    let registry = registry();
    let svc = RegisterUser::new(
        request(
            r#"{"email": "bad@", "password": "short", "profile": {"last_name": "X", "date_of_birth": "2020-01-01"}}"#,
        ),
        today(),
        &registry,
    );
    let err = svc.execute(&Context::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RuleViolation);
    let got: Vec<(String, Option<String>)> = err
        .violations()
        .iter()
        .map(|v| (v.code.to_string(), v.subject.clone()))
        .collect();
    let want = [
        ("user.email.format", Some("email")),
        ("user.password.length", Some("password")),
        ("user.password.characters", Some("password")),
        ("user.profile.required", Some("profile.first_name")),
        ("user.age.minimum", Some("profile.date_of_birth")),
    ];
    let want: Vec<(String, Option<String>)> = want
        .iter()
        .map(|(c, s)| (c.to_string(), s.map(str::to_owned)))
        .collect();
    assert_eq!(got, want);
    assert_eq!(registry.users.count(), 0, "no step ran");
}

#[tokio::test]
async fn a_bounced_welcome_mail_rolls_the_account_back() {
    let registry = registry();
    let json = r#"{"email": "ghost@example.net", "password": "Gh0st!Secure", "profile": {"first_name": "C", "last_name": "G", "date_of_birth": "1980-10-31"}}"#;
    let err = RegisterUser::new(request(json), today(), &registry)
        .execute(&Context::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Infrastructure);
    assert_eq!(err.code(), "mail.undeliverable");
    // The step's undo removed the account; the error is the mailer's, unchanged.
    assert_eq!(
        err.message(),
        "welcome mail to ghost@example.net bounced: 550 mailbox unavailable"
    );
    assert_eq!(registry.users.count(), 0);
    assert!(
        registry.events.events.lock().unwrap().is_empty(),
        "no event for a rolled-back account"
    );
}

#[tokio::test]
async fn a_rejected_duplicate_does_not_remove_the_original_account() {
    let registry = registry();
    let json = r#"{"email": "a@example.com", "password": "Str0ng!Pass", "profile": {"first_name": "A", "last_name": "B", "date_of_birth": "1990-01-01"}}"#;
    RegisterUser::new(request(json), today(), &registry)
        .execute(&Context::new())
        .await
        .unwrap();
    let err = RegisterUser::new(request(json), today(), &registry)
        .execute(&Context::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "user.email.taken");
    assert_eq!(registry.users.count(), 1);
}

#[test]
fn a_malformed_file_names_the_record_and_the_field_and_never_panics() {
    let text = concat!(
        r#"{"email": "a@example.com", "password": "Str0ng!Pass", "profile": {"first_name": "A""#,
        "\n",
        r#"{"email": "b@example.com", "password": 12345678, "profile": {}}"#,
        "\n",
        r#"{"email": "c@example.com", "password": "Str0ng!Pass", "profile": {"first_name": "C", "middle_name": "D"}}"#,
        "\n",
        r#"{"email": "d@example.com", "password": "Str0ng!Pass", "profile": {}}"#,
        "\n",
    );
    let results: Vec<(usize, flext::Result<Registration>)> =
        flext::input::json_lines(text).collect();
    assert_eq!(results.len(), 4, "a bad line never hides the next one");

    let e = results[0].1.as_ref().unwrap_err();
    assert_eq!(
        (e.kind(), e.code()),
        (ErrorKind::Validation, codes::INPUT_MALFORMED_JSON)
    );
    assert!(
        e.message()
            .starts_with("line 1: malformed JSON: EOF while parsing"),
        "{e}"
    );

    let e = results[1].1.as_ref().unwrap_err();
    assert_eq!(e.code(), codes::INPUT_INVALID_FIELD);
    assert_eq!(e.violations()[0].subject.as_deref(), Some("password"));
    assert!(
        e.message()
            .starts_with("line 2: field `password`: invalid type: integer"),
        "{e}"
    );

    let e = results[2].1.as_ref().unwrap_err();
    assert_eq!(e.code(), codes::INPUT_UNKNOWN_FIELD);
    assert_eq!(
        e.violations()[0].subject.as_deref(),
        Some("profile.middle_name")
    );
    assert!(
        e.message()
            .contains("line 3: field `profile.middle_name`: unknown field `middle_name`"),
        "{e}"
    );

    assert_eq!(results[3].1.as_ref().unwrap().email, "d@example.com");
}
