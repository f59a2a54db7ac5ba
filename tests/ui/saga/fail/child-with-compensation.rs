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
    #[saga_step]
    async fn plan(&self) -> Result<Parcel> {
        Ok(Parcel { order: self.order.clone() })
    }

    /// The child's own compensations undo it: a compensation of its own is refused.
    #[saga_step(child, compensate = recall)]
    async fn ship(&self, shipped: Child<Parcel>) -> Result<String> {
        shipped.completed()
    }
    async fn recall(&self, _label: &String) -> Result<()> {
        Ok(())
    }

    #[saga_step]
    async fn charge(&self, label: &str) -> Result<String> {
        Ok(label.to_owned())
    }
}

fn main() {
    let runner = flext::saga::SagaRunner::builder(flext::saga::MemoryLog::new()).build();
    let _ = runner.run(Shipment { order: "o-1".into() }, &Context::new());
}
