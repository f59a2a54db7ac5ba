use flext::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Booking {
    order: String,
}

#[saga]
impl Booking {
    /// `queue` names the queue a child saga starts through; this step has no child.
    #[saga_step(queue = "partner")]
    async fn call(&self) -> Result<String> {
        Ok(format!("booked {}", self.order))
    }
}

fn main() {
    let runner = flext::saga::SagaRunner::builder(flext::saga::MemoryLog::new()).build();
    let _ = runner.run(Booking { order: "o-1".into() }, &Context::new());
}
