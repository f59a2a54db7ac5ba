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
    // `charge` needs a `Reservation`, but `reserve` runs after it.
    #[saga_step]
    fn charge(&self, r: &Reservation) -> Result<u64> {
        Ok(r.id)
    }

    #[saga_step]
    fn reserve(&self) -> Result<Reservation> {
        Ok(Reservation { id: 1 })
    }
}

fn main() {
    let runner = flext::saga::SagaRunner::builder(flext::saga::MemoryLog::new()).build();
    let _ = runner.run(Order { sku: "A-1".into() }, &Context::new());
}
