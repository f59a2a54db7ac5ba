//! The saga log's schema and the SQL of each write, as functions on a connection: the
//! standalone `SqliteLog` and `SqliteDatabase`'s unit of work both call them.

use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::saga::fence::fence_refused;
use crate::saga::log::{
    Fence, Lease, SagaRecord, SagaState, Transition, lease_lost, now_ms, unknown_saga,
};

pub(super) use crate::db::db_error;

pub(super) fn json_error(e: serde_json::Error) -> Error {
    Error::infrastructure(
        crate::codes::SAGA_LOG_CORRUPT,
        format!("saga log entry does not decode: {e}"),
    )
    .with_source(e)
}

/// Creates the saga log's tables, and adds the columns older logs lack, once.
///
/// A new log keys each saga by an integer (`flext_sagas.saga_key`, given in creation
/// order) and stores its transitions in `flext_saga_steps`, keyed by that integer and the
/// transition's number, so that the pages a commit dirties are the tables' right edges,
/// whatever the saga ids: random (v4) ids, which operators find by their first
/// characters, otherwise put every saga's transitions on a random page of the table
/// (measured in BENCHMARKS.md: group commit at 64 sagas in flight fell from 15× to 5.6×
/// its one-at-a-time rate). `flext_saga_transitions` is then a view over the two tables,
/// with an `INSTEAD OF INSERT` trigger, so that every statement, and any a user wrote
/// against the log, reads and writes transitions by saga id in both layouts. A log
/// written by an earlier version keeps its `flext_saga_transitions` table keyed by id.
pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    let fresh = !conn
        .prepare(
            "SELECT 1 FROM sqlite_master WHERE name IN ('flext_sagas', 'flext_saga_transitions')",
        )
        .and_then(|mut stmt| stmt.exists([]))
        .map_err(db_error)?;
    if fresh {
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             CREATE TABLE IF NOT EXISTS flext_sagas (
                 saga_key INTEGER PRIMARY KEY,
                 id TEXT NOT NULL UNIQUE,
                 name TEXT NOT NULL,
                 input TEXT NOT NULL,
                 correlation_id TEXT NOT NULL,
                 state TEXT NOT NULL,
                 owner TEXT NOT NULL,
                 lease_until_ms INTEGER NOT NULL,
                 created_ms INTEGER NOT NULL,
                 definition TEXT NOT NULL DEFAULT '',
                 epoch INTEGER NOT NULL DEFAULT 0,
                 seq INTEGER NOT NULL DEFAULT 0
             );
             CREATE TABLE IF NOT EXISTS flext_saga_steps (
                 saga_key INTEGER NOT NULL,
                 seq INTEGER NOT NULL,
                 body TEXT NOT NULL,
                 at_ms INTEGER NOT NULL DEFAULT 0,
                 PRIMARY KEY (saga_key, seq)
             ) WITHOUT ROWID;
             CREATE VIEW IF NOT EXISTS flext_saga_transitions (saga_id, seq, body, at_ms) AS
                 SELECT s.id, t.seq, t.body, t.at_ms
                 FROM flext_saga_steps t JOIN flext_sagas s ON s.saga_key = t.saga_key;
             CREATE TRIGGER IF NOT EXISTS flext_saga_transitions_insert
                 INSTEAD OF INSERT ON flext_saga_transitions
             BEGIN
                 INSERT INTO flext_saga_steps (saga_key, seq, body, at_ms)
                 VALUES ((SELECT saga_key FROM flext_sagas WHERE id = NEW.saga_id),
                         NEW.seq, NEW.body, coalesce(NEW.at_ms, 0));
             END;
             COMMIT;",
        )
        .map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            db_error(e)
        })?;
    }
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS flext_sagas (
                 id TEXT PRIMARY KEY,
                 name TEXT NOT NULL,
                 input TEXT NOT NULL,
                 correlation_id TEXT NOT NULL,
                 state TEXT NOT NULL,
                 owner TEXT NOT NULL,
                 lease_until_ms INTEGER NOT NULL,
                 created_ms INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS flext_sagas_state ON flext_sagas (state, created_ms);
             CREATE TABLE IF NOT EXISTS flext_saga_transitions (
                 saga_id TEXT NOT NULL,
                 seq INTEGER NOT NULL,
                 body TEXT NOT NULL,
                 PRIMARY KEY (saga_id, seq)
             ) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS flext_sagas_name ON flext_sagas (name, created_ms);",
    )
    .map_err(db_error)?;
    // Logs written by earlier versions gain the columns they lack, once.
    for (table, column, decl) in [
        ("flext_sagas", "definition", "TEXT NOT NULL DEFAULT ''"),
        (
            "flext_saga_transitions",
            "at_ms",
            "INTEGER NOT NULL DEFAULT 0",
        ),
        ("flext_sagas", "epoch", "INTEGER NOT NULL DEFAULT 0"),
        ("flext_sagas", "seq", "INTEGER NOT NULL DEFAULT 0"),
    ] {
        let present = conn
            .prepare(&format!(
                "SELECT 1 FROM pragma_table_info('{table}') WHERE name = '{column}'"
            ))
            .and_then(|mut stmt| stmt.exists([]))
            .map_err(db_error)?;
        if !present {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))
                .map_err(db_error)?;
            if column == "seq" {
                // The fence compares a write's predecessor with this count.
                conn.execute_batch(
                    "UPDATE flext_sagas SET seq = (SELECT COUNT(*) FROM flext_saga_transitions t WHERE t.saga_id = flext_sagas.id)",
                )
                .map_err(db_error)?;
            }
        }
    }
    // Listing stuck or recent sagas oldest first reads an index, not the table; so does
    // taking back a gone incarnation's sagas (by owner: a claim or a park changes it, a
    // transition does not).
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS flext_sagas_created ON flext_sagas (created_ms);
         CREATE INDEX IF NOT EXISTS flext_sagas_owner ON flext_sagas (owner);",
    )
    .map_err(db_error)?;
    super::signals::migrate(conn)?;
    super::queue::migrate(conn)
}

