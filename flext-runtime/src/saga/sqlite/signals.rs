//! The signal inbox of the SQLite saga log: `flext_saga_signals`, one row per (saga,
//! sender), read in the order kept.

use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::rows::{db_error, json_error, ms, parse_state};
use crate::error::Result;
use crate::saga::log::{now_ms, refuse_signal, unknown_saga};
use crate::saga::{SignalRecord, SignalSent, WAITING_PREFIX};

/// Creates the inbox table, and the link of child sagas to their parents with the
/// trigger that tells a parent its child finished, when missing.
pub(super) fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS flext_saga_signals (
             saga_id TEXT NOT NULL,
             sender TEXT NOT NULL,
             name TEXT NOT NULL,
             payload TEXT NOT NULL,
             sent_ms INTEGER NOT NULL,
             PRIMARY KEY (saga_id, sender)
         );
         CREATE TABLE IF NOT EXISTS flext_saga_children (
             child_id TEXT PRIMARY KEY,
             parent_id TEXT NOT NULL
         ) WITHOUT ROWID;
         CREATE TRIGGER IF NOT EXISTS flext_saga_child_finished
             AFTER UPDATE OF state ON flext_sagas
             WHEN NEW.state IN ('completed', 'compensated', 'resolved')
                  AND OLD.state <> NEW.state
         BEGIN
             INSERT OR IGNORE INTO flext_saga_signals (saga_id, sender, name, payload, sent_ms)
                 SELECT c.parent_id, NEW.id, 'child:' || NEW.name, 'null',
                        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
                 FROM flext_saga_children c
                 WHERE c.child_id = NEW.id;
             UPDATE flext_sagas SET lease_until_ms = 0
                 WHERE id = (SELECT parent_id FROM flext_saga_children WHERE child_id = NEW.id)
                   AND owner = 'signal:child:' || NEW.name;
         END;",
    )
    .map_err(db_error)
}

/// Links child saga `child` to its parent, in the writer's transaction (the one that
/// creates the child). Once the child reaches a final state, the trigger
/// `flext_saga_child_finished` keeps a `child:<name>` signal in the parent's inbox and
/// expires the parent's lease when it waits for it, in the transaction of that write.
pub(super) fn link_child(conn: &Connection, child: Uuid, parent: Uuid) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO flext_saga_children (child_id, parent_id) VALUES (?1, ?2)",
    )
    .and_then(|mut stmt| stmt.execute(params![child.to_string(), parent.to_string()]))
    .map(drop)
    .map_err(db_error)
}

/// Keeps `signal` unless its sender's is kept, and expires the lease of a saga waiting
/// for its name; in the writer's transaction.
pub(super) fn send(conn: &Connection, signal: &SignalRecord, payload: &str) -> Result<SignalSent> {
    let id = signal.saga_id;
    let key = id.to_string();
    let state: Option<String> = conn
        .prepare_cached("SELECT state FROM flext_sagas WHERE id = ?1")
        .and_then(|mut stmt| stmt.query_row(params![key], |r| r.get(0)).optional())
        .map_err(db_error)?;
    let state = parse_state(&state.ok_or_else(|| unknown_saga(id))?)?;
    if let Some(refused) = refuse_signal(id, state) {
        return Err(refused);
    }
    let kept = conn
        .prepare_cached(
            "INSERT INTO flext_saga_signals (saga_id, sender, name, payload, sent_ms)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (saga_id, sender) DO NOTHING",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                key,
                signal.sender,
                signal.name,
                payload,
                ms(signal.sent_ms)
            ])
        })
        .map_err(db_error)?;
    let now = ms(now_ms());
    conn.prepare_cached(
        "UPDATE flext_sagas SET lease_until_ms = min(lease_until_ms, ?1) WHERE id = ?2 AND owner = ?3",
    )
    .and_then(|mut stmt| stmt.execute(params![now, key, format!("{WAITING_PREFIX}{}", signal.name)]))
    .map_err(db_error)?;
    Ok(if kept == 1 {
        SignalSent::Kept
    } else {
        SignalSent::Duplicate
    })
}

/// The signals kept for saga `id`, in the order kept.
pub(super) fn read(conn: &Connection, id: Uuid) -> Result<Vec<SignalRecord>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT sender, name, payload, sent_ms FROM flext_saga_signals WHERE saga_id = ?1 ORDER BY rowid",
        )
        .map_err(db_error)?;
    let rows = stmt
        .query_map(params![id.to_string()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .map_err(db_error)?;
    rows.map(|row| {
        let (sender, name, payload, sent) = row.map_err(db_error)?;
        Ok(SignalRecord {
            saga_id: id,
            name,
            sender,
            payload: serde_json::from_str(&payload).map_err(json_error)?,
            sent_ms: u64::try_from(sent).unwrap_or(0),
        })
    })
    .collect()
}
