//! The saga log's writes in PostgreSQL, each a function on a client so that the
//! standalone [`PgSagaLog`](super::PgSagaLog) and the unit of work call the same
//! statement: a creation, a transition, and several transitions in one fenced write.

use uuid::Uuid;

use super::saga::{corrupt, refused};
use super::{pg_error, to_bigint};
use crate::error::{Error, Result};
use crate::saga::{Fence, Lease, SagaRecord, SagaState, Transition, now_ms};

pub(super) fn encode(t: &Transition) -> Result<serde_json::Value> {
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
            "INSERT INTO flext_sagas (id, name, input, correlation_id, state, owner, lease_until_ms, created_ms, definition, epoch, seq)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0) ON CONFLICT (id) DO NOTHING",
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
                &to_bigint(record.epoch),
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

/// Records a transition through `client` under `fence`: the fence check (in flight,
/// the epoch, the transition it follows), the state, the renewed lease and the
/// transition in one statement (its own transaction outside a unit of work). Nothing is
/// written when the check refuses.
pub(super) async fn append_in(
    client: &impl deadpool_postgres::GenericClient,
    id: Uuid,
    transition: &Transition,
    state: SagaState,
    lease: &Lease,
    fence: Fence,
) -> Result<()> {
    let body = encode(transition)?;
    let now = now_ms();
    let statement = client
        .prepare_cached(
            "WITH u AS (
                 UPDATE flext_sagas SET state = $1, owner = $2, lease_until_ms = $3, seq = seq + 1
                 WHERE id = $4 AND epoch = $7 AND seq = $8 AND state IN ('running', 'compensating')
                 RETURNING id, seq)
             INSERT INTO flext_saga_transitions (saga_id, seq, body, at_ms)
             SELECT u.id, u.seq::integer, $6, $5 FROM u",
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
                &to_bigint(fence.epoch),
                &to_bigint(fence.seq),
            ],
        )
        .await
        .map_err(pg_error)?;
    if written == 0 {
        return Err(refused(client, id, Some(fence)).await);
    }
    Ok(())
}

/// [`append_in`] for several transitions, in order, under one fence check: one
/// statement (its own transaction), the saga's `seq` moved on by their number.
pub(super) async fn append_all_in(
    client: &impl deadpool_postgres::GenericClient,
    id: Uuid,
    transitions: &[Transition],
    state: SagaState,
    lease: &Lease,
    fence: Fence,
) -> Result<()> {
    if transitions.is_empty() {
        return Ok(());
    }
    let bodies = transitions.iter().map(encode).collect::<Result<Vec<_>>>()?;
    let n = bodies.len() as i64;
    let now = now_ms();
    let statement = client
        .prepare_cached(
            "WITH u AS (
                 UPDATE flext_sagas SET state = $1, owner = $2, lease_until_ms = $3, seq = seq + $9
                 WHERE id = $4 AND epoch = $7 AND seq = $8 AND state IN ('running', 'compensating')
                 RETURNING id, seq)
             INSERT INTO flext_saga_transitions (saga_id, seq, body, at_ms)
             SELECT u.id, (u.seq - $9 + b.n)::integer, b.body, $5
             FROM u, unnest($6::json[]) WITH ORDINALITY AS b (body, n)",
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
                &bodies,
                &to_bigint(fence.epoch),
                &to_bigint(fence.seq),
                &n,
            ],
        )
        .await
        .map_err(pg_error)?;
    if written == 0 {
        return Err(refused(client, id, Some(fence)).await);
    }
    Ok(())
}
