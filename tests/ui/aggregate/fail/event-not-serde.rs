use flext::aggregate::{Events, Fixture, Repository};
use flext::prelude::*;
use serde::{Deserialize, Serialize};

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Deposit {
    #[aggregate_id]
    account: String,
    cents: u64,
}

#[event(name = "account.deposited")]
#[derive(Debug, Clone)]
struct Deposited {
    cents: u64,
}

#[aggregate]
#[derive(Default)]
struct Account {
    #[aggregate_id]
    id: String,
    balance: u64,
}

#[aggregate]
impl Account {
    #[command_handler]
    fn deposit(&self, command: &Deposit) -> Result<Events<Self>> {
        Ok(Events::one(Deposited { cents: command.cents }))
    }

    #[apply]
    fn deposited(&mut self, event: &Deposited) {
        self.balance += event.cents;
    }
}

fn main() {
    let account = Fixture::<Account>::given_no_events()
        .when(Deposit { account: "a-1".into(), cents: 5 })
        .then_expect(Events::one(Deposited { cents: 5 }));
    let _ = account.balance;
    let store = std::sync::Arc::new(flext::event_store::MemoryEventStore::new());
    let bus = Bus::builder().state(Repository::<Account>::new(store)).build().unwrap();
    let _ = bus.send(Deposit { account: "a-1".into(), cents: 5 }, &Context::new());
}
