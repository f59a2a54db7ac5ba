use flext::prelude::*;

/// Not serde: the log cannot keep the saga's input.
struct Order {
    sku: String,
}

#[saga]
impl Order {
    #[saga_step]
    fn reserve(&self) -> Result<u64> {
        Ok(self.sku.len() as u64)
    }
}

fn main() {}
