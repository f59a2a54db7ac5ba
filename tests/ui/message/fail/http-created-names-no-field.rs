use flext::prelude::*;

// The new resource's path names `{id}`; the command's field is `account`.
#[command(output = u64, http = "POST /accounts/{account}", created = "/accounts/{id}")]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Open {
    account: String,
    owner: String,
}

#[command_handler]
fn open(command: Open) -> Result<u64> {
    Ok(command.owner.len() as u64)
}

fn main() {
    let bus = Bus::builder().build().unwrap();
    let _ = bus.send(Open { account: "a-1".into(), owner: "Ada".into() }, &Context::new());
}
