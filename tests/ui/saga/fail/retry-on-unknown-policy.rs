use flext::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Trip {
    city: String,
}

#[saga]
impl Trip {
    #[saga_step(retries = 2, retry_on = sometimes)]
    fn book_hotel(&self) -> Result<u64> {
        Ok(1)
    }
}

fn main() {
    let runner = flext::saga::SagaRunner::builder(flext::saga::MemoryLog::new()).build();
    let _ = runner.run(Trip { city: "Lima".into() }, &Context::new());
}
