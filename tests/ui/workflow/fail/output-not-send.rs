use std::sync::{Mutex, MutexGuard};

use flext::prelude::*;

static ROWS: Mutex<u32> = Mutex::new(0);

struct Import;

// A guard is `Sync` but not `Send`: it must be released on the thread that took it.
#[workflow]
impl Import {
    #[workflow_step]
    async fn extract(&self) -> Result<MutexGuard<'static, u32>> {
        Ok(ROWS.lock().unwrap())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let run = Import.run(&Context::new()).await;
    assert!(run.is_success());
}
