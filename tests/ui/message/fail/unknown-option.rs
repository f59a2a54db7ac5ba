use flext::prelude::*;

#[command(outptu = u64)]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct CreateUser {
    email: String,
}

fn main() {
    let bus = Bus::builder().build().unwrap();
    let _ = bus.send(CreateUser { email: "a@b.io".into() }, &Context::new());
}
