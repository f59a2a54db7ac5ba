use flext::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Serialize, Deserialize)]
struct Remind {
    order: String,
}

#[saga]
impl Remind {
    #[saga_step(compensate = cancel)]
    fn place(&self) -> Result<String> {
        Ok(self.order.clone())
    }
    fn cancel(&self, _placed: &String) -> Result<()> {
        Ok(())
    }

    #[saga_step(sleep, compensate = wake_up)]
    fn wait(&self, _placed: &str) -> Result<Duration> {
        Ok(Duration::from_secs(3600))
    }
    fn wake_up(&self, _slept: &Duration) -> Result<()> {
        Ok(())
    }
}

fn main() {
    let runner = flext::saga::SagaRunner::builder(flext::saga::MemoryLog::new()).build();
    let _ = runner.run(Remind { order: "o-1".into() }, &Context::new());
}
