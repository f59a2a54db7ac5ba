use flext::prelude::*;

// Messages cross process boundaries (JSON dispatch, logs): serde is required.
#[command(output = u64)]
#[derive(Clone, serde::Serialize)]
struct CreateUser {
    email: String,
}

fn main() {
    let bus = Bus::builder().build().unwrap();
    let _ = bus.send(CreateUser { email: "a@b.io".into() }, &Context::new());
}
