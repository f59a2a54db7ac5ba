use flext::prelude::*;

#[command(output = u64)]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct CreateUser {
    email: String,
}

// Sending `CreateUser` could only fail at run time: say at compile time that it must
// have a handler in this crate.
flext::assert_handled!(CreateUser);

fn main() {
    let bus = Bus::builder().build().unwrap();
    let _ = bus.send(CreateUser { email: "a@b.io".into() }, &Context::new());
}
