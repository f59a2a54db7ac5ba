//! `flext-saga show` on what a runner wrote beyond a plain saga: a durable workflow run
//! drawn as its graph, and a saga waiting for a signal, with what it received.

use flext::prelude::*;
use flext::saga::{SagaRunner, SqliteLog};
use serde::{Deserialize, Serialize};

mod common;
use common::{Dir, stderr, stdout, tool};

/// fetch -> (price optional and failing, stock) -> publish (takes stock only).
#[derive(Serialize, Deserialize)]
struct Catalogue {
    sku: String,
}

#[workflow(durable)]
impl Catalogue {
    #[workflow_step]
    async fn fetch(&self) -> Result<String> {
        Ok(format!("item {}", self.sku))
    }
    #[workflow_step(depends_on = [fetch], optional)]
    async fn price(&self, item: &str) -> Result<u32> {
        Err(Error::infrastructure(
            "prices.down",
            format!("no price for {item}"),
        ))
    }
    #[workflow_step(depends_on = [fetch])]
    async fn stock(&self, item: &str) -> Result<u32> {
        Ok(item.len() as u32)
    }
    #[workflow_step(depends_on = [stock])]
    async fn publish(&self, stock: &u32) -> Result<String> {
        Ok(format!("{} ({stock} left)", self.sku))
    }
}

#[tokio::test]
async fn show_draws_a_durable_workflow_run_as_its_graph() {
    let dir = Dir::new();
    let db = dir.db();
    let runner = SagaRunner::builder(SqliteLog::open(&db).unwrap()).build();
    let run = runner
        .run_workflow_durable(Catalogue { sku: "A-1".into() }, &Context::new())
        .await
        .unwrap();
    let id = run.run_id().unwrap().to_string();
    let show = tool(&db, &["show", &id]);
    assert!(show.status.success(), "{}", stderr(&show));
    let text = stdout(&show);
    let graph = text.find("\ngraph").expect("a graph section");
    let history = text.find("\nhistory").expect("a history section");
    assert!(graph < history, "{text}");
    let line = |node: &str| {
        text[graph..history]
            .lines()
            .find(|l| l.trim_start().starts_with(node))
            .unwrap_or_else(|| panic!("{node} in {text}"))
            .to_owned()
    };
    assert!(line("fetch").contains("completed"), "{text}");
    let price = line("price (optional)");
    assert!(
        price.contains("failed") && price.contains("after fetch"),
        "{text}"
    );
    assert!(line("publish").contains("completed") && line("publish").contains("after stock"));
    assert!(
        text.contains("node `price` failed (1 attempt): prices.down"),
        "{text}"
    );

    let json = tool(&db, &["show", &id, "--json"]);
    let detail: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let states: Vec<(String, String)> = detail["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_owned(),
                n["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("fetch".to_owned(), "completed".to_owned()),
            ("price".to_owned(), "failed".to_owned()),
            ("stock".to_owned(), "completed".to_owned()),
            ("publish".to_owned(), "completed".to_owned()),
        ]
    );
}

/// A webhook's payment, sent to a waiting saga.
#[derive(Serialize, Deserialize)]
struct Paid {
    cents: u64,
}

#[derive(Serialize, Deserialize)]
struct Invoice {
    number: u32,
}

#[saga]
impl Invoice {
    #[saga_step]
    async fn issue(&self) -> Result<u32> {
        Ok(self.number)
    }

    #[saga_step(signal, wait_ms = 3_600_000)]
    async fn payment(&self, _number: &u32, paid: flext::saga::Signal<Paid>) -> Result<u64> {
        Ok(paid.received()?.cents)
    }
}

#[tokio::test]
async fn show_says_what_a_waiting_saga_waits_for_and_what_it_received() {
    let dir = Dir::new();
    let db = dir.db();
    let runner = SagaRunner::builder(SqliteLog::open(&db).unwrap()).build();
    let waiting = runner
        .run(Invoice { number: 7 }, &Context::new())
        .await
        .unwrap();
    let id = waiting.saga_id();
    let show = tool(&db, &["show", &id.to_string()]);
    assert!(show.status.success(), "{}", stderr(&show));
    let text = stdout(&show);
    assert!(
        text.contains("step `payment` waits for a `Paid` signal until "),
        "{text}"
    );
    // A sender id with a control character: shown escaped, not as the raw byte.
    runner
        .signal::<Invoice, _>(id, "psp\u{1b}[31m-9", &Paid { cents: 1200 })
        .await
        .unwrap();
    runner.recover().await.unwrap();
    let show = tool(&db, &["show", &id.to_string()]);
    let text = stdout(&show);
    assert!(
        text.contains("step `payment` received the `Paid` signal of sender `psp\\u{1b}[31m-9`"),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "{text}");
}

/// A call that waits in a queue.
#[derive(Serialize, Deserialize)]
struct PartnerCall {
    order: String,
}

#[saga]
impl PartnerCall {
    #[saga_step]
    async fn call(&self) -> Result<String> {
        Ok(format!("booked {}", self.order))
    }
}

#[tokio::test]
async fn queues_shows_each_queues_depth_running_count_and_oldest_waiting() {
    let dir = Dir::new();
    let db = dir.db();
    let runner = SagaRunner::builder(SqliteLog::open(&db).unwrap()).build();
    // A name with a control character in it is printed escaped.
    let queue = flext::saga::Queue::new("partner\u{1b}[31m")
        .unwrap()
        .limit(1);
    for order in ["o-1", "o-2", "o-3"] {
        let call = PartnerCall {
            order: order.into(),
        };
        runner
            .enqueue(
                &queue,
                Uuid::new_v4(),
                call,
                Default::default(),
                &Context::new(),
            )
            .await
            .unwrap();
    }
    // One pass runs one (the limit); two wait.
    assert_eq!(runner.dispatch(&queue).await.unwrap().len(), 1);

    let text = tool(&db, &["queues"]);
    assert!(text.status.success(), "{}", stderr(&text));
    let text = stdout(&text);
    let line = text
        .lines()
        .find(|l| l.starts_with("partner"))
        .unwrap_or_else(|| panic!("the queue in {text}"));
    assert!(!line.contains('\u{1b}'), "escaped: {line}");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[1..3], ["2", "0"], "two wait, none runs: {line}");
    assert!(line.contains("s ago)"), "{line}");

    let json = tool(&db, &["--json", "queues"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(json[0]["queued"], 2);
    assert_eq!(json[0]["running"], 0);
    assert!(json[0]["oldest_queued_ms"].as_u64().is_some());
}
