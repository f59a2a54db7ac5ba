//! [`PgSagaLog`]: the saga log in PostgreSQL, shared by processes on several machines.

use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{PgDatabase, from_bigint, pg_error, to_bigint};
use crate::error::{Error, Result};
use crate::future::BoxFuture;
use crate::saga::{
    HistoryEntry, Lease, OperatorCommand, SagaFilter, SagaLog, SagaRecord, SagaState, SagaSummary,
    Transition, now_ms,
};

/// The saga log in PostgreSQL. Every write checks the lease in its `UPDATE ... WHERE`
/// (the row lock serialises two runners' writes to one saga); takeover claims expired
/// leases with `FOR UPDATE SKIP LOCKED`, so recovery loops in several processes never
/// claim the same saga; idempotent start is the primary key on the id. Commits come in
/// groups from PostgreSQL itself (its WAL writer), with no writer thread of flext's.
#[derive(Clone)]
pub struct PgSagaLog {
    pub(super) db: PgDatabase,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::infrastructure(
        crate::codes::SAGA_LOG_CORRUPT,
        format!("saga log: {what} does not decode: {e}"),
    )
}

fn state(s: &str) -> Result<SagaState> {
    s.parse()
        .map_err(|_| corrupt("a state", crate::input::echo(s)))
}

async fn read(client: &impl deadpool_postgres::GenericClient, id: Uuid) -> Result<SagaRecord> {
    let row = client
        .query_opt(
            "SELECT name, input, correlation_id, state, owner, lease_until_ms, definition, created_ms FROM flext_sagas WHERE id = $1",
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
    })
}

/// The error for a write the lease check refused: who holds the lease, or no such saga.
async fn refused(client: &impl deadpool_postgres::GenericClient, id: Uuid) -> Error {
    match client
        .query_opt("SELECT owner FROM flext_sagas WHERE id = $1", &[&id])
        .await
    {
        Ok(Some(row)) => crate::saga::lease_lost_error(id, row.get(0)),
        Ok(None) => crate::saga::unknown_saga_error(id),
        Err(e) => pg_error(e),
    }
}

async fn insert_transition(
    client: &impl deadpool_postgres::GenericClient,
    id: Uuid,
    body: &serde_json::Value,
    at: u64,
) -> Result<()> {
    let statement = client
        .prepare_cached(
            "INSERT INTO flext_saga_transitions (saga_id, seq, body, at_ms)
             VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM flext_saga_transitions WHERE saga_id = $1), $2, $3)",
        )
        .await
        .map_err(pg_error)?;
    client
        .execute(&statement, &[&id, body, &to_bigint(at)])
        .await
        .map_err(pg_error)?;
    Ok(())
}

fn encode(t: &Transition) -> Result<serde_json::Value> {
    serde_json::to_value(t).map_err(|e| corrupt("a transition", e))
}

/// Inserts a new saga record through `client`.
pub(super) async fn create_in(
    client: &impl deadpool_postgres::GenericClient,
    record: &SagaRecord,
) -> Result<()> {
    let created = if record.created_ms == 0 {
        now_ms()
    } else {
        record.created_ms
    };
    let inserted = client
        .execute(
            "INSERT INTO flext_sagas (id, name, input, correlation_id, state, owner, lease_until_ms, created_ms, definition)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
            &[
                &record.id,
                &record.name,
                &record.input,
                &record.correlation_id,
                &record.state.as_str(),
                &record.owner,
                &to_bigint(record.lease_until_ms),
                &to_bigint(created),
                &record.definition,
            ],
        )
        .await
        .map_err(pg_error)?;
    if inserted == 0 {
        return Err(Error::conflict(
            crate::codes::SAGA_EXISTS,
            format!("saga {} is already in the log", record.id),
        ));
    }
    Ok(())
}

/// Records a transition through `client`, checking the lease: the lease check, the
/// state, the renewed lease and the transition in one statement (its own transaction
/// outside a unit of work). Nothing is written when the lease check refuses.
pub(super) async fn append_in(
    client: &impl deadpool_postgres::GenericClient,
    id: Uuid,
    transition: &Transition,
    state: SagaState,
    lease: &Lease,
) -> Result<()> {
    let body = encode(transition)?;
    let now = now_ms();
    let statement = client
        .prepare_cached(
            "WITH u AS (
                 UPDATE flext_sagas SET state = $1, owner = $2, lease_until_ms = $3
                 WHERE id = $4 AND (owner = $2 OR lease_until_ms <= $5)
                 RETURNING id)
             INSERT INTO flext_saga_transitions (saga_id, seq, body, at_ms)
             SELECT u.id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM flext_saga_transitions WHERE saga_id = u.id), $6, $5
             FROM u",
        )
        .await
        .map_err(pg_error)?;
    let written = client
        .execute(
            &statement,
            &[
                &state.as_str(),
                &lease.owner,
                &to_bigint(now.saturating_add(lease.duration_ms)),
                &id,
                &to_bigint(now),
                &body,
            ],
        )
        .await
        .map_err(pg_error)?;
    if written == 0 {
        return Err(refused(client, id).await);
    }
    Ok(())
}

