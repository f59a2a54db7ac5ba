use std::sync::atomic::{AtomicU64, Ordering};

use flext::prelude::*;

#[command(output = u64)]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct CreateUser {
    email: String,
}

#[query(output = u64)]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct CountUsers;

#[event]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct UserCreated {
    id: u64,
}

#[derive(Default)]
struct Users {
    next: AtomicU64,
}

// Free async function with context, bus and state, in any order after the message.
#[command_handler]
async fn create_user(cmd: CreateUser, users: State<Users>, bus: &Bus, ctx: &Context) -> Result<u64> {
    let id = users.next.fetch_add(1, Ordering::SeqCst) + 1;
    let _ = cmd.email;
    let report = bus.publish(UserCreated { id }, ctx).await;
    assert!(report.is_success());
    Ok(id)
}

struct Audit {
    seen: AtomicU64,
}

// Methods of a handler type; `&self` is the bus state `Audit`.
#[handlers]
impl Audit {
    #[event_handler]
    fn on_created(&self, _: UserCreated) -> Result<()> {
        self.seen.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    #[query_handler]
    async fn count(&self, _: CountUsers) -> Result<u64> {
        Ok(self.seen.load(Ordering::SeqCst))
    }
}

flext::assert_handled!(CreateUser, CountUsers);

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let bus = Bus::builder()
            .state(Users::default())
            .state(Audit { seen: AtomicU64::new(0) })
            .build()
            .unwrap();
        let ctx = Context::new();
        assert_eq!(bus.send(CreateUser { email: "a@b.io".into() }, &ctx).await.unwrap(), 1);
        assert_eq!(bus.send(CreateUser { email: "c@d.io".into() }, &ctx).await.unwrap(), 2);
        assert_eq!(bus.query(CountUsers, &ctx).await.unwrap(), 2);
    });
}
