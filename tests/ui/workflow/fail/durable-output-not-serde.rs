use flext::prelude::*;
use flext::saga::{MemoryLog, SagaRunner};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Import {
    file: String,
}

/// Not serde: a durable run cannot record it.
struct Rows(Vec<u32>);

#[workflow(durable)]
impl Import {
    #[workflow_step]
    async fn extract(&self) -> Result<Rows> {
        Ok(Rows(vec![1, 2]))
    }

    #[workflow_step(depends_on = [extract])]
    async fn load(&self, rows: &Rows) -> Result<usize> {
        Ok(rows.0.len())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let runner = SagaRunner::builder(MemoryLog::new()).build();
    let run = runner
        .run_workflow_durable(Import { file: "a.csv".into() }, &Context::new())
        .await
        .unwrap();
    let _ = run.output::<usize>("load");
}