impl SagaLog for PgSagaLog {
    fn create<'a>(&'a self, record: &'a SagaRecord) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { create_in(&self.db.client().await?, record).await })
    }

    fn append<'a>(
        &'a self,
        id: Uuid,
        transition: &'a Transition,
        state: SagaState,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(
            async move { append_in(&self.db.client().await?, id, transition, state, lease).await },
        )
    }

    fn load<'a>(&'a self, id: Uuid) -> BoxFuture<'a, Result<SagaRecord>> {
        Box::pin(async move { read(&self.db.client().await?, id).await })
    }

    fn claim_expired<'a>(
        &'a self,
        lease: &'a Lease,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Vec<SagaRecord>>> {
        Box::pin(async move {
            let client = self.db.client().await?;
            // Rows another process is claiming at this moment are skipped, not waited for.
            let claimed = client
                .query(
                    "UPDATE flext_sagas SET owner = $1, lease_until_ms = $2
                     WHERE id IN (
                         SELECT id FROM flext_sagas
                         WHERE state IN ('running', 'compensating') AND lease_until_ms <= $3
                         FOR UPDATE SKIP LOCKED)
                     RETURNING id, created_ms",
                    &[
                        &lease.owner,
                        &to_bigint(now_ms.saturating_add(lease.duration_ms)),
                        &to_bigint(now_ms),
                    ],
                )
                .await
                .map_err(pg_error)?;
            let mut ids: Vec<(i64, Uuid)> = claimed.iter().map(|r| (r.get(1), r.get(0))).collect();
            ids.sort();
            let mut records = Vec::with_capacity(ids.len());
            for (_, id) in ids {
                records.push(read(&client, id).await?);
            }
            Ok(records)
        })
    }

    fn renew<'a>(&'a self, id: Uuid, lease: &'a Lease) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let client = self.db.client().await?;
            let now = now_ms();
            let changed = client
                .execute(
                    "UPDATE flext_sagas SET lease_until_ms = $1 WHERE id = $2 AND owner = $3 AND lease_until_ms > $4",
                    &[&to_bigint(now.saturating_add(lease.duration_ms)), &id, &lease.owner, &to_bigint(now)],
                )
                .await
                .map_err(pg_error)?;
            if changed == 1 {
                Ok(())
            } else {
                Err(refused(&client, id).await)
            }
        })
    }

    fn list<'a>(&'a self, filter: &'a SagaFilter) -> BoxFuture<'a, Result<Vec<SagaSummary>>> {
        Box::pin(async move {
            let client = self.db.client().await?;
            let state_filter: Option<&str> = filter.state.map(SagaState::as_str);
            let before: Option<i64> = filter.created_before_ms.map(to_bigint);
            let limit: Option<i64> = filter.limit.map(to_bigint);
            let params: [&(dyn ToSql + Sync); 4] = [&state_filter, &filter.name, &before, &limit];
            let rows = client
                .query(
                    "SELECT s.id, s.name, s.state, s.owner, s.created_ms, s.lease_until_ms,
                            (SELECT COUNT(*) FROM flext_saga_transitions t WHERE t.saga_id = s.id)
                     FROM flext_sagas s
                     WHERE ($1::text IS NULL OR s.state = $1)
                       AND ($2::text IS NULL OR s.name = $2)
                       AND ($3::bigint IS NULL OR s.created_ms < $3)
                     ORDER BY s.created_ms, s.id
                     LIMIT $4",
                    &params,
                )
                .await
                .map_err(pg_error)?;
            rows.into_iter()
                .map(|r| {
                    Ok(SagaSummary {
                        id: r.get(0),
                        name: r.get(1),
                        state: state(r.get(2))?,
                        owner: r.get(3),
                        created_ms: from_bigint(r.get(4)),
                        lease_until_ms: from_bigint(r.get(5)),
                        transitions: usize::try_from(r.get::<_, i64>(6)).unwrap_or(0),
                    })
                })
                .collect()
        })
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

    fn act<'a>(
        &'a self,
        id: Uuid,
        command: &'a OperatorCommand,
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
                "UPDATE flext_sagas SET state = $1, owner = $2, lease_until_ms = $3 WHERE id = $4",
                &[
                    &record.state.as_str(),
                    &record.owner,
                    &to_bigint(record.lease_until_ms),
                    &id,
                ],
            )
            .await
            .map_err(pg_error)?;
            insert_transition(&tx, id, &body, now_ms).await?;
            tx.commit().await.map_err(pg_error)?;
            Ok(record)
        })
    }
}
