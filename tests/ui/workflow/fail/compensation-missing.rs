use flext::prelude::*;
use flext::workflow::Workflow;

struct Import;

#[workflow]
impl Import {
    #[workflow_step(compensate = unlod)]
    async fn load(&self) -> Result<usize> {
        Ok(3)
    }

    async fn unload(&self, rows: &usize) -> Result<()> {
        let _ = rows;
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let run = Import.run(&Context::new()).await;
    assert!(run.is_success());
}
