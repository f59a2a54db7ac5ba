use flext::prelude::*;
use flext::saga::{MemoryLog, SagaOutcome, SagaRunner};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Migration {
    tables: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Backup {
    path: String,
}

#[derive(Default)]
struct Audit(std::sync::Mutex<Vec<String>>);

#[saga(name = "schema.migration")]
impl Migration {
    #[saga_step(compensate = drop_backup, timeout_ms = 1000)]
    async fn back_up(&self, ctx: &Context) -> Result<Backup> {
        Ok(Backup { path: format!("/backups/{}", ctx.idempotency_key().unwrap_or_default()) })
    }
    async fn drop_backup(&self, backup: &Backup, audit: State<Audit>) -> Result<()> {
        audit.0.lock().unwrap().push(format!("dropped {}", backup.path));
        Ok(())
    }

    #[saga_step(pivot, retries = 3, backoff_ms = 1)]
    fn migrate(&self, backup: &Backup) -> Result<usize> {
        let _ = &backup.path;
        Ok(self.tables.len())
    }

    #[saga_step]
    fn report(&self, migrated: &usize, backup: &Backup) -> Result<String> {
        Ok(format!("{migrated} tables, backup at {}", backup.path))
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let runner = SagaRunner::builder(MemoryLog::new()).state(Audit::default()).build();
    let outcome = rt
        .block_on(runner.run(Migration { tables: vec!["a".into(), "b".into()] }, &Context::new()))
        .unwrap();
    match outcome {
        SagaOutcome::Completed { output, .. } => assert!(output.starts_with("2 tables, backup at /backups/")),
        other => panic!("{other:?}"),
    }
}
