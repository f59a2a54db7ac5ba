//! Two services through a real `nats-server`, killed at random: `examples/nats_orders.rs`
//! (orders placed, `OrderPlaced` relayed from its SQLite outbox, `ShipmentScheduled`
//! consumed into a read model) and `examples/nats_shipping.rs` (`OrderPlaced` consumed
//! into an event-started saga that appends `ShipmentScheduled`, relayed in turn). Each
//! round places three orders; at a random moment it kills with SIGKILL the orders
//! process mid-publish, the shipping process mid-handler, or the `nats-server` (restarted
//! on its store directory), or none. Both services run with a fault that waits 50 ms
//! between the broker's ack and the outbox's mark (`FLEXT_FAULT_ACK_DELAY_MS`), so that
//! kills often leave published events unmarked. A last run of both settles everything.
//! Then:
//!
//! - every outbox event of each service is on its stream exactly once and in the
//!   outbox's order (the stream's messages against the database's events by position),
//!   and so in order per aggregate;
//! - every order placed has exactly one shipment saga (completed), one carrier booking,
//!   one `ShipmentScheduled` event, and one read-model row written once: nothing lost,
//!   no effect doubled;
//! - no dead letters.
//!
//! `FLEXT_NATS_KILL_ROUNDS` sets the rounds (default 100); `FLEXT_KILL_SEED` replays one.

#![cfg(all(feature = "nats", feature = "sqlite", unix))]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flext::nats::{NatsTestServer, headers};
use flext::sqlite::rusqlite;

#[path = "common/kill.rs"]
mod kill;

use kill::{Rng, env_count, seed};

struct Services {
    orders: PathBuf,
    shipping: PathBuf,
    dir: PathBuf,
    url: String,
}

impl Services {
    fn shipping(&self, until: Option<u64>) -> Child {
        let mut cmd = Command::new(&self.shipping);
        cmd.env("FLEXT_FAULT_ACK_DELAY_MS", "50");
        cmd.args([
            "--db",
            self.db("shipping").to_str().unwrap(),
            "--nats",
            &self.url,
        ]);
        if let Some(n) = until {
            cmd.args(["--until", &n.to_string()]);
        }
        cmd.stdout(Stdio::null())
            .stderr(self.log("shipping"))
            .spawn()
            .expect("shipping starts")
    }

