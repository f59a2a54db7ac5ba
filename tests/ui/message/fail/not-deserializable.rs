use flext::prelude::*;

// Messages cross process boundaries (JSON dispatch, logs): serde is required.
#[command(output = u64)]
#[derive(Clone, serde::Serialize)]
struct CreateUser {
    email: String,
}

fn main() {}
