//! The queues of the SQLite saga log: `flext_saga_queue`, one row per enqueued saga; a
//! dispatch pass in the writer's transaction, which serialises every process on the
//! file, so the limits hold across them.

use std::collections::HashMap;

use rusqlite::{Connection, params};
use uuid::Uuid;

use super::SqliteLog;
use super::rows::{create_row, db_error, ms, parse_id};
use crate::error::Result;
use crate::saga::{
    Candidate, DequeueRequest, Dequeued, Enqueued, QUEUE_PREFIX, QueueDepth, QueueItem, SagaRecord,
    pick,
};

/// Creates the queue table, its indexes and the trigger that marks a queued saga's item
/// finished in the transaction of the write that finishes (or sticks) the saga.
pub(super) fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS flext_saga_queue (
             seq INTEGER PRIMARY KEY,
             queue TEXT NOT NULL,
             saga_id TEXT NOT NULL UNIQUE,
             priority INTEGER NOT NULL,
             partition_key TEXT NOT NULL,
             enqueued_ms INTEGER NOT NULL,
             started_ms INTEGER,
             finished_ms INTEGER
         );
         CREATE INDEX IF NOT EXISTS flext_saga_queue_waiting
             ON flext_saga_queue (queue, priority DESC, enqueued_ms, seq)
             WHERE started_ms IS NULL AND finished_ms IS NULL;
         CREATE INDEX IF NOT EXISTS flext_saga_queue_running
             ON flext_saga_queue (queue, partition_key)
             WHERE started_ms IS NOT NULL AND finished_ms IS NULL;
         CREATE INDEX IF NOT EXISTS flext_saga_queue_started ON flext_saga_queue (queue, started_ms);
         CREATE TRIGGER IF NOT EXISTS flext_saga_queue_finished
             AFTER UPDATE OF state ON flext_sagas
             WHEN NEW.state IN ('completed', 'compensated', 'resolved', 'stuck')
                  AND OLD.state <> NEW.state
         BEGIN
             UPDATE flext_saga_queue
                 SET finished_ms = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
                 WHERE saga_id = NEW.id AND finished_ms IS NULL;
         END;",
    )
    .map_err(db_error)
}

/// Records the saga and its queue row; nothing when the id is in the log.
pub(super) fn enqueue(
    conn: &Connection,
    record: &SagaRecord,
    input: &str,
    item: &QueueItem,
) -> Result<Enqueued> {
    match create_row(conn, record, input) {
        Ok(()) => {}
        Err(e) if e.code() == crate::codes::SAGA_EXISTS => return Ok(Enqueued::Duplicate),
        Err(e) => return Err(e),
    }
    conn.prepare_cached(
        "INSERT INTO flext_saga_queue (queue, saga_id, priority, partition_key, enqueued_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            item.queue,
            item.saga_id.to_string(),
            item.priority,
            item.partition,
            ms(item.enqueued_ms)
        ])
    })
    .map_err(db_error)?;
    if let Some(parent) = item.parent {
        super::signals::link_child(conn, item.saga_id, parent)?;
    }
    Ok(Enqueued::Queued)
}

/// One dispatch pass, in the writer's transaction.
pub(super) fn dequeue(conn: &Connection, request: &DequeueRequest) -> Result<Dequeued> {
    let now = ms(request.now_ms);
    let mut by_partition: HashMap<String, u64> = HashMap::new();
    let mut running = 0u64;
    {
        let mut stmt = conn
            .prepare_cached(
                "SELECT partition_key, COUNT(*) FROM flext_saga_queue
                 WHERE queue = ?1 AND started_ms IS NOT NULL AND finished_ms IS NULL
                 GROUP BY partition_key",
            )
            .map_err(db_error)?;
        let rows = stmt
            .query_map(params![request.queue], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(db_error)?;
        for row in rows {
            let (key, n) = row.map_err(db_error)?;
            let n = u64::try_from(n).unwrap_or(0);
            running += n;
            by_partition.insert(key, n);
        }
    }
    let window = match request.rate {
        Some(rate) => conn
            .prepare_cached(
                "SELECT COUNT(*) FROM flext_saga_queue WHERE queue = ?1 AND started_ms > ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_row(
                    params![request.queue, now.saturating_sub(ms(rate.per_ms))],
                    |r| r.get::<_, i64>(0),
                )
            })
            .map_err(db_error)?,
        None => 0,
    };
    let waiting: Vec<(String, String)> = {
        let mut stmt = conn
            .prepare_cached(
                "SELECT q.saga_id, q.partition_key FROM flext_saga_queue q
                 JOIN flext_sagas s ON s.id = q.saga_id
                 WHERE q.queue = ?1 AND q.started_ms IS NULL AND q.finished_ms IS NULL
                   AND s.owner = ?2
                 ORDER BY q.priority DESC, q.enqueued_ms, q.seq
                 LIMIT 256",
            )
            .map_err(db_error)?;
        stmt.query_map(
            params![request.queue, format!("{QUEUE_PREFIX}{}", request.queue)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db_error)?
        .collect::<rusqlite::Result<_>>()
        .map_err(db_error)?
    };
    let candidates = waiting
        .iter()
        .map(|(id, partition)| {
            Ok(Candidate {
                saga_id: parse_id(id)?,
                partition,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let chosen = pick(
        request,
        &candidates,
        running,
        &by_partition,
        u64::try_from(window).unwrap_or(0),
    );
    let mut sagas = Vec::with_capacity(chosen.len());
    for id in chosen {
        claim(conn, request, id)?;
        sagas.push(SqliteLog::read(conn, id)?);
    }
    let depth = depths(conn, Some(&request.queue))?
        .pop()
        .unwrap_or_else(|| QueueDepth {
            queue: request.queue.clone(),
            ..QueueDepth::default()
        });
    Ok(Dequeued { sagas, depth })
}

/// Marks `id`'s item started and leases its saga to the request's runner under a new
/// epoch.
fn claim(conn: &Connection, request: &DequeueRequest, id: Uuid) -> Result<()> {
    let key = id.to_string();
    let now = ms(request.now_ms);
    conn.prepare_cached("UPDATE flext_saga_queue SET started_ms = ?1 WHERE saga_id = ?2")
        .and_then(|mut stmt| stmt.execute(params![now, key]))
        .map_err(db_error)?;
    conn.prepare_cached(
        "UPDATE flext_sagas SET owner = ?1, lease_until_ms = ?2, epoch = epoch + 1 WHERE id = ?3",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            request.lease.owner,
            ms(request.now_ms.saturating_add(request.lease.duration_ms)),
            key
        ])
    })
    .map(drop)
    .map_err(db_error)
}

/// Every queue's depth (or only `queue`'s), by name.
pub(super) fn depths(conn: &Connection, queue: Option<&str>) -> Result<Vec<QueueDepth>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT queue,
                    SUM(started_ms IS NULL), SUM(started_ms IS NOT NULL),
                    MIN(CASE WHEN started_ms IS NULL THEN enqueued_ms END)
             FROM flext_saga_queue
             WHERE finished_ms IS NULL AND (?1 IS NULL OR queue = ?1)
             GROUP BY queue ORDER BY queue",
        )
        .map_err(db_error)?;
    stmt.query_map(params![queue], |r| {
        Ok(QueueDepth {
            queue: r.get(0)?,
            queued: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
            running: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
            oldest_queued_ms: r
                .get::<_, Option<i64>>(3)?
                .map(|v| u64::try_from(v).unwrap_or(0)),
        })
    })
    .map_err(db_error)?
    .collect::<rusqlite::Result<_>>()
    .map_err(db_error)
}
