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
pub async fn connect(url: &str) -> Result<flext::nats::async_nats::Client> {
    flext::nats::async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .connect(url)
        .await
        .map_err(|e| Error::infrastructure("example.nats", e.to_string()))
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
