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

    #[saga_step(child)]
    async fn ship(&self, shipped: Child<Parcel>) -> Result<String> {
        shipped.completed()
    }

    #[saga_step]
    async fn charge(&self, label: &str) -> Result<usize> {
        Ok(label.len())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let runner = flext::saga::SagaRunner::builder(flext::saga::MemoryLog::new()).build();
    let outcome = runner.run(Shipment { order: "o-1".into() }, &Context::new()).await.unwrap();
    let flext::saga::SagaOutcome::Completed { saga_id, output } = outcome else {
        panic!("the shipment completes");
    };
    assert_eq!(output, "box o-1".len());
    let child = runner.log().load(flext::saga::child_saga_id(saga_id, "ship")).await.unwrap();
    assert_eq!(child.state, flext::saga::SagaState::Completed);
}
