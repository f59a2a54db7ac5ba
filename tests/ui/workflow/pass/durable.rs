//! A durable workflow: its input and outputs are serde; an in-memory run of the same
//! type still works.
use flext::prelude::*;
use flext::saga::{MemoryLog, SagaRunner};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Import {
    file: String,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Rows(Vec<u32>);

#[workflow(durable, name = "import")]
impl Import {
    #[workflow_step(compensate = forget)]
    async fn extract(&self) -> Result<Rows> {
        Ok(Rows(vec![1, 2, 3]))
    }
    async fn forget(&self, _rows: &Rows) -> Result<()> {
        Ok(())
    }

    #[workflow_step(depends_on = [extract], optional)]
    async fn count(&self, rows: &Rows) -> Result<usize> {
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
    assert_eq!(run.output::<usize>("count"), Some(&3));
    let in_memory = Import { file: "b.csv".into() }.run(&Context::new()).await;
    assert_eq!(in_memory.output::<Rows>("extract"), Some(&Rows(vec![1, 2, 3])));
}
