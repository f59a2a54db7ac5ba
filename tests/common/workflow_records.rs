//! The durable workflow records of the `SagaLog` conformance suite: node transitions
//! written several at a time ([`SagaLog::append_all`]) are one fenced write that reads
//! back in order, and a run a dead runner left is resumed by recovery without running
//! its finished nodes again, on every backend.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flext::Uuid;
use flext::codes;
use flext::prelude::*;
use flext::saga::{
    ErrorRecord, Fence, Lease, SagaLog, SagaRecord, SagaRunner, SagaState, Transition,
};
use serde::{Deserialize, Serialize};

/// Calls per node and the idempotency key of each.
#[derive(Default)]
pub struct Calls(Mutex<BTreeMap<String, Vec<String>>>);

impl Calls {
    fn record(&self, node: &str, ctx: &Context) {
        self.0
            .lock()
            .unwrap()
            .entry(node.to_owned())
            .or_default()
            .push(ctx.idempotency_key().unwrap_or_default().to_owned());
    }

    fn of(&self, node: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .get(node)
            .cloned()
            .unwrap_or_default()
    }
}

/// fetch -> (price, stock) -> publish.
#[derive(Serialize, Deserialize)]
pub struct Catalogue {
    pub sku: String,
}

#[workflow(durable)]
impl Catalogue {
    #[workflow_step]
    async fn fetch(&self, calls: State<Calls>, ctx: &Context) -> Result<String> {
        calls.record("fetch", ctx);
        Ok(format!("item {}", self.sku))
    }

    #[workflow_step(depends_on = [fetch])]
    async fn price(&self, item: &str, calls: State<Calls>, ctx: &Context) -> Result<u32> {
        calls.record("price", ctx);
        Ok(item.len() as u32 * 100)
    }

    #[workflow_step(depends_on = [fetch])]
    async fn stock(&self, item: &str, calls: State<Calls>, ctx: &Context) -> Result<u32> {
        tokio::task::yield_now().await;
        calls.record("stock", ctx);
        Ok(item.len() as u32)
    }

    #[workflow_step(depends_on = [price, stock])]
    async fn publish(
        &self,
        price: &u32,
        stock: &u32,
        calls: State<Calls>,
        ctx: &Context,
    ) -> Result<String> {
        calls.record("publish", ctx);
        Ok(format!("{} at {price} ({stock} left)", self.sku))
    }
}

fn node(name: &str) -> String {
    name.to_owned()
}

/// Several transitions in one `append_all`: one fenced write, read back in order with
/// consecutive sequence numbers; a stale fence, or a write after the run ended, is
/// refused and writes nothing; a single `append` follows the batch.
pub async fn append_all_contract(log: Arc<dyn SagaLog>) {
    let id = Uuid::new_v4();
    let lease = Lease {
        owner: "w/1".into(),
        duration_ms: 60_000,
    };
    log.create(&SagaRecord {
        id,
        name: "Catalogue".into(),
        input: serde_json::json!({ "sku": "A-1" }),
        correlation_id: Uuid::new_v4(),
        state: SagaState::Running,
        transitions: Vec::new(),
        owner: lease.owner.clone(),
        lease_until_ms: flext::saga::now_ms() + 60_000,
        definition: String::new(),
        created_ms: flext::saga::now_ms(),
        epoch: 1,
    })
    .await
    .unwrap();
    // Nothing to write is no write.
    log.append_all(
        id,
        &[],
        SagaState::Running,
        &lease,
        Fence { epoch: 1, seq: 0 },
    )
    .await
    .unwrap();
    let first = [Transition::NodeStarted {
        node: node("fetch"),
    }];
    let second = [
        Transition::NodeCompleted {
            node: node("fetch"),
            output: serde_json::json!("item A-1"),
            attempts: 1,
        },
        Transition::NodeStarted {
            node: node("price"),
        },
        Transition::NodeStarted {
            node: node("stock"),
        },
    ];
    let third = [
        Transition::NodeFailed {
            node: node("price"),
            error: ErrorRecord::from(&Error::infrastructure("price.down", "no prices")),
            optional: true,
            attempts: 1,
        },
        Transition::NodeSkipped {
            node: node("publish"),
            missing: node("price"),
        },
        Transition::NodeCompleted {
            node: node("stock"),
            output: serde_json::json!(8),
            attempts: 1,
        },
    ];
    log.append_all(
        id,
        &first,
        SagaState::Running,
        &lease,
        Fence { epoch: 1, seq: 0 },
    )
    .await
    .unwrap();
    log.append_all(
        id,
        &second,
        SagaState::Running,
        &lease,
        Fence { epoch: 1, seq: 1 },
    )
    .await
    .unwrap();
    // A stale fence (another write came first) is refused, and nothing is written.
    let stale = log
        .append_all(
            id,
            &third,
            SagaState::Completed,
            &lease,
            Fence { epoch: 1, seq: 1 },
        )
        .await
        .unwrap_err();
    assert_eq!(stale.code(), codes::SAGA_LEASE_LOST, "{stale}");
    let epoch = log
        .append_all(
            id,
            &third,
            SagaState::Completed,
            &lease,
            Fence { epoch: 2, seq: 4 },
        )
        .await
        .unwrap_err();
    assert_eq!(epoch.code(), codes::SAGA_LEASE_LOST, "{epoch}");
    assert_eq!(log.load(id).await.unwrap().transitions.len(), 4);

    log.append_all(
        id,
        &third,
        SagaState::Completed,
        &lease,
        Fence { epoch: 1, seq: 4 },
    )
    .await
    .unwrap();
    let loaded = log.load(id).await.unwrap();
    assert_eq!(loaded.state, SagaState::Completed);
    let written: Vec<Transition> = [&first[..], &second[..], &third[..]].concat();
    assert_eq!(loaded.transitions, written);
    let history = log.history(id).await.unwrap();
    assert_eq!(
        history.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<u64>>()
    );
    // One write: the batch shares its time.
    assert!(
        history[4..].iter().all(|e| e.at_ms == history[4].at_ms),
        "{history:?}"
    );
    // Nothing follows the end.
    let after = log
        .append_all(
            id,
            &first,
            SagaState::Running,
            &lease,
            Fence { epoch: 1, seq: 7 },
        )
        .await
        .unwrap_err();
    assert_eq!(after.code(), codes::SAGA_LEASE_LOST);
    assert_eq!(log.load(id).await.unwrap().transitions.len(), 7);
}

