use flext::prelude::*;

// No derives at all: one error names the three to add.
#[command(output = u64)]
struct CreateUser {
    email: String,
}

#[command_handler]
async fn create_user(command: CreateUser) -> Result<u64> {
    Ok(command.email.len() as u64)
}

fn main() {
    let bus = Bus::builder().build().unwrap();
    let _ = bus.send(CreateUser { email: "a@b.io".into() }, &Context::new());
}
