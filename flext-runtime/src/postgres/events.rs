//! [`PgEventStore`]: event streams in PostgreSQL, with a global order no reader outruns.

use super::{PgDatabase, from_bigint, pg_error, to_bigint};
use crate::error::Result;
use crate::event_store::{EventEnvelope, EventStore, NewEvent, Snapshot, StreamId};
use crate::future::BoxFuture;

/// The advisory lock key of the sequencer, which gives committed events their global
/// positions ("flxseq").
const SEQUENCER_LOCK: i64 = 0x0000_666c_7873_6571;

/// Event streams in PostgreSQL, shared by processes on several machines.
///
/// Appends take no global lock: optimistic concurrency is the unique key on
/// (aggregate type, aggregate id, sequence), so a lost race is a unique violation, turned
/// into `flext.event.conflict`. The global order readers follow is assigned after the
/// fact: an event's position is given by a sequencer (one at a time, under an advisory
/// lock, at the start of each [`read_all`](EventStore::read_all)) only once every
/// transaction that could still commit an earlier event has ended, that is, once its
/// transaction id is below `pg_snapshot_xmin(pg_current_snapshot())`; events are numbered
/// in (transaction id, insertion) order. Sequence values and transaction ids are both
/// handed out before commit and commit out of order, so numbering by either at insert
/// time would let a reader move past an event that commits later; numbering only what
/// is below the horizon cannot. Readers lag the newest commits by the longest running
/// transaction.
#[derive(Clone)]
pub struct PgEventStore {
    pub(super) db: PgDatabase,
    /// Whether appends write outbox rows (the default from [`PgDatabase::event_store`]).
    pub(super) outbox: bool,
}

pub(super) const COLUMNS: &str = "COALESCE(position, 0), event_id, aggregate_type, aggregate_id, sequence, name, schema_version, timestamp_ms, correlation_id, causation_id, metadata, payload";

pub(super) fn envelope(r: &tokio_postgres::Row) -> EventEnvelope {
    EventEnvelope {
        position: from_bigint(r.get(0)),
        event_id: r.get(1),
        aggregate_type: r.get(2),
        aggregate_id: r.get(3),
        sequence: from_bigint(r.get(4)),
        name: r.get(5),
        schema_version: u32::try_from(r.get::<_, i32>(6)).unwrap_or(0),
        timestamp_ms: from_bigint(r.get(7)),
        correlation_id: r.get(8),
        causation_id: r.get(9),
        metadata: match r.get::<_, serde_json::Value>(10) {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        },
        payload: r.get(11),
    }
}

/// The version check and the insert in one statement: the row is written only when the
/// stream's version is the one before it (`$4 - 1`), else nothing is (0 rows). A writer
/// racing for the same sequence number waits on the unique key and fails when the
/// other commits.
const INSERT: &str = "WITH v AS (
         SELECT COALESCE(MAX(sequence), 0) AS version FROM flext_events
         WHERE aggregate_type = $2 AND aggregate_id = $3)
     INSERT INTO flext_events (event_id, aggregate_type, aggregate_id, sequence, name, schema_version, timestamp_ms, correlation_id, causation_id, metadata, payload)
     SELECT $1::uuid, $2::text, $3::text, $4::bigint, $5::text, $6::int, $7::bigint, $8::uuid, $9::uuid, $10::json, $11::json
     FROM v WHERE v.version = $4::bigint - 1";

/// As [`INSERT`], with the event's outbox row, in the same statement.
const INSERT_WITH_OUTBOX: &str = "WITH v AS (
         SELECT COALESCE(MAX(sequence), 0) AS version FROM flext_events
         WHERE aggregate_type = $2 AND aggregate_id = $3),
     e AS (
         INSERT INTO flext_events (event_id, aggregate_type, aggregate_id, sequence, name, schema_version, timestamp_ms, correlation_id, causation_id, metadata, payload)
         SELECT $1::uuid, $2::text, $3::text, $4::bigint, $5::text, $6::int, $7::bigint, $8::uuid, $9::uuid, $10::json, $11::json
         FROM v WHERE v.version = $4::bigint - 1
         RETURNING id)
     INSERT INTO flext_outbox (id) SELECT id FROM e";

