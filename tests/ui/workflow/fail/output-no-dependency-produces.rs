use flext::prelude::*;
use flext::workflow::Workflow;

struct Import;

#[workflow]
impl Import {
    #[workflow_step]
    async fn extract(&self) -> Result<Vec<String>> {
        Ok(vec!["row".into()])
    }

    #[workflow_step]
    async fn schema(&self) -> Result<u32> {
        Ok(2)
    }

    // Takes `schema`'s output without waiting for `schema`.
    #[workflow_step(depends_on = [extract])]
    async fn load(&self, rows: &[String], version: &u32) -> Result<usize> {
        Ok(rows.len() * *version as usize)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let run = Import.run(&Context::new()).await;
    assert!(run.is_success());
}