/// A durable run that a runner left mid-graph (its lease expired): recovery resumes it
/// from the log, so the node that completed is not run again, the nodes that were
/// running run again under the same idempotency key, and the run completes with every
/// node's output; a run started through the runner records each node by name.
pub async fn resume_contract(log: Arc<dyn SagaLog>) {
    let calls = Arc::new(Calls::default());
    let runner = SagaRunner::builder_shared(log.clone())
        .shared_state(calls.clone())
        .lease(Duration::ZERO)
        .build();

    // Through the runner: every node by name, the run completed.
    let run = runner
        .run_workflow_durable(Catalogue { sku: "B-2".into() }, &Context::new())
        .await
        .unwrap();
    assert_eq!(
        run.output::<String>("publish").unwrap(),
        "B-2 at 800 (8 left)"
    );
    let id = run.run_id().unwrap();
    let record = log.load(id).await.unwrap();
    assert_eq!(record.state, SagaState::Completed);
    let completed: Vec<&str> = record
        .transitions
        .iter()
        .filter_map(|t| match t {
            Transition::NodeCompleted { node, .. } => Some(node.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(completed.len(), 4);
    assert_eq!((completed[0], completed[3]), ("fetch", "publish"));

    // Left by a dead runner after fetch completed and price and stock started.
    let left = Uuid::new_v4();
    log.create(&SagaRecord {
        id: left,
        name: "Catalogue".into(),
        input: serde_json::json!({ "sku": "C-3" }),
        correlation_id: Uuid::new_v4(),
        state: SagaState::Running,
        transitions: Vec::new(),
        owner: "dead/1".into(),
        lease_until_ms: 0,
        definition: <Catalogue as flext::saga::DurableWorkflow>::DEFINITION.to_owned(),
        created_ms: flext::saga::now_ms(),
        epoch: 1,
    })
    .await
    .unwrap();
    let dead = Lease {
        owner: "dead/1".into(),
        duration_ms: 0,
    };
    log.append_all(
        left,
        &[
            Transition::NodeStarted {
                node: node("fetch"),
            },
            Transition::NodeCompleted {
                node: node("fetch"),
                output: serde_json::json!("item C-3"),
                attempts: 1,
            },
            Transition::NodeStarted {
                node: node("price"),
            },
            Transition::NodeStarted {
                node: node("stock"),
            },
        ],
        SagaState::Running,
        &dead,
        Fence { epoch: 1, seq: 0 },
    )
    .await
    .unwrap();
    let before = calls.of("fetch").len();
    let report = runner.recover().await.unwrap();
    let ours = report
        .sagas
        .iter()
        .find(|s| s.saga_id == left)
        .expect("recovered");
    match ours.result.as_ref().unwrap() {
        flext::saga::SagaOutcome::Completed { output, .. } => {
            assert_eq!(output["publish"], "C-3 at 800 (8 left)");
            assert_eq!(output["fetch"], "item C-3");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        calls.of("fetch").len(),
        before,
        "fetch completed before: not run again"
    );
    assert!(calls.of("price").contains(&format!("{left}:price")));
    assert!(calls.of("stock").contains(&format!("{left}:stock")));
    let record = log.load(left).await.unwrap();
    assert_eq!(record.state, SagaState::Completed);
    assert_eq!(record.epoch, 2, "claimed once");
    // A start under the same id now returns the recorded run.
    let again = runner
        .run_workflow_with_id(left, Catalogue { sku: "C-3".into() }, &Context::new())
        .await
        .unwrap();
    assert_eq!(again.output::<u32>("stock"), Some(&8));
}
