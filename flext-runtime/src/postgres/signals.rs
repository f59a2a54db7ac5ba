//! The signal inbox of the PostgreSQL saga log: `flext_saga_signals`, one row per (saga,
//! sender), read in the order kept.

use uuid::Uuid;

use super::saga::corrupt;
use super::{from_bigint, pg_error, to_bigint};
use crate::error::Result;
use crate::saga::{SagaState, SignalRecord, SignalSent, WAITING_PREFIX, now_ms};

/// Schema version 5: the signal inbox, and an index on the sagas' owners (bytewise), by
/// which a runner takes back a gone incarnation's sagas without scanning the parked ones.
pub(super) const SCHEMA: &str =
    "CREATE INDEX IF NOT EXISTS flext_sagas_owner ON flext_sagas (owner COLLATE \"C\");
             CREATE TABLE IF NOT EXISTS flext_saga_signals (
                 id BIGSERIAL PRIMARY KEY,
                 saga_id UUID NOT NULL REFERENCES flext_sagas (id),
                 sender TEXT NOT NULL,
                 name TEXT NOT NULL,
                 payload JSON NOT NULL,
                 sent_ms BIGINT NOT NULL,
                 UNIQUE (saga_id, sender)
             );";

/// Schema version 6: child sagas linked to their parents, and the trigger by which a
/// child's final write keeps a `child:<name>` signal in its parent's inbox and expires
/// the parent's lease when it waits for it (the same transaction as that write).
pub(super) const SCHEMA_6: &str = "CREATE TABLE IF NOT EXISTS flext_saga_children (
                 child_id UUID PRIMARY KEY REFERENCES flext_sagas (id),
                 parent_id UUID NOT NULL
             );
             CREATE OR REPLACE FUNCTION flext_saga_child_finished() RETURNS trigger AS $$
             BEGIN
                 INSERT INTO flext_saga_signals (saga_id, sender, name, payload, sent_ms)
                     SELECT c.parent_id, NEW.id::text, 'child:' || NEW.name, 'null'::json,
                            (extract(epoch FROM clock_timestamp()) * 1000)::bigint
                     FROM flext_saga_children c WHERE c.child_id = NEW.id
                     ON CONFLICT (saga_id, sender) DO NOTHING;
                 UPDATE flext_sagas s SET lease_until_ms = 0
                     FROM flext_saga_children c
                     WHERE c.child_id = NEW.id AND s.id = c.parent_id
                       AND s.owner = 'signal:child:' || NEW.name;
                 RETURN NULL;
             END $$ LANGUAGE plpgsql;
             DROP TRIGGER IF EXISTS flext_saga_child_finished ON flext_sagas;
             CREATE TRIGGER flext_saga_child_finished
                 AFTER UPDATE OF state ON flext_sagas FOR EACH ROW
                 WHEN (NEW.state IN ('completed', 'compensated', 'resolved')
                       AND OLD.state IS DISTINCT FROM NEW.state)
                 EXECUTE FUNCTION flext_saga_child_finished();";

/// Links child saga `child` to its `parent` through `client` (in the transaction that
/// creates the child).
pub(super) async fn link_child(
    client: &impl deadpool_postgres::GenericClient,
    child: Uuid,
    parent: Uuid,
) -> Result<()> {
    client
        .execute(
            "INSERT INTO flext_saga_children (child_id, parent_id) VALUES ($1, $2)
             ON CONFLICT (child_id) DO NOTHING",
            &[&child, &parent],
        )
        .await
        .map(drop)
        .map_err(pg_error)
}

/// Keeps `signal` unless its sender's is kept, and expires the lease of a saga waiting
/// for its name, in one statement; a finished saga keeps nothing.
pub(super) async fn send(
    client: &impl deadpool_postgres::GenericClient,
    signal: &SignalRecord,
) -> Result<SignalSent> {
    let id = signal.saga_id;
    let row = client
        .query_one(
            "WITH saga AS (SELECT state FROM flext_sagas WHERE id = $1),
             kept AS (
                 INSERT INTO flext_saga_signals (saga_id, sender, name, payload, sent_ms)
                 SELECT $1, $2, $3, $4, $5 FROM saga
                 WHERE saga.state NOT IN ('completed', 'compensated', 'resolved')
                 ON CONFLICT (saga_id, sender) DO NOTHING
                 RETURNING 1
             ),
             woken AS (
                 UPDATE flext_sagas SET lease_until_ms = LEAST(lease_until_ms, $6)
                 WHERE id = $1 AND owner = $7 AND state IN ('running', 'compensating')
                 RETURNING 1
             )
             SELECT (SELECT state FROM saga), (SELECT count(*) FROM kept), (SELECT count(*) FROM woken)",
            &[
                &id,
                &signal.sender,
                &signal.name,
                &signal.payload,
                &to_bigint(signal.sent_ms),
                &to_bigint(now_ms()),
                &format!("{WAITING_PREFIX}{}", signal.name),
            ],
        )
        .await
        .map_err(pg_error)?;
    let state: Option<String> = row.get(0);
    let state: SagaState = state
        .ok_or_else(|| crate::saga::unknown_saga_error(id))?
        .parse()
        .map_err(|_| corrupt("a state", "?"))?;
    if let Some(refused) = crate::saga::refuse_signal(id, state) {
        return Err(refused);
    }
    Ok(if row.get::<_, i64>(1) == 1 {
        SignalSent::Kept
    } else {
        SignalSent::Duplicate
    })
}

/// The signals kept for saga `id`, in the order kept.
pub(super) async fn read(
    client: &impl deadpool_postgres::GenericClient,
    id: Uuid,
) -> Result<Vec<SignalRecord>> {
    client
        .query(
            "SELECT sender, name, payload, sent_ms FROM flext_saga_signals WHERE saga_id = $1 ORDER BY id",
            &[&id],
        )
        .await
        .map_err(pg_error)?
        .into_iter()
        .map(|r| {
            Ok(SignalRecord {
                saga_id: id,
                sender: r.get(0),
                name: r.get(1),
                payload: r.get(2),
                sent_ms: from_bigint(r.get(3)),
            })
        })
        .collect()
}
