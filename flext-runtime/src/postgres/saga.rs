//! [`PgSagaLog`]: the saga log in PostgreSQL, shared by processes on several machines.

use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{PgDatabase, from_bigint, pg_error, to_bigint};
use crate::error::{Error, Result};
use crate::future::BoxFuture;
use crate::saga::{
    ClaimRequest, Claimed, Fence, HistoryEntry, Intervention, Lease, SagaFilter, SagaLog,
    SagaRecord, SagaState, SagaSummary, StuckAt, Transition, now_ms,
};

/// The saga log in PostgreSQL. Every write checks its fence (the saga's epoch and the
/// transition it follows, [`Fence`]) in its `UPDATE ... WHERE` (the row lock serialises
/// two runners' writes to one saga); takeover claims expired leases, moving the epoch on,
/// with `FOR UPDATE SKIP LOCKED`, so recovery loops in several processes never
/// claim the same saga; idempotent start is the primary key on the id. Commits come in
/// groups from PostgreSQL itself (its WAL writer), with no writer thread of flext's.
#[derive(Clone)]
pub struct PgSagaLog {
    pub(super) db: PgDatabase,
    /// Connections of their own holding runner incarnations' liveness locks, by owner.
    pub(super) liveness: super::liveness::Liveness,
}

pub(super) fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::infrastructure(
        crate::codes::SAGA_LOG_CORRUPT,
        format!("saga log: {what} does not decode: {e}"),
    )
}

fn state(s: &str) -> Result<SagaState> {
    s.parse()
        .map_err(|_| corrupt("a state", crate::input::echo(s)))
}

