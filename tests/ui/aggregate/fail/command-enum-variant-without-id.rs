use flext::aggregate::{Events, Repository};
use flext::prelude::*;
use serde::{Deserialize, Serialize};

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
enum AccountCommand {
    Open {
        #[aggregate_id]
        account: String,
    },
    // No `#[aggregate_id]`: which account is this for?
    Close { reason: String },
}

#[event(name = "account.opened")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Opened;

#[aggregate]
#[derive(Default)]
struct Account {
    #[aggregate_id]
    id: String,
    open: bool,
}

#[aggregate]
impl Account {
    #[command_handler]
    fn decide(&self, command: &AccountCommand) -> Result<Events<Self>> {
        let _ = command;
        Ok(Events::one(Opened))
    }

    #[apply]
    fn opened(&mut self, _: &Opened) {
        self.open = true;
    }
}

fn main() {
    let store = std::sync::Arc::new(flext::event_store::MemoryEventStore::new());
    let bus = Bus::builder().state(Repository::<Account>::new(store)).build().unwrap();
    let _ = bus.send(AccountCommand::Close { reason: "moved".into() }, &Context::new());
}
