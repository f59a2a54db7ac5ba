use flext::prelude::*;
use flext::saga::{MemoryLog, SagaRunner};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Import {
    file: String,
}

/// In memory only: no `durable`.
#[workflow]
impl Import {
    #[workflow_step]
    async fn extract(&self) -> Result<usize> {
        Ok(self.file.len())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let runner = SagaRunner::builder(MemoryLog::new()).build();
    let run = runner
        .run_workflow_durable(Import { file: "a.csv".into() }, &Context::new())
        .await
        .unwrap();
    let _ = run.output::<usize>("extract");
}
