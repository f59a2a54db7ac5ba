use flext::prelude::*;

// No derives at all: one error names the three to add.
#[command(output = u64)]
struct CreateUser {
    email: String,
}

fn main() {
    let bus = Bus::builder().build().unwrap();
    let _ = bus.send(CreateUser { email: "a@b.io".into() }, &Context::new());
}
