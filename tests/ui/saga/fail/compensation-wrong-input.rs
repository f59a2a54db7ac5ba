use flext::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Order {
    sku: String,
}

#[derive(Serialize, Deserialize)]
struct Reservation {
    id: u64,
}

#[saga]
impl Order {
    #[saga_step(compensate = release)]
    fn reserve(&self) -> Result<Reservation> {
        Ok(Reservation { id: 1 })
    }

    // Receives the step's output: a `&Reservation`, not a `&u64`.
    fn release(&self, id: &u64) -> Result<()> {
        let _ = id;
        Ok(())
    }
}

fn main() {
    let runner = flext::saga::SagaRunner::builder(flext::saga::MemoryLog::new()).build();
    let _ = runner.run(Order { sku: "A-1".into() }, &Context::new());
}
