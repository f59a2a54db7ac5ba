use flext::prelude::*;

#[query(output = u64)]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct CountUsers;

struct Users;

#[handlers]
impl Users {
    #[query_handler]
    #[command_handler]
    fn count(&self, _: CountUsers) -> Result<u64> {
        Ok(0)
    }
}

fn main() {
    let bus = Bus::builder().state(Users).build().unwrap();
    let _ = bus.query(CountUsers, &Context::new());
}
