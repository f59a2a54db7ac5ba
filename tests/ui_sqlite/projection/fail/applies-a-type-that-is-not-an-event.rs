use flext::database::{ProjectionRunner, SqliteDatabase, UnitOfWork};
use flext::prelude::*;
use serde::{Deserialize, Serialize};

#[event(name = "account.deposited")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Deposited {
    cents: i64,
}

struct Totals;

#[projection]
impl Totals {
    #[apply]
    fn deposited(&self, uow: &UnitOfWork, e: &Deposited) -> Result<()> {
        let _ = (uow, e);
        Ok(())
    }

    #[apply]
    fn noted(&self, uow: &UnitOfWork, note: &String) -> Result<()> {
        let _ = (uow, note);
        Ok(())
    }
}

fn main() {
    let runner = ProjectionRunner::new(SqliteDatabase::in_memory().unwrap(), Totals);
    let _ = runner.catch_up();
}
