//! Schedules in the `SagaLog` conformance suite: one schedule run by three processes on
//! one store fires each tick's saga once; the catch-up policies pick the ticks that
//! passed as documented, from what the log holds.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flext::prelude::*;
use flext::saga::{CatchUp, SagaFilter, SagaLog, SagaRunner, SagaState, Schedule};
use serde::{Deserialize, Serialize};

/// How many times each tick's step ran, by tick.
#[derive(Default)]
pub struct Tallies(Mutex<BTreeMap<u64, u32>>);

#[derive(Serialize, Deserialize)]
pub struct Tally {
    pub at_ms: u64,
}

#[saga]
impl Tally {
    #[saga_step]
    async fn count(&self, tallies: State<Tallies>) -> Result<u64> {
        *tallies.0.lock().unwrap().entry(self.at_ms).or_default() += 1;
        Ok(self.at_ms)
    }
}

fn runner(log: Arc<dyn SagaLog>, tallies: &Arc<Tallies>, owner: &str) -> SagaRunner {
    SagaRunner::builder_shared(log)
        .owner(owner)
        .shared_state(tallies.clone())
        .build()
}

/// `connect` opens another process's connection to the same store.
pub async fn schedule_contract<F, Fut>(connect: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn SagaLog>>,
{
    let tallies = Arc::new(Tallies::default());
    let every_second = Schedule::cron("tally", "* * * * * *").unwrap();
    let mut processes = Vec::new();
    for n in 0..3 {
        let process = runner(connect().await, &tallies, &format!("scheduler-{n}"));
        let schedule =
            process.spawn_schedule(every_second.clone(), |tick| Tally { at_ms: tick.at_ms });
        processes.push((process, schedule));
    }
    // Until three ticks have run (a guard against a hang, far beyond three seconds).
    tokio::time::timeout(Duration::from_secs(60), async {
        while tallies.0.lock().unwrap().len() < 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("three ticks fired");
    let log = processes[0].0.log().clone();
    for (_, schedule) in processes {
        schedule.shutdown().await;
    }
    // Ticks already started finish in their tasks: wait until none is in flight.
    let tally = SagaFilter {
        name: Some("Tally".into()),
        ..SagaFilter::default()
    };
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let sagas = log.list(&tally).await.unwrap();
            if sagas.iter().all(|s| s.state == SagaState::Completed) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("started ticks finish");

    let counted = tallies.0.lock().unwrap().clone();
    let sagas = log.list(&tally).await.unwrap();
    assert_eq!(sagas.len(), counted.len(), "one saga per tick: {counted:?}");
    for (at_ms, times) in &counted {
        assert_eq!(
            *times, 1,
            "tick {at_ms} ran {times} times across three processes"
        );
        assert_eq!(at_ms % 1_000, 0, "ticks fall on whole seconds");
        let id = every_second.saga_id(*at_ms);
        assert!(
            sagas.iter().any(|s| s.id == id),
            "tick {at_ms}'s saga is its id"
        );
    }
    let ticks: Vec<u64> = counted.keys().copied().collect();
    for pair in ticks.windows(2) {
        assert_eq!(pair[1] - pair[0], 1_000, "no tick skipped: {ticks:?}");
    }

    catch_up_contract(&log, &tallies).await;
}

/// The catch-up policies, against a log holding the saga of one earlier tick.
async fn catch_up_contract(log: &Arc<dyn SagaLog>, tallies: &Arc<Tallies>) {
    let process = runner(log.clone(), tallies, "catch-up");
    let minutes = Schedule::cron("minutely", "* * * * *").unwrap();
    // 12:00:30 on 2026-12-05; ticks at each whole minute before it.
    let now = 1_796_472_030_000;
    let minute = |m: u64| 1_796_472_000_000 - m * 60_000;
    assert_eq!(
        process.missed_ticks(&minutes, now).await.unwrap(),
        Vec::<u64>::new(),
        "skip catches up nothing"
    );
    let once = minutes.clone().catch_up(CatchUp::Once);
    assert_eq!(process.missed_ticks(&once, now).await.unwrap(), [minute(0)]);
    let each = minutes
        .clone()
        .catch_up(CatchUp::Each { max: 3 })
        .not_before_ms(minute(10));
    assert_eq!(
        process.missed_ticks(&each, now).await.unwrap(),
        [minute(2), minute(1), minute(0)],
        "the latest three"
    );
    let recent = each.clone().not_before_ms(minute(1));
    assert_eq!(
        process.missed_ticks(&recent, now).await.unwrap(),
        [minute(1), minute(0)],
        "none before not_before"
    );
    // The tick two minutes ago ran: only the ticks after it are missed.
    let at = minute(2);
    process
        .run_with_id(minutes.saga_id(at), Tally { at_ms: at }, &Context::new())
        .await
        .unwrap();
    let all = minutes
        .clone()
        .catch_up(CatchUp::Each { max: 100 })
        .not_before_ms(minute(30));
    assert_eq!(
        process.missed_ticks(&all, now).await.unwrap(),
        [minute(1), minute(0)]
    );
    // The latest tick ran: `Once` fires nothing.
    process
        .run_with_id(
            minutes.saga_id(minute(0)),
            Tally { at_ms: minute(0) },
            &Context::new(),
        )
        .await
        .unwrap();
    assert!(process.missed_ticks(&once, now).await.unwrap().is_empty());
}
