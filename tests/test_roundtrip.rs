//! Every value flext keeps comes back bit for bit: a property over every payload the
//! stores keep (events, snapshots, saga inputs and outputs, outbox rows) on every store
//! (memory, SQLite, and PostgreSQL with `--features postgres`).
//!
//! Payloads hold f64 and f32 with subnormals, extremes and negative zero, i64/u64
//! extremes, i128 in the range serde_json keeps, long and odd Unicode strings, nested
//! options and maps. A value comes back when its JSON text is the same as the original's
//! (serde_json writes the shortest text that reads back as the same float, so equal text
//! is equal bits, and `-0.0` differs from `0.0`) and it compares equal.
//!
//! Cases per payload kind: `FLEXT_ROUNDTRIP_CASES` (default 10,000). With serde_json's
//! `float_roundtrip` turned off, SQLite and PostgreSQL fail within the first few hundred
//! cases (an f64 read back one unit in the last place off).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use flext::aggregate::{Events, Fixture, Repository};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use flext::database::Relay;
use flext::event_store::{
    EventEnvelope, EventStore, MemoryEventStore, NewEvent, Snapshot, StreamId,
};
use flext::prelude::*;
use flext::saga::{Fence, Lease, MemoryLog, SagaLog, SagaRecord, SagaState, Transition};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Payload {
    f: f64,
    g: f32,
    i: i64,
    u: u64,
    wide: i128,
    text: String,
    nested: Option<Vec<Option<f64>>>,
    map: BTreeMap<String, Option<i64>>,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Kind {
    Plain,
    Amount(f64),
    Pair { low: i64, high: u64 },
}

fn f64s() -> impl Strategy<Value = f64> {
    use proptest::num::f64 as f;
    prop_oneof![
        4 => f::POSITIVE | f::NEGATIVE | f::NORMAL | f::SUBNORMAL | f::ZERO,
        1 => prop::sample::select(vec![
            0.0, -0.0, f64::MIN, f64::MAX, f64::MIN_POSITIVE, -f64::MIN_POSITIVE, f64::EPSILON,
            5e-324, -5e-324, 36.410000000000004, 0.1 + 0.2, 9_007_199_254_740_993.0,
        ]),
    ]
}

fn f32s() -> impl Strategy<Value = f32> {
    use proptest::num::f32 as f;
    prop_oneof![
        4 => f::POSITIVE | f::NEGATIVE | f::NORMAL | f::SUBNORMAL | f::ZERO,
        1 => prop::sample::select(vec![-0.0f32, f32::MIN, f32::MAX, f32::MIN_POSITIVE, 1e-45]),
    ]
}

fn strings() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        // Long, with combining marks, emoji, right-to-left text, escapes and controls.
        prop::collection::vec(
            prop::sample::select(vec![
                "a",
                "\0",
                "é",
                "e\u{301}",
                "👩‍👩‍👧",
                "\u{202e}",
                "\"",
                "\\",
                "\n",
                "\u{1}",
                "\u{7f}",
                "\u{ffff}",
                "\u{10ffff}",
                "𝄞",
                "ß",
                "\u{2028}",
            ]),
            0..160,
        )
        .prop_map(|parts| parts.concat()),
    ]
}

fn payloads() -> impl Strategy<Value = Payload> {
    let numbers = (
        f64s(),
        f32s(),
        prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX)],
        prop_oneof![any::<u64>(), Just(u64::MAX), Just(0)],
        prop_oneof![
            (i128::from(i64::MIN)..=i128::from(u64::MAX)),
            Just(i128::from(i64::MIN)),
            Just(i128::from(u64::MAX)),
        ],
    );
    let kinds = prop_oneof![
        Just(Kind::Plain),
        f64s().prop_map(Kind::Amount),
        (any::<i64>(), any::<u64>()).prop_map(|(low, high)| Kind::Pair { low, high }),
    ];
    (
        numbers,
        strings(),
        prop::option::of(prop::collection::vec(prop::option::of(f64s()), 0..6)),
        prop::collection::btree_map(strings(), prop::option::of(any::<i64>()), 0..4),
        kinds,
    )
        .prop_map(|((f, g, i, u, wide), text, nested, map, kind)| Payload {
            f,
            g,
            i,
            u,
            wide,
            text,
            nested,
            map,
            kind,
        })
}

