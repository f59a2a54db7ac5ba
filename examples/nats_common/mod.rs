//! What `nats_orders` and `nats_shipping` share: the events they exchange (each service
//! decodes them by name, as a separate codebase would), the connection and the command
//! line.

use std::time::Duration;

use flext::prelude::*;
use serde::{Deserialize, Serialize};

/// `orders` → `shipping`: an order was placed.
#[event(name = "order.placed")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order: String,
    pub sku: String,
    pub quantity: u32,
}

/// `shipping` → `orders`: a carrier will collect the order.
#[event(name = "shipment.scheduled")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShipmentScheduled {
    pub order: String,
    pub carrier: String,
}

/// A client that keeps trying until the server is there (a service may start before
/// its broker, or while it restarts), and reconnects for ever after.
pub async fn connect(url: &str) -> Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .connect(url)
        .await
        .map_err(|e| Error::infrastructure("example.nats", e.to_string()))
}

/// The service's relay to its stream `prefix`, made through `client`: while the server
/// cannot be reached (a service that starts while its broker restarts) it waits and tries
/// again, every 500 ms, instead of exiting; any other error (a configuration the stream
/// refuses, `flext.store.bad_config`) ends it at once.
pub async fn relay(client: &async_nats::Client, prefix: &str) -> Result<flext::nats::NatsRelay> {
    let mut waited = 0;
    loop {
        match flext::nats::NatsRelay::with_client(
            client.clone(),
            prefix,
            flext::nats::DEFAULT_RETRY_HORIZON,
        )
        .await
        {
            Ok(relay) => return Ok(relay),
            Err(e) if e.code() == flext::codes::OUTBOX_FAILED => {
                if waited == 0 {
                    eprintln!(
                        "waiting for the server to make the stream {prefix}: {}",
                        e.message()
                    );
                }
                waited += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The value after flag `name` on the command line.
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Prints a progress line at once (the kill tests read them to pick a moment).
pub fn say(line: impl std::fmt::Display) {
    use std::io::Write;
    println!("{line}");
    let _ = std::io::stdout().flush();
}

/// The outbox's relay, wrapped in a fault for the kill test: with
/// `FLEXT_FAULT_ACK_DELAY_MS` set, it waits that long after the broker acknowledged a
/// batch and before the outbox marks it delivered, widening the window in which a crash
/// leaves published events unmarked (they are published again after the restart, and
/// must be stored once).
pub struct AckDelay<R> {
    inner: R,
    delay: Duration,
}

impl<R> AckDelay<R> {
    pub fn from_env(inner: R) -> Self {
        AckDelay {
            inner,
            delay: fault_delay(),
        }
    }
}

/// `FLEXT_FAULT_ACK_DELAY_MS` (0 when unset): how long the kill test makes a service
/// wait between an effect's commit and its acknowledgement, the window a crash must hit
/// to make a broker deliver a message again.
pub fn fault_delay() -> Duration {
    Duration::from_millis(
        std::env::var("FLEXT_FAULT_ACK_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    )
}

impl<R: flext::database::Relay> flext::database::Relay for AckDelay<R> {
    fn deliver<'a>(
        &'a self,
        event: &'a flext::event_store::EventEnvelope,
    ) -> flext::BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.inner.deliver(event).await?;
            tokio::time::sleep(self.delay).await;
            Ok(())
        })
    }

    fn deliver_all<'a>(
        &'a self,
        events: &'a [flext::event_store::EventEnvelope],
    ) -> flext::BoxFuture<'a, (usize, Option<Error>)> {
        Box::pin(async move {
            let done = self.inner.deliver_all(events).await;
            if done.0 > 0 {
                tokio::time::sleep(self.delay).await;
            }
            done
        })
    }
}
