//! Every [`PortableProjection`] is a [`SqliteProjection`]: its statements run on the
//! unit of work's connection, `$n` placeholders bound by name.

use rusqlite::types::Value;

use super::{SqliteProjection, SqliteUnitOfWork};
use crate::database::{PortableProjection, ProjectionWrites, SqlValue, Statement};
use crate::error::Result;
use crate::event_store::EventEnvelope;

fn value(v: SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::Integer(i),
        SqlValue::Real(f) => Value::Real(f),
        SqlValue::Text(s) => Value::Text(s),
        SqlValue::Blob(b) => Value::Blob(b),
        SqlValue::Bool(b) => Value::Integer(i64::from(b)),
    }
}

fn run(uow: &SqliteUnitOfWork<'_>, writes: ProjectionWrites) -> Result<()> {
    for Statement { sql, params } in writes.into_statements() {
        let conn = uow.connection();
        let mut stmt = conn.prepare_cached(&sql)?;
        for (i, p) in params.into_iter().enumerate() {
            // `$n` is a named parameter to SQLite, numbered by first appearance:
            // bind each by its name, wherever it first appears.
            if let Some(index) = stmt.parameter_index(&format!("${}", i + 1))? {
                stmt.raw_bind_parameter(index, value(p))?;
            }
        }
        stmt.raw_execute()?;
    }
    Ok(())
}

impl<P: PortableProjection> SqliteProjection for P {
    fn name(&self) -> &str {
        PortableProjection::name(self)
    }
    fn tables(&self) -> &[&str] {
        PortableProjection::tables(self)
    }
    fn setup(&self, uow: &SqliteUnitOfWork<'_>) -> Result<()> {
        let mut writes = ProjectionWrites::new(&uow.table(""));
        PortableProjection::setup(self, &mut writes)?;
        run(uow, writes)
    }
    fn apply(&self, uow: &SqliteUnitOfWork<'_>, event: &EventEnvelope) -> Result<()> {
        let mut writes = ProjectionWrites::new(&uow.table(""));
        PortableProjection::apply(self, &mut writes, event)?;
        run(uow, writes)
    }
}
