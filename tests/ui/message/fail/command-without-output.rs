use flext::prelude::*;

#[command]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct CreateUser {
    email: String,
}

fn main() {}
