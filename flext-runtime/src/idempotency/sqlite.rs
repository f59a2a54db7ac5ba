//! Idempotency keys in a SQLite database: the table, the claim, and the completion a
//! command's append makes in its own transaction.

use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::{Claim, Decision, IdempotencyClaim, IdempotencyStore, Response, Row, decide, ms};
use crate::db::db_error;
use crate::error::Result;
use crate::future::BoxFuture;
use crate::sqlite::SqliteDatabase;

/// The table, created with the event store's.
pub(crate) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS flext_idempotency (
             scope TEXT NOT NULL,
             key TEXT NOT NULL,
             fingerprint TEXT NOT NULL,
             token TEXT NOT NULL,
             done INTEGER NOT NULL,
             locked_until_ms INTEGER NOT NULL,
             expires_ms INTEGER NOT NULL,
             status INTEGER,
             body TEXT,
             location TEXT,
             PRIMARY KEY (scope, key)
         );
         CREATE INDEX IF NOT EXISTS flext_idempotency_expires ON flext_idempotency (expires_ms);";

/// Stores `response` for `claim` in the caller's transaction when `claim` still holds the
/// row in flight; `false` when it does not (completed already, or taken over).
pub(crate) fn complete_in(
    conn: &Connection,
    claim: &IdempotencyClaim,
    response: &Response,
) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE flext_idempotency SET done = 1, status = ?1, body = ?2, location = ?3
             WHERE scope = ?4 AND key = ?5 AND token = ?6 AND done = 0",
        )
        .and_then(|mut s| {
            s.execute(params![
                response.status,
                response.body,
                response.location,
                claim.scope,
                claim.key,
                claim.token.to_string()
            ])
        })
        .map_err(db_error)?;
    Ok(n == 1)
}

fn claim_in(
    conn: &Connection,
    scope: &str,
    key: &str,
    fingerprint: &str,
    in_flight_ms: u64,
    keep_ms: u64,
) -> Result<Claim> {
    let now = ms(crate::saga::now_ms());
    conn.prepare_cached(
        "DELETE FROM flext_idempotency WHERE rowid IN
         (SELECT rowid FROM flext_idempotency WHERE expires_ms <= ?1 LIMIT 100)",
    )
    .and_then(|mut s| s.execute(params![now]))
    .map_err(db_error)?;
    let row = conn
        .prepare_cached(
            "SELECT fingerprint, done, locked_until_ms, expires_ms, status, body, location
             FROM flext_idempotency WHERE scope = ?1 AND key = ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![scope, key], |r| {
                let status: Option<u16> = r.get(4)?;
                let body: Option<String> = r.get(5)?;
                Ok(Row {
                    fingerprint: r.get(0)?,
                    done: r.get::<_, i64>(1)? == 1,
                    locked_until_ms: r.get(2)?,
                    expires_ms: r.get(3)?,
                    response: status.zip(body).map(|(status, body)| Response {
                        status,
                        body,
                        location: r.get(6).ok().flatten(),
                    }),
                })
            })
            .optional()
        })
        .map_err(db_error)?;
    match decide(row, fingerprint, now) {
        Decision::Answer(claim) => Ok(claim),
        Decision::Take => {
            let token = Uuid::new_v4();
            conn.prepare_cached(
                "INSERT INTO flext_idempotency
                     (scope, key, fingerprint, token, done, locked_until_ms, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)
                 ON CONFLICT (scope, key) DO UPDATE SET
                     fingerprint = excluded.fingerprint, token = excluded.token, done = 0,
                     locked_until_ms = excluded.locked_until_ms, expires_ms = excluded.expires_ms,
                     status = NULL, body = NULL, location = NULL",
            )
            .and_then(|mut s| {
                s.execute(params![
                    scope,
                    key,
                    fingerprint,
                    token.to_string(),
                    now.saturating_add(ms(in_flight_ms)),
                    now.saturating_add(ms(keep_ms)),
                ])
            })
            .map_err(db_error)?;
            Ok(Claim::Claimed(IdempotencyClaim::new(scope, key, token)))
        }
    }
}

/// Keys in the database's `flext_idempotency` table; the event store of the same
/// database completes a claim in its append's transaction.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> flext::Result<()> {
/// use flext::idempotency::{Claim, IdempotencyStore, Response};
/// use flext::sqlite::SqliteDatabase;
///
/// let db = SqliteDatabase::in_memory()?;
/// let first = db.claim("alice POST /orders", "k-1", "sha256-of-the-body", 60_000, 86_400_000).await?;
/// let Claim::Claimed(claim) = first else { panic!("a new key is claimed") };
/// // ... the command runs, then:
/// db.complete(&claim, &Response::new(201, "{\"id\":7}", Some("/orders/7".into()))).await?;
/// // A repeat with the same body is answered with the first response.
/// let again = db.claim("alice POST /orders", "k-1", "sha256-of-the-body", 60_000, 86_400_000).await?;
/// assert!(matches!(again, Claim::Replay(r) if r.status == 201 && r.body == "{\"id\":7}"));
/// // The same key with another body is refused.
/// let other = db.claim("alice POST /orders", "k-1", "another-body", 60_000, 86_400_000).await?;
/// assert!(matches!(other, Claim::Mismatch));
/// # Ok(()) }
/// ```
impl IdempotencyStore for SqliteDatabase {
    fn claim<'a>(
        &'a self,
        scope: &'a str,
        key: &'a str,
        fingerprint: &'a str,
        in_flight_ms: u64,
        keep_ms: u64,
    ) -> BoxFuture<'a, Result<Claim>> {
        let result = self
            .transaction_raw(|conn| claim_in(conn, scope, key, fingerprint, in_flight_ms, keep_ms));
        Box::pin(std::future::ready(result))
    }

    fn complete<'a>(
        &'a self,
        claim: &'a IdempotencyClaim,
        response: &'a Response,
    ) -> BoxFuture<'a, Result<bool>> {
        let result = if claim.is_completed() {
            Ok(false)
        } else {
            self.transaction_raw(|conn| complete_in(conn, claim, response))
        };
        Box::pin(std::future::ready(result))
    }

    fn release<'a>(&'a self, claim: &'a IdempotencyClaim) -> BoxFuture<'a, Result<()>> {
        let result = self.transaction_raw(|conn| {
            conn.prepare_cached(
                "DELETE FROM flext_idempotency WHERE scope = ?1 AND key = ?2 AND token = ?3 AND done = 0",
            )
            .and_then(|mut s| s.execute(params![claim.scope, claim.key, claim.token.to_string()]))
            .map(drop)
            .map_err(db_error)
        });
        Box::pin(std::future::ready(result))
    }
}