fn cases() -> u32 {
    std::env::var("FLEXT_ROUNDTRIP_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000)
}

/// Whether `back` is `original`, bit for bit.
fn same(original: &Payload, back: &serde_json::Value, what: &str) -> Result<(), TestCaseError> {
    let decoded: Payload = serde_json::from_value(back.clone())
        .map_err(|e| TestCaseError::fail(format!("{what} does not decode: {e}")))?;
    let (want, got) = (
        serde_json::to_string(original).unwrap(),
        serde_json::to_string(&decoded).unwrap(),
    );
    if want != got || *original != decoded {
        return Err(TestCaseError::fail(format!(
            "{what} changed in the store:\n wrote {want}\n  read {got}"
        )));
    }
    Ok(())
}

/// What one backend keeps.
struct Stores {
    events: Arc<dyn EventStore>,
    sagas: Arc<dyn SagaLog>,
    /// Delivers the outbox's pending rows into `delivered`, when the backend has one.
    outbox: Option<Box<dyn Fn() -> flext::BoxFuture<'static, flext::Result<u64>>>>,
    delivered: Arc<Mutex<Vec<EventEnvelope>>>,
}

/// Collects what an outbox delivers.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
struct Capture(Arc<Mutex<Vec<EventEnvelope>>>);

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl Relay for Capture {
    fn deliver<'a>(&'a self, event: &'a EventEnvelope) -> flext::BoxFuture<'a, flext::Result<()>> {
        self.0.lock().unwrap().push(event.clone());
        Box::pin(async { Ok(()) })
    }
}

async fn events_and_outbox(stores: &Stores, p: &Payload) -> Result<(), TestCaseError> {
    let stream = StreamId::new("Roundtrip", Uuid::new_v4().to_string());
    let payload = serde_json::to_value(p).unwrap();
    let event = NewEvent::new("roundtrip.kept", 1, payload, &Context::new());
    let fail = |e: flext::Error| TestCaseError::fail(e.to_string());
    stores
        .events
        .append(&stream, 0, &[event])
        .await
        .map_err(fail)?;
    let loaded = stores.events.load(&stream, 0).await.map_err(fail)?;
    same(p, &loaded[0].payload, "an event")?;
    if let Some(deliver) = &stores.outbox {
        deliver().await.map_err(fail)?;
        let row = stores.delivered.lock().unwrap().pop();
        let row = row.ok_or_else(|| TestCaseError::fail("the outbox delivered nothing"))?;
        same(p, &row.payload, "an outbox row")?;
    }
    let snapshot = Snapshot {
        stream: stream.clone(),
        version: 1,
        state: serde_json::to_value(p).unwrap(),
        taken_ms: 1,
    };
    stores.events.save_snapshot(&snapshot).await.map_err(fail)?;
    let back = stores.events.load_snapshot(&stream).await.map_err(fail)?;
    let back = back.ok_or_else(|| TestCaseError::fail("the snapshot is gone"))?;
    same(p, &back.state, "a snapshot")
}

async fn saga_input_and_output(stores: &Stores, p: &Payload) -> Result<(), TestCaseError> {
    let fail = |e: flext::Error| TestCaseError::fail(e.to_string());
    let lease = Lease {
        owner: "roundtrip/1".into(),
        duration_ms: 60_000,
    };
    let record = SagaRecord {
        id: Uuid::new_v4(),
        name: "Roundtrip".into(),
        input: serde_json::to_value(p).unwrap(),
        correlation_id: Uuid::new_v4(),
        state: SagaState::Running,
        transitions: Vec::new(),
        owner: lease.owner.clone(),
        lease_until_ms: flext::saga::now_ms() + 60_000,
        definition: String::new(),
        created_ms: 1,
        epoch: 1,
    };
    stores.sagas.create(&record).await.map_err(fail)?;
    let step = Transition::StepCompleted {
        index: 0,
        output: serde_json::to_value(p).unwrap(),
        attempts: 1,
    };
    let fence = Fence { epoch: 1, seq: 0 };
    stores
        .sagas
        .append(record.id, &step, SagaState::Running, &lease, fence)
        .await
        .map_err(fail)?;
    let back = stores.sagas.load(record.id).await.map_err(fail)?;
    same(p, &back.input, "a saga's input")?;
    match back.transitions.first() {
        Some(Transition::StepCompleted { output, .. }) => same(p, output, "a step's output"),
        other => Err(TestCaseError::fail(format!("the step is gone: {other:?}"))),
    }
}

/// Runs the property for both payload kinds on `stores`.
fn property(stores: &Stores, rt: &tokio::runtime::Runtime) {
    for kind in [
        "events, outbox rows and snapshots",
        "saga inputs and outputs",
    ] {
        let started = std::time::Instant::now();
        let mut runner = TestRunner::new(Config {
            cases: cases(),
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&payloads(), |p| {
            rt.block_on(async {
                if kind.starts_with("events") {
                    events_and_outbox(stores, &p).await
                } else {
                    saga_input_and_output(stores, &p).await
                }
            })
        });
        if let Err(e) = result {
            panic!("{kind}: {e}");
        }
        eprintln!(
            "{kind}: {} values kept exactly in {:?}",
            cases(),
            started.elapsed()
        );
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn every_value_comes_back_bit_for_bit_in_memory() {
    let stores = Stores {
        events: Arc::new(MemoryEventStore::new()),
        sagas: Arc::new(MemoryLog::new()),
        outbox: None,
        delivered: Arc::default(),
    };
    property(&stores, &runtime());
}

#[cfg(feature = "sqlite")]
#[test]
fn every_value_comes_back_bit_for_bit_from_sqlite() {
    let dir = std::env::temp_dir().join(format!("flext-roundtrip-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = flext::sqlite::SqliteDatabase::open(dir.join("kept.db")).unwrap();
    let delivered: Arc<Mutex<Vec<EventEnvelope>>> = Arc::default();
    let relay = Arc::new(flext::sqlite::SqliteOutboxRelay::new(
        db.clone(),
        Capture(delivered.clone()),
    ));
    let stores = Stores {
        events: Arc::new(db.event_store().unwrap()),
        sagas: Arc::new(db.saga_log().unwrap()),
        outbox: Some(Box::new(move || {
            let relay = relay.clone();
            Box::pin(async move { relay.deliver_pending().await })
        })),
        delivered,
    };
    property(&stores, &runtime());
    drop(stores);
    std::fs::remove_dir_all(&dir).ok();
}

#[cfg(feature = "postgres")]
#[test]
fn every_value_comes_back_bit_for_bit_from_postgres() {
    let rt = runtime();
    let cluster = flext::postgres::TestCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let db = rt.block_on(async {
        let url = cluster.fresh_database().await.unwrap();
        flext::postgres::PgDatabase::connect(&url).await.unwrap()
    });
    let delivered: Arc<Mutex<Vec<EventEnvelope>>> = Arc::default();
    let relay = Arc::new(flext::postgres::PgOutboxRelay::new(
        db.clone(),
        Capture(delivered.clone()),
    ));
    let stores = Stores {
        events: Arc::new(db.event_store()),
        sagas: Arc::new(db.saga_log()),
        outbox: Some(Box::new(move || {
            let relay = relay.clone();
            Box::pin(async move { relay.deliver_pending().await })
        })),
        delivered,
    };
    property(&stores, &rt);
}

// ------------------------------------------------- what has no exact JSON form is refused

#[event(name = "meter.read")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Read {
    value: f64,
}

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    #[aggregate_id]
    meter: String,
    value: f64,
}

#[aggregate]
#[derive(Debug, Default)]
struct Meter {
    #[aggregate_id]
    id: String,
    total: f64,
}

#[aggregate]
impl Meter {
    #[command_handler]
    fn record(&self, c: &Record) -> Result<Events<Self>> {
        if c.value < 0.0 {
            return Err(Error::validation(
                "meter.negative",
                "a reading is never negative",
            ));
        }
        Ok(Events::one(Read { value: c.value }))
    }
    #[apply]
    fn read(&mut self, e: &Read) {
        self.total += e.value;
    }
}

/// A NaN would be stored as `null` and never read back: the append is refused with the
/// reason, and the stream stays empty.
#[tokio::test]
async fn an_event_without_an_exact_json_form_is_refused_at_append() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    let meters = Repository::<Meter>::new(store.clone());
    let err = meters
        .execute(
            &Record {
                meter: "m-1".into(),
                value: f64::NAN,
            },
            &Context::new(),
        )
        .await
        .unwrap_err();
    assert!(err.message().contains("no JSON form"), "{err}");
    assert_eq!(
        store.version(&StreamId::new("Meter", "m-1")).await.unwrap(),
        0
    );
    // A value that has one is kept exactly.
    meters
        .execute(
            &Record {
                meter: "m-1".into(),
                value: 36.410000000000004,
            },
            &Context::new(),
        )
        .await
        .unwrap();
    let loaded = store.load(&StreamId::new("Meter", "m-1"), 0).await.unwrap();
    assert_eq!(
        loaded[0].payload["value"].as_f64(),
        Some(36.410000000000004)
    );
}

#[test]
fn a_fixture_applies_given_events_through_their_stored_text() {
    let meter = Fixture::<Meter>::given(Events::one(Read {
        value: 36.410000000000004,
    }))
    .when(Record {
        meter: "m-2".into(),
        value: 0.1,
    })
    .then_expect(Events::one(Read { value: 0.1 }));
    assert_eq!(
        meter.total.to_bits(),
        (36.410000000000004f64 + 0.1).to_bits()
    );
    let refused = std::panic::catch_unwind(|| {
        Fixture::<Meter>::given(Events::one(Read {
            value: f64::INFINITY,
        }))
        .when(Record {
            meter: "m-2".into(),
            value: 1.0,
        })
        .then_expect_no_events();
    });
    let message = *refused.unwrap_err().downcast::<String>().unwrap();
    assert!(message.contains("no JSON form"), "{message}");
}

#[test]
fn a_fixture_mismatch_shows_both_sides_as_json_text() {
    let mismatch = std::panic::catch_unwind(|| {
        Fixture::<Meter>::given_no_events()
            .when(Record {
                meter: "m-3".into(),
                value: 2.5,
            })
            .then_expect(Events::one(Read { value: 2.0 }).and(Read { value: 1.0 }));
    });
    let message = *mismatch.unwrap_err().downcast::<String>().unwrap();
    assert!(
        message.contains(r#"1 meter.read {"value":2.0} != meter.read {"value":2.5}"#),
        "{message}"
    );
    assert!(
        message.contains(r#"2 meter.read {"value":1.0} != (none)"#),
        "{message}"
    );
}

#[test]
fn a_fixture_matches_an_errors_message() {
    let refused = || {
        Fixture::<Meter>::given_no_events().when(Record {
            meter: "m-4".into(),
            value: -1.0,
        })
    };
    let err = refused().then_expect_error_message("a reading is never negative");
    assert_eq!(err.code(), "meter.negative");
    let other = std::panic::catch_unwind(|| refused().then_expect_error_message("no"));
    let message = *other.unwrap_err().downcast::<String>().unwrap();
    assert!(
        message.contains("failed with another message (code `meter.negative`)"),
        "{message}"
    );
}

// ------------------------------------------------------------------ JSON input by name

/// A command whose JSON form is naturally an array opts in to positional input.
#[command(output = u64, positional)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Add(u64, u64);

#[command_handler]
async fn add(c: Add) -> Result<u64> {
    Ok(c.0 + c.1)
}

#[tokio::test]
async fn a_command_that_opts_in_takes_a_positional_array() {
    let meters = Repository::<Meter>::new(Arc::new(MemoryEventStore::new()));
    let bus = Bus::builder().state(meters).build().unwrap();
    let sum = bus
        .send_json("Add", "[2, 3]", &Context::new())
        .await
        .unwrap();
    assert_eq!(sum, serde_json::json!(5));
}
