use flext::prelude::*;

#[query(output = u64)]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct CountUsers;

struct Users;

impl Users {
    #[query_handler]
    fn count(&self, _: CountUsers) -> Result<u64> {
        Ok(0)
    }
}

fn main() {
    let bus = Bus::builder().build().unwrap();
    let _ = bus.query(CountUsers, &Context::new());
}
