use flext::prelude::*;

#[command(output = u32, name = "users.create", output = String, name = "users.add")]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct CreateUser {
    email: String,
}

fn main() {
    let bus = Bus::builder().build().unwrap();
    let _ = bus.send(CreateUser { email: "a@b.io".into() }, &Context::new());
}
