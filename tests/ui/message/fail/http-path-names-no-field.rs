use flext::prelude::*;

// The path names `{account}`; the field is `account_id`.
#[command(output = u64, http = "POST /accounts/{account}/deposits")]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Deposit {
    account_id: String,
    cents: u64,
}

#[command_handler]
fn deposit(command: Deposit) -> Result<u64> {
    Ok(command.cents)
}

fn main() {
    let bus = Bus::builder().build().unwrap();
    let _ = bus.send(Deposit { account_id: "a-1".into(), cents: 5 }, &Context::new());
}
