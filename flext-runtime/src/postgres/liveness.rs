//! Liveness locks on PostgreSQL: each runner incarnation holds a session advisory lock,
//! keyed by its owner name, on a connection of its own for as long as its log lives.
//! PostgreSQL releases the lock when that session ends, however the process ends, so a
//! lock another transaction can take proves the incarnation gone.

use std::collections::HashMap;
use std::sync::Arc;

use super::{PgDatabase, pg_error, to_bigint};
use crate::error::Result;
use crate::saga::ClaimRequest;

/// The connections holding this log's liveness locks, by owner. Cheap to clone.
#[derive(Clone, Default)]
pub(super) struct Liveness(
    Arc<tokio::sync::Mutex<HashMap<String, deadpool_postgres::ClientWrapper>>>,
);

impl Liveness {
    /// Takes `owner`'s lock (again, when a database restart closed its connection);
    /// whether it is held.
    pub(super) async fn hold(&self, db: &PgDatabase, owner: &str) -> Result<bool> {
        let mut held = self.0.lock().await;
        if held.get(owner).is_some_and(|c| !c.is_closed()) {
            return Ok(true);
        }
        // A connection of its own, out of the pool: the lock lives as long as it.
        let client = deadpool_postgres::Object::take(db.client().await?);
        let row = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                &[&owner],
            )
            .await
            .map_err(pg_error)?;
        let locked: bool = row.get(0);
        if locked {
            held.insert(owner.to_owned(), client);
        }
        Ok(locked)
    }
}

/// In-flight sagas under a live lease of another incarnation of the claiming runner's
/// name (`prefix`) whose process is provably gone: no session holds its liveness lock
/// (the transaction takes it for itself, so a second claimer skips it).
pub(super) async fn gone_candidates(
    tx: &tokio_postgres::Transaction<'_>,
    request: &ClaimRequest,
    prefix: &str,
    names: &[String],
) -> Result<Vec<tokio_postgres::Row>> {
    let (start, end) = crate::saga::owner_range(prefix);
    tx.query(
        "SELECT id FROM flext_sagas
         WHERE owner COLLATE \"C\" >= $6 AND owner COLLATE \"C\" < $7
           AND state IN ('running', 'compensating') AND lease_until_ms > $1
           AND owner <> $2 AND left(owner, length($3)) = $3
           AND (cardinality($4::text[]) = 0 OR name = ANY($4))
           AND ($5::uuid IS NULL OR id = $5)
           AND pg_try_advisory_xact_lock(hashtextextended(owner, 0))
         ORDER BY created_ms, id
         FOR UPDATE SKIP LOCKED",
        &[
            &to_bigint(request.now_ms),
            &request.lease.owner,
            &prefix,
            &names,
            &request.only,
            &start,
            &end,
        ],
    )
    .await
    .map_err(pg_error)
}
