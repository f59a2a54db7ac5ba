//! `SagaLog` for [`SqliteLog`]: each method a job for [`SqliteLog::submit`](super::SqliteLog).

use rusqlite::params;
use uuid::Uuid;

use super::liveness::Liveness;
use super::rows::{
    append_row, append_rows, create_row, db_error, insert_transition, json_error, ms, parse_id,
    parse_state, refused, settle_row,
};
use super::{SqliteLog, database_file};
use crate::error::Result;
use crate::future::BoxFuture;
use crate::saga::log::{
    ClaimRequest, Claimed, Fence, HistoryEntry, Lease, SagaFilter, SagaLog, SagaRecord, SagaState,
    SagaSummary, StuckAt, Transition, now_ms, unknown_saga,
};
use crate::saga::{Intervention, SignalRecord, SignalSent};

/// The `list` query for `filter` and its arguments: only the conditions that are set,
/// so that SQLite reads the (state, created_ms), (name, created_ms) or created_ms index
/// in order and stops at the limit (a `?1 IS NULL OR state = ?1` form would scan the
/// table), and the transition count from the row, not counted per saga.
fn list_sql(filter: &SagaFilter) -> (String, Vec<rusqlite::types::Value>) {
    let mut sql = String::from(
        "SELECT s.id, s.name, s.state, s.owner, s.created_ms, s.lease_until_ms, s.seq,
                CASE WHEN s.state = 'stuck' THEN
                    (SELECT body FROM flext_saga_transitions t WHERE t.saga_id = s.id AND t.seq = s.seq)
                END
         FROM flext_sagas s WHERE 1",
    );
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(state) = filter.state {
        args.push(state.as_str().to_owned().into());
        sql.push_str(&format!(" AND s.state = ?{}", args.len()));
    }
    if let Some(name) = &filter.name {
        args.push(name.clone().into());
        sql.push_str(&format!(" AND s.name = ?{}", args.len()));
    }
    if let Some(prefix) = &filter.id_prefix {
        args.push(prefix.clone().into());
        let n = args.len();
        sql.push_str(&format!(" AND substr(s.id, 1, length(?{n})) = ?{n}"));
    }
    if let Some(before) = filter.created_before_ms {
        args.push(ms(before).into());
        sql.push_str(&format!(" AND s.created_ms < ?{}", args.len()));
    }
    args.push(
        filter
            .limit
            .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX))
            .into(),
    );
    let limit = args.len();
    args.push(i64::try_from(filter.offset).unwrap_or(i64::MAX).into());
    let stuck_first = if filter.stuck_first {
        "s.state <> 'stuck', "
    } else {
        ""
    };
    sql.push_str(&format!(
        " ORDER BY {stuck_first}s.created_ms, s.rowid LIMIT ?{limit} OFFSET ?{}",
        args.len()
    ));
    (sql, args)
}

