use flext::prelude::*;
use flext::saga::Child;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Parcel {
    order: String,
}

#[saga]
impl Parcel {
    #[saga_step(compensate = unpack)]
    async fn pack(&self) -> Result<String> {
        Ok(format!("box {}", self.order))
    }
    async fn unpack(&self, _packed: &String) -> Result<()> {
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct Shipment {
    order: String,
}

#[saga]
impl Shipment {
    /// No earlier step returns the `Parcel` the child step would start.
    #[saga_step(child)]
    async fn ship(&self, shipped: Child<Parcel>) -> Result<String> {
        shipped.completed()
    }
}

fn main() {
    let runner = flext::saga::SagaRunner::builder(flext::saga::MemoryLog::new()).build();
    let _ = runner.run(Shipment { order: "o-1".into() }, &Context::new());
}
