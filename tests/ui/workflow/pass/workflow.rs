use std::sync::Arc;

use flext::middleware::CircuitBreaker;
use flext::prelude::*;
use flext::saga::{MemoryLog, SagaRunner};
use flext::workflow::Workflow;

struct Import {
    breaker: Arc<CircuitBreaker>,
}

#[workflow(name = "import")]
impl Import {
    #[workflow_step(timeout_ms = 1000)]
    async fn extract(&self, ctx: &Context) -> Result<Vec<String>> {
        let _ = ctx.correlation_id();
        Ok(vec!["a".into(), "bb".into()])
    }

    #[workflow_step(depends_on = [extract], compensate = unload, breaker = breaker)]
    fn load(&self, rows: &[String], prefix: State<String>) -> Result<String> {
        Ok(format!("{}{}", *prefix, rows.len()))
    }
    async fn unload(&self, label: &str) -> Result<()> {
        let _ = label;
        Ok(())
    }

    #[workflow_step(depends_on = [load], optional)]
    async fn report(&self, label: &str, rows: &Vec<String>) -> Result<usize> {
        Ok(label.len() + rows.len())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let runner = SagaRunner::builder(MemoryLog::new())
        .state("rows: ".to_owned())
        .build();
    let workflow = Import {
        breaker: Arc::new(CircuitBreaker::builder("load").build()),
    };
    let run = runner.run_workflow(&workflow, &Context::new()).await;
    assert!(run.is_success(), "{run:?}");
    assert_eq!(run.output::<String>("load").unwrap(), "rows: 2");
    assert_eq!(run.output::<usize>("report"), Some(&9));
    assert_eq!(<Import as Workflow>::STEPS.len(), 3);
}
