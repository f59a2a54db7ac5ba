//! User registration: the source documents' `UserRegistrationService` as a flext domain
//! service, run over a batch file of registration requests.
//!
//! Shows ordered business rules that collect every violation (email format, blocked
//! domains, password policy, required profile fields, minimum age, uniqueness against a
//! repository), a railway of steps (create account, set up profile, welcome mail,
//! activate), a tap that publishes a `UserRegistered` event with correlation and
//! causation ids, a postcondition, and an undo on `create_account` that removes the
//! account when a later step fails.
//!
//! ```text
//! cargo run --example user_registration [-- path/to/registrations.jsonl]
//! ```
//!
//! The input is JSON Lines, one registration per line; a malformed line is reported with
//! the field at fault and the run goes on. Set `RUST_LOG=debug` to see the spans and
//! which rule or step failed.

mod registration;

use registration::{Registry, register_all};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();

    let path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/data/registrations.jsonl"
        )
        .to_owned()
    });
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };

    let registry = Registry {
        mailer: registration::Mailer {
            undeliverable: vec!["ghost@example.net".to_owned()],
            ..Default::default()
        },
        ..Default::default()
    };
    let today = chrono::Local::now().date_naive();
    println!("registering users from {path} (today is {today})");
    for line in register_all(&text, today, &registry).await {
        println!("{line}");
    }

    let events = registry
        .events
        .events
        .lock()
        .map(|e| e.clone())
        .unwrap_or_default();
    let mails = registry.mailer.sent.lock().map(|m| m.len()).unwrap_or(0);
    println!(
        "\n{} users registered, {} welcome mails sent, {} UserRegistered events published",
        registry.users.count(),
        mails,
        events.len()
    );
    if let Some(first) = events.first() {
        match serde_json::to_string(first) {
            Ok(json) => println!("first event: {json}"),
            Err(e) => println!("first event could not be serialised: {e}"),
        }
    }
    std::process::ExitCode::SUCCESS
}
