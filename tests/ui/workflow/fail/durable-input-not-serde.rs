use flext::prelude::*;
use flext::saga::{MemoryLog, SagaRunner};

/// Not serde: a durable run records its input to resume it.
struct Import {
    file: String,
}

#[workflow(durable)]
impl Import {
    #[workflow_step]
    async fn extract(&self) -> Result<usize> {
        Ok(self.file.len())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let runner = SagaRunner::builder(MemoryLog::new()).build();
    let _ = runner
        .run_workflow_durable(Import { file: "a.csv".into() }, &Context::new())
        .await;
}
