use flext::prelude::*;

// A query is safe to repeat: requiring an `Idempotency-Key` on it is a mistake.
#[query(output = Option<u64>, http = "GET /accounts/{account}", idempotency_key)]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Balance {
    account: String,
}

#[query_handler]
fn balance(query: Balance) -> Result<Option<u64>> {
    Ok(Some(query.account.len() as u64))
}

fn main() {
    let bus = Bus::builder().build().unwrap();
    let _ = bus.query(Balance { account: "a-1".into() }, &Context::new());
}
