use flext::prelude::*;

#[command(output = Vec<u64>, name = "users.import", idempotent, timeout_ms = 250, validate)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
enum Import {
    Csv(String),
    Json { body: String },
}

#[business_rules]
impl Import {
    #[business_rule(code = "import.body.nonempty")]
    fn body_nonempty(&self) -> RuleResult {
        let body = match self {
            Import::Csv(b) | Import::Json { body: b } => b,
        };
        ensure!(!body.is_empty(), "the import is empty")
    }
}

#[query(output = Option<String>)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct FindUser {
    id: u64,
}

#[event(name = "user.imported", version = 3)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct UserImported {
    id: u64,
}

/// A generic message: implements the traits, is not registered for JSON dispatch.
#[query(output = T)]
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Echo<T> {
    value: T,
}

fn main() {
    use flext::{Event, Message};
    assert_eq!(Import::NAME, "users.import");
    assert!(Import::IDEMPOTENT);
    assert_eq!(Import::timeout(), Some(std::time::Duration::from_millis(250)));
    assert!(Import::Csv(String::new()).validate().is_err());
    assert_eq!(FindUser::NAME, "FindUser");
    assert_eq!(UserImported::VERSION, 3);
    assert_eq!(<Echo<u8> as Message>::KIND, flext::MessageKind::Query);
}
