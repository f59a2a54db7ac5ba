use flext::prelude::*;

#[query(output = u64)]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct CountUsers;

#[command_handler]
fn count_users(_: CountUsers) -> Result<u64> {
    Ok(0)
}

fn main() {
    let bus = Bus::builder().build().unwrap();
    let _ = bus.query(CountUsers, &Context::new());
}
