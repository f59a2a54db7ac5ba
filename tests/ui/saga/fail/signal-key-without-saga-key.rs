use flext::prelude::*;
use flext::saga::Signal;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct PaymentSettled {
    order_id: String,
    cents: u64,
}

#[derive(Serialize, Deserialize)]
struct Settle {
    order: String,
}

/// The signal names its saga by `order_id`, but the saga declares no key to match.
#[saga]
impl Settle {
    #[saga_step(signal, key = order_id)]
    fn settled(&self, paid: Signal<PaymentSettled>) -> Result<u64> {
        Ok(paid.received()?.cents)
    }
}

async fn on_settled(runner: &flext::saga::SagaRunner, event: &PaymentSettled) -> Result<()> {
    runner.route_signal::<Settle, _>("evt-1", event).await?;
    Ok(())
}

fn main() {
    let runner = flext::saga::SagaRunner::builder(flext::saga::MemoryLog::new()).build();
    let _ = runner.run(Settle { order: "o-1".into() }, &Context::new());
    let event = PaymentSettled { order_id: "o-1".into(), cents: 5 };
    let _ = on_settled(&runner, &event);
}
