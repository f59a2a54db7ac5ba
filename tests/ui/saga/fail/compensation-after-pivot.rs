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
    #[saga_step(pivot)]
    fn charge(&self) -> Result<u64> {
        Ok(1)
    }

    #[saga_step(compensate = release)]
    fn reserve(&self) -> Result<Reservation> {
        Ok(Reservation { id: 1 })
    }

    fn release(&self, r: &Reservation) -> Result<()> {
        let _ = r.id;
        Ok(())
    }
}

fn main() {
    let runner = flext::saga::SagaRunner::builder(flext::saga::MemoryLog::new()).build();
    let _ = runner.run(Order { sku: "A-1".into() }, &Context::new());
}
