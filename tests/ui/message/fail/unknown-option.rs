use flext::prelude::*;

#[command(outptu = u64)]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct CreateUser {
    email: String,
}

fn main() {}
