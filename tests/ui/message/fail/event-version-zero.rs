use flext::prelude::*;

#[event(version = 0)]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct UserCreated {
    id: u64,
}

fn main() {}
