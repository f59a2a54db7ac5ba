//! The queues of the PostgreSQL saga log: `flext_saga_queue`, one row per enqueued saga;
//! a dispatch pass is one transaction under the queue's advisory lock (so no two
//! processes count and claim at once), reading its candidates `FOR UPDATE SKIP LOCKED`.

use std::collections::HashMap;

use uuid::Uuid;

use super::saga_writes::create_in;
use super::{from_bigint, pg_error, to_bigint};
use crate::error::Result;
use crate::saga::{
    Candidate, DequeueRequest, Dequeued, Enqueued, QUEUE_PREFIX, QueueDepth, QueueItem, SagaRecord,
    pick,
};

/// Schema version 6 (with the child sagas): the queue table, its indexes, and the
/// trigger that marks a queued saga's item finished in the transaction of the write
/// that finishes (or sticks) the saga.
pub(super) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS flext_saga_queue (
                 seq BIGSERIAL PRIMARY KEY,
                 queue TEXT NOT NULL,
                 saga_id UUID NOT NULL UNIQUE REFERENCES flext_sagas (id),
                 priority INTEGER NOT NULL,
                 partition_key TEXT NOT NULL,
                 enqueued_ms BIGINT NOT NULL,
                 started_ms BIGINT,
                 finished_ms BIGINT
             );
             CREATE INDEX IF NOT EXISTS flext_saga_queue_waiting
                 ON flext_saga_queue (queue, priority DESC, enqueued_ms, seq)
                 WHERE started_ms IS NULL AND finished_ms IS NULL;
             CREATE INDEX IF NOT EXISTS flext_saga_queue_running
                 ON flext_saga_queue (queue, partition_key)
                 WHERE started_ms IS NOT NULL AND finished_ms IS NULL;
             CREATE INDEX IF NOT EXISTS flext_saga_queue_started ON flext_saga_queue (queue, started_ms);
             CREATE OR REPLACE FUNCTION flext_saga_queue_finished() RETURNS trigger AS $$
             BEGIN
                 UPDATE flext_saga_queue
                     SET finished_ms = (extract(epoch FROM clock_timestamp()) * 1000)::bigint
                     WHERE saga_id = NEW.id AND finished_ms IS NULL;
                 RETURN NULL;
             END $$ LANGUAGE plpgsql;
             DROP TRIGGER IF EXISTS flext_saga_queue_finished ON flext_sagas;
             CREATE TRIGGER flext_saga_queue_finished
                 AFTER UPDATE OF state ON flext_sagas FOR EACH ROW
                 WHEN (NEW.state IN ('completed', 'compensated', 'resolved', 'stuck')
                       AND OLD.state IS DISTINCT FROM NEW.state)
                 EXECUTE FUNCTION flext_saga_queue_finished();";

/// Records the saga and its queue row in one transaction; nothing when the id is in the
/// log.
pub(super) async fn enqueue(
    client: &mut deadpool_postgres::Object,
    record: &SagaRecord,
    item: &QueueItem,
) -> Result<Enqueued> {
    let tx = client.transaction().await.map_err(pg_error)?;
    match create_in(&tx, record).await {
        Ok(()) => {}
        Err(e) if e.code() == crate::codes::SAGA_EXISTS => return Ok(Enqueued::Duplicate),
        Err(e) => return Err(e),
    }
    tx.execute(
        "INSERT INTO flext_saga_queue (queue, saga_id, priority, partition_key, enqueued_ms)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &item.queue,
            &item.saga_id,
            &item.priority,
            &item.partition,
            &to_bigint(item.enqueued_ms),
        ],
    )
    .await
    .map_err(pg_error)?;
    if let Some(parent) = item.parent {
        super::signals::link_child(&tx, item.saga_id, parent).await?;
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(Enqueued::Queued)
}

