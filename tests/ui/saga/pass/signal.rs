//! A signal step: the saga waits for the payment, a webhook sends it (twice), the
//! recovery pass takes it once.

use flext::prelude::*;
use flext::saga::{MemoryLog, SagaOutcome, SagaRunner, Signal, SignalSent};
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
    #[saga_step(compensate = cancel)]
    async fn place(&self) -> Result<String> {
        Ok(self.order.clone())
    }
    async fn cancel(&self, _placed: &String) -> Result<()> {
        Ok(())
    }

    #[saga_step(signal, wait_ms = 86_400_000)]
    async fn payment(&self, _placed: &str, paid: Signal<Paid>) -> Result<u64> {
        Ok(paid.received()?.cents)
    }
}

fn main() {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(async {
            let runner = SagaRunner::builder(MemoryLog::new()).build();
            let outcome = runner
                .run(Checkout { order: "o-1".into() }, &Context::new())
                .await
                .unwrap();
            let id = outcome.saga_id();
            assert!(matches!(outcome, SagaOutcome::Waiting { .. }));
            let paid = Paid { cents: 1200 };
            let sent = runner.signal::<Checkout, _>(id, "evt-1", &paid).await.unwrap();
            assert_eq!(sent, SignalSent::Kept);
            let again = runner.signal::<Checkout, _>(id, "evt-1", &paid).await.unwrap();
            assert_eq!(again, SignalSent::Duplicate);
            let report = runner.recover().await.unwrap();
            assert_eq!(report.completed(), 1);
        });
}
