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

fn main() {
    let runner = flext::saga::SagaRunner::builder(flext::saga::MemoryLog::new()).build();
    let _ = runner.run(Order { sku: "A-1".into() }, &Context::new());
}
