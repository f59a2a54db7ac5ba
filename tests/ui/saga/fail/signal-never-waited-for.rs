use flext::prelude::*;
use flext::saga::Signal;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Paid {
    cents: u64,
}

/// A refund request: no step of `Checkout` waits for one.
#[derive(Serialize, Deserialize)]
struct Refunded {
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

    #[saga_step(signal, wait_ms = 86_400_000)]
    fn payment(&self, _placed: &str, paid: Signal<Paid>) -> Result<u64> {
        Ok(paid.received()?.cents)
    }
}

async fn webhook(runner: &flext::saga::SagaRunner, id: flext::Uuid) -> Result<()> {
    runner.signal::<Checkout, _>(id, "psp-1", &Refunded { cents: 5 }).await?;
    Ok(())
}

fn main() {
    let runner = flext::saga::SagaRunner::builder(flext::saga::MemoryLog::new()).build();
    let _ = webhook(&runner, flext::Uuid::nil());
}
