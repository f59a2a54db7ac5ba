//! Projections that run on every backend: [`PortableProjection`] writes through
//! [`ProjectionWrites`], statements in the SQL SQLite and PostgreSQL share, with `$1`,
//! `$2`, ... placeholders and [`SqlValue`] parameters. Its statements run in the unit of
//! work that moves the checkpoint, on SQLite (`SqliteProjectionRunner`) or PostgreSQL
//! (`PgProjectionRunner`) alike; `#[projection]` writes the impl when the `#[apply]`
//! methods take `&mut ProjectionWrites`.

use crate::error::Result;
use crate::event_store::EventEnvelope;

/// A parameter of a portable statement. Converted on PostgreSQL to the type the
/// statement's parameter has (`SMALLINT`, `INTEGER`, `BIGINT`, `REAL`, `DOUBLE
/// PRECISION`, `TEXT`, `VARCHAR`, `BOOLEAN`, `BYTEA`, `JSON`, `JSONB`, `UUID`), bound
/// as is on SQLite.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// `NULL`.
    Null,
    /// An integer.
    Integer(i64),
    /// A float.
    Real(f64),
    /// Text (also a UUID's or a JSON document's text).
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
    /// A boolean (an integer 0 or 1 on SQLite).
    Bool(bool),
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for SqlValue {
            fn from(v: $t) -> Self {
                SqlValue::Integer(i64::from(v))
            }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32);

impl From<u64> for SqlValue {
    /// Clamped at `i64::MAX` (a position, a count or a time in milliseconds never
    /// reaches it).
    fn from(v: u64) -> Self {
        SqlValue::Integer(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<f64> for SqlValue {
    fn from(v: f64) -> Self {
        SqlValue::Real(v)
    }
}

impl From<bool> for SqlValue {
    fn from(v: bool) -> Self {
        SqlValue::Bool(v)
    }
}

impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(v.to_owned())
    }
}

impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(v)
    }
}

impl From<&String> for SqlValue {
    fn from(v: &String) -> Self {
        SqlValue::Text(v.clone())
    }
}

impl From<uuid::Uuid> for SqlValue {
    fn from(v: uuid::Uuid) -> Self {
        SqlValue::Text(v.to_string())
    }
}

impl From<Vec<u8>> for SqlValue {
    fn from(v: Vec<u8>) -> Self {
        SqlValue::Blob(v)
    }
}

impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(SqlValue::Null, Into::into)
    }
}

/// One statement a portable projection wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// The SQL, with `$1`, `$2`, ... placeholders.
    pub sql: String,
    /// The parameters, `$1` first.
    pub params: Vec<SqlValue>,
}

/// The statements a [`PortableProjection`] writes for one event (or for its setup),
/// run in order, in the unit of work that moves the checkpoint past the event, after
/// the method returns. Write SQL both backends read: `CREATE TABLE IF NOT EXISTS`,
/// `INSERT ... ON CONFLICT (...) DO UPDATE`, `BIGINT` for integers, `TEXT`, `$n`
/// placeholders; name tables through [`table`](Self::table), so that a rebuild writes
/// fresh copies.
#[derive(Debug, Default)]
pub struct ProjectionWrites {
    suffix: String,
    statements: Vec<Statement>,
}

impl ProjectionWrites {
    /// Writes for a unit of work whose tables carry `suffix` (empty, or the rebuild's).
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn new(suffix: &str) -> Self {
        ProjectionWrites {
            suffix: suffix.to_owned(),
            statements: Vec::new(),
        }
    }

    /// Adds a statement: `sql` with `$1`, `$2`, ... bound to `params` in order.
    ///
    /// ```
    /// use flext::database::{ProjectionWrites, SqlValue};
    /// # fn write(w: &mut ProjectionWrites) {
    /// let table = w.table("balances");
    /// w.execute(
    ///     format!("INSERT INTO {table} (id, cents) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET cents = {table}.cents + $2"),
    ///     [SqlValue::from("a-1"), SqlValue::from(250i64)],
    /// );
    /// # }
    /// ```
    pub fn execute(
        &mut self,
        sql: impl Into<String>,
        params: impl IntoIterator<Item = SqlValue>,
    ) -> &mut Self {
        self.statements.push(Statement {
            sql: sql.into(),
            params: params.into_iter().collect(),
        });
        self
    }

    /// The name to use for `table`: itself, or its fresh copy while the projection is
    /// rebuilt.
    pub fn table(&self, table: &str) -> String {
        format!("{table}{}", self.suffix)
    }

    /// The statements written so far, in order.
    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn into_statements(self) -> Vec<Statement> {
        self.statements
    }
}

/// A read model written in SQL both backends read, so that one type runs under the
/// SQLite `SqliteProjectionRunner` and the PostgreSQL `PgProjectionRunner` (it implements
/// both backends' projection traits). Written by `#[projection]` when its `#[apply]`
/// methods take `&mut ProjectionWrites`.
///
/// Delivery: what a projection writes through [`ProjectionWrites`] commits in the
/// transaction that moves its checkpoint, so each event's writes take effect exactly
/// once; anything else its methods do (a call to another service, a log line) runs at
/// least once, again after a crash or a failed batch. Make such an effect idempotent
/// by keying it on `event.event_id` (an inbox, or the receiver's deduplication).
pub trait PortableProjection: Send + Sync + 'static {
    /// The projection's name: the key of its checkpoint.
    fn name(&self) -> &str;

    /// The tables it owns, dropped and recreated by a rebuild.
    fn tables(&self) -> &[&str] {
        &[]
    }

    /// Writes its `CREATE TABLE IF NOT EXISTS` statements. Called in each batch's
    /// transaction before the events.
    ///
    /// # Errors
    ///
    /// Whatever the projection returns.
    fn setup(&self, writes: &mut ProjectionWrites) -> Result<()> {
        let _ = writes;
        Ok(())
    }

    /// Writes what one event changes.
    ///
    /// # Errors
    ///
    /// An error (its own, or one of its statements') stops the projection at this
    /// event: nothing of it is written and the checkpoint stays before it.
    fn apply(&self, writes: &mut ProjectionWrites, event: &EventEnvelope) -> Result<()>;
}

/// Checks that `name` is a plain SQL identifier (letters, digits and `_`, not starting
/// with a digit, at most 63 bytes), so that it can go into DDL quoted.
///
/// # Errors
///
/// `flext.projection.bad_table` naming it.
#[cfg(feature = "sqlite")]
pub(crate) fn check_table_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(crate::Error::validation(
            crate::codes::PROJECTION_BAD_TABLE,
            format!(
                "`{}` is not a table name a projection may own: use letters, digits and `_` (at most 63 bytes, not starting with a digit)",
                crate::input::echo(name)
            ),
        ))
    }
}
