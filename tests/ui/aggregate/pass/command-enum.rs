// A cqrs-es user's command enum, kept as it is: each variant names the aggregate with an
// `#[aggregate_id]` field, and one command method decides them all.
use flext::aggregate::{Events, Fixture, Repository};
use flext::prelude::*;
use serde::{Deserialize, Serialize};

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
enum AccountCommand {
    Open {
        #[aggregate_id]
        account: String,
        owner: String,
    },
    Deposit {
        #[aggregate_id]
        account: String,
        cents: u64,
    },
}

#[event(name = "account.opened")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Opened {
    owner: String,
}

#[event(name = "account.deposited")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Deposited {
    cents: u64,
}

#[aggregate]
#[derive(Default)]
struct Account {
    #[aggregate_id]
    id: String,
    owner: Option<String>,
    balance: u64,
}

#[aggregate]
impl Account {
    #[command_handler]
    fn decide(&self, command: &AccountCommand) -> Result<Events<Self>> {
        match command {
            AccountCommand::Open { owner, .. } if self.owner.is_none() => {
                Ok(Events::one(Opened { owner: owner.clone() }))
            }
            AccountCommand::Open { .. } => Err(Error::conflict("account.open", "already open")),
            AccountCommand::Deposit { cents, .. } => Ok(Events::one(Deposited { cents: *cents })),
        }
    }

    #[apply]
    fn opened(&mut self, event: &Opened) {
        self.owner = Some(event.owner.clone());
    }

    #[apply]
    fn deposited(&mut self, event: &Deposited) {
        self.balance += event.cents;
    }
}

fn main() {
    let account = Fixture::<Account>::given(Events::one(Opened { owner: "ada".into() }))
        .when(AccountCommand::Deposit { account: "a-1".into(), cents: 5 })
        .then_expect(Events::one(Deposited { cents: 5 }));
    assert_eq!((account.owner.as_deref(), account.balance), (Some("ada"), 5));

    let store = std::sync::Arc::new(flext::event_store::MemoryEventStore::new());
    let bus = Bus::builder().state(Repository::<Account>::new(store)).build().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let ctx = Context::new();
    let open = AccountCommand::Open { account: "a-2".into(), owner: "bo".into() };
    assert_eq!(rt.block_on(bus.send(open.clone(), &ctx)).unwrap(), 1);
    let deposit = AccountCommand::Deposit { account: "a-2".into(), cents: 7 };
    assert_eq!(rt.block_on(bus.send(deposit, &ctx)).unwrap(), 2);
    // The id routes each variant to its aggregate: a second `Open` of `a-2` is refused.
    assert_eq!(rt.block_on(bus.send(open, &ctx)).unwrap_err().code(), "account.open");
}