pub(super) fn parse_state(s: &str) -> Result<SagaState> {
    s.parse().map_err(|_| {
        Error::infrastructure(
            crate::codes::SAGA_LOG_CORRUPT,
            format!("unknown saga state {} in the log", crate::input::echo(s)),
        )
    })
}

pub(super) fn parse_id(s: &str) -> Result<Uuid> {
    s.parse().map_err(|e| {
        Error::infrastructure(
            crate::codes::SAGA_LOG_CORRUPT,
            format!("bad saga id in the log: {e}"),
        )
    })
}

/// Appends `body` as transition `seq` of saga `id`, at `now`.
pub(super) fn insert_transition(
    conn: &Connection,
    id: &str,
    seq: u64,
    body: &str,
    now: u64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO flext_saga_transitions (saga_id, seq, body, at_ms) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut stmt| stmt.execute(params![id, ms(seq), body, ms(now)]))
    .map_err(db_error)?;
    Ok(())
}

/// The error for a write refused by a fence check: why, from the row as it is now, or
/// no such saga.
pub(super) fn refused(conn: &Connection, id: Uuid, fence: Option<Fence>) -> Error {
    let row = conn
        .query_row(
            "SELECT owner, state, epoch, seq FROM flext_sagas WHERE id = ?1",
            params![id.to_string()],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            },
        )
        .optional();
    match row {
        Ok(Some((owner, state, epoch, seq))) => match (fence, parse_state(&state)) {
            (Some(fence), Ok(state)) => fence_refused(
                id,
                state,
                &owner,
                u64::try_from(epoch).unwrap_or(0),
                u64::try_from(seq).unwrap_or(0),
                fence,
            ),
            _ => lease_lost(id, &owner),
        },
        Ok(None) => unknown_saga(id),
        Err(e) => db_error(e),
    }
}

pub(super) fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Inserts a new saga; refuses (writing nothing) when the id exists.
pub(crate) fn create_row(conn: &Connection, record: &SagaRecord, input: &str) -> Result<()> {
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO flext_sagas (id, name, input, correlation_id, state, owner, lease_until_ms, created_ms, definition, epoch, seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                record.id.to_string(),
                record.name,
                input,
                record.correlation_id.to_string(),
                record.state.as_str(),
                record.owner,
                ms(record.lease_until_ms),
                ms(if record.created_ms == 0 { now_ms() } else { record.created_ms }),
                record.definition,
                ms(record.epoch),
            ])
        })
        .map_err(db_error)?;
    if inserted == 0 {
        return Err(Error::conflict(
            crate::codes::SAGA_EXISTS,
            format!("saga {} is already in the log", record.id),
        ));
    }
    Ok(())
}