pub(super) async fn read(
    client: &impl deadpool_postgres::GenericClient,
    id: Uuid,
) -> Result<SagaRecord> {
    let row = client
        .query_opt(
            "SELECT name, input, correlation_id, state, owner, lease_until_ms, definition, created_ms, epoch FROM flext_sagas WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(pg_error)?
        .ok_or_else(|| crate::saga::unknown_saga_error(id))?;
    let transitions = client
        .query(
            "SELECT body FROM flext_saga_transitions WHERE saga_id = $1 ORDER BY seq",
            &[&id],
        )
        .await
        .map_err(pg_error)?
        .into_iter()
        .map(|r| {
            serde_json::from_value::<Transition>(r.get(0)).map_err(|e| corrupt("a transition", e))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(SagaRecord {
        id,
        name: row.get(0),
        input: row.get(1),
        correlation_id: row.get(2),
        state: state(row.get(3))?,
        transitions,
        owner: row.get(4),
        lease_until_ms: from_bigint(row.get(5)),
        definition: row.get(6),
        created_ms: from_bigint(row.get(7)),
        epoch: from_bigint(row.get(8)),
    })
}

/// The error for a write a fence check refused: why, from the row as it is now, or no
/// such saga.
pub(super) async fn refused(
    client: &impl deadpool_postgres::GenericClient,
    id: Uuid,
    fence: Option<Fence>,
) -> Error {
    match client
        .query_opt(
            "SELECT owner, state, epoch, seq FROM flext_sagas WHERE id = $1",
            &[&id],
        )
        .await
    {
        Ok(Some(row)) => match (fence, state(row.get(1))) {
            (Some(fence), Ok(now)) => crate::saga::fence_refused(
                id,
                now,
                row.get(0),
                from_bigint(row.get(2)),
                from_bigint(row.get(3)),
                fence,
            ),
            _ => crate::saga::lease_lost_error(id, row.get(0)),
        },
        Ok(None) => crate::saga::unknown_saga_error(id),
        Err(e) => pg_error(e),
    }
}

async fn insert_transition(
    client: &impl deadpool_postgres::GenericClient,
    id: Uuid,
    seq: u64,
    body: &serde_json::Value,
    at: u64,
) -> Result<()> {
    let seq = i32::try_from(seq).unwrap_or(i32::MAX);
    let statement = client
        .prepare_cached(
            "INSERT INTO flext_saga_transitions (saga_id, seq, body, at_ms) VALUES ($1, $2, $3, $4)",
        )
        .await
        .map_err(pg_error)?;
    client
        .execute(&statement, &[&id, &seq, body, &to_bigint(at)])
        .await
        .map_err(pg_error)?;
    Ok(())
}

use super::saga_writes::{append_all_in, encode};
pub(super) use super::saga_writes::{append_in, create_in};

impl SagaLog for PgSagaLog {
    fn create<'a>(&'a self, record: &'a SagaRecord) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { create_in(&self.db.client().await?, record).await })
    }

    fn create_child<'a>(
        &'a self,
        record: &'a SagaRecord,
        parent: Uuid,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            create_in(&tx, record).await?;
            super::signals::link_child(&tx, record.id, parent).await?;
            tx.commit().await.map_err(pg_error)
        })
    }

    fn append<'a>(
        &'a self,
        id: Uuid,
        transition: &'a Transition,
        state: SagaState,
        lease: &'a Lease,
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            append_in(
                &self.db.client().await?,
                id,
                transition,
                state,
                lease,
                fence,
            )
            .await
        })
    }

    fn append_all<'a>(
        &'a self,
        id: Uuid,
        transitions: &'a [Transition],
        state: SagaState,
        lease: &'a Lease,
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            append_all_in(
                &self.db.client().await?,
                id,
                transitions,
                state,
                lease,
                fence,
            )
            .await
        })
    }

    fn settle<'a>(&'a self, id: Uuid, state: SagaState, fence: Fence) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let client = self.db.client().await?;
            let changed = client
                .execute(
                    "UPDATE flext_sagas SET state = $1
                     WHERE id = $2 AND epoch = $3 AND seq = $4 AND state IN ('running', 'compensating')",
                    &[&state.as_str(), &id, &to_bigint(fence.epoch), &to_bigint(fence.seq)],
                )
                .await
                .map_err(pg_error)?;
            if changed == 0 {
                return Err(refused(&client, id, Some(fence)).await);
            }
            Ok(())
        })
    }

    fn load<'a>(&'a self, id: Uuid) -> BoxFuture<'a, Result<SagaRecord>> {
        Box::pin(async move { read(&self.db.client().await?, id).await })
    }

    fn claim_expired<'a>(&'a self, request: &'a ClaimRequest) -> BoxFuture<'a, Result<Claimed>> {
        Box::pin(async move {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            // Rows another process is claiming at this moment are skipped, not waited for;
            // the rows locked here are checked and claimed before the commit.
            let names: Vec<String> = request.names.iter().map(|n| (*n).to_owned()).collect();
            let candidates = tx
                .query(
                    "SELECT id FROM flext_sagas
                     WHERE state IN ('running', 'compensating') AND lease_until_ms <= $1
                       AND (cardinality($2::text[]) = 0 OR name = ANY($2))
                       AND ($3::uuid IS NULL OR id = $3)
                     ORDER BY created_ms, id
                     FOR UPDATE SKIP LOCKED",
                    &[&to_bigint(request.now_ms), &names, &request.only],
                )
                .await
                .map_err(pg_error)?;
            let mut candidates = candidates;
            if let Some(prefix) = &request.takeover_gone {
                candidates
                    .extend(super::liveness::gone_candidates(&tx, request, prefix, &names).await?);
            }
            let until = request.now_ms.saturating_add(request.lease.duration_ms);
            let mut claimed = Claimed::default();
            for row in candidates {
                if !claimed.wants_more(request) {
                    break;
                }
                let id: Uuid = row.get(0);
                let Some(record) = claimed.screen(request, id, read(&tx, id).await)? else {
                    continue;
                };
                tx.execute(
                    "UPDATE flext_sagas SET owner = $1, lease_until_ms = $2, epoch = epoch + 1 WHERE id = $3",
                    &[&request.lease.owner, &to_bigint(until), &id],
                )
                .await
                .map_err(pg_error)?;
                claimed.take(request, record, until);
            }
            tx.commit().await.map_err(pg_error)?;
            Ok(claimed)
        })
    }

    fn renew<'a>(&'a self, id: Uuid, lease: &'a Lease, epoch: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let client = self.db.client().await?;
            let now = now_ms();
            let changed = client
                .execute(
                    "UPDATE flext_sagas SET lease_until_ms = $1
                     WHERE id = $2 AND epoch = $3 AND state IN ('running', 'compensating')",
                    &[
                        &to_bigint(now.saturating_add(lease.duration_ms)),
                        &id,
                        &to_bigint(epoch),
                    ],
                )
                .await
                .map_err(pg_error)?;
            if changed == 1 {
                Ok(())
            } else {
                Err(refused(&client, id, None).await)
            }
        })
    }

    fn hold_liveness<'a>(&'a self, owner: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.liveness.hold(&self.db, owner))
    }

    fn list<'a>(&'a self, filter: &'a SagaFilter) -> BoxFuture<'a, Result<Vec<SagaSummary>>> {
        Box::pin(async move {
            let client = self.db.client().await?;
            let state_filter: Option<&str> = filter.state.map(SagaState::as_str);
            let before: Option<i64> = filter.created_before_ms.map(to_bigint);
            let limit: Option<i64> = filter.limit.map(to_bigint);
            let offset = i64::try_from(filter.offset).unwrap_or(i64::MAX);
            let params: [&(dyn ToSql + Sync); 7] = [
                &state_filter,
                &filter.name,
                &before,
                &limit,
                &filter.id_prefix,
                &offset,
                &filter.stuck_first,
            ];
            let rows = client
                .query(
                    "SELECT s.id, s.name, s.state, s.owner, s.created_ms, s.lease_until_ms, s.seq,
                            CASE WHEN s.state = 'stuck' THEN
                                (SELECT body FROM flext_saga_transitions t WHERE t.saga_id = s.id AND t.seq = s.seq)
                            END
                     FROM flext_sagas s
                     WHERE ($1::text IS NULL OR s.state = $1)
                       AND ($2::text IS NULL OR s.name = $2)
                       AND ($3::bigint IS NULL OR s.created_ms < $3)
                       AND ($5::text IS NULL OR left(s.id::text, length($5)) = $5)
                     ORDER BY ($7::bool AND s.state <> 'stuck'), s.created_ms, s.id
                     LIMIT $4 OFFSET $6",
                    &params,
                )
                .await
                .map_err(pg_error)?;
            rows.into_iter()
                .map(|r| {
                    let now = state(r.get(2))?;
                    let last: Vec<Transition> = match r.get::<_, Option<serde_json::Value>>(7) {
                        Some(body) => vec![
                            serde_json::from_value(body).map_err(|e| corrupt("a transition", e))?,
                        ],
                        None => Vec::new(),
                    };
                    Ok(SagaSummary {
                        id: r.get(0),
                        name: r.get(1),
                        state: now,
                        owner: r.get(3),
                        created_ms: from_bigint(r.get(4)),
                        lease_until_ms: from_bigint(r.get(5)),
                        transitions: usize::try_from(r.get::<_, i64>(6)).unwrap_or(0),
                        stuck_at: StuckAt::of(now, &last),
                    })
                })
                .collect()
        })
    }

    fn send_signal<'a>(
        &'a self,
        signal: &'a crate::saga::SignalRecord,
    ) -> BoxFuture<'a, Result<crate::saga::SignalSent>> {
        Box::pin(async move { super::signals::send(&self.db.client().await?, signal).await })
    }

    fn enqueue<'a>(
        &'a self,
        record: &'a SagaRecord,
        item: &'a crate::saga::QueueItem,
    ) -> BoxFuture<'a, Result<crate::saga::Enqueued>> {
        Box::pin(
            async move { super::queue::enqueue(&mut self.db.client().await?, record, item).await },
        )
    }

    fn dequeue<'a>(
        &'a self,
        request: &'a crate::saga::DequeueRequest,
    ) -> BoxFuture<'a, Result<crate::saga::Dequeued>> {
        Box::pin(async move { super::queue::dequeue(&mut self.db.client().await?, request).await })
    }

    fn queue_depths<'a>(&'a self) -> BoxFuture<'a, Result<Vec<crate::saga::QueueDepth>>> {
        Box::pin(async move { super::queue::depths(&self.db.client().await?, None).await })
    }

    fn signals<'a>(&'a self, id: Uuid) -> BoxFuture<'a, Result<Vec<crate::saga::SignalRecord>>> {
        Box::pin(async move { super::signals::read(&self.db.client().await?, id).await })
    }

    fn history<'a>(&'a self, id: Uuid) -> BoxFuture<'a, Result<Vec<HistoryEntry>>> {
        Box::pin(async move {
            let client = self.db.client().await?;
            let exists = client
                .query_opt("SELECT 1 FROM flext_sagas WHERE id = $1", &[&id])
                .await
                .map_err(pg_error)?;
            if exists.is_none() {
                return Err(crate::saga::unknown_saga_error(id));
            }
            client
                .query("SELECT seq, at_ms, body FROM flext_saga_transitions WHERE saga_id = $1 ORDER BY seq", &[&id])
                .await
                .map_err(pg_error)?
                .into_iter()
                .map(|r| {
                    Ok(HistoryEntry {
                        seq: u64::try_from(r.get::<_, i32>(0)).unwrap_or(0),
                        at_ms: from_bigint(r.get(1)),
                        transition: serde_json::from_value(r.get(2)).map_err(|e| corrupt("a transition", e))?,
                    })
                })
                .collect()
        })
    }

    fn intervene<'a>(
        &'a self,
        id: Uuid,
        command: &'a Intervention,
        lease: Option<&'a Lease>,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<SagaRecord>> {
        Box::pin(async move {
            command.check()?;
            let body = encode(&command.transition())?;
            let mut client = self.db.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            // Lock the row: the state checked is the state changed.
            tx.query_opt("SELECT 1 FROM flext_sagas WHERE id = $1 FOR UPDATE", &[&id])
                .await
                .map_err(pg_error)?;
            let mut record = read(&tx, id).await?;
            command.apply_to(&mut record, lease, now_ms)?;
            tx.execute(
                "UPDATE flext_sagas SET state = $1, owner = $2, lease_until_ms = $3, epoch = $4, seq = $5 WHERE id = $6",
                &[
                    &record.state.as_str(),
                    &record.owner,
                    &to_bigint(record.lease_until_ms),
                    &to_bigint(record.epoch),
                    &to_bigint(record.transitions.len() as u64),
                    &id,
                ],
            )
            .await
            .map_err(pg_error)?;
            insert_transition(&tx, id, record.transitions.len() as u64, &body, now_ms).await?;
            tx.commit().await.map_err(pg_error)?;
            Ok(record)
        })
    }
}
