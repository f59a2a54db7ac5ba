//! The parcel service behind the console example and the console's browser test: a
//! shipping saga over one SQLite database (saga log, events, outbox, a projection),
//! with a carrier that is down for the first parcel's label.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flext::database::BusRelay;
use flext::event_store::{NewEvent, StreamId};
use flext::operator::Operations;
use flext::prelude::*;
use flext::saga::{SagaRunner, SagaState};
use flext::sqlite::{SqliteDatabase, SqliteOutboxRelay, SqliteProjectionRunner, SqliteUnitOfWork};
use serde::{Deserialize, Serialize};

/// A parcel to ship: book a slot (given back on failure), take the payment (the pivot:
/// from here on the saga only goes forward), print the label with the carrier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShipParcel {
    /// The parcel's number.
    pub parcel: u32,
    /// Its weight; over 30 kg no slot is booked.
    pub kilograms: u32,
}

/// The carrier: answers 503 while `outage` calls remain.
#[derive(Debug, Default)]
pub struct Carrier {
    outage: AtomicU32,
}

/// The parcel was labelled and handed to the carrier.
#[event(name = "parcel.shipped")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParcelShipped {
    /// The parcel's number.
    pub parcel: u32,
    /// The carrier's tracking code.
    pub tracking: String,
}

fn store(e: impl std::fmt::Display) -> Error {
    Error::infrastructure("parcels.store", e.to_string())
}

#[saga]
impl ShipParcel {
    #[saga_step(compensate = release_slot)]
    fn book_slot(&self) -> Result<String> {
        if self.kilograms > 30 {
            return Err(Error::validation(
                "parcels.too_heavy",
                format!(
                    "parcel {} weighs {} kg; slots take 30 kg at most",
                    self.parcel, self.kilograms
                ),
            ));
        }
        Ok(format!("slot-{}", self.parcel))
    }
    fn release_slot(&self, _slot: &String) -> Result<()> {
        Ok(())
    }

    #[saga_step(pivot)]
    fn take_payment(&self, _slot: &String) -> Result<u64> {
        Ok(u64::from(self.kilograms) * 150)
    }

    #[saga_step(retries = 1, backoff_ms = 1)]
    fn print_label(
        &self,
        _paid: &u64,
        ctx: &Context,
        carrier: State<Carrier>,
        db: State<SqliteDatabase>,
    ) -> Result<String> {
        let down = carrier
            .outage
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if down {
            return Err(Error::infrastructure(
                "carrier.down",
                "the carrier's label API answers 503",
            ));
        }
        let tracking = format!("TRK{:05}", self.parcel);
        let event = NewEvent::new(
            ParcelShipped::NAME,
            1,
            serde_json::json!({ "parcel": self.parcel, "tracking": tracking }),
            ctx,
        );
        db.transaction(|uow| {
            let stream = StreamId::new("parcel", self.parcel.to_string());
            // A label printed again after a crash finds its event there already.
            match uow.append_events(&stream, 0, &[event]) {
                Ok(_) => Ok(()),
                Err(e) if e.code() == flext::codes::EVENT_CONFLICT => Ok(()),
                Err(e) => Err(e),
            }
        })?;
        Ok(tracking)
    }
}

/// Parcels shipped, by the projection `shipped`.
pub struct Shipped;

#[projection(name = "shipped", tables = ["shipped"])]
impl Shipped {
    fn setup(&self, uow: &SqliteUnitOfWork) -> Result<()> {
        uow.connection()
            .execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {} (parcel INTEGER PRIMARY KEY, tracking TEXT NOT NULL)",
                uow.table("shipped")
            ))
            .map_err(store)
    }

    #[apply]
    fn shipped(&self, uow: &SqliteUnitOfWork, e: &ParcelShipped) -> Result<()> {
        uow.connection()
            .execute(
                &format!(
                    "INSERT OR REPLACE INTO {} (parcel, tracking) VALUES (?1, ?2)",
                    uow.table("shipped")
                ),
                rusqlite::params![e.parcel, e.tracking],
            )
            .map(|_| ())
            .map_err(store)
    }
}

/// The service, started: its sagas run, its console's views ready.
pub struct App {
    /// What the console shows and does.
    pub operations: Operations,
    /// The parcels whose sagas the start ran: (parcel, saga id, state).
    pub sagas: Vec<(u32, Uuid, SagaState)>,
    loops: (
        flext::sqlite::SqliteOutboxLoop,
        flext::sqlite::SqliteProjectionLoop,
    ),
}

impl App {
    /// Stops the outbox and projection loops.
    pub async fn shutdown(self) {
        self.loops.0.shutdown().await;
        self.loops.1.shutdown().await;
    }
}

/// Opens (or creates) the service's database at `path` and ships parcels 1 to 3:
/// parcel 1 sticks at its label (the carrier is down for both attempts), parcel 2
/// ships, parcel 3 is too heavy and is compensated. The outbox and the projection run
/// every 200 ms.
pub async fn start(path: &Path) -> Result<App> {
    let db = SqliteDatabase::open(path)?;
    let runner = SagaRunner::builder(db.saga_log()?)
        .owner("parcels")
        .lease(Duration::from_millis(500))
        .state(Carrier {
            outage: AtomicU32::new(2),
        })
        .state(db.clone())
        .build();
    let bus = Bus::builder().state(runner.clone()).build()?;
    let relay = SqliteOutboxRelay::new(db.clone(), BusRelay::new(bus.clone()));
    let projection = SqliteProjectionRunner::new(db.clone(), Shipped);
    let mut sagas = Vec::new();
    for (parcel, kilograms) in [(1, 4), (2, 12), (3, 45)] {
        let outcome = runner
            .run(ShipParcel { parcel, kilograms }, &Context::new())
            .await?;
        sagas.push((parcel, outcome.saga_id(), outcome.state()));
    }
    let loops = (
        relay.spawn(Duration::from_millis(200)),
        projection.spawn(Duration::from_millis(200)),
    );
    let operations = Operations::for_runner(runner)
        .bus(bus)
        .projection(projection)
        .outbox("parcels", relay);
    Ok(App {
        operations,
        sagas,
        loops,
    })
}

/// The application's routes: the console under `/ops`, behind a stand-in for the
/// application's authentication that signs every request in as `user` (or none, for a
/// read-only console).
pub fn router(app: &App, user: Option<String>) -> axum::Router {
    axum::Router::new()
        .nest("/ops", flext::console::router(app.operations.clone()))
        .layer(axum::middleware::from_fn(
            move |mut request: axum::extract::Request, next: axum::middleware::Next| {
                let user = user.clone();
                async move {
                    if let Some(user) = user {
                        request.extensions_mut().insert(flext::Principal::new(user));
                    }
                    next.run(request).await
                }
            },
        ))
}
