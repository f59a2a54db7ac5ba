use flext::prelude::*;
use flext::workflow::Workflow;

struct Import;

#[workflow]
impl Import {
    #[workflow_step]
    async fn extract(&self) -> Result<Vec<String>> {
        Ok(vec!["row".into()])
    }

    #[workflow_step(depends_on = [extrct])]
    async fn load(&self, rows: &[String]) -> Result<usize> {
        Ok(rows.len())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let run = Import.run(&Context::new()).await;
    assert!(run.is_success());
}
