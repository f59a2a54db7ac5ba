use flext::prelude::*;

#[event]
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct UserCreated;

#[event_handler]
fn on_created(_: UserCreated) {}

fn main() {
    let bus = Bus::builder().build().unwrap();
    let _ = bus.publish(UserCreated, &Context::new());
}
