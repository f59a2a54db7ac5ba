use flext::sqlite::{SqliteProjectionRunner, SqliteDatabase, SqliteUnitOfWork};
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
    fn deposited(&self, uow: &SqliteUnitOfWork, e: &Deposited) -> Result<()> {
        let _ = (uow, e);
        Ok(())
    }

    #[apply]
    fn deposited_again(&self, uow: &SqliteUnitOfWork, e: &Deposited) -> Result<()> {
        let _ = (uow, e);
        Ok(())
    }
}

fn main() {
    let runner = SqliteProjectionRunner::new(SqliteDatabase::in_memory().unwrap(), Totals);
    let _ = runner.catch_up();
}