async fn version_of(
    client: &impl deadpool_postgres::GenericClient,
    stream: &StreamId,
) -> Result<u64> {
    let statement = client
        .prepare_cached(
            "SELECT COALESCE(MAX(sequence), 0) FROM flext_events WHERE aggregate_type = $1 AND aggregate_id = $2",
        )
        .await
        .map_err(pg_error)?;
    let row = client
        .query_one(&statement, &[&stream.aggregate_type, &stream.aggregate_id])
        .await
        .map_err(pg_error)?;
    Ok(from_bigint(row.get(0)))
}

/// Appends `events` through `client` (inside a transaction when there is more than one);
/// returns the new version. On a lost race the transaction is aborted and the current
/// version is read through `db`.
pub(super) async fn append_in(
    client: &impl deadpool_postgres::GenericClient,
    db: &PgDatabase,
    stream: &StreamId,
    expected_version: u64,
    events: &[NewEvent],
    outbox: bool,
) -> Result<u64> {
    let now = to_bigint(crate::saga::now_ms());
    let insert = client
        .prepare_cached(if outbox { INSERT_WITH_OUTBOX } else { INSERT })
        .await
        .map_err(pg_error)?;
    for (n, e) in events.iter().enumerate() {
        let metadata = serde_json::Value::Object(e.metadata.clone());
        let schema = i32::try_from(e.schema_version).unwrap_or(i32::MAX);
        let result = client
            .execute(
                &insert,
                &[
                    &e.event_id,
                    &stream.aggregate_type,
                    &stream.aggregate_id,
                    &to_bigint(expected_version + n as u64 + 1),
                    &e.name,
                    &schema,
                    &now,
                    &e.correlation_id,
                    &e.causation_id,
                    &metadata,
                    &e.payload,
                ],
            )
            .await;
        let err = match result {
            Ok(1) => continue,
            // The stream is not at the expected version.
            Ok(_) => return Err(conflict(db, stream, expected_version).await),
            Err(err) => err,
        };
        let unique = err
            .as_db_error()
            .filter(|d| d.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
            .and_then(|d| d.constraint().map(str::to_owned));
        return Err(match unique {
            Some(c) if c.contains("event_id") => crate::event_store::duplicate_id_error(e.event_id),
            // Another writer took this sequence number first.
            Some(_) => conflict(db, stream, expected_version).await,
            None => pg_error(err),
        });
    }
    Ok(expected_version + events.len() as u64)
}

/// The conflict error for an append at `expected` to `stream`, with the version it is at
/// (read on another connection: the append's transaction may be aborted).
async fn conflict(db: &PgDatabase, stream: &StreamId, expected: u64) -> crate::Error {
    let now = match db.client().await {
        Ok(client) => version_of(&client, stream).await,
        Err(e) => Err(e),
    };
    match now {
        Ok(now) => crate::event_store::conflict_error(stream, expected, now),
        Err(e) => e,
    }
}

/// The numbered events after `position`, in global order.
pub(super) async fn read_after(
    client: &impl deadpool_postgres::GenericClient,
    position: u64,
    limit: usize,
) -> Result<Vec<EventEnvelope>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM flext_events WHERE position > $1 ORDER BY position LIMIT $2"
        ))
        .await
        .map_err(pg_error)?;
    let rows = client
        .query(&statement, &[&to_bigint(position), &to_bigint(limit)])
        .await
        .map_err(pg_error)?;
    Ok(rows.iter().map(envelope).collect())
}

/// How many events one sequencing transaction numbers at most: a reader after a bulk
/// load waits for one batch, never for the whole backlog, and no transaction holds its
/// row locks for long. The next read numbers the next batch.
pub const SEQUENCE_BATCH: i64 = 5_000;

