//! Running a [`Workflow`](crate::workflow::Workflow) with a saga runner's state and
//! compensation settings.

use std::time::Duration;

use super::SagaRunner;
use crate::context::Context;

impl SagaRunner {
    /// Runs a [`Workflow`](crate::workflow::Workflow) with this runner's state (for its
    /// steps' `State<T>` parameters) and its compensation settings
    /// ([`compensation_attempts`](super::SagaRunnerBuilder::compensation_attempts), 100 ms first
    /// backoff, [`backoff_cap`](super::SagaRunnerBuilder::backoff_cap)). Nothing is written to
    /// the log: the workflow runs in memory (see [`crate::workflow`]); a
    /// `#[workflow(durable)]` type is recorded by
    /// [`run_workflow_durable`](Self::run_workflow_durable) instead.
    ///
    /// ```
    /// use flext::prelude::*;
    /// use flext::saga::{MemoryLog, SagaRunner};
    /// use std::sync::{Arc, Mutex};
    ///
    /// struct Import;
    ///
    /// #[workflow]
    /// impl Import {
    ///     #[workflow_step(compensate = unload)]
    ///     async fn load(&self, table: State<Arc<Mutex<Vec<u32>>>>) -> Result<usize> {
    ///         table.lock().unwrap().extend([1, 2, 3]);
    ///         Ok(3)
    ///     }
    ///     async fn unload(&self, loaded: &usize, table: State<Arc<Mutex<Vec<u32>>>>) -> Result<()> {
    ///         let mut rows = table.lock().unwrap();
    ///         let keep = rows.len() - loaded;
    ///         rows.truncate(keep);
    ///         Ok(())
    ///     }
    ///
    ///     #[workflow_step(depends_on = [load])]
    ///     async fn index(&self, loaded: &usize) -> Result<()> {
    ///         Err(Error::infrastructure("index.full", format!("no room for {loaded} rows")))
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let table = Arc::new(Mutex::new(Vec::<u32>::new()));
    /// let runner = SagaRunner::builder(MemoryLog::new()).state(table.clone()).build();
    /// let run = runner.run_workflow(&Import, &Context::new()).await;
    /// assert_eq!(run.failed_step().unwrap().name, "index");
    /// assert_eq!(run.compensated(), ["load"]);
    /// assert!(table.lock().unwrap().is_empty());
    /// # }
    /// ```
    pub async fn run_workflow<W: crate::workflow::Workflow>(
        &self,
        workflow: &W,
        ctx: &Context,
    ) -> crate::workflow::WorkflowRun {
        let policy = crate::workflow::Policy {
            attempts: self.compensation_attempts.max(1),
            first: Duration::from_millis(100),
            cap: self.backoff_cap,
        };
        crate::workflow::drive(workflow, ctx, &self.state, policy).await
    }
}
