//! The list query's plans, the busy-connection path and the two storage layouts.

use super::*;

/// The plan SQLite makes for `filter`'s list query, one line per step.
fn plan(filter: &SagaFilter) -> String {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    crate::saga::migrate_sqlite(&conn).unwrap();
    let (sql, args) = list_sql(filter);
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    stmt.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect::<Vec<_>>()
        .join("\n")
}

/// "The 10 oldest stuck sagas" in a log of a million finished ones reads the state
/// index in order and stops at ten: no table scan, no sort.
#[test]
fn a_filtered_list_reads_an_index_in_order() {
    for (filter, index) in [
        (
            SagaFilter::default().state(SagaState::Stuck).limit(10),
            "flext_sagas_state",
        ),
        (
            SagaFilter::default().name("Checkout").limit(10),
            "flext_sagas_name",
        ),
        (SagaFilter::default().limit(10), "flext_sagas_created"),
    ] {
        let plan = plan(&filter);
        assert!(
            plan.contains(&format!("USING INDEX {index}")),
            "{filter:?}:\n{plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{filter:?} sorts:\n{plan}");
        assert!(
            !plan.contains("SCAN s\n") && !plan.ends_with("SCAN s"),
            "{filter:?} scans:\n{plan}"
        );
    }
}

fn record(id: Uuid) -> SagaRecord {
    SagaRecord {
        id,
        name: "Busy".into(),
        input: serde_json::json!({ "n": 1 }),
        correlation_id: Uuid::new_v4(),
        state: SagaState::Running,
        transitions: Vec::new(),
        owner: "w/1".into(),
        lease_until_ms: now_ms() + 60_000,
        definition: String::new(),
        created_ms: 1_000,
        epoch: 1,
    }
}

/// At `synchronous = NORMAL` a write that finds the connection busy does not wait
/// for it on the caller's thread: it goes to the writer thread, which commits it
/// once the connection is free, and the caller reads it back.
#[test]
fn a_write_that_finds_the_connection_busy_commits_through_the_writer_thread() {
    let dir = std::env::temp_dir().join(format!("flext-busy-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = SqliteLog::open(dir.join("log.db")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());

    // Free: committed on this thread before `create` returns its future.
    let free = record(first);
    let done = log.create(&free);
    assert_eq!(log.stats().commits, 1);
    rt.block_on(done).unwrap();

    // Busy: queued, and committed only once the connection is let go.
    let busy = record(second);
    let held = log.conn.lock();
    let queued = log.create(&busy);
    assert_eq!(
        log.stats().commits,
        1,
        "committed while the connection was held"
    );
    drop(held);
    rt.block_on(queued).unwrap();
    assert_eq!(log.stats().commits, 2);
    assert!(log.jobs.get().is_some(), "the writer thread was started");

    // Both read back, the second through the writer thread too when it is busy.
    assert_eq!(rt.block_on(log.load(first)).unwrap().name, "Busy");
    let held = log.conn.lock();
    let read = log.load(second);
    drop(held);
    assert_eq!(rt.block_on(read).unwrap().id, second);
    drop(log);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A new log stores transitions in `flext_saga_steps` under an integer key given in
/// creation order; a log written by an earlier version (transitions keyed by the saga
/// id) keeps its layout. Both write, read, list and show history the same, through the
/// log and through `flext_saga_transitions`.
#[test]
fn new_logs_key_transitions_by_an_integer_and_older_logs_keep_their_layout() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for older in [false, true] {
        let dir = std::env::temp_dir().join(format!("flext-layout-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.db");
        if older {
            // The schema the previous release wrote.
            rusqlite::Connection::open(&path)
                .unwrap()
                .execute_batch(
                    "CREATE TABLE flext_sagas (id TEXT PRIMARY KEY, name TEXT NOT NULL,
                         input TEXT NOT NULL, correlation_id TEXT NOT NULL, state TEXT NOT NULL,
                         owner TEXT NOT NULL, lease_until_ms INTEGER NOT NULL,
                         created_ms INTEGER NOT NULL, definition TEXT NOT NULL DEFAULT '',
                         epoch INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL DEFAULT 0);
                     CREATE TABLE flext_saga_transitions (saga_id TEXT NOT NULL,
                         seq INTEGER NOT NULL, body TEXT NOT NULL,
                         at_ms INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (saga_id, seq))
                         WITHOUT ROWID;",
                )
                .unwrap();
        }
        let log = SqliteLog::open(&path).unwrap();
        let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
        rt.block_on(log.create(&record(first))).unwrap();
        rt.block_on(log.create(&record(second))).unwrap();
        let lease = Lease {
            owner: "w/1".into(),
            duration_ms: 60_000,
        };
        let completed = Transition::StepCompleted {
            index: 0,
            output: serde_json::json!(7),
            attempts: 1,
        };
        let stuck = Transition::Stuck {
            step: "ship".into(),
            error: crate::saga::ErrorRecord {
                kind: crate::ErrorKind::Infrastructure,
                code: "carrier.down".into(),
                message: "no carrier".into(),
            },
            attempts: 3,
        };
        for (seq, (t, state)) in [(&completed, SagaState::Running), (&stuck, SagaState::Stuck)]
            .into_iter()
            .enumerate()
        {
            let fence = Fence {
                epoch: 1,
                seq: seq as u64,
            };
            rt.block_on(log.append(second, t, state, &lease, fence))
                .unwrap();
        }

        let loaded = rt.block_on(log.load(second)).unwrap();
        assert_eq!(loaded.transitions, [completed.clone(), stuck.clone()]);
        assert!(rt.block_on(log.load(first)).unwrap().transitions.is_empty());
        let history = rt.block_on(log.history(second)).unwrap();
        assert_eq!(
            history.iter().map(|h| h.seq).collect::<Vec<_>>(),
            [1, 2],
            "older: {older}"
        );
        let listed = rt
            .block_on(log.list(&SagaFilter::default().state(SagaState::Stuck)))
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (
                listed[0].id,
                listed[0].stuck_at.as_ref().map(|s| s.step.as_str())
            ),
            (second, Some("ship"))
        );

        let raw = rusqlite::Connection::open(&path).unwrap();
        let by_id: i64 = raw
            .query_row(
                "SELECT COUNT(*) FROM flext_saga_transitions WHERE saga_id = ?1",
                [second.to_string()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(by_id, 2, "older: {older}");
        let steps = raw
            .prepare("SELECT 1 FROM sqlite_master WHERE name = 'flext_saga_steps'")
            .and_then(|mut stmt| stmt.exists([]))
            .unwrap();
        assert_eq!(steps, !older);
        if !older {
            let keys: Vec<(String, i64)> = raw
                .prepare("SELECT id, saga_key FROM flext_sagas ORDER BY saga_key")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(keys, [(first.to_string(), 1), (second.to_string(), 2)]);
            let stored: Vec<(i64, i64)> = raw
                .prepare("SELECT saga_key, seq FROM flext_saga_steps ORDER BY saga_key, seq")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(stored, [(2, 1), (2, 2)]);
        }
        drop((raw, log));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
