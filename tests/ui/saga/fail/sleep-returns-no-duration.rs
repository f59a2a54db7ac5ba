use flext::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Remind {
    order: String,
}

#[saga]
impl Remind {
    #[saga_step]
    fn place(&self) -> Result<String> {
        Ok(self.order.clone())
    }

    /// Milliseconds as a number: the runner wants a `Duration`.
    #[saga_step(sleep)]
    fn wait(&self, _placed: &str) -> Result<u64> {
        Ok(86_400_000)
    }

    #[saga_step]
    fn remind(&self, placed: &str) -> Result<String> {
        Ok(format!("about {placed}"))
    }
}

fn main() {
    let runner = flext::saga::SagaRunner::builder(flext::saga::MemoryLog::new()).build();
    let _ = runner.run(Remind { order: "o-1".into() }, &Context::new());
}
