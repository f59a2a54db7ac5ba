use flext::sqlite::{SqliteProjectionRunner, SqliteDatabase};
use flext::prelude::*;
use serde::{Deserialize, Serialize};

#[event(name = "account.deposited")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Deposited {
    cents: i64,
}

struct Totals;

#[projection(tables = ["totals"])]
impl Totals {
    #[apply]
    fn deposited(&mut self, e: Deposited) -> Result<()> {
        let _ = e.cents;
        Ok(())
    }
}

fn main() {
    let runner = SqliteProjectionRunner::new(SqliteDatabase::in_memory().unwrap(), Totals);
    let _ = runner.catch_up();
}
