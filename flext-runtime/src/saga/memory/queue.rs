//! The memory log's queues: rows in a list, and a dispatch pass under the log's lock.

use std::collections::HashMap;

use super::{Sagas, insert};
use crate::error::Result;
use crate::saga::{
    Candidate, DequeueRequest, Dequeued, Enqueued, QUEUE_PREFIX, QueueDepth, QueueItem, SagaRecord,
    pick,
};

/// A queue row and where it is.
pub(super) struct QueueRow {
    pub(super) item: QueueItem,
    pub(super) started_ms: Option<u64>,
    pub(super) finished_ms: Option<u64>,
}

/// Records the saga and its row; nothing when the id is in the log.
pub(super) fn enqueue(
    sagas: &mut Sagas,
    record: &SagaRecord,
    item: &QueueItem,
) -> Result<Enqueued> {
    if sagas.by_id.contains_key(&record.id) {
        return Ok(Enqueued::Duplicate);
    }
    insert(sagas, record)?;
    if let Some(parent) = item.parent {
        sagas.parents.insert(record.id, parent);
    }
    sagas.queue.push(QueueRow {
        item: item.clone(),
        started_ms: None,
        finished_ms: None,
    });
    Ok(Enqueued::Queued)
}

/// One dispatch pass, under the log's lock.
pub(super) fn dequeue(sagas: &mut Sagas, request: &DequeueRequest) -> Dequeued {
    let now = request.now_ms;
    let owner = format!("{QUEUE_PREFIX}{}", request.queue);
    let ours = |r: &&QueueRow| r.item.queue == request.queue;
    let running: Vec<&QueueRow> = sagas
        .queue
        .iter()
        .filter(ours)
        .filter(|r| r.started_ms.is_some() && r.finished_ms.is_none())
        .collect();
    let mut by_partition: HashMap<String, u64> = HashMap::new();
    for r in &running {
        *by_partition.entry(r.item.partition.clone()).or_default() += 1;
    }
    let window = request.rate.map_or(0, |rate| {
        sagas
            .queue
            .iter()
            .filter(ours)
            .filter(|r| r.started_ms.is_some_and(|s| s + rate.per_ms > now))
            .count() as u64
    });
    let mut waiting: Vec<&QueueRow> = sagas
        .queue
        .iter()
        .filter(ours)
        .filter(|r| r.started_ms.is_none() && r.finished_ms.is_none())
        .filter(|r| {
            sagas
                .by_id
                .get(&r.item.saga_id)
                .is_some_and(|s| s.owner == owner)
        })
        .collect();
    waiting.sort_by_key(|r| (std::cmp::Reverse(r.item.priority), r.item.enqueued_ms));
    let candidates: Vec<Candidate<'_>> = waiting
        .iter()
        .map(|r| Candidate {
            saga_id: r.item.saga_id,
            partition: &r.item.partition,
        })
        .collect();
    let chosen = pick(
        request,
        &candidates,
        running.len() as u64,
        &by_partition,
        window,
    );
    let mut claimed = Vec::new();
    for id in chosen {
        if let Some(row) = sagas.queue.iter_mut().find(|r| r.item.saga_id == id) {
            row.started_ms = Some(now);
        }
        if let Some(saga) = sagas.by_id.get_mut(&id) {
            saga.owner.clone_from(&request.lease.owner);
            saga.lease_until_ms = now.saturating_add(request.lease.duration_ms);
            saga.epoch += 1;
            claimed.push(saga.clone());
        }
    }
    let depth = depths(sagas)
        .into_iter()
        .find(|d| d.queue == request.queue)
        .unwrap_or_else(|| QueueDepth {
            queue: request.queue.clone(),
            ..QueueDepth::default()
        });
    Dequeued {
        sagas: claimed,
        depth,
    }
}

/// Every queue's depth, by name.
pub(super) fn depths(sagas: &Sagas) -> Vec<QueueDepth> {
    let mut by_name: std::collections::BTreeMap<&str, QueueDepth> = Default::default();
    for r in &sagas.queue {
        let d = by_name.entry(&r.item.queue).or_insert_with(|| QueueDepth {
            queue: r.item.queue.clone(),
            ..QueueDepth::default()
        });
        match (r.started_ms, r.finished_ms) {
            (_, Some(_)) => {}
            (Some(_), None) => d.running += 1,
            (None, None) => {
                d.queued += 1;
                let oldest = d.oldest_queued_ms.get_or_insert(r.item.enqueued_ms);
                *oldest = (*oldest).min(r.item.enqueued_ms);
            }
        }
    }
    by_name.into_values().collect()
}
