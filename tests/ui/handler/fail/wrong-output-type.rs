use flext::prelude::*;

#[command(output = u64)]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct CreateUser {
    email: String,
}

#[command_handler]
fn create_user(cmd: CreateUser) -> Result<String> {
    Ok(cmd.email)
}

fn main() {
    let bus = Bus::builder().build().unwrap();
    let _ = bus.send(CreateUser { email: "a@b.io".into() }, &Context::new());
}
