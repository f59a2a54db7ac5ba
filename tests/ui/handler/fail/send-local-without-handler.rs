use flext::prelude::*;

#[command(output = u64)]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct CreateUser {
    email: String,
}

// No handler for `CreateUser` in this crate: the statically resolved send does not compile.
async fn register(bus: &Bus) -> Result<u64> {
    bus.send_local(CreateUser { email: "a@b.io".into() }, &Context::new()).await
}

fn main() {
    let _ = register;
}