/// Appends a transition (already JSON) and sets the saga's state, when the saga is in
/// flight under `fence` (its epoch, and `fence.seq` transitions before this one), in the
/// one `UPDATE` that checks it; refuses (writing nothing) otherwise.
///
/// Most transitions leave the state as it was (a step completes while running). SQLite
/// rewrites an index entry for every indexed column an `UPDATE` names in `SET`, changed
/// or not, so the common case is a statement without `state`, which leaves
/// `flext_sagas_state` alone: one page fewer in each commit (measured in BENCHMARKS.md).
/// When that matches no row (the state changes, or the fence refuses), the statement that
/// sets the state runs.
pub(crate) fn append_row(
    conn: &Connection,
    id: Uuid,
    body: &str,
    state: SagaState,
    lease: &Lease,
    fence: Fence,
) -> Result<()> {
    append_rows(conn, id, std::slice::from_ref(&body), state, lease, fence)
}

/// [`append_row`] for several transitions (already JSON), in order, under one fence
/// check: the saga's `seq` moves on by their number. Nothing is written for none.
pub(crate) fn append_rows(
    conn: &Connection,
    id: Uuid,
    bodies: &[impl AsRef<str>],
    state: SagaState,
    lease: &Lease,
    fence: Fence,
) -> Result<()> {
    if bodies.is_empty() {
        return Ok(());
    }
    let n = bodies.len() as i64;
    let now = now_ms();
    let key = id.to_string();
    let until = ms(now.saturating_add(lease.duration_ms));
    let mut updated = 0;
    if matches!(state, SagaState::Running | SagaState::Compensating) {
        updated = conn
            .prepare_cached(
                "UPDATE flext_sagas SET owner = ?1, lease_until_ms = ?2, seq = seq + ?7
                 WHERE id = ?3 AND epoch = ?4 AND seq = ?5 AND state = ?6",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    lease.owner,
                    until,
                    key,
                    ms(fence.epoch),
                    ms(fence.seq),
                    state.as_str(),
                    n,
                ])
            })
            .map_err(db_error)?;
    }
    if updated == 0 {
        updated = conn
            .prepare_cached(
                "UPDATE flext_sagas SET state = ?1, owner = ?2, lease_until_ms = ?3, seq = seq + ?7
                 WHERE id = ?4 AND epoch = ?5 AND seq = ?6 AND state IN ('running', 'compensating')",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    state.as_str(),
                    lease.owner,
                    until,
                    key,
                    ms(fence.epoch),
                    ms(fence.seq),
                    n,
                ])
            })
            .map_err(db_error)?;
    }
    if updated == 0 {
        return Err(refused(conn, id, Some(fence)));
    }
    for (i, body) in bodies.iter().enumerate() {
        insert_transition(conn, &key, fence.seq + 1 + i as u64, body.as_ref(), now)?;
    }
    Ok(())
}

/// Sets a final state the transitions already reach, under `fence`; refuses (writing
/// nothing) as [`append_row`] does.
pub(super) fn settle_row(
    conn: &Connection,
    id: Uuid,
    state: SagaState,
    fence: Fence,
) -> Result<()> {
    let updated = conn
        .prepare_cached(
            "UPDATE flext_sagas SET state = ?1
             WHERE id = ?2 AND epoch = ?3 AND seq = ?4 AND state IN ('running', 'compensating')",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                state.as_str(),
                id.to_string(),
                ms(fence.epoch),
                ms(fence.seq)
            ])
        })
        .map_err(db_error)?;
    if updated == 0 {
        return Err(refused(conn, id, Some(fence)));
    }
    Ok(())
}

/// [`create_row`] for a record, its input encoded here.
pub(crate) fn create_sqlite(conn: &Connection, record: &SagaRecord) -> Result<()> {
    let input = serde_json::to_string(&record.input).map_err(json_error)?;
    create_row(conn, record, &input)
}

/// [`append_row`] for a transition, encoded here.
pub(crate) fn append_sqlite(
    conn: &Connection,
    id: Uuid,
    transition: &Transition,
    state: SagaState,
    lease: &Lease,
    fence: Fence,
) -> Result<()> {
    let body = serde_json::to_string(transition).map_err(json_error)?;
    append_row(conn, id, &body, state, lease, fence)
}
