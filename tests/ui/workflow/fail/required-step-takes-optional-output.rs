use flext::prelude::*;
use flext::workflow::Workflow;

struct Import;

#[workflow]
impl Import {
    #[workflow_step]
    async fn extract(&self) -> Result<Vec<String>> {
        Ok(vec!["row".into()])
    }

    #[workflow_step(depends_on = [extract], optional)]
    async fn enrich(&self, rows: &[String]) -> Result<Vec<u32>> {
        Ok(rows.iter().map(|r| r.len() as u32).collect())
    }

    #[workflow_step(depends_on = [enrich])]
    async fn load(&self, values: &[u32]) -> Result<usize> {
        Ok(values.len())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let run = Import.run(&Context::new()).await;
    assert!(run.is_success());
}
