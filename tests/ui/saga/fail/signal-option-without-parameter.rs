use flext::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Checkout {
    order: String,
}

#[saga]
impl Checkout {
    #[saga_step]
    fn place(&self) -> Result<String> {
        Ok(self.order.clone())
    }

    /// Marked as waiting, but takes no signal.
    #[saga_step(signal, wait_ms = 60_000)]
    fn payment(&self, _placed: &str) -> Result<u64> {
        Ok(0)
    }
}

fn main() {
    let runner = flext::saga::SagaRunner::builder(flext::saga::MemoryLog::new()).build();
    let _ = runner.run(Checkout { order: "o-1".into() }, &Context::new());
}
