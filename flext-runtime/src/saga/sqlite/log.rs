//! `SagaLog` for [`SqliteLog`]: each method a job for [`SqliteLog::submit`](super::SqliteLog).

use rusqlite::params;
use uuid::Uuid;

use super::SqliteLog;
use super::rows::{
    append_row, create_row, db_error, insert_transition, json_error, ms, parse_id, parse_state,
    refused,
};
use crate::error::Result;
use crate::future::BoxFuture;
use crate::saga::OperatorCommand;
use crate::saga::log::{
    HistoryEntry, Lease, SagaFilter, SagaLog, SagaRecord, SagaState, SagaSummary, Transition,
    now_ms, unknown_saga,
};

impl SagaLog for SqliteLog {
    fn create<'a>(&'a self, record: &'a SagaRecord) -> BoxFuture<'a, Result<()>> {
        let input = match serde_json::to_string(&record.input).map_err(json_error) {
            Ok(input) => input,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let record = SagaRecord {
            transitions: Vec::new(),
            input: serde_json::Value::Null,
            ..record.clone()
        };
        self.submit(true, move |conn| create_row(conn, &record, &input))
    }

    fn append<'a>(
        &'a self,
        id: Uuid,
        transition: &'a Transition,
        state: SagaState,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<()>> {
        let body = match serde_json::to_string(transition).map_err(json_error) {
            Ok(body) => body,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let lease = lease.clone();
        self.submit(true, move |conn| append_row(conn, id, &body, state, &lease))
    }

    fn load<'a>(&'a self, id: Uuid) -> BoxFuture<'a, Result<SagaRecord>> {
        self.submit(false, move |conn| Self::read(conn, id))
    }

    fn claim_expired<'a>(
        &'a self,
        lease: &'a Lease,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Vec<SagaRecord>>> {
        let lease = lease.clone();
        self.submit(true, move |conn| {
            let ids: Vec<String> = {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT id FROM flext_sagas
                         WHERE state IN ('running', 'compensating') AND lease_until_ms <= ?1
                         ORDER BY created_ms",
                    )
                    .map_err(db_error)?;
                stmt.query_map(params![ms(now_ms)], |r| r.get(0))
                    .map_err(db_error)?
                    .collect::<rusqlite::Result<_>>()
                    .map_err(db_error)?
            };
            // Read first: a record that does not decode refuses the claim before any write.
            let mut records = ids
                .iter()
                .map(|id| Self::read(conn, parse_id(id)?))
                .collect::<Result<Vec<_>>>()?;
            let until = now_ms.saturating_add(lease.duration_ms);
            conn.execute(
                "UPDATE flext_sagas SET owner = ?1, lease_until_ms = ?2
                 WHERE state IN ('running', 'compensating') AND lease_until_ms <= ?3",
                params![lease.owner, ms(until), ms(now_ms)],
            )
            .map_err(db_error)?;
            for record in &mut records {
                record.owner.clone_from(&lease.owner);
                record.lease_until_ms = until;
            }
            Ok(records)
        })
    }

    fn renew<'a>(&'a self, id: Uuid, lease: &'a Lease) -> BoxFuture<'a, Result<()>> {
        let lease = lease.clone();
        self.submit(true, move |conn| {
            let now = now_ms();
            let changed = conn
                .prepare_cached(
                    "UPDATE flext_sagas SET lease_until_ms = ?1
                     WHERE id = ?2 AND owner = ?3 AND lease_until_ms > ?4",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        ms(now.saturating_add(lease.duration_ms)),
                        id.to_string(),
                        lease.owner,
                        ms(now)
                    ])
                })
                .map_err(db_error)?;
            if changed == 1 {
                Ok(())
            } else {
                Err(refused(conn, id))
            }
        })
    }

    fn list<'a>(&'a self, filter: &'a SagaFilter) -> BoxFuture<'a, Result<Vec<SagaSummary>>> {
        let filter = filter.clone();
        self.submit(false, move |conn| {
            let limit = filter
                .limit
                .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
            let mut stmt = conn
                .prepare_cached(
                    "SELECT s.id, s.name, s.state, s.owner, s.created_ms, s.lease_until_ms,
                            (SELECT COUNT(*) FROM flext_saga_transitions t WHERE t.saga_id = s.id)
                     FROM flext_sagas s
                     WHERE (?1 IS NULL OR s.state = ?1)
                       AND (?2 IS NULL OR s.name = ?2)
                       AND (?3 IS NULL OR s.created_ms < ?3)
                     ORDER BY s.created_ms, s.rowid
                     LIMIT ?4",
                )
                .map_err(db_error)?;
            let rows = stmt
                .query_map(
                    params![
                        filter.state.map(SagaState::as_str),
                        filter.name,
                        filter.created_before_ms.map(ms),
                        limit
                    ],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, i64>(4)?,
                            r.get::<_, i64>(5)?,
                            r.get::<_, i64>(6)?,
                        ))
                    },
                )
                .map_err(db_error)?;
            rows.map(|row| {
                let (id, name, state, owner, created, lease, n) = row.map_err(db_error)?;
                Ok(SagaSummary {
                    id: parse_id(&id)?,
                    name,
                    state: parse_state(&state)?,
                    transitions: usize::try_from(n).unwrap_or(0),
                    owner,
                    created_ms: u64::try_from(created).unwrap_or(0),
                    lease_until_ms: u64::try_from(lease).unwrap_or(0),
                })
            })
            .collect()
        })
    }

    fn history<'a>(&'a self, id: Uuid) -> BoxFuture<'a, Result<Vec<HistoryEntry>>> {
        self.submit(false, move |conn| {
            let key = id.to_string();
            let exists = conn
                .prepare_cached("SELECT 1 FROM flext_sagas WHERE id = ?1")
                .and_then(|mut stmt| stmt.exists(params![key]))
                .map_err(db_error)?;
            if !exists {
                return Err(unknown_saga(id));
            }
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, at_ms, body FROM flext_saga_transitions WHERE saga_id = ?1 ORDER BY seq",
                )
                .map_err(db_error)?;
            let rows = stmt
                .query_map(params![key], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
                })
                .map_err(db_error)?;
            rows.map(|row| {
                let (seq, at, body) = row.map_err(db_error)?;
                Ok(HistoryEntry {
                    seq: u64::try_from(seq).unwrap_or(0),
                    at_ms: u64::try_from(at).unwrap_or(0),
                    transition: serde_json::from_str(&body).map_err(json_error)?,
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
        if let Err(e) = command.check() {
            return Box::pin(std::future::ready(Err(e)));
        }
        let body = match serde_json::to_string(&command.transition()).map_err(json_error) {
            Ok(body) => body,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let command = command.clone();
        let lease = lease.cloned();
        self.submit(true, move |conn| {
            // Read and write in the one transaction: the state checked is the state
            // changed. Everything that can refuse happens before the first write.
            let mut record = Self::read(conn, id)?;
            command.apply_to(&mut record, lease.as_ref(), now_ms)?;
            let key = id.to_string();
            conn.prepare_cached(
                "UPDATE flext_sagas SET state = ?1, owner = ?2, lease_until_ms = ?3 WHERE id = ?4",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    record.state.as_str(),
                    record.owner,
                    ms(record.lease_until_ms),
                    key
                ])
            })
            .map_err(db_error)?;
            insert_transition(conn, &key, &body, now_ms)?;
            Ok(record)
        })
    }
}