/// In-flight sagas under a live lease of another incarnation of the claiming runner's
/// name (`prefix`) whose process is provably gone: its liveness lock is free.
fn gone_candidates(
    conn: &rusqlite::Connection,
    request: &ClaimRequest,
    prefix: &str,
    liveness: &Liveness,
) -> Result<Vec<(String, String)>> {
    let rows: Vec<(String, String, String)> = conn
        .prepare_cached(
            "SELECT id, name, owner FROM flext_sagas
             WHERE owner >= ?3 AND owner < ?4
               AND state IN ('running', 'compensating') AND lease_until_ms > ?1
               AND owner <> ?2 AND substr(owner, 1, length(?3)) = ?3
             ORDER BY created_ms",
        )
        .and_then(|mut stmt| {
            let (start, end) = crate::saga::owner_range(prefix);
            stmt.query_map(
                params![ms(request.now_ms), request.lease.owner, start, end],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?
            .collect()
        })
        .map_err(db_error)?;
    let db = database_file(conn);
    let mut verdicts = std::collections::HashMap::new();
    Ok(rows
        .into_iter()
        .filter(|(_, _, owner)| {
            *verdicts
                .entry(owner.clone())
                .or_insert_with(|| liveness.gone(db.as_deref(), owner))
        })
        .map(|(id, name, _)| (id, name))
        .collect())
}

/// A new record as the writer thread inserts it: without its transitions, and its input
/// encoded beside it (on the caller's thread, so that the writer only writes).
fn to_insert(record: &SagaRecord) -> Result<(SagaRecord, String)> {
    let input = serde_json::to_string(&record.input).map_err(json_error)?;
    let record = SagaRecord {
        transitions: Vec::new(),
        input: serde_json::Value::Null,
        ..record.clone()
    };
    Ok((record, input))
}

impl SagaLog for SqliteLog {
    fn create<'a>(&'a self, record: &'a SagaRecord) -> BoxFuture<'a, Result<()>> {
        match to_insert(record) {
            Ok((record, input)) => self.submit(true, move |conn| create_row(conn, &record, &input)),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }

    fn create_child<'a>(
        &'a self,
        record: &'a SagaRecord,
        parent: Uuid,
    ) -> BoxFuture<'a, Result<()>> {
        match to_insert(record) {
            Ok((record, input)) => self.submit(true, move |conn| {
                create_row(conn, &record, &input)?;
                super::signals::link_child(conn, record.id, parent)
            }),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }

    fn append<'a>(
        &'a self,
        id: Uuid,
        transition: &'a Transition,
        state: SagaState,
        lease: &'a Lease,
        fence: Fence,
    ) -> BoxFuture<'a, Result<()>> {
        let body = match serde_json::to_string(transition).map_err(json_error) {
            Ok(body) => body,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let lease = lease.clone();
        self.submit(true, move |conn| {
            append_row(conn, id, &body, state, &lease, fence)
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
        let bodies = match transitions
            .iter()
            .map(|t| serde_json::to_string(t).map_err(json_error))
            .collect::<Result<Vec<String>>>()
        {
            Ok(bodies) => bodies,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let lease = lease.clone();
        self.submit(true, move |conn| {
            append_rows(conn, id, &bodies, state, &lease, fence)
        })
    }

    fn settle<'a>(&'a self, id: Uuid, state: SagaState, fence: Fence) -> BoxFuture<'a, Result<()>> {
        self.submit(true, move |conn| settle_row(conn, id, state, fence))
    }

    fn load<'a>(&'a self, id: Uuid) -> BoxFuture<'a, Result<SagaRecord>> {
        self.submit(false, move |conn| Self::read(conn, id))
    }

    fn claim_expired<'a>(&'a self, request: &'a ClaimRequest) -> BoxFuture<'a, Result<Claimed>> {
        let request = request.clone();
        let liveness = self.liveness.clone();
        self.submit(true, move |conn| {
            let candidates: Vec<(String, String)> = {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT id, name FROM flext_sagas
                         WHERE state IN ('running', 'compensating') AND lease_until_ms <= ?1
                         ORDER BY created_ms",
                    )
                    .map_err(db_error)?;
                stmt.query_map(params![ms(request.now_ms)], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(db_error)?
                    .collect::<rusqlite::Result<_>>()
                    .map_err(db_error)?
            };
            let mut candidates = candidates;
            if let Some(prefix) = &request.takeover_gone {
                candidates.extend(gone_candidates(conn, &request, prefix, &liveness)?);
            }
            let until = request.now_ms.saturating_add(request.lease.duration_ms);
            let mut claimed = Claimed::default();
            for (key, name) in candidates {
                if !claimed.wants_more(&request) {
                    break;
                }
                let Ok(id) = parse_id(&key) else { continue };
                if !request.wants(id, &name) {
                    continue;
                }
                // Everything that refuses happens before a write.
                let Some(record) = claimed.screen(&request, id, Self::read(conn, id))? else {
                    continue;
                };
                conn.prepare_cached(
                    "UPDATE flext_sagas SET owner = ?1, lease_until_ms = ?2, epoch = epoch + 1 WHERE id = ?3",
                )
                .and_then(|mut stmt| stmt.execute(params![request.lease.owner, ms(until), key]))
                .map_err(db_error)?;
                claimed.take(&request, record, until);
            }
            Ok(claimed)
        })
    }

    fn renew<'a>(&'a self, id: Uuid, lease: &'a Lease, epoch: u64) -> BoxFuture<'a, Result<()>> {
        let lease = lease.clone();
        self.submit(true, move |conn| {
            let now = now_ms();
            let changed = conn
                .prepare_cached(
                    "UPDATE flext_sagas SET lease_until_ms = ?1
                     WHERE id = ?2 AND epoch = ?3 AND state IN ('running', 'compensating')",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        ms(now.saturating_add(lease.duration_ms)),
                        id.to_string(),
                        ms(epoch)
                    ])
                })
                .map_err(db_error)?;
            if changed == 1 {
                Ok(())
            } else {
                Err(refused(conn, id, None))
            }
        })
    }

    fn hold_liveness<'a>(&'a self, owner: &'a str) -> BoxFuture<'a, Result<bool>> {
        let liveness = self.liveness.clone();
        let owner = owner.to_owned();
        self.submit(false, move |conn| {
            liveness.hold(database_file(conn).as_deref(), &owner)
        })
    }

    fn list<'a>(&'a self, filter: &'a SagaFilter) -> BoxFuture<'a, Result<Vec<SagaSummary>>> {
        let filter = filter.clone();
        self.submit(false, move |conn| {
            let (sql, args) = list_sql(&filter);
            let mut stmt = conn.prepare_cached(&sql).map_err(db_error)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args), |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, i64>(6)?,
                        r.get::<_, Option<String>>(7)?,
                    ))
                })
                .map_err(db_error)?;
            rows.map(|row| {
                let (id, name, state, owner, created, lease, n, last) = row.map_err(db_error)?;
                let state = parse_state(&state)?;
                let last: Vec<Transition> = match last {
                    Some(body) => vec![serde_json::from_str(&body).map_err(json_error)?],
                    None => Vec::new(),
                };
                Ok(SagaSummary {
                    id: parse_id(&id)?,
                    name,
                    state,
                    transitions: usize::try_from(n).unwrap_or(0),
                    owner,
                    created_ms: u64::try_from(created).unwrap_or(0),
                    lease_until_ms: u64::try_from(lease).unwrap_or(0),
                    stuck_at: StuckAt::of(state, &last),
                })
            })
            .collect()
        })
    }

    fn send_signal<'a>(&'a self, signal: &'a SignalRecord) -> BoxFuture<'a, Result<SignalSent>> {
        let payload = match serde_json::to_string(&signal.payload).map_err(json_error) {
            Ok(payload) => payload,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let signal = signal.clone();
        self.submit(true, move |conn| {
            super::signals::send(conn, &signal, &payload)
        })
    }

    fn enqueue<'a>(
        &'a self,
        record: &'a SagaRecord,
        item: &'a crate::saga::QueueItem,
    ) -> BoxFuture<'a, Result<crate::saga::Enqueued>> {
        let item = item.clone();
        match to_insert(record) {
            Ok((record, input)) => self.submit(true, move |conn| {
                super::queue::enqueue(conn, &record, &input, &item)
            }),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }

    fn dequeue<'a>(
        &'a self,
        request: &'a crate::saga::DequeueRequest,
    ) -> BoxFuture<'a, Result<crate::saga::Dequeued>> {
        let request = request.clone();
        self.submit(true, move |conn| super::queue::dequeue(conn, &request))
    }

    fn queue_depths<'a>(&'a self) -> BoxFuture<'a, Result<Vec<crate::saga::QueueDepth>>> {
        self.submit(false, move |conn| super::queue::depths(conn, None))
    }

    fn signals<'a>(&'a self, id: Uuid) -> BoxFuture<'a, Result<Vec<SignalRecord>>> {
        self.submit(false, move |conn| super::signals::read(conn, id))
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

    fn intervene<'a>(
        &'a self,
        id: Uuid,
        command: &'a Intervention,
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
                "UPDATE flext_sagas SET state = ?1, owner = ?2, lease_until_ms = ?3, epoch = ?4, seq = ?5 WHERE id = ?6",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    record.state.as_str(),
                    record.owner,
                    ms(record.lease_until_ms),
                    ms(record.epoch),
                    ms(record.transitions.len() as u64),
                    key
                ])
            })
            .map_err(db_error)?;
            insert_transition(conn, &key, record.transitions.len() as u64, &body, now_ms)?;
            Ok(record)
        })
    }
}

#[cfg(test)]
mod tests;
