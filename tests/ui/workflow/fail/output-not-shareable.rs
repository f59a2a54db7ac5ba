use std::rc::Rc;

use flext::prelude::*;
use flext::workflow::Workflow;

struct Import;

#[workflow]
impl Import {
    #[workflow_step]
    async fn extract(&self) -> Result<Rc<Vec<String>>> {
        Ok(Rc::new(vec!["row".into()]))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let run = Import.run(&Context::new()).await;
    assert!(run.is_success());
}
