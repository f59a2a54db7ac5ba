use flext::prelude::*;
use flext::saga::Child;
use serde::{Deserialize, Serialize};

/// A plain struct, not a `#[saga]`.
#[derive(Serialize, Deserialize)]
struct Parcel {
    order: String,
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

    #[saga_step(child)]
    async fn ship(&self, shipped: Child<Parcel>) -> Result<u32> {
        Ok(shipped.saga_id().get_version_num() as u32)
    }
}

fn main() {
    let runner = flext::saga::SagaRunner::builder(flext::saga::MemoryLog::new()).build();
    let _ = runner.run(Shipment { order: "o-1".into() }, &Context::new());
}
