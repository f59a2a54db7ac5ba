use flext::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Checkout {
    order: String,
}

#[saga]
impl Checkout {
    /// `wait_ms` is a signal step's time limit; this step's own limit is `timeout_ms`.
    #[saga_step(wait_ms = 5_000)]
    fn place(&self) -> Result<String> {
        Ok(self.order.clone())
    }
}

fn main() {
    let runner = flext::saga::SagaRunner::builder(flext::saga::MemoryLog::new()).build();
    let _ = runner.run(Checkout { order: "o-1".into() }, &Context::new());
}
