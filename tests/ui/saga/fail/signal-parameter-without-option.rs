use flext::prelude::*;
use flext::saga::Signal;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Paid {
    cents: u64,
}

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

    /// Takes the payment, but is not marked as the step that waits for it.
    #[saga_step]
    fn payment(&self, _placed: &str, paid: Signal<Paid>) -> Result<u64> {
        Ok(paid.received()?.cents)
    }
}

async fn webhook(runner: &flext::saga::SagaRunner, id: flext::Uuid) -> Result<()> {
    runner.signal::<Checkout, _>(id, "psp-1", &Paid { cents: 5 }).await?;
    Ok(())
}

fn main() {
    let runner = flext::saga::SagaRunner::builder(flext::saga::MemoryLog::new()).build();
    let _ = runner.run(Checkout { order: "o-1".into() }, &Context::new());
    let _ = webhook(&runner, flext::Uuid::nil());
}
