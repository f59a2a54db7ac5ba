use flext::prelude::*;
use flext::saga::{MemoryLog, SagaRunner};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Trip {
    city: String,
}

#[derive(Serialize, Deserialize)]
struct Booking {
    id: u64,
}

impl Trip {
    #[saga_step]
    fn book(&self) -> Result<Booking> {
        Ok(Booking { id: 1 })
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let runner = SagaRunner::builder(MemoryLog::new()).build();
    let _ = rt.block_on(runner.run(Trip { city: "Oslo".into() }, &Context::new()));
}
