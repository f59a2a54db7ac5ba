use flext::prelude::*;

// A query is served on GET: it reads and may be repeated.
#[query(output = u64, http = "POST /balances/{account_id}")]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Balance {
    account_id: String,
}

#[query_handler]
fn balance(query: Balance) -> Result<u64> {
    Ok(query.account_id.len() as u64)
}

fn main() {
    let bus = Bus::builder().build().unwrap();
    let _ = bus.query(Balance { account_id: "a-1".into() }, &Context::new());
}
