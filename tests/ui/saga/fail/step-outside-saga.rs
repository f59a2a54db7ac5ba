use flext::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Order {
    sku: String,
}

#[derive(Serialize, Deserialize)]
struct Reservation {
    id: u64,
}

impl Order {
    #[saga_step]
    fn reserve(&self) -> Result<Reservation> {
        Ok(Reservation { id: 1 })
    }
}

fn main() {
    let _ = Order { sku: "A-1".into() }.reserve();
}