impl PgEventStore {
    /// Numbers up to [`SEQUENCE_BATCH`] of the events whose transactions are all behind
    /// the horizon, oldest transaction first, in one transaction; skipped when another
    /// reader is doing it. Returns how many it numbered.
    pub(super) async fn sequence(&self) -> Result<u64> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let got: bool = tx
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&SEQUENCER_LOCK])
            .await
            .map_err(pg_error)?
            .get(0);
        if !got {
            return Ok(0);
        }
        let numbered = tx
            .execute(
                "WITH base AS (SELECT COALESCE(MAX(position), 0) AS top FROM flext_events),
                      oldest AS (
                          SELECT id, txid FROM flext_events
                          WHERE position IS NULL AND txid < pg_snapshot_xmin(pg_current_snapshot())
                          ORDER BY txid, id LIMIT $1),
                      numbered AS (
                          SELECT id, (SELECT top FROM base) + row_number() OVER (ORDER BY txid, id) AS pos
                          FROM oldest)
                 UPDATE flext_events e SET position = n.pos FROM numbered n WHERE e.id = n.id",
                &[&SEQUENCE_BATCH],
            )
            .await
            .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(numbered)
    }
}

impl EventStore for PgEventStore {
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected_version: u64,
        events: &'a [NewEvent],
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let mut client = self.db.client().await?;
            if events.len() == 1 {
                // One statement is its own transaction.
                return append_in(
                    &client,
                    &self.db,
                    stream,
                    expected_version,
                    events,
                    self.outbox,
                )
                .await;
            }
            let tx = client.transaction().await.map_err(pg_error)?;
            let version =
                append_in(&tx, &self.db, stream, expected_version, events, self.outbox).await?;
            tx.commit().await.map_err(pg_error)?;
            Ok(version)
        })
    }

    fn append_claimed<'a>(
        &'a self,
        stream: &'a StreamId,
        expected_version: u64,
        events: &'a [NewEvent],
        claim: &'a crate::idempotency::IdempotencyClaim,
        response: &'a crate::idempotency::Response,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await.map_err(pg_error)?;
            let version =
                append_in(&tx, &self.db, stream, expected_version, events, self.outbox).await?;
            if !super::idempotency::complete_in(&tx, claim, response).await? {
                return Err(crate::idempotency::claim_lost(claim));
            }
            tx.commit().await.map_err(pg_error)?;
            claim.set_completed();
            Ok(version)
        })
    }

    fn load<'a>(
        &'a self,
        stream: &'a StreamId,
        after: u64,
    ) -> BoxFuture<'a, Result<Vec<EventEnvelope>>> {
        Box::pin(async move {
            let client = self.db.client().await?;
            let rows = client
                .query(
                    &format!("SELECT {COLUMNS} FROM flext_events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence"),
                    &[&stream.aggregate_type, &stream.aggregate_id, &to_bigint(after)],
                )
                .await
                .map_err(pg_error)?;
            Ok(rows.iter().map(envelope).collect())
        })
    }

    fn version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move { version_of(&self.db.client().await?, stream).await })
    }

    fn read_all<'a>(
        &'a self,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<EventEnvelope>>> {
        Box::pin(async move {
            self.sequence().await?;
            read_after(&self.db.client().await?, after, limit).await
        })
    }

    fn save_snapshot<'a>(&'a self, snapshot: &'a Snapshot) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let client = self.db.client().await?;
            client
                .execute(
                    "INSERT INTO flext_snapshots (aggregate_type, aggregate_id, version, state, taken_ms)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
                     SET version = excluded.version, state = excluded.state, taken_ms = excluded.taken_ms
                     WHERE excluded.version > flext_snapshots.version",
                    &[
                        &snapshot.stream.aggregate_type,
                        &snapshot.stream.aggregate_id,
                        &to_bigint(snapshot.version),
                        &snapshot.state,
                        &to_bigint(snapshot.taken_ms),
                    ],
                )
                .await
                .map_err(pg_error)?;
            Ok(())
        })
    }

    fn load_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
    ) -> BoxFuture<'a, Result<Option<Snapshot>>> {
        Box::pin(async move {
            let client = self.db.client().await?;
            let row = client
                .query_opt(
                    "SELECT version, state, taken_ms FROM flext_snapshots WHERE aggregate_type = $1 AND aggregate_id = $2",
                    &[&stream.aggregate_type, &stream.aggregate_id],
                )
                .await
                .map_err(pg_error)?;
            Ok(row.map(|r| Snapshot {
                stream: stream.clone(),
                version: from_bigint(r.get(0)),
                state: r.get(1),
                taken_ms: from_bigint(r.get(2)),
            }))
        })
    }
}
