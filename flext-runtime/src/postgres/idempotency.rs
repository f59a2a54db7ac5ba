//! Idempotency keys in a PostgreSQL database: the claim (under the row's lock), and the
//! completion a command's append makes in its own transaction.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::{PgDatabase, pg_error};
use crate::error::Result;
use crate::future::BoxFuture;
use crate::idempotency::{
    Claim, Decision, IdempotencyClaim, IdempotencyStore, Response, Row, decide, ms,
};

/// The table (schema version 4).
pub(crate) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS flext_idempotency (
                 scope TEXT NOT NULL,
                 key TEXT NOT NULL,
                 fingerprint TEXT NOT NULL,
                 token UUID NOT NULL,
                 done BOOLEAN NOT NULL,
                 locked_until_ms BIGINT NOT NULL,
                 expires_ms BIGINT NOT NULL,
                 status INTEGER,
                 body TEXT,
                 location TEXT,
                 PRIMARY KEY (scope, key)
             );
             CREATE INDEX IF NOT EXISTS flext_idempotency_expires ON flext_idempotency (expires_ms);";

/// Stores `response` for `claim` in the caller's transaction when `claim` still holds the
/// row in flight; `false` when it does not (completed already, or taken over).
pub(crate) async fn complete_in(
    client: &impl GenericClient,
    claim: &IdempotencyClaim,
    response: &Response,
) -> Result<bool> {
    let n = client
        .execute(
            "UPDATE flext_idempotency SET done = TRUE, status = $1, body = $2, location = $3
             WHERE scope = $4 AND key = $5 AND token = $6 AND NOT done",
            &[
                &i32::from(response.status),
                &response.body,
                &response.location,
                &claim.scope,
                &claim.key,
                &claim.token,
            ],
        )
        .await
        .map_err(pg_error)?;
    Ok(n == 1)
}

impl IdempotencyStore for PgDatabase {
    fn claim<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        fingerprint: &'a str,
        in_flight_ms: u64,
        keep_ms: u64,
    ) -> BoxFuture<'a, Result<Claim>> {
        Box::pin(async move {
            let now = ms(crate::saga::now_ms());
            let locked_until = now.saturating_add(ms(in_flight_ms));
            let expires = now.saturating_add(ms(keep_ms));
            let token = Uuid::new_v4();
            let mut client = self.client().await?;
            // A new key: one statement, no lock held across a round trip.
            let inserted = client
                .execute(
                    "INSERT INTO flext_idempotency
                         (scope, key, fingerprint, token, done, locked_until_ms, expires_ms)
                     VALUES ($1, $2, $3, $4, FALSE, $5, $6)
                     ON CONFLICT (scope, key) DO NOTHING",
                    &[&scope, &key, &fingerprint, &token, &locked_until, &expires],
                )
                .await
                .map_err(pg_error)?;
            if inserted == 1 {
                return Ok(Claim::Claimed(IdempotencyClaim::new(scope, key, token)));
            }
            // Seen before: decide under the row's lock.
            let tx = client.transaction().await.map_err(pg_error)?;
            tx.execute(
                "DELETE FROM flext_idempotency WHERE ctid IN
                 (SELECT ctid FROM flext_idempotency WHERE expires_ms <= $1 AND NOT (scope = $2 AND key = $3) LIMIT 100)",
                &[&now, &scope, &key],
            )
            .await
            .map_err(pg_error)?;
            let row = tx
                .query_opt(
                    "SELECT fingerprint, done, locked_until_ms, expires_ms, status, body, location
                     FROM flext_idempotency WHERE scope = $1 AND key = $2 FOR UPDATE",
                    &[&scope, &key],
                )
                .await
                .map_err(pg_error)?
                .map(|r| {
                    let status: Option<i32> = r.get(4);
                    let body: Option<String> = r.get(5);
                    Row {
                        fingerprint: r.get(0),
                        done: r.get(1),
                        locked_until_ms: r.get(2),
                        expires_ms: r.get(3),
                        response: status.zip(body).map(|(status, body)| Response {
                            status: u16::try_from(status).unwrap_or(500),
                            body,
                            location: r.get(6),
                        }),
                    }
                });
            let claim = match decide(row, fingerprint, now) {
                Decision::Answer(claim) => claim,
                Decision::Take => {
                    tx.execute(
                        "INSERT INTO flext_idempotency
                             (scope, key, fingerprint, token, done, locked_until_ms, expires_ms)
                         VALUES ($1, $2, $3, $4, FALSE, $5, $6)
                         ON CONFLICT (scope, key) DO UPDATE SET
                             fingerprint = excluded.fingerprint, token = excluded.token, done = FALSE,
                             locked_until_ms = excluded.locked_until_ms, expires_ms = excluded.expires_ms,
                             status = NULL, body = NULL, location = NULL",
                        &[&scope, &key, &fingerprint, &token, &locked_until, &expires],
                    )
                    .await
                    .map_err(pg_error)?;
                    Claim::Claimed(IdempotencyClaim::new(scope, key, token))
                }
            };
            tx.commit().await.map_err(pg_error)?;
            Ok(claim)
        })
    }

    fn complete<'a>(
        &'a self,
        claim: &'a IdempotencyClaim,
        response: &'a Response,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            if claim.is_completed() {
                return Ok(false);
            }
            complete_in(&self.client().await?, claim, response).await
        })
    }

    fn release<'a>(&'a self, claim: &'a IdempotencyClaim) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.client()
                .await?
                .execute(
                    "DELETE FROM flext_idempotency WHERE scope = $1 AND key = $2 AND token = $3 AND NOT done",
                    &[&claim.scope, &claim.key, &claim.token],
                )
                .await
                .map_err(pg_error)?;
            Ok(())
        })
    }
}