    fn orders(&self, from: u64, to: u64, wait_for: u64) -> Child {
        Command::new(&self.orders)
            .env("FLEXT_FAULT_ACK_DELAY_MS", "50")
            .args([
                "--db",
                self.db("orders").to_str().unwrap(),
                "--nats",
                &self.url,
                "--place",
                &format!("{from}..{to}"),
                "--wait-for",
                &wait_for.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(self.log("orders"))
            .spawn()
            .expect("orders starts")
    }

    /// The service's standard error, appended to `{name}.err` in the test's directory.
    fn log(&self, name: &str) -> Stdio {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.err")))
            .map_or_else(|_| Stdio::null(), Stdio::from)
    }

    /// The last 2,000 bytes of what the service wrote to standard error.
    fn errors(&self, name: &str) -> String {
        let text = std::fs::read(self.dir.join(format!("{name}.err"))).unwrap_or_default();
        String::from_utf8_lossy(&text[text.len().saturating_sub(2_000)..]).into_owned()
    }

    fn db(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.db"))
    }
}

/// Kills `pids` with SIGKILL unless `done` is set within `limit`: a lost event, or a
/// service that died, would otherwise keep the test waiting for ever. The thread returns
/// whether it killed them.
fn watchdog(pids: Vec<u32>, limit: Duration) -> (Arc<AtomicBool>, std::thread::JoinHandle<bool>) {
    let done = Arc::new(AtomicBool::new(false));
    let thread = std::thread::spawn({
        let done = done.clone();
        move || {
            let start = std::time::Instant::now();
            while start.elapsed() < limit {
                if done.load(Ordering::SeqCst) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            for pid in pids {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
            true
        }
    });
    (done, thread)
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn sigkill_of_either_service_or_the_server_loses_nothing_and_doubles_nothing() {
    let rounds = env_count("FLEXT_NATS_KILL_ROUNDS", 100);
    let seed = seed();
    let mut rng = Rng(seed);
    let mut server = NatsTestServer::start().unwrap_or_else(|e| panic!("{e}"));
    let dir = std::env::temp_dir().join(format!("flext-nats-kill-{seed}"));
    std::fs::create_dir_all(&dir).unwrap();
    let services = Services {
        orders: kill::example_with("nats_orders", &["nats"]),
        shipping: kill::example_with("nats_shipping", &["nats"]),
        dir: dir.clone(),
        url: server.url().to_owned(),
    };

    let mut shipping = services.shipping(None);
    let (mut orders_killed, mut shipping_killed, mut server_killed) = (0, 0, 0);
    for round in 0..rounds {
        let (from, to) = (round * 3 + 1, round * 3 + 3);
        let mut orders = services.orders(from, to, 0);
        let (round_done, round_watchdog) = watchdog(vec![orders.id()], Duration::from_secs(120));
        let mut lines = BufReader::new(orders.stdout.take().unwrap()).lines();
        match rng.below(4) {
            // The orders process, after 0 to 3 of its "placed" lines: mid-append or
            // mid-publish.
            0 => {
                let after = rng.below(4);
                let mut seen = 0;
                while seen < after {
                    match lines.next() {
                        Some(Ok(line)) if line.starts_with("placed") => seen += 1,
                        Some(Ok(_)) => {}
                        _ => break,
                    }
                }
                std::thread::sleep(Duration::from_millis(rng.below(120)));
                kill(&mut orders);
                orders_killed += 1;
            }
            // The shipping process, while it consumes this round's orders.
            1 => {
                std::thread::sleep(Duration::from_millis(rng.below(300)));
                kill(&mut shipping);
                shipping_killed += 1;
                shipping = services.shipping(None);
            }
            // The server, restarted on its store.
            2 => {
                std::thread::sleep(Duration::from_millis(rng.below(300)));
                server.kill();
                std::thread::sleep(Duration::from_millis(rng.below(200)));
                server.restart().unwrap_or_else(|e| panic!("{e}"));
                server_killed += 1;
            }
            _ => {}
        }
        // The round's orders process ends once its outbox is published; one killed
        // above has ended already.
        for _ in lines.by_ref() {}
        let _ = orders.wait();
        round_done.store(true, Ordering::SeqCst);
        assert!(
            !round_watchdog.join().unwrap(),
            "round {round} (seed {seed}): the orders process did not end within 120 s; it wrote: {}",
            services.errors("orders")
        );
        // A service that ended on its own would leave every later round waiting.
        if let Some(status) = shipping.try_wait().unwrap() {
            panic!(
                "round {round} (seed {seed}): the shipping service exited on its own ({status}); it wrote: {}",
                services.errors("shipping")
            );
        }
    }
    kill(&mut shipping);

    // Settle: every order placed (again: a no-op for those placed), shipped, projected.
    let total = rounds * 3;
    let mut shipping = services.shipping(Some(total));
    let mut orders = services.orders(1, total, total);
    // Bounded: a lost event would keep both waiting for ever.
    let (done, settle_watchdog) =
        watchdog(vec![orders.id(), shipping.id()], Duration::from_secs(180));
    let mut last = String::new();
    for line in BufReader::new(orders.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        last = line;
    }
    let settled = orders.wait().unwrap();
    let shipped = shipping.wait().unwrap();
    done.store(true, Ordering::SeqCst);
    settle_watchdog.join().unwrap();
    assert!(
        settled.success() && last.contains(&format!("{total} orders shipped")),
        "the last orders run settles within 3 minutes (its last line: {last:?}): an order was lost"
    );
    assert!(shipped.success(), "the last shipping run settles");

    let orders = rusqlite::Connection::open(services.db("orders")).unwrap();
    let shipping = rusqlite::Connection::open(services.db("shipping")).unwrap();
    let one = |conn: &rusqlite::Connection, sql: &str| -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    };
    let total = i64::try_from(total).unwrap();

    // Orders: each placed once, each event published, each shipment projected once.
    assert_eq!(
        one(
            &orders,
            "SELECT COUNT(DISTINCT aggregate_id) FROM flext_events WHERE name = 'order.placed'"
        ),
        total
    );
    assert_eq!(
        one(
            &orders,
            "SELECT COUNT(*) FROM flext_events WHERE name = 'order.placed'"
        ),
        total
    );
    assert_eq!(
        one(
            &orders,
            "SELECT COUNT(*) FROM flext_outbox WHERE delivered_ms IS NULL"
        ),
        0
    );
    assert_eq!(
        one(&orders, "SELECT COUNT(*) FROM shipments"),
        total,
        "a shipment per order"
    );
    assert_eq!(
        one(&orders, "SELECT COUNT(*) FROM shipments WHERE applied <> 1"),
        0,
        "each shipment written once"
    );

    // Shipping: one saga per order, completed; one booking; one event.
    assert_eq!(
        one(&shipping, "SELECT COUNT(*) FROM flext_sagas"),
        total,
        "one saga per order"
    );
    assert_eq!(
        one(
            &shipping,
            "SELECT COUNT(*) FROM flext_sagas WHERE state <> 'completed'"
        ),
        0
    );
    assert_eq!(
        one(&shipping, "SELECT COUNT(*) FROM bookings"),
        total,
        "one booking per order"
    );
    assert_eq!(
        one(&shipping, "SELECT COUNT(DISTINCT order_id) FROM bookings"),
        total
    );
    assert_eq!(
        one(
            &shipping,
            "SELECT COUNT(*) FROM bookings WHERE cancelled <> 0"
        ),
        0
    );
    assert_eq!(
        one(
            &shipping,
            "SELECT COUNT(*) FROM flext_events WHERE name = 'shipment.scheduled'"
        ),
        total
    );
    assert_eq!(
        one(
            &shipping,
            "SELECT COUNT(*) FROM flext_outbox WHERE delivered_ms IS NULL"
        ),
        0
    );

    // The streams: each service's events, once each, in order per aggregate.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (ordered, shipped, dead) = runtime.block_on(async {
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let ordered = stream_ids(&js, "orders").await;
        let shipped = stream_ids(&js, "shipping").await;
        let mut dead = 0;
        for name in ["orders_dead_letters", "shipping_dead_letters"] {
            if let Ok(mut s) = js.get_stream(name).await {
                dead += s.info().await.unwrap().state.messages;
            }
        }
        (ordered, shipped, dead)
    });
    assert_eq!(
        ordered,
        event_ids(&orders),
        "the orders stream holds each event once, in the outbox's order"
    );
    assert_eq!(
        shipped,
        event_ids(&shipping),
        "the shipping stream holds each event once, in the outbox's order"
    );
    assert_eq!(dead, 0, "no dead letters");

    println!(
        "nats kill rounds: {rounds} (seed {seed}); killed: orders {orders_killed}, shipping {shipping_killed}, nats-server {server_killed}; {total} orders: 0 lost, 0 published twice, 0 effects doubled"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The event ids a service's database holds, in its global order.
fn event_ids(conn: &rusqlite::Connection) -> Vec<String> {
    let mut stmt = conn
        .prepare("SELECT event_id FROM flext_events ORDER BY position")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Every message id on stream `name`, in stream order, after checking that none repeats
/// and that each subject's `Flext-Sequence` runs 1, 2, 3...
async fn stream_ids(js: &async_nats::jetstream::Context, name: &str) -> Vec<String> {
    let mut stream = js.get_stream(name).await.unwrap();
    let count = stream.info().await.unwrap().state.messages;
    let mut ids = BTreeSet::new();
    let mut order = Vec::new();
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for seq in 1..=count {
        let m = stream.get_raw_message(seq).await.unwrap();
        let id = m
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .unwrap()
            .as_str()
            .to_owned();
        assert!(ids.insert(id.clone()), "event {id} is on `{name}` twice");
        order.push(id);
        let sequence: u64 = m
            .headers
            .get(headers::SEQUENCE)
            .unwrap()
            .as_str()
            .parse()
            .unwrap();
        let before = last.insert(m.subject.to_string(), sequence).unwrap_or(0);
        assert_eq!(
            sequence,
            before + 1,
            "{} out of order on `{name}`",
            m.subject
        );
    }
    order
}
