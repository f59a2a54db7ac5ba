use flext::prelude::*;

#[command(output = u64)]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct CreateUser {
    email: String,
}

#[command_handler]
fn create_user(cmd: CreateUser) -> Result<u64> {
    Ok(cmd.email.len() as u64)
}

#[command_handler]
fn create_user_again(cmd: CreateUser) -> Result<u64> {
    Ok(cmd.email.len() as u64)
}

fn main() {
    let bus = Bus::builder().build().unwrap();
    let _ = bus.send_local(CreateUser { email: "a@b.io".into() }, &Context::new());
}