/// One dispatch pass, in one transaction under the queue's advisory lock.
pub(super) async fn dequeue(
    client: &mut deadpool_postgres::Object,
    request: &DequeueRequest,
) -> Result<Dequeued> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('flext.queue:' || $1, 0))",
        &[&request.queue],
    )
    .await
    .map_err(pg_error)?;
    let now = to_bigint(request.now_ms);
    let mut by_partition: HashMap<String, u64> = HashMap::new();
    let mut running = 0u64;
    for row in tx
        .query(
            "SELECT partition_key, COUNT(*) FROM flext_saga_queue
             WHERE queue = $1 AND started_ms IS NOT NULL AND finished_ms IS NULL
             GROUP BY partition_key",
            &[&request.queue],
        )
        .await
        .map_err(pg_error)?
    {
        let n = u64::try_from(row.get::<_, i64>(1)).unwrap_or(0);
        running += n;
        by_partition.insert(row.get(0), n);
    }
    let window = match request.rate {
        Some(rate) => tx
            .query_one(
                "SELECT COUNT(*) FROM flext_saga_queue WHERE queue = $1 AND started_ms > $2",
                &[&request.queue, &now.saturating_sub(to_bigint(rate.per_ms))],
            )
            .await
            .map_err(pg_error)?
            .get::<_, i64>(0),
        None => 0,
    };
    let waiting: Vec<(Uuid, String)> = tx
        .query(
            "SELECT q.saga_id, q.partition_key FROM flext_saga_queue q
             JOIN flext_sagas s ON s.id = q.saga_id
             WHERE q.queue = $1 AND q.started_ms IS NULL AND q.finished_ms IS NULL
               AND s.owner = $2
             ORDER BY q.priority DESC, q.enqueued_ms, q.seq
             LIMIT 256
             FOR UPDATE OF q SKIP LOCKED",
            &[&request.queue, &format!("{QUEUE_PREFIX}{}", request.queue)],
        )
        .await
        .map_err(pg_error)?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let candidates: Vec<Candidate<'_>> = waiting
        .iter()
        .map(|(saga_id, partition)| Candidate {
            saga_id: *saga_id,
            partition,
        })
        .collect();
    let chosen = pick(
        request,
        &candidates,
        running,
        &by_partition,
        u64::try_from(window).unwrap_or(0),
    );
    let mut sagas = Vec::with_capacity(chosen.len());
    for id in chosen {
        tx.execute(
            "UPDATE flext_saga_queue SET started_ms = $1 WHERE saga_id = $2",
            &[&now, &id],
        )
        .await
        .map_err(pg_error)?;
        tx.execute(
            "UPDATE flext_sagas SET owner = $1, lease_until_ms = $2, epoch = epoch + 1 WHERE id = $3",
            &[
                &request.lease.owner,
                &to_bigint(request.now_ms.saturating_add(request.lease.duration_ms)),
                &id,
            ],
        )
        .await
        .map_err(pg_error)?;
        sagas.push(super::saga::read(&tx, id).await?);
    }
    let depth = depths(&tx, Some(&request.queue))
        .await?
        .pop()
        .unwrap_or_else(|| QueueDepth {
            queue: request.queue.clone(),
            ..QueueDepth::default()
        });
    tx.commit().await.map_err(pg_error)?;
    Ok(Dequeued { sagas, depth })
}

/// Every queue's depth (or only `queue`'s), by name.
pub(super) async fn depths(
    client: &impl deadpool_postgres::GenericClient,
    queue: Option<&str>,
) -> Result<Vec<QueueDepth>> {
    Ok(client
        .query(
            "SELECT queue,
                    COUNT(*) FILTER (WHERE started_ms IS NULL),
                    COUNT(*) FILTER (WHERE started_ms IS NOT NULL),
                    MIN(enqueued_ms) FILTER (WHERE started_ms IS NULL)
             FROM flext_saga_queue
             WHERE finished_ms IS NULL AND ($1::text IS NULL OR queue = $1)
             GROUP BY queue ORDER BY queue",
            &[&queue],
        )
        .await
        .map_err(pg_error)?
        .into_iter()
        .map(|r| QueueDepth {
            queue: r.get(0),
            queued: u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
            running: u64::try_from(r.get::<_, i64>(2)).unwrap_or(0),
            oldest_queued_ms: r.get::<_, Option<i64>>(3).map(from_bigint),
        })
        .collect())
}
