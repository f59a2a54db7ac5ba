use flext::database::ProjectionWrites;
use flext::sqlite::{SqliteProjectionRunner, SqliteDatabase, SqliteUnitOfWork};
use flext::prelude::*;
use serde::{Deserialize, Serialize};

#[event(name = "account.deposited")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Deposited {
    cents: i64,
}

#[event(name = "account.withdrawn")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Withdrawn {
    cents: i64,
}

struct Totals;

#[projection(tables = ["totals"])]
impl Totals {
    #[apply]
    fn deposited(&self, writes: &mut ProjectionWrites, e: &Deposited) -> Result<()> {
        writes.execute("INSERT INTO totals (cents) VALUES ($1)", [e.cents.into()]);
        Ok(())
    }

    #[apply]
    fn withdrawn(&self, uow: &SqliteUnitOfWork, e: &Withdrawn) -> Result<()> {
        let _ = (uow, e);
        Ok(())
    }
}

fn main() {
    let runner = SqliteProjectionRunner::new(SqliteDatabase::in_memory().unwrap(), Totals);
    let _ = runner.catch_up();
}
