use flext::prelude::*;

#[command(output = (), validate)]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Rename {
    name: String,
}

fn main() {}
