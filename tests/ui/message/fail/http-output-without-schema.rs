use flext::prelude::*;

// A routed query's output is documented in the OpenAPI document: it needs a JSON Schema.
#[derive(serde::Serialize, serde::Deserialize)]
struct Balance {
    cents: i64,
}

#[query(output = Option<Balance>, http = "GET /accounts/{account}")]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct GetBalance {
    account: String,
}

#[query_handler]
fn get_balance(query: GetBalance) -> Result<Option<Balance>> {
    Ok(Some(Balance { cents: query.account.len() as i64 }))
}

fn main() {
    let bus = Bus::builder().build().unwrap();
    let _ = bus.query(GetBalance { account: "a-1".into() }, &Context::new());
}
